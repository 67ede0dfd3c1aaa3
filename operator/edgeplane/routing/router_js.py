"""The router's source: the front Worker on a location's public socket.

Kept in a Python module (not a .js file) so it ships in every install of the package.
Matching itself lives in `edgeplane.routing.pattern`: the route table carries each pattern
already normalised (`RoutePattern.to_json()`), and the router compares it with the request's
`pathname + search` from `new URL()`, the normalisation `normalize_path` reproduces.
`hostOf`, `matches`, `pathQueryOf`, `routeFor`, `pick` and `verified` are exported so that
tests run them under node against `tests/data/route_cases.json`, as the Python matcher and
real workerd do.

The front holds no tenant code: it picks the Worker version for a request and sends it to
the cell (another workerd) that loads that version (edge/host_js.py). Its state (routes,
placement, cell ports, quarantined versions, signing key) is pushed by the agent on the
`admin` entrypoint, on a loopback socket only the agent reaches, and read from the agent's
disk copy at a cold start, so a deploy changes data, never a process. The admin entrypoint
also serves the request counts per Worker version and status class (module scope, the
front's lifetime) and the requests each cell has in flight (the watchdog's evidence):
  PUT /state      the whole state (JSON)     → {"seq"}
  GET /counts     → {"inflight": n, "counts": [{"worker", "version", "codes": [2xx, 3xx,
                     4xx, 5xx]}]}
  GET /inflight   → {"inflight": [{"cell", "worker", "version", "path", "ageMs"}]}
  GET /ping       → ok
"""

ROUTER_JS = r"""
// edgeplane router: the front Worker on the public socket. The state's routes are
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
let signingKey = null; // the imported key, re-imported when the state brings a new one
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
// Route precedence: `rank` is [host exact, host length, path exact, path length, has scheme,
// canonical pattern] (edgeplane.routing: specificity, then canonical), larger first.
export function before(a, b) {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] > b[i];
  return false;
}
// Routes indexed by host: an exact host's routes in a list of their own, wildcard hosts in
// one list, each sorted most specific first. A request looks at its host's list, then at the
// wildcards (an exact host always ranks above a wildcard one); a change touches only the
// lists of the routes it adds or removes, whatever the number of routes.
function insertSorted(list, route) {
  let lo = 0, hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (before(list[mid].rank, route.rank)) lo = mid + 1; else hi = mid;
  }
  list.splice(lo, 0, route);
}
function listOf(index, route, make) {
  if (route.pattern.hostWildcard) return index.wild;
  let list = index.exact.get(route.pattern.host);
  if (list === undefined && make) index.exact.set(route.pattern.host, (list = []));
  return list;
}
function indexAdd(index, routes) {
  for (const r of routes) insertSorted(listOf(index, r, true), r);
}
function indexRemove(index, routes) {
  for (const r of routes) {
    const list = listOf(index, r, false);
    const i = list === undefined ? -1 : list.indexOf(r);
    if (i >= 0) list.splice(i, 1);
    if (list !== undefined && list.length === 0 && !r.pattern.hostWildcard) {
      index.exact.delete(r.pattern.host);
    }
  }
}
export function lookup(index, scheme, host, pathQuery) {
  const exact = index.exact.get(host);
  const hit = exact === undefined ? null : routeFor(exact, scheme, host, pathQuery);
  return hit !== null ? hit : routeFor(index.wild, scheme, host, pathQuery);
}
// One Worker's routes as the index holds them.
function routesOf(worker, entry) {
  const versions = entry.versions.map((v) => ({ version: v }));
  return entry.routes.map((r) => ({ pattern: r.pattern, rank: r.rank, worker: worker,
    traffic: r.traffic, versions: versions }));
}
function exclusionRoutes(exclusions) {
  const out = [];
  for (const [ns, routes] of Object.entries(exclusions)) {
    for (const r of routes) out.push({ pattern: r.pattern, rank: r.rank, exclude: ns });
  }
  return out;
}
// The location's state, as the agent pushed it on the admin socket: whole (PUT /state) when
// the front starts or the agent adopts it, else as changes (PATCH /state: the Workers that
// changed, and any other key replaced whole). At a cold start (the front restarted while
// the agent was away) the agent's copy on disk. workers: Worker → {primary, cell, versions,
// routes}; cells: cell key → port; quarantined: version → reason.
const EMPTY = {
  seq: 0, workers: {}, exclusions: {}, cells: {}, quarantined: {},
  bypass: { status: 404 }, signing: { key: "", trustForwardedProto: false },
};
const OTHER_KEYS = ["cells", "quarantined", "bypass", "signing"];
let STATE = null;
let ROUTES = new Map(); // Worker → its routes in the index
let EXCLUDED = [];
export function applyState(st, doc, whole) {
  if (whole || st === null) {
    st = { ...EMPTY, index: { exact: new Map(), wild: [] } };
    ROUTES = new Map();
    EXCLUDED = [];
    st.workers = {};
  }
  for (const [worker, entry] of Object.entries(doc.workers || {})) {
    indexRemove(st.index, ROUTES.get(worker) || []);
    ROUTES.delete(worker);
    delete st.workers[worker];
    if (entry === null) continue;
    st.workers[worker] = entry;
    ROUTES.set(worker, routesOf(worker, entry));
    indexAdd(st.index, ROUTES.get(worker));
  }
  if (doc.exclusions !== undefined) {
    indexRemove(st.index, EXCLUDED);
    EXCLUDED = exclusionRoutes(doc.exclusions);
    indexAdd(st.index, EXCLUDED);
    st.exclusions = doc.exclusions;
  }
  for (const k of OTHER_KEYS) if (doc[k] !== undefined) st[k] = doc[k];
  st.seq = doc.seq;
  return st;
}
async function stateOf(env) {
  if (STATE === null) {
    const r = await env.STATE_DIR.fetch("http://state/state.json");
    const loaded = r.ok ? await r.json() : EMPTY;
    if (STATE === null) STATE = applyState(null, loaded, true); // a push that raced this wins
  }
  return STATE;
}
// Headers only the front sets on what it sends to a cell; never taken from a client.
export const INTERNAL_HEADERS = [
  "edgeplane-worker", "edgeplane-version", "edgeplane-url", "edgeplane-host",
  "edgeplane-service-target", "edgeplane-internal",
];
// The admin and internal sockets and the cells are on loopback, which tenant code cannot
// reach; other local processes can, so each call carries the location's internal key.
export function insider(request, env) {
  const key = request.headers.get("edgeplane-internal");
  return typeof env.INTERNAL_KEY === "string" && env.INTERNAL_KEY.length >= 32 &&
    key === env.INTERNAL_KEY;
}
export function forbidden() {
  return new Response("edgeplane: forbidden\n", { status: 403 });
}
// Requests dispatched per Worker version: [2xx, 3xx, 4xx, 5xx]. A status below 200 (101
// Switching Protocols) counts as 2xx; a cell that fails to answer as 5xx.
const COUNTS = new Map();
function count(worker, version, status) {
  const key = worker + " " + version;
  let c = COUNTS.get(key);
  if (c === undefined) COUNTS.set(key, (c = [0, 0, 0, 0]));
  c[status < 300 ? 0 : status < 400 ? 1 : status < 500 ? 2 : 3]++;
}
// Requests a cell has not answered yet, so the watchdog can name the version a hung cell
// was running.
const INFLIGHT = new Map();
let nextId = 0;
function text(body, status, extra) {
  return new Response(body, {
    status: status,
    headers: { "content-type": "text/plain; charset=utf-8", ...(extra || {}) },
  });
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// A cell that exited refuses connections until the agent's watchdog has replaced it and
// pushed the new port: a request that failed at once, with no body to resend, waits for
// that (up to REPLACED_WAIT ms) and is sent once more. A request that failed later may have
// run (or hung the cell): never resent.
const FAILED_AT_ONCE = 100;
const REPLACED_WAIT = 5000;
async function replaced(cell, port) {
  for (let t = 0; t < REPLACED_WAIT; t += 25) {
    await sleep(25);
    const now = STATE.cells[cell];
    if (now !== undefined && now !== port) return now;
  }
  return undefined;
}
// Send `request` to the cell that serves `worker`, for `version`, with the original URL and
// host in headers of the front's own (a cell rebuilds the request from them).
async function toCell(env, st, worker, version, request, url) {
  const reason = st.quarantined[version];
  if (reason !== undefined) {
    return text(
      `edgeplane: version ${version.slice(0, 12)} of Worker ${worker} is quarantined at ` +
        `this location: ${reason}. Deploy a new version to lift it.\n`, 502,
      { "edgeplane-quarantined": "1" },
    );
  }
  const cell = (st.workers[worker] || {}).cell;
  let port = st.cells[cell];
  if (port === undefined) {
    return text(`edgeplane: the cell of Worker ${worker} is not running at this location\n`, 503);
  }
  const headers = new Headers(request.headers);
  for (const h of INTERNAL_HEADERS) headers.delete(h);
  headers.set("edgeplane-worker", worker);
  headers.set("edgeplane-version", version);
  headers.set("edgeplane-url", url.href);
  headers.set("edgeplane-host", request.headers.get("host") || url.host);
  headers.set("edgeplane-internal", env.INTERNAL_KEY);
  const id = nextId++;
  INFLIGHT.set(id, { cell: cell, worker: worker, version: version, path: url.pathname,
    started: Date.now() });
  try {
    for (let attempt = 0; ; attempt++) {
      const sent = Date.now();
      try {
        return await fetch(`http://127.0.0.1:${port}/`, {
          method: request.method, headers: headers, body: request.body, redirect: "manual",
        });
      } catch (e) {
        const again = attempt === 0 && request.body === null && Date.now() - sent < FAILED_AT_ONCE;
        if (again && (port = await replaced(cell, port)) !== undefined) continue;
        return text(`edgeplane: the cell serving Worker ${worker} stopped answering (${e})\n`,
          502);
      }
    }
  } finally {
    INFLIGHT.delete(id);
  }
}
function snapshot() {
  const counts = [];
  for (const [key, codes] of COUNTS) {
    const [worker, version] = key.split(" ");
    counts.push({ worker: worker, version: version, codes: codes });
  }
  return JSON.stringify({ inflight: INFLIGHT.size, counts: counts }) + "\n";
}
function inflight() {
  const now = Date.now();
  const out = [];
  for (const r of INFLIGHT.values()) out.push({ ...r, ageMs: now - r.started });
  return JSON.stringify({ inflight: out }) + "\n";
}
// A route without a Worker: the request bypasses Workers. Cloudflare would send it to the
// zone's origin; a location has none, so it answers with its configured bypass status.
function bypass(st, host, url, route) {
  return text(
    `edgeplane: ${host}${url.pathname} bypasses Workers (a route of namespace ` +
      `${route.exclude} names no Worker) and this location has no origin\n`,
    st.bypass.status, { "edgeplane-bypass": "1" },
  );
}
const JSON_TYPE = { "content-type": "application/json" };
// The admin socket: only the agent reaches it (loopback, never a tenant: loaded Workers have
// no loopback egress).
export let admin = {
  async fetch(request, env) {
    if (!insider(request, env)) return forbidden();
    const url = new URL(request.url);
    if (url.pathname === "/state" && (request.method === "PUT" || request.method === "PATCH")) {
      const doc = await request.json();
      const whole = request.method === "PUT";
      if (!whole && (STATE === null || doc.base !== STATE.seq)) {
        // Changes on top of a state this front does not have: the agent sends it whole.
        return new Response(JSON.stringify({ seq: STATE === null ? 0 : STATE.seq }) + "\n",
          { status: 409, headers: JSON_TYPE });
      }
      STATE = applyState(STATE, doc, whole);
      return new Response(JSON.stringify({ seq: STATE.seq }) + "\n", { headers: JSON_TYPE });
    }
    if (url.pathname === "/state") {
      const st = await stateOf(env);
      return new Response(JSON.stringify({ seq: st.seq }) + "\n", { headers: JSON_TYPE });
    }
    if (url.pathname === "/counts") return new Response(snapshot(), { headers: JSON_TYPE });
    if (url.pathname === "/inflight") return new Response(inflight(), { headers: JSON_TYPE });
    if (url.pathname === "/ping") return text("ok\n", 200);
    return text("not found\n", 404);
  },
};
// A service-binding call from a cell (on the front's internal socket, see edge/host_js.py):
// it reaches the target Worker's primary version in whichever cell serves it.
export async function service(request, env) {
  if (!insider(request, env)) return forbidden();
  const st = await stateOf(env);
  const target = request.headers.get("edgeplane-service-target") || "";
  const version = (st.workers[target] || {}).primary;
  if (version === undefined) {
    return text(`edgeplane: Worker ${target} is not deployed at this location\n`, 503);
  }
  return toCell(env, st, target, version, request, new URL(request.headers.get("edgeplane-url")));
}
export default {
  async fetch(request, env) {
    const st = await stateOf(env);
    const url = new URL(request.url);
    const signed = await verified(request.headers, st.signing, Date.now() / 1000);
    // Behind a TLS-terminating proxy the socket speaks http: X-Forwarded-Proto counts when
    // the location is told it sits behind one, or on a signed request.
    const fwd = (request.headers.get("x-forwarded-proto") || "").trim().toLowerCase();
    const proto = fwd === "https" || fwd === "http";
    const trusted = proto && (st.signing.trustForwardedProto || signed);
    const scheme = trusted ? fwd : url.protocol.replace(":", "");
    const host = hostOf(request.headers.get("host") || url.host);
    const route = lookup(st.index, scheme, host, pathQueryOf(url));
    if (route === null) {
      return text(`edgeplane: no route matches ${host}${url.pathname} at this location\n`, 404);
    }
    if (route.exclude !== undefined) return bypass(st, host, url, route);
    const target = pick(route, request.headers, signed);
    let status = 500;
    try {
      const resp = await toCell(env, st, route.worker, target.version, request, url);
      status = resp.status;
      return resp;
    } finally {
      count(route.worker, target.version, status);
    }
  },
};
"""
