// `edgeplane import`'s bundler: one esbuild build, as wrangler runs it, driven by
// edgeplane/wrangler/bundle.py. Reads a JSON request on stdin, writes a JSON result on
// stdout; every decision about what the request holds is made in Python (build.py).
//
// Request: { esbuild, entry, projectRoot, outName, options, additional, separate,
//            nodeCompat, allowIncomplete }
// Result:  { ok, errors, warnings, bundle, imported, outside, unresolved, inputs, packages,
//            version, builtins }
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { builtinModules, createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const request = JSON.parse(readFileSync(0, "utf8"));
const esbuild = createRequire(path.join(request.esbuild, "package.json"))(request.esbuild);
const additional = new Map(Object.entries(request.additional)); // abs path -> module name
const builtins = new Set(builtinModules.filter((m) => !m.startsWith("_")));
const imported = new Set(); // additional modules the bundle imports
const outside = {}; // name -> {path, type}: separate modules from outside base_dir
const unresolved = []; // {spec, importer} left external with --allow-incomplete

const rel = (file) => path.relative(request.projectRoot, file).split(path.sep).join("/");

// Node's built-ins, as wrangler's nodejs_compat modes have them. "v2": the aliases of
// Cloudflare's unenv preset for the Worker's date and flags (workerd's own module where it
// has one, else unenv's polyfill, bundled), its globals (process, console) and polyfills
// injected. "v1": every built-in is workerd's. "als": node:async_hooks only. Otherwise an
// import of one is refused with the flag to add. A CommonJS require() of a runtime module
// would throw in ES module output ("Dynamic require ... is not supported"), so it gets a
// module that imports it. `cloudflare:` and `workerd:` modules are the runtime's own.
const compat = request.nodeCompat;
const unenvEnv = compat.mode === "v2" ? await presetEnv() : null;

async function importPackage(dir) {
  const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
  const dot = pkg.exports?.["."];
  const entry = typeof dot === "string" ? dot : dot?.import?.default ?? dot?.import ??
    dot?.default ?? pkg.module ?? pkg.main;
  return import(pathToFileURL(path.join(dir, entry)).href);
}

async function presetEnv() {
  const { getCloudflarePreset } = await importPackage(compat.preset);
  const { defineEnv } = await importPackage(compat.unenv);
  const preset = getCloudflarePreset({ compatibilityDate: compat.date,
    compatibilityFlags: compat.flags });
  return defineEnv({ presets: [preset], npmShims: true, resolve: true }).env;
}

function runtime(spec, kind) {
  if (kind === "require-call") return { path: spec, namespace: "node-require" };
  return { path: spec, external: true };
}

function builtin(a) {
  const prefixed = a.path.startsWith("node:");
  const name = a.path.replace(/^node:/, "");
  if (!prefixed && !builtins.has(name.split("/")[0])) return undefined;
  if (compat.mode === "v1" || (compat.mode === "als" && name === "async_hooks")) {
    return runtime(`node:${name}`, a.kind);
  }
  if (compat.mode === "v2") return runtime(`node:${name}`, a.kind); // unaliased: workerd's
  // Without the flag a bare "buffer" may still be the npm package of that name.
  if (!prefixed) return undefined;
  return {
    errors: [{
      text: `"${a.path}" is a Node.js built-in module; add "nodejs_compat" to ` +
        "compatibility_flags for workerd to provide it",
    }],
  };
}

function runtimeModules(build) {
  build.onLoad({ filter: /.*/, namespace: "node-require" }, (a) => ({
    contents: `import * as ns from ${JSON.stringify(a.path)};\n` +
      `module.exports = "default" in ns ? ns.default : ns;\n`,
    loader: "js",
  }));
  build.onResolve({ filter: /^(cloudflare|workerd):/ }, (a) => ({ path: a.path, external: true }));
  build.onResolve({ filter: /^[^./]/ }, (a) => {
    const alias = unenvEnv?.alias[a.path];
    if (alias === undefined) return builtin(a);
    if (alias.startsWith("node:")) return runtime(alias, a.kind);
    return { path: alias };  // unenv's polyfill (or npm shim), bundled
  });
  if (unenvEnv === null) return;
  // The preset's globals and polyfills run first, as wrangler injects them.
  build.onResolve({ filter: /^edgeplane-global:/ }, (a) => ({ path: a.path,
    namespace: "edgeplane-global" }));
  build.onLoad({ filter: /.*/, namespace: "edgeplane-global" }, (a) => ({
    contents: globalModule(a.path.slice("edgeplane-global:".length)),
    resolveDir: request.projectRoot,
    loader: "js",
  }));
}

function globalModule(name) {
  const spec = unenvEnv.inject[name];
  const [from, exported] = Array.isArray(spec) ? spec : [spec, "default"];
  return `import { ${exported} as value } from ${JSON.stringify(from)};\n` +
    `globalThis.${name} = value;\n`;
}

function injected() {
  if (unenvEnv === null) return [];
  return [...unenvEnv.polyfill,
    ...Object.keys(unenvEnv.inject).map((name) => `edgeplane-global:${name}`)];
}

// Files that ship as modules of their own (Text, Data, CompiledWasm rules, and every rule
// match with find_additional_modules): the import stays, renamed to the module's name
// beside the bundle. Such a file outside base_dir (a package's .wasm, say) is named by a
// hash of its content, as wrangler names it.
function additionalModules(build) {
  build.onResolve({ filter: /.*/ }, async (a) => {
    if (a.pluginData?.probe || a.kind === "entry-point") return undefined;
    const spec = a.path.replace(/\?module$/, "");
    let type = request.separate[path.extname(spec)];
    let file;
    if (/^\.\.?\//.test(spec)) {
      file = path.resolve(a.resolveDir, spec);
    } else if (type !== undefined || spec.startsWith("#")) {
      // A package's file, or a subpath import (package.json "imports") that may name one.
      const found = await build.resolve(spec, {
        kind: a.kind, resolveDir: a.resolveDir, importer: a.importer,
        pluginData: { probe: true },
      });
      if (found.errors.length > 0 || found.external) return undefined;
      file = found.path;
      type = request.separate[path.extname(file)];
    } else {
      return undefined;
    }
    let name = additional.get(file);
    if (name === undefined) {
      if (type === undefined || !existsSync(file)) return undefined;
      const digest = createHash("sha1").update(readFileSync(file)).digest("hex");
      name = `${digest}-${path.basename(file)}`;
      outside[name] = { path: file, type };
    }
    imported.add(name);
    return { path: `./${name}`, external: true };
  });
}

// With --allow-incomplete an import that does not resolve, or names a file no module rule
// or loader takes, stays as written and is listed; without, esbuild's own error stands.
const LOADED = new Set([".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".mts", ".cts", ".json",
  ...Object.keys(request.separate), ...Object.keys(request.options.loader || {})]);

function incomplete(build) {
  if (!request.allowIncomplete) return;
  build.onResolve({ filter: /.*/ }, async (a) => {
    if (a.pluginData?.probe || a.kind === "entry-point") return undefined;
    const found = await build.resolve(a.path, {
      kind: a.kind, resolveDir: a.resolveDir, importer: a.importer, pluginData: { probe: true },
    });
    if (found.errors.length === 0) {
      const loads = found.external || found.namespace !== "file" ||
        LOADED.has(path.extname(found.path));
      if (loads) return undefined;
    }
    unresolved.push({ spec: a.path, importer: rel(a.importer) });
    return { path: a.path, external: true };
  });
}

function message(m) {
  const loc = m.location;
  return {
    text: m.text + (m.notes || []).map((n) => ` (${n.text})`).join(""),
    file: loc ? loc.file : null,
    line: loc ? loc.line : null,
    lineText: loc ? loc.lineText : null,
  };
}

// Each npm package the bundle took code from: its directory and the version its
// package.json says.
function packages(inputs) {
  const found = {};
  for (const input of inputs) {
    const hits = [...input.matchAll(/(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//g)];
    if (hits.length === 0) continue;
    const last = hits[hits.length - 1];
    const name = last[1];
    const dir = path.resolve(request.projectRoot, input.slice(0, last.index + last[0].length));
    let version = "?";
    try {
      version = JSON.parse(readFileSync(path.join(dir, "package.json"))).version || "?";
    } catch {}
    found[name] = { version, dir };
  }
  return found;
}

// esbuild heads each input's code with its path from the project; a package from outside
// the project (edgeplane's unenv, a monorepo's node_modules) would name this machine's
// directories in the manifests. From its node_modules/ on, the output is the same anywhere.
function portable(code) {
  return code.replace(/^(\s*)\/\/ (?:\.\.\/)+[^\n]*?(node_modules\/[^\n]*)$/gm, "$1// $2");
}

let result;
try {
  const out = await esbuild.build({
    ...request.options,
    entryPoints: [request.entry],
    absWorkingDir: request.projectRoot,
    outfile: path.join(request.projectRoot, request.outName),
    bundle: true,
    inject: injected(),
    write: false,
    metafile: true,
    logLevel: "silent",
    plugins: [
      { name: "edgeplane-incomplete", setup: incomplete },
      { name: "edgeplane-additional", setup: additionalModules },
      { name: "edgeplane-runtime", setup: runtimeModules },
    ],
  });
  const js = out.outputFiles.find((f) => f.path.endsWith(".js"));
  const inputs = Object.keys(out.metafile.inputs);
  result = {
    ok: true,
    errors: [],
    warnings: out.warnings.map(message),
    bundle: portable(js.text),
    imported: [...imported].sort(),
    outside,
    unresolved,
    inputs,
    packages: packages(inputs),
  };
} catch (e) {
  result = {
    ok: false,
    errors: (e.errors || [{ text: String(e) }]).map(message),
    warnings: (e.warnings || []).map(message),
    unresolved,
  };
}
result.version = esbuild.version;
result.builtins = [...builtins];
process.stdout.write(JSON.stringify(result));
