import { price } from "./pricing";
import template from "./templates/page.md";
import legacy from "./legacy.cjs";

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/price") {
      return new Response(price(Number(url.searchParams.get("cents") ?? "0"), env.CURRENCY));
    }
    if (url.pathname === "/legacy") return new Response(legacy.describe(env.STAGE));
    const secrets = ["STRIPE_KEY", "SESSION_SECRET"].filter((k) => typeof env[k] === "string");
    return new Response(
      template.replace("{stage}", env.STAGE).replace("{secrets}", secrets.join(",") || "none"),
      { headers: { "content-type": "text/markdown" } },
    );
  },
};
