"""The router Worker's source: the entry Worker on the public socket.

Kept in a Python module (not a .js file) so it ships in every install of the package.
Matching itself lives in `edgeplane.routing.pattern`: the route table carries each pattern
already normalised (`RoutePattern.to_json()`), and the router compares it with the request's
`pathname + search` from `new URL()`, the normalisation `normalize_path` reproduces.
`hostOf`, `matches`, `pathQueryOf` and `routeFor` are exported so that tests run them under
node against `tests/data/route_cases.json`, as the Python matcher and real workerd do.

It also counts the requests it dispatches, per Worker version and status class, in module
scope (one generation's lifetime). The named entrypoint `stats` serves those counts on a
socket of their own that only the agent reaches (`render.STATS_SOCKET`); the public socket
uses the default entrypoint and never shows them:
  GET /counts          → {"inflight": n, "counts": [{"worker", "version", "codes": [2xx, 3xx,
                          4xx, 5xx]}]} at once
  GET /final?max=<ms>  → response headers at once, then the same body once no request has been
                          in flight for a moment (the agent asks just before it drains the
                          generation, so requests finishing during the drain are counted), or
                          after `max` ms
"""

ROUTER_JS = r"""
// edgeplane router: the entry Worker on the public socket. ROUTES (a JSON binding) is
// sorted most specific first by the agent; the first match wins (see edgeplane.routing).
// A pattern's host is lower case and its path normalised as new URL() normalises a
// request's, so plain comparisons are the whole of matching.
export function hostOf(h) {
  h = (h || "").trim().toLowerCase();
  if (h.startsWith("[")) return h.split("]")[0] + "]";
  const i = h.lastIndexOf(":");
  if (i >= 0) h = h.slice(0, i);
  return h.replace(/\.+$/, "");
}
// The path and query a pattern matches: the query counts (an empty one is ""), so an
// exact path matches only without one and a path ending in '*' matches it as a prefix.
export function pathQueryOf(url) {
  return url.pathname + url.search;
}
export function matches(p, scheme, host, pathQuery) {
  if (p.scheme !== null && p.scheme !== scheme) return false;
  if (p.hostWildcard ? !host.endsWith(p.host) : host !== p.host) return false;
  return p.pathWildcard ? pathQuery.startsWith(p.path) : pathQuery === p.path;
}
export function routeFor(routes, scheme, host, pathQuery) {
  for (const route of routes) {
    if (matches(route.pattern, scheme, host, pathQuery)) return route;
  }
  return null;
}
// FNV-1a over UTF-8: the same key always lands on the same bucket 0..99.
function bucket(key) {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(key)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % 100;
}
function overrides(header) {
  // e.g. ns.worker="<version-id>", other.w="<id>"
  const out = {};
  const re = /\s*([a-z0-9.-]+)\s*=\s*"([0-9a-f]+)"\s*(,|$)/g;
  let m;
  while ((m = re.exec(header || "")) !== null) out[m[1]] = m[2];
  return out;
}
export function pick(route, headers, signed) {
  // Override and sticky headers choose a version only on a signed request: the public must
  // not reach a dark (0 %) version, nor pin itself to one, by sending a header.
  const asked = signed ? overrides(headers.get("edgeplane-version-overrides")) : {};
  const want = asked[route.worker];
  if (want && want.length >= 8) {
    const hits = route.versions.filter((v) => v.version.startsWith(want));
    if (hits.length === 1) return hits[0];
  }
  const key = signed ? headers.get("edgeplane-version-key") : null;
  const b = key !== null ? bucket(key) : Math.floor(Math.random() * 100);
  let acc = 0;
  for (const t of route.traffic) {
    acc += t.percent;
    if (b < acc) return t;
  }
  return route.traffic[route.traffic.length - 1];
}
// Edgeplane-Signature: t=<unix seconds>,v=<hex HMAC-SHA256 of signedText with the
// location's signing key>, at most SIGNATURE_WINDOW seconds from now. edgeplane.wire.sign
// makes the same signature; tests check the two agree.
const SIGNATURE_WINDOW = 300;
let signingKey = null; // the imported key, once per generation (the key is in its config)
export function signedText(t, headers) {
  return [
    t,
    headers.get("x-forwarded-proto") || "",
    headers.get("edgeplane-version-overrides") || "",
    headers.get("edgeplane-version-key") || "",
  ].join("\n");
}
export async function verified(headers, signing, nowSeconds) {
  const header = (headers.get("edgeplane-signature") || "").trim();
  const m = /^t=(\d{1,12}),v=([0-9a-f]{64})$/.exec(header);
  if (m === null || !signing.key) return false;
  if (Math.abs(nowSeconds - Number(m[1])) > SIGNATURE_WINDOW) return false;
  if (signingKey === null || signingKey.raw !== signing.key) {
    const key = await crypto.subtle.importKey(
      "raw", new TextEncoder().encode(signing.key), { name: "HMAC", hash: "SHA-256" },
      false, ["verify"],
    );
    signingKey = { raw: signing.key, key: key };
  }
  const sig = new Uint8Array(m[2].match(/../g).map((h) => parseInt(h, 16)));
  const text = new TextEncoder().encode(signedText(m[1], headers));
  return await crypto.subtle.verify("HMAC", signingKey.key, sig, text);
}
// Requests dispatched per router binding (= Worker version): [2xx, 3xx, 4xx, 5xx]. A status
// below 200 (101 Switching Protocols) counts as 2xx; an exception thrown by the Worker as 5xx.
const COUNTS = new Map();
let inflight = 0;
function count(binding, status) {
  let c = COUNTS.get(binding);
  if (c === undefined) COUNTS.set(binding, (c = [0, 0, 0, 0]));
  c[status < 300 ? 0 : status < 400 ? 1 : status < 500 ? 2 : 3]++;
}
function snapshot(env) {
  const names = new Map();
  for (const route of env.ROUTES) {
    for (const v of route.versions) names.set(v.binding, [route.worker, v.version]);
  }
  const counts = [];
  for (const [binding, codes] of COUNTS) {
    const n = names.get(binding);
    if (n !== undefined) counts.push({ worker: n[0], version: n[1], codes: codes });
  }
  return JSON.stringify({ inflight: inflight, counts: counts }) + "\n";
}
// A route without a Worker: the request bypasses Workers. Cloudflare would send it to the
// zone's origin; a location has none, so it answers with its configured bypass status.
function bypass(env, host, url, route) {
  return new Response(
    `edgeplane: ${host}${url.pathname} bypasses Workers (a route of namespace ` +
      `${route.exclude} names no Worker) and this location has no origin\n`,
    {
      status: env.BYPASS.status,
      headers: { "content-type": "text/plain; charset=utf-8", "edgeplane-bypass": "1" },
    },
  );
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export let stats = {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const json = { "content-type": "application/json" };
    if (url.pathname === "/counts") return new Response(snapshot(env), { headers: json });
    if (url.pathname !== "/final") return new Response("not found\n", { status: 404 });
    const max = Math.max(0, Number(url.searchParams.get("max")) || 5000);
    const { readable, writable } = new TransformStream();
    const done = (async () => {
      // At least 10 ms, so the generation has handled the SIGTERM the agent sends right
      // after these headers and stopped accepting; then until nothing is in flight on two
      // ticks in a row. Short: the agent's PUT answer waits for this generation to exit.
      let quiet = 0;
      for (let t = 0; t < max; t += 2) {
        await sleep(2);
        quiet = inflight === 0 ? quiet + 1 : 0;
        if (t >= 10 && quiet >= 2) break;
      }
      const w = writable.getWriter();
      await w.write(new TextEncoder().encode(snapshot(env)));
      await w.close();
    })();
    ctx.waitUntil(done);
    return new Response(readable, { headers: json });
  },
};
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const signed = await verified(request.headers, env.SIGNING, Date.now() / 1000);
    // Behind a TLS-terminating proxy the socket speaks http: X-Forwarded-Proto counts when
    // the location is told it sits behind one, or on a signed request.
    const fwd = (request.headers.get("x-forwarded-proto") || "").trim().toLowerCase();
    const proto = fwd === "https" || fwd === "http";
    const trusted = proto && (env.SIGNING.trustForwardedProto || signed);
    const scheme = trusted ? fwd : url.protocol.replace(":", "");
    const host = hostOf(request.headers.get("host") || url.host);
    const route = routeFor(env.ROUTES, scheme, host, pathQueryOf(url));
    if (route !== null) {
      if (route.exclude !== undefined) return bypass(env, host, url, route);
      const target = pick(route, request.headers, signed);
      inflight++;
      let status = 500;
      try {
        const resp = await env[target.binding].fetch(request);
        status = resp.status;
        return resp;
      } finally {
        inflight--;
        count(target.binding, status);
      }
    }
    return new Response(
      `edgeplane: no route matches ${host}${url.pathname} at this location\n`,
      { status: 404, headers: { "content-type": "text/plain; charset=utf-8" } },
    );
  },
};
"""
