"""The router Worker's source: the entry Worker on the public socket.

Kept in a Python module (not a .js file) so it ships in every install of the package.
Its matching rules mirror `edgeplane.routes`; both run `tests/data/route_cases.json`.
"""

ROUTER_JS = r"""
// edgeplane router: the entry Worker on the public socket. ROUTES (a JSON binding) is
// sorted most specific first by the agent; the first match wins (see edgeplane.routes).
function hostOf(h) {
  h = (h || "").trim().toLowerCase();
  if (h.startsWith("[")) return h.split("]")[0] + "]";
  const i = h.lastIndexOf(":");
  if (i >= 0) h = h.slice(0, i);
  return h.replace(/\.+$/, "");
}
function matches(p, scheme, host, path) {
  if (p.scheme !== null && p.scheme !== scheme) return false;
  if (p.hostWildcard ? !host.endsWith(p.host) : host !== p.host) return false;
  return p.pathWildcard ? path.startsWith(p.path) : path === p.path;
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
export function pick(route, headers) {
  const want = overrides(headers.get("edgeplane-version-overrides"))[route.worker];
  if (want && want.length >= 8) {
    const hits = route.versions.filter((v) => v.version.startsWith(want));
    if (hits.length === 1) return hits[0];
  }
  const key = headers.get("edgeplane-version-key");
  const b = key !== null ? bucket(key) : Math.floor(Math.random() * 100);
  let acc = 0;
  for (const t of route.traffic) {
    acc += t.percent;
    if (b < acc) return t;
  }
  return route.traffic[route.traffic.length - 1];
}
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    // Behind a TLS-terminating proxy the socket speaks http; trust its X-Forwarded-Proto.
    const fwd = (request.headers.get("x-forwarded-proto") || "").trim().toLowerCase();
    const scheme = fwd === "https" || fwd === "http" ? fwd : url.protocol.replace(":", "");
    const host = hostOf(request.headers.get("host") || url.host);
    for (const route of env.ROUTES) {
      if (matches(route.pattern, scheme, host, url.pathname)) {
        const target = pick(route, request.headers);
        const resp = await env[target.binding].fetch(request);
        return resp;
      }
    }
    return new Response(
      `edgeplane: no route matches ${host}${url.pathname} at this location\n`,
      { status: 404, headers: { "content-type": "text/plain; charset=utf-8" } },
    );
  },
};
"""
