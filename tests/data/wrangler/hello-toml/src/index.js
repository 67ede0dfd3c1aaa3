// Entry point: answers with a greeting built from vars and a text module.
import { greet } from "./lib/greet.js";
import banner from "./banner.txt";
// import { unused } from "./lib/not-there.js";  (commented out: must not be followed)

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/banner") {
      return new Response(banner.trim());
    }
    if (url.pathname === "/config") {
      return Response.json({
        max: env.MAX_ITEMS,
        settings: env.SETTINGS,
        hasToken: typeof env.API_TOKEN === "string",
      });
    }
    const name = url.searchParams.get("name") ?? "world";
    return new Response(greet(env, name));
  },
};
