"""The JavaScript of a location's workerd processes, besides the router (routing/router_js).

`FRONT_JS` is the front's main module: the router, plus the KV store (one process holds all
KV data, so two cells never open the same storage). `HOST_JS` is the main module of every
cell: it loads the Worker version a request names with the `workerLoader` binding, from the
agent's store on disk (`CODE`, a read-only disk service of `<state>/code/<version>.json`,
naming each module's blob in `BLOBS`, the blob store), so a new version is a new file and
never a restart. Loaded isolates are cached by version
id and unloaded when idle; a version id is a content hash, so a cached isolate is never
stale. Bindings reach the loaded Worker as values, or as stubs of this host's entrypoints:
`Service` (a service binding: sent to the front's internal socket, which knows where the
target runs) and `Kv` (KV operations, also sent to the front).

A cell also answers, on paths no public request reaches (the front always sends "/"):
  GET  /__edgeplane/ping    → ok, without loading anything (the watchdog's probe)
  POST /__edgeplane/check   loads the version named by `edgeplane-version` under a check
                            module that imports its main module and reports whether it
                            registers a fetch handler → {"ok": true} or 422 {"error"}; the
                            agent's validator cell uses it before a push is accepted
  POST /__edgeplane/scheduled  runs a cron occurrence `{cron, scheduledTime}` through the
                            `scheduled()` handler of the version `edgeplane-version` names
                            → workerd's {"outcome", "noRetry"} (edge/cron.py)
A Durable Object Worker's cell also has the Worker's versions as static services
(`v:<version>`), which the host prefers to the loader (edge/render.py says why). A cell
also loads router.js, for what the two share: the headers only the front sets, and the
check of the location's internal key.
"""

FRONT_JS = r"""
import router, { admin as adminHandler, service, insider, forbidden } from "router.js";
import { kvRequest } from "kv.js";
export { KvShard } from "kv.js";
export let admin = adminHandler;
export let internal = {
  async fetch(request, env) {
    if (!insider(request, env)) return forbidden();
    const path = new URL(request.url).pathname;
    if (path === "/kv") return kvRequest(request, env);
    if (path === "/service") return service(request, env);
    return new Response("not found\n", { status: 404 });
  },
};
export default router;
"""

HOST_JS = r"""
import { WorkerEntrypoint } from "cloudflare:workers";
import { INTERNAL_HEADERS, insider, forbidden } from "router.js";
export { Kv } from "kvclient.js";
const CHECK = "__edgeplane_check.js";
// The calls a cell makes and takes carry the location's internal key (router.js, `insider`).
// A service binding of a loaded Worker: the call goes to the front, which sends it to the
// target's primary version wherever it runs (another cell, or this one).
export class Service extends WorkerEntrypoint {
  async fetch(request) {
    const headers = new Headers(request.headers);
    for (const h of INTERNAL_HEADERS) headers.delete(h);
    const url = new URL(request.url);
    headers.set("edgeplane-service-target", this.ctx.props.worker);
    headers.set("edgeplane-url", url.href);
    headers.set("edgeplane-host", url.host);
    headers.set("edgeplane-internal", this.env.INTERNAL_KEY);
    return this.env.FRONT.fetch("http://front/service", {
      method: request.method, headers: headers, body: request.body, redirect: "manual",
    });
  }
}
// Live logs (edgeplane tail, edge/tail.py). load() names this entrypoint as the tail of every
// loaded version; workerd calls it after each request with the console lines, exceptions and
// outcome. Only the events of Workers someone tails go on, to the agent's loopback tail sink
// (TAIL); which Workers those are is asked of the sink at most every TAIL_TTL ms, so with
// nobody tailing a request costs this call and one set lookup. The request never waits on it.
const TAIL_TTL = 500;
const tailing = { at: -Infinity, workers: new Set() };
async function tailedWorkers(env) {
  if (Date.now() - tailing.at < TAIL_TTL) return tailing.workers;
  // Every call that finds the set stale asks (a promise is not shared across requests in
  // workerd), so none goes by an answer older than TAIL_TTL: "ready" in a stream holds.
  try {
    const r = await env.TAIL.fetch("http://tail/workers",
      { headers: { "edgeplane-internal": env.INTERNAL_KEY } });
    tailing.workers = new Set(r.ok ? await r.json() : []);
  } catch {
    tailing.workers = new Set();
  }
  tailing.at = Date.now();
  return tailing.workers;
}
function tailEvent(props, e) {
  const ev = e.event || {};
  const rq = ev.request;
  return {
    worker: props.worker, version: props.version, outcome: e.outcome,
    timestamp: e.eventTimestamp,
    request: rq ? { method: rq.method, url: rq.url, headers: rq.headers } : null,
    status: ev.response ? ev.response.status : null,
    cron: ev.cron === undefined ? null : ev.cron,
    logs: (e.logs || []).map((l) => ({
      level: l.level, timestamp: l.timestamp, message: l.message })),
    exceptions: (e.exceptions || []).map((x) => ({
      name: x.name, message: x.message, stack: x.stack, timestamp: x.timestamp })),
  };
}
export class Tail extends WorkerEntrypoint {
  async tail(events) {
    if (this.env.TAIL === undefined) return;
    const props = this.ctx.props;
    if (!(await tailedWorkers(this.env)).has(props.worker)) return;
    try {
      await this.env.TAIL.fetch("http://tail/events", {
        method: "POST", headers: { "edgeplane-internal": this.env.INTERNAL_KEY },
        body: JSON.stringify(events.map((e) => tailEvent(props, e))),
      });
    } catch {} // the agent restarting: these events are lost, as a sampled-out one is
  }
}
function bytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
// A module by reference is a blob of the location's store (edge/blobs.py), read as text or
// bytes; the agent checked it against its sha256 before the version was accepted.
async function blobOf(env, m, binary) {
  const r = await env.BLOBS.fetch(`http://blobs/${m.sha256.slice(0, 2)}/${m.sha256.slice(2)}`);
  if (!r.ok) throw new Error(`module ${m.name}: blob ${m.sha256} is not in this location's store`);
  return binary ? new Uint8Array(await r.arrayBuffer()) : await r.text();
}
async function moduleOf(env, m) {
  const binary = m.type === "data" || m.type === "wasm";
  const c = m.content === undefined ? await blobOf(env, m, binary) :
    binary ? bytes(m.content) : m.content;
  switch (m.type) {
    case "esModule": return { js: c };
    case "commonJsModule": return { cjs: c };
    case "text": return { text: c };
    case "json": return { json: JSON.parse(c) };
    case "data": return { data: c };
    case "wasm": return { wasm: c };
  }
  throw new Error(`module ${m.name}: unknown type ${m.type}`);
}
function bindingOf(b, ctx, check) {
  if (b.text !== undefined) return b.text;
  if (b.secret !== undefined) return b.secret;
  if (b.json !== undefined) return JSON.parse(b.json);
  if (b.service !== undefined) return ctx.exports.Service({ props: { worker: b.service } });
  if (b.kvNamespace !== undefined) {
    const ns = b.worker.split(".")[0] + "/" + b.kvNamespace;
    return ctx.exports.Kv({ props: { namespace: ns } });
  }
  // A Durable Object Worker is served by a cell of its own (static services); the validator
  // only loads its code, where no binding is used yet.
  if (check) return null;
  throw new Error(`binding ${b.name} cannot be loaded dynamically`);
}
// Imports the main module and reports whether it registers a fetch handler (an object
// with fetch, or a class whose prototype has one). A CommonJS main is only loaded.
function checkSource(spec) {
  const main = JSON.stringify("./" + spec.mainModule);
  const es = spec.modules.find((m) => m.name === spec.mainModule).type === "esModule";
  if (!es) return `import ${main};\nexport default { fetch() { return Response.json({}); } };`;
  return `import * as m from ${main};
const d = m.default;
const ok = d !== null && d !== undefined && (typeof d.fetch === "function" ||
  (typeof d === "function" && typeof (d.prototype || {}).fetch === "function"));
export default { fetch() { return Response.json({ handler: ok }); } };`;
}
async function specOf(env, version) {
  const r = await env.CODE.fetch(`http://code/${version}.json`);
  if (!r.ok) throw new Error(`version ${version} is not in this location's store`);
  return await r.json();
}
// workerd's loader keeps what it got for an id, a failed load too: a version whose code file
// was missing (a crash, a cold load in the middle of a switch) would fail for the life of the
// cell after the file is back. A missing file moves the version to a fresh id (at most once a
// second) so that a later request loads it again.
const reloads = new Map(); // version -> [attempt, when]
function loaderId(version, check) {
  const r = reloads.get(version);
  return (check ? "check:" : "") + version + (r ? "#" + r[0] : "");
}
function missing(version) {
  const [attempt, when] = reloads.get(version) || [0, 0];
  if (Date.now() - when >= 1000) reloads.set(version, [attempt + 1, Date.now()]);
}
function load(env, ctx, version, check) {
  return env.LOADER.get(loaderId(version, check), async () => {
    let spec;
    try {
      spec = await specOf(env, version);
    } catch (e) {
      missing(version);
      throw e;
    }
    const modules = {};
    try {
      for (const m of spec.modules) modules[m.name] = await moduleOf(env, m);
    } catch (e) {
      missing(version);
      throw e;
    }
    const bindings = {};
    for (const b of spec.bindings) {
      bindings[b.name] = bindingOf({ ...b, worker: spec.worker }, ctx, check);
    }
    const site = spec.assets;
    if (site && site.binding) bindings[site.binding] = assetsBinding(env, check);
    let main = spec.mainModule;
    if (check) modules[(main = CHECK)] = checkSource(spec);
    return {
      compatibilityDate: spec.compatibilityDate,
      compatibilityFlags: spec.compatibilityFlags,
      mainModule: main,
      modules: modules,
      env: bindings,
      // Without the sink (live logs off, the validator) no tail runs at all.
      tails: env.TAIL === undefined ? [] :
        [ctx.exports.Tail({ props: { worker: spec.worker, version: spec.version } })],
    };
  });
}
function redact(s, secrets) {
  for (const v of secrets) if (v) s = s.split(v).join("[redacted]");
  return s;
}
async function secretsOf(env, version) {
  try {
    return (await specOf(env, version)).bindings.filter((b) => b.secret).map((b) => b.secret);
  } catch {
    return [];
  }
}
async function check(env, ctx, version) {
  try {
    const resp = await load(env, ctx, version, true).getEntrypoint().fetch("http://check/");
    const found = await resp.json();
    if (found.handler === false) {
      return Response.json({ error: "the main module registers no fetch handler: export " +
        "default { async fetch(request, env, ctx) { ... } } (or a WorkerEntrypoint class)" },
        { status: 422 });
    }
    return Response.json({ ok: true });
  } catch (e) {
    const message = redact(String(e.stack || e), await secretsOf(env, version));
    return Response.json({ error: message }, { status: 422 });
  }
}
// A cron trigger's occurrence (edge/cron.py): the version's scheduled() handler, through
// workerd's Fetcher.scheduled (the host has service_binding_extra_handlers; the loaded
// Worker needs no flag). Answers workerd's {outcome, noRetry}.
async function scheduled(request, env, ctx, version) {
  const { cron, scheduledTime } = await request.json();
  try {
    const target = env["v:" + version] ?? load(env, ctx, version, false).getEntrypoint();
    const r = await target.scheduled({ cron, scheduledTime: new Date(scheduledTime) });
    return Response.json({ outcome: r.outcome, noRetry: r.noRetry });
  } catch (e) {
    const error = redact(String(e.stack || e), await secretsOf(env, version));
    return Response.json({ outcome: "exception", noRetry: false, error });
  }
}
// The request as the client sent it to the front: its URL and Host, without our headers.
function original(request) {
  const headers = new Headers(request.headers);
  headers.set("host", request.headers.get("edgeplane-host"));
  const url = request.headers.get("edgeplane-url");
  for (const h of INTERNAL_HEADERS) headers.delete(h);
  return new Request(url, { method: request.method, headers: headers, body: request.body,
    redirect: "manual" });
}
export default {
  async fetch(request, env, ctx) {
    if (!insider(request, env)) return forbidden(); // only the front and the agent call
    const path = new URL(request.url).pathname;
    const version = request.headers.get("edgeplane-version") || "";
    if (path === "/__edgeplane/ping") return new Response("ok\n");
    if (path === "/__edgeplane/check") return check(env, ctx, version);
    if (path === "/__edgeplane/scheduled") return scheduled(request, env, ctx, version);
    if (env.ASSETS_SITE !== undefined) return viaAssets(env, version, original(request));
    return run(env, ctx, version, original(request));
  },
};
// The Worker at `version`: a static service (a Durable Object Worker's cell) or loaded.
async function run(env, ctx, version, request) {
  const fixed = env["v:" + version];
  if (fixed !== undefined) return fixed.fetch(request);
  try {
    return await load(env, ctx, version, false).getEntrypoint().fetch(request);
  } catch (e) {
    // A version that no longer loads here (validated when pushed, so rare): say so. Any
    // other exception is the Worker's own, answered as workerd answers it.
    if (!String(e).includes("Failed to start Worker")) throw e;
    const message = redact(String(e), await secretsOf(env, version));
    return new Response(`edgeplane: version ${version.slice(0, 12)} did not load: ${message}\n`,
      { status: 500, headers: { "content-type": "text/plain; charset=utf-8" } });
  }
}
// Static assets (a Worker with assets has a cell of its own, edge/render.py): a request goes
// to workerd's AssetsService, which serves a file or calls `User` with the request, which
// runs the Worker at the version the front chose (carried in ASSET_VERSION, set here over
// whatever the client sent, and removed before the Worker sees the request).
const ASSET_VERSION = "edgeplane-asset-version";
function viaAssets(env, version, request) {
  request.headers.set(ASSET_VERSION, version);
  return env.ASSETS_SITE.fetch(request);
}
export class User extends WorkerEntrypoint {
  async fetch(request) {
    const version = request.headers.get(ASSET_VERSION) || "";
    const headers = new Headers(request.headers);
    headers.delete(ASSET_VERSION);
    return run(this.env, this.ctx, version, new Request(request, { headers: headers }));
  }
}
// The Worker's assets binding (`env.ASSETS.fetch`): files only, never the Worker again.
function assetsBinding(env, check) {
  return check || env.ASSETS_FILES === undefined ? null : env.ASSETS_FILES;
}
"""
