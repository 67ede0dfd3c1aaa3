"""Workers KV for Workers loaded on demand: the front's store and the cells' binding.

Tenant Workers run in "cell" workerds that load them with the `workerLoader` binding, so a
KV namespace is chosen at run time (workerd's bundled `/workerd/kv.js` takes it only from
static config). And the data of a namespace must live in one process, so that two cells
never open the same storage: the "front" workerd holds it, one SQLite-backed Durable
Object per namespace, and the cells reach it over the front's internal socket.

`KV_JS` (module `kv.js`) runs in the front. It exports `KvShard`, the Durable Object class
(declared `enableSql`, bound as `KV_SHARDS`, with `localDisk` storage), and `kvRequest`, which
answers one operation sent by a cell. `KV_CLIENT_JS` (module `kvclient.js`) runs in the cell
host. It exports `Kv`, a `WorkerEntrypoint` whose RPC methods are Cloudflare's KV API; the host
passes `ctx.exports.Kv({props: {namespace}})` to a tenant as its KV binding. The namespace
comes only from those props, never from tenant input, so a tenant reaches only its own.

The wire protocol between them (the cell host's `FRONT` service binding to the front's
internal socket); every text a tenant chose travels URI-encoded (`encodeURIComponent`):

  POST /kv
  kv-namespace: <namespace>          always, from the binding's props
  kv-op: get | put | delete | list
  kv-key: <key>                      get, put, delete
  kv-metadata: <JSON text>           put, optional
  kv-expiration: <epoch seconds>     put, optional
  kv-expiration-ttl: <seconds>       put, optional (wins over kv-expiration)
  kv-prefix: <prefix>                list, optional
  kv-limit: <1..1000>                list
  kv-cursor: <cursor>                list, optional: a cursor an earlier list returned
  body: the value (put), with its Content-Length: a body without one is refused, since
        workerd ends a request body cleanly even when the stream it came from failed

Every answer carries `kv-result`:
  found    get: the value is the body; kv-metadata and kv-expiration as stored, if any
  missing  get: no such key (or it has expired)
  ok       put and delete: empty body; list: {"keys": [...], "list_complete", "cursor"?}
  error    the body is the message; 400 when the request was refused (a limit), else 500

Both modules enforce Cloudflare's documented limits with the same code (`_LIMITS_JS`): the
front because it is the authority, the cell to refuse early what would not fit in a header
or is not worth sending. Only the front checks an `expiration` against the clock. Expired
keys are never returned; `get` deletes its key once expired, and puts, deletes and lists
delete up to 100 expired keys each (by an index on the expiration).

Values cross the RPC boundary between tenant and cell host, which allows 32 MiB and
serializes a string at two bytes a character unless V8 holds it at one (ASCII text is): a
value of more than 16 MiB read as "text" or "json", or put as a string, can fail there with
the RPC's error unless it is ASCII; as bytes or a stream any value up to 25 MiB passes.
"""

_LIMITS_JS = r"""
// Cloudflare's documented Workers KV limits, the same block in kv.js and kvclient.js.
const MAX_KEY_BYTES = 512;
const MAX_VALUE_BYTES = 25 * 1024 * 1024;
const MAX_METADATA_BYTES = 1024;
const MIN_TTL_SECONDS = 60;
const MAX_LIST_LIMIT = 1000;
const UTF8 = new TextEncoder();

// A request refused by a limit (the front answers 400), not a failure of the store.
class KvRefused extends Error {}

function checkKey(key, what = "key") {
  if (typeof key !== "string") throw new TypeError(`KV ${what} must be a string`);
  if (!key.isWellFormed()) {
    throw new KvRefused(`KV ${what} is not valid Unicode (it holds a lone surrogate)`);
  }
  const n = UTF8.encode(key).byteLength;
  if (n > MAX_KEY_BYTES) {
    throw new KvRefused(
      `KV ${what} is ${n} bytes in UTF-8, over the limit of ${MAX_KEY_BYTES} bytes`);
  }
  if (what !== "key") return key;
  if (key === "") throw new KvRefused("KV key must not be empty");
  if (key === "." || key === "..") throw new KvRefused('KV key must not be "." or ".."');
  return key;
}
function checkValueSize(n) {
  if (n > MAX_VALUE_BYTES) {
    throw new KvRefused(`KV value is over the limit of 25 MiB (${MAX_VALUE_BYTES} bytes)`);
  }
}
function checkMetadata(text) {
  const n = UTF8.encode(text).byteLength;
  if (n > MAX_METADATA_BYTES) {
    throw new KvRefused(
      `KV metadata is ${n} bytes serialized as JSON, ` +
      `over the limit of ${MAX_METADATA_BYTES} bytes`);
  }
  return text;
}
function seconds(name, v) {
  const n = typeof v === "number" || typeof v === "string" ? Number(v) : NaN;
  if (!Number.isFinite(n) || n < 0 || (typeof v === "string" && v.trim() === "")) {
    throw new TypeError(`KV ${name} must be a number of seconds`);
  }
  return Math.floor(n);
}
function checkTtl(v) {
  const ttl = seconds("expirationTtl", v);
  if (ttl < MIN_TTL_SECONDS) {
    throw new KvRefused(
      `KV expirationTtl is ${ttl} seconds, under the minimum of ${MIN_TTL_SECONDS}`);
  }
  return ttl;
}
function checkListLimit(v) {
  if (v === undefined || v === null) return MAX_LIST_LIMIT;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIST_LIMIT) {
    throw new KvRefused(`KV list limit is ${v}; it must be an integer from 1 to ${MAX_LIST_LIMIT}`);
  }
  return n;
}
function concat(parts, n) {
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p instanceof ArrayBuffer ? new Uint8Array(p) : p, at);
    at += p.byteLength;
  }
  return out.buffer;
}
// A value's stream, read to its end unless it passes the limit: an ArrayBuffer.
async function readValue(stream) {
  const parts = [];
  let n = 0;
  if (stream !== null) {
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      n += value.byteLength;
      if (n > MAX_VALUE_BYTES) {
        await reader.cancel();
        checkValueSize(n);
      }
      parts.push(value);
    }
  }
  return concat(parts, n);
}
"""

KV_JS = (
    r"""
// edgeplane KV, the front's half: one SQLite-backed Durable Object per KV namespace (see
// edgeplane.edge.kv_js for the wire protocol). A value is stored in chunks: SQLite in workerd
// refuses a blob of a few MiB, and a value may have 25.
import { DurableObject } from "cloudflare:workers";
"""
    + _LIMITS_JS
    + r"""
const CHUNK_BYTES = 1024 * 1024;
const SWEEP_ROWS = 100;
const SCHEMA = `
CREATE TABLE IF NOT EXISTS entries (
  key TEXT PRIMARY KEY, size INTEGER NOT NULL, expiration INTEGER, metadata TEXT);
CREATE INDEX IF NOT EXISTS entries_expiration ON entries (expiration)
  WHERE expiration IS NOT NULL;
CREATE TABLE IF NOT EXISTS chunks (
  key TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, seq));
`;

function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}
// The smallest string above every string that starts with `prefix` (keys compare as UTF-8
// bytes, that is by code point): its last code point below U+10FFFF, plus one.
function prefixEnd(prefix) {
  const cps = Array.from(prefix);
  while (cps.length > 0) {
    const cp = cps.pop().codePointAt(0);
    if (cp < 0x10ffff) {
      cps.push(String.fromCodePoint(cp === 0xd7ff ? 0xe000 : cp + 1));
      return cps.join("");
    }
  }
  return null;
}

export class KvShard extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
  }
  // -> null, or {value: ArrayBuffer, expiration: seconds | null, metadata: JSON text | null}
  read(key) {
    const rows = this.sql.exec(
      "SELECT size, expiration, metadata FROM entries WHERE key = ?", key).toArray();
    if (rows.length === 0) return null;
    const { size, expiration, metadata } = rows[0];
    if (expiration !== null && expiration <= nowSeconds()) {
      this.ctx.storage.transactionSync(() => this.drop(key));
      return null;
    }
    const chunks = this.sql.exec(
      "SELECT data FROM chunks WHERE key = ? ORDER BY seq", key).toArray();
    return { value: concat(chunks.map((c) => c.data), size), expiration, metadata };
  }
  write(key, value, expiration, metadata) {
    this.ctx.storage.transactionSync(() => {
      this.sweep();
      this.drop(key);
      for (let at = 0, seq = 0; at < value.byteLength; at += CHUNK_BYTES, seq++) {
        this.sql.exec("INSERT INTO chunks (key, seq, data) VALUES (?, ?, ?)",
          key, seq, value.slice(at, at + CHUNK_BYTES));
      }
      this.sql.exec(
        "INSERT INTO entries (key, size, expiration, metadata) VALUES (?, ?, ?, ?)",
        key, value.byteLength, expiration, metadata);
    });
  }
  remove(key) {
    this.ctx.storage.transactionSync(() => {
      this.sweep();
      this.drop(key);
    });
  }
  // Up to `limit` live keys after `after` (or from the start) that start with `prefix`, in
  // UTF-8 byte order: {keys: [{name, expiration, metadata}], more: bool}.
  list(prefix, limit, after) {
    this.ctx.storage.transactionSync(() => this.sweep());
    let q = "SELECT key, expiration, metadata FROM entries WHERE key >= ?" +
      " AND (expiration IS NULL OR expiration > ?)";
    const args = [prefix, nowSeconds()];
    const end = prefixEnd(prefix);
    if (end !== null) {
      q += " AND key < ?";
      args.push(end);
    }
    if (after !== null) {
      q += " AND key > ?";
      args.push(after);
    }
    const rows = this.sql.exec(q + " ORDER BY key LIMIT ?", ...args, limit + 1).toArray();
    const keys = rows.slice(0, limit).map((r) => ({
      name: r.key, expiration: r.expiration, metadata: r.metadata }));
    return { keys, more: rows.length > limit };
  }
  drop(key) {
    this.sql.exec("DELETE FROM chunks WHERE key = ?", key);
    this.sql.exec("DELETE FROM entries WHERE key = ?", key);
  }
  // Expired keys go lazily: a few at each write or list, the oldest first.
  sweep() {
    const rows = this.sql.exec(
      "SELECT key FROM entries WHERE expiration <= ? ORDER BY expiration LIMIT ?",
      nowSeconds(), SWEEP_ROWS).toArray();
    for (const r of rows) this.drop(r.key);
  }
}

function header(h, name) {
  const v = h.get(name);
  if (v === null) return null;
  try {
    return decodeURIComponent(v);
  } catch {
    throw new KvRefused(`KV request header ${name} is not URI-encoded`);
  }
}
function expirationOf(h) {
  const ttl = h.get("kv-expiration-ttl");
  const now = nowSeconds();
  if (ttl !== null) return now + checkTtl(ttl);
  const at = h.get("kv-expiration");
  if (at === null) return null;
  const e = seconds("expiration", at);
  if (e < now + MIN_TTL_SECONDS) {
    const when = e <= now ? "in the past" : `only ${e - now} seconds from now`;
    throw new KvRefused(
      `KV expiration ${e} is ${when}; ` +
      `it must be at least ${MIN_TTL_SECONDS} seconds in the future`);
  }
  return e;
}
function metadataOf(h) {
  const text = header(h, "kv-metadata");
  if (text === null) return null;
  try {
    JSON.parse(text);
  } catch {
    throw new KvRefused("KV metadata is not JSON");
  }
  return checkMetadata(text);
}
// A cursor is the last key of the page before it, base64 of its UTF-8.
function cursorOf(key) {
  return btoa(String.fromCharCode(...UTF8.encode(key)));
}
function afterOf(cursor) {
  if (cursor === null || cursor === "") return null;
  try {
    const bytes = Uint8Array.from(atob(cursor), (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new KvRefused("KV list cursor is not one that list() returned");
  }
}
function answer(result, body = null, headers = {}, status = 200) {
  return new Response(body, { status, headers: { "kv-result": result, ...headers } });
}

const OPS = {
  async get(shard, h) {
    const got = await shard.read(checkKey(header(h, "kv-key")));
    if (got === null) return answer("missing");
    const headers = {};
    if (got.metadata !== null) headers["kv-metadata"] = encodeURIComponent(got.metadata);
    if (got.expiration !== null) headers["kv-expiration"] = String(got.expiration);
    return answer("found", got.value, headers);
  },
  async put(shard, h, request) {
    const key = checkKey(header(h, "kv-key"));
    const expiration = expirationOf(h);
    const metadata = metadataOf(h);
    // A body without a length could be cut short and still end cleanly (see kvclient.js).
    const length = h.get("content-length");
    if (length === null) throw new KvRefused("KV put needs a Content-Length");
    checkValueSize(Number(length));
    const value = await readValue(request.body);
    if (value.byteLength !== Number(length)) {
      throw new Error(`the value is ${value.byteLength} bytes, not its Content-Length ${length}`);
    }
    await shard.write(key, value, expiration, metadata);
    return answer("ok");
  },
  async delete(shard, h) {
    await shard.remove(checkKey(header(h, "kv-key")));
    return answer("ok");
  },
  async list(shard, h) {
    const prefix = checkKey(header(h, "kv-prefix") ?? "", "list prefix");
    const limit = checkListLimit(h.get("kv-limit"));
    const page = await shard.list(prefix, limit, afterOf(header(h, "kv-cursor")));
    const keys = page.keys.map((k) => ({
      name: k.name,
      ...(k.expiration !== null && { expiration: k.expiration }),
      ...(k.metadata !== null && { metadata: JSON.parse(k.metadata) }),
    }));
    const out = { keys, list_complete: !page.more };
    if (page.more) out.cursor = cursorOf(keys[keys.length - 1].name);
    return answer("ok", JSON.stringify(out), { "content-type": "application/json" });
  },
};

// One KV operation from a cell. The namespace alone picks the shard.
export async function kvRequest(request, env) {
  const h = request.headers;
  const op = h.get("kv-op");
  try {
    if (request.method !== "POST") throw new KvRefused("KV requests are POSTs");
    if (!Object.hasOwn(OPS, op)) throw new KvRefused(`KV op ${JSON.stringify(op)} is unknown`);
    const namespace = header(h, "kv-namespace");
    if (!namespace) throw new KvRefused("KV request names no namespace");
    const shard = env.KV_SHARDS.get(env.KV_SHARDS.idFromName(namespace));
    return await OPS[op](shard, h, request);
  } catch (e) {
    const refused = e instanceof KvRefused || e instanceof TypeError;
    const message = refused ? e.message : `KV ${op} failed: ${e.message}`;
    return answer("error", message, { "content-type": "text/plain" }, refused ? 400 : 500);
  }
}
"""
)

KV_CLIENT_JS = (
    r"""
// edgeplane KV, the cell's half: Cloudflare's KV API as RPC methods of an entrypoint that the
// host passes to a tenant Worker as its binding. Every operation goes to the front (see
// edgeplane.edge.kv_js for the wire protocol), in the namespace this binding's props name.
import { WorkerEntrypoint } from "cloudflare:workers";
"""
    + _LIMITS_JS
    + r"""
const TYPES = ["text", "json", "arrayBuffer", "stream"];
const CURSOR = /^[A-Za-z0-9+\/=]{1,1024}$/;

function responseType(options) {
  const o = typeof options === "object" && options !== null ? options : { type: options };
  const type = o.type ?? "text";
  if (!TYPES.includes(type)) {
    throw new TypeError(
      `KV get type must be "text", "json", "arrayBuffer" or "stream", not ${JSON.stringify(type)}`);
  }
  if (o.cacheTtl !== undefined && seconds("cacheTtl", o.cacheTtl) < MIN_TTL_SECONDS) {
    throw new KvRefused(
      `KV cacheTtl is ${o.cacheTtl} seconds, under the minimum of ${MIN_TTL_SECONDS}`);
  }
  return type;
}
async function valueOf(res, type) {
  if (type === "stream") return res.body ?? new Response(new Uint8Array(0)).body;
  if (type === "arrayBuffer") return await res.arrayBuffer();
  const text = await res.text();
  return type === "json" ? JSON.parse(text) : text;
}
function checkCursor(cursor) {
  if (typeof cursor !== "string" || !CURSOR.test(cursor)) {
    throw new KvRefused("KV list cursor is not one that list() returned");
  }
  return cursor;
}
// A put's body, of a known length. A stream is read here first: a request body stream that
// fails midway reaches the front as a body cut short but ended cleanly, which it would store.
async function bodyOf(value) {
  let bytes;
  if (typeof value === "string") bytes = UTF8.encode(value);
  else if (value instanceof ArrayBuffer) bytes = new Uint8Array(value);
  else if (ArrayBuffer.isView(value)) {
    bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  } else if (value instanceof ReadableStream) return await readValue(value);
  else {
    throw new TypeError(
      "KV put value must be a string, ArrayBuffer, ArrayBufferView or ReadableStream");
  }
  checkValueSize(bytes.byteLength);
  return bytes;
}
function putHeaders(options) {
  const o = options ?? {};
  const headers = {};
  if (o.expirationTtl !== undefined && o.expirationTtl !== null) {
    headers["kv-expiration-ttl"] = String(checkTtl(o.expirationTtl));
  }
  if (o.expiration !== undefined && o.expiration !== null) {
    headers["kv-expiration"] = String(seconds("expiration", o.expiration));
  }
  if (o.metadata !== undefined && o.metadata !== null) {
    let text;
    try {
      text = JSON.stringify(o.metadata);
    } catch (e) {
      throw new TypeError(`KV metadata must serialize as JSON: ${e.message}`);
    }
    headers["kv-metadata"] = encodeURIComponent(checkMetadata(text));
  }
  return headers;
}

// One operation at the front, in the namespace the entrypoint's props name (a function, not
// a method: a method would be RPC that tenant code could call). The front's refusal or
// failure is thrown here with its message.
async function toFront(entry, op, headers, body) {
  const namespace = entry.ctx.props?.namespace;
  if (typeof namespace !== "string" || namespace === "") {
    throw new Error("KV binding has no namespace in its props");
  }
  const res = await entry.env.FRONT.fetch("http://front/kv", {
    method: "POST",
    headers: {
      ...headers,
      "kv-op": op,
      "kv-namespace": encodeURIComponent(namespace),
      "edgeplane-internal": entry.env.INTERNAL_KEY,
    },
    body,
  });
  const result = res.headers.get("kv-result");
  if (result === "error") throw new Error(await res.text());
  if (result === null) {
    const text = (await res.text()).slice(0, 200);
    throw new Error(`KV ${op} failed: the front answered ${res.status} ${text}`);
  }
  return res;
}

export class Kv extends WorkerEntrypoint {
  async get(key, options) {
    return (await this.getWithMetadata(key, options)).value;
  }
  async getWithMetadata(key, options) {
    const type = responseType(options);
    const res = await toFront(this, "get", { "kv-key": encodeURIComponent(checkKey(key)) });
    if (res.headers.get("kv-result") === "missing") {
      return { value: null, metadata: null, cacheStatus: null };
    }
    const meta = res.headers.get("kv-metadata");
    const metadata = meta === null ? null : JSON.parse(decodeURIComponent(meta));
    return { value: await valueOf(res, type), metadata, cacheStatus: null };
  }
  async put(key, value, options) {
    const headers = { "kv-key": encodeURIComponent(checkKey(key)), ...putHeaders(options) };
    await toFront(this, "put", headers, await bodyOf(value));
  }
  async delete(key) {
    await toFront(this, "delete", { "kv-key": encodeURIComponent(checkKey(key)) });
  }
  async list(options) {
    const o = options ?? {};
    const headers = { "kv-limit": String(checkListLimit(o.limit)) };
    if (o.prefix !== undefined && o.prefix !== null) {
      headers["kv-prefix"] = encodeURIComponent(checkKey(o.prefix, "list prefix"));
    }
    if (o.cursor !== undefined && o.cursor !== null && o.cursor !== "") {
      headers["kv-cursor"] = encodeURIComponent(checkCursor(o.cursor));
    }
    const res = await toFront(this, "list", headers);
    return { ...(await res.json()), cacheStatus: null };
  }
}
"""
)
