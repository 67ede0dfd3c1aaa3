import { handleUsers } from "./routes/users.mjs";
import { jsonResponse } from "./util/index.mjs";
import wasm from "../assets/add.wasm";
export { Counter } from "./counter.mjs";

const add = new WebAssembly.Instance(wasm).exports.add;

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/users")) return handleUsers(url);
    if (url.pathname === "/add") {
      return new Response(String(add(Number(url.searchParams.get("a")), Number(url.searchParams.get("b")))));
    }
    if (url.pathname === "/vars") {
      return jsonResponse({ upstream: env.UPSTREAM, motto: env.MOTTO, limits: env.LIMITS });
    }
    if (url.pathname === "/hello") {
      // Through the service binding, as on Cloudflare.
      return env.HELLO.fetch(new Request("https://hello.wrangler-import.test/?name=api"));
    }
    return new Response("not found", { status: 404 });
  },
};
