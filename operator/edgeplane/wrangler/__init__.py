"""`edgeplane import`: turn a wrangler project (wrangler.toml / wrangler.json[c]) into
Worker, WorkerRoute and ConfigMap manifests.

What maps, and how:

- `name`, `main` and the code: bundled as `wrangler deploy` bundles it (build.py decides
  esbuild's options from the config, bundle.py runs esbuild.mjs under node with the
  esbuild edgeplane's package-lock.json pins): TypeScript, JSX, npm packages from the
  project's node_modules, `rules`, `base_dir`, `find_additional_modules`, `minify`,
  `keep_names`, `define`, `alias`, `tsconfig`, `jsx_*`, and Node's built-ins in
  wrangler's nodejs_compat modes (Cloudflare's unenv preset for "v2"). Text, Data and
  Wasm files ship as modules beside the bundle. With `no_bundle` the modules go out as
  they are: every relative `import`, `export ... from`,
  `import("...")` and `require("...")` is followed from `main` (modules.py), and every
  other file under `base_dir` a rule matches is added, as wrangler uploads them. An import
  that will not load stops the command unless --allow-incomplete. The sources go into
  ConfigMaps (`configMapKeyRef`), never inline, so a Worker is not limited by the 1 MiB
  inline limit, and the Worker object stays small.
- `compatibility_date`, `compatibility_flags`.
- `vars`: strings become `plainText`, objects `json`; other JSON values (numbers, booleans,
  arrays) become `plainText` holding their JSON text, with a warning (edgeplane's json
  binding takes objects only).
- `secrets.required` (or, without it, the names in `.dev.vars`: names only, values are never
  read into the output) become `secretKeyRef` placeholders into one Secret per Worker,
  listed at the top of the output with the command that creates it.
- `kv_namespaces` (one without `id`, which wrangler would provision, binds the KV
  namespace named like the binding, with a warning), `durable_objects.bindings` (classes
  of this Worker), `services`.
- `route` / `routes`: strings, `{pattern, zone_name | zone_id}`, or
  `{pattern, custom_domain = true}` (the whole host: `host/*`).
- `[env.<name>]`: a separate Worker named `<name>-<env>` (or the environment's `name`).
  Like wrangler, `main`, compatibility date and flags, routes and the build settings are
  inherited from the top level; vars, define, secrets and bindings are not (config.py
  holds which keys are which). A key an environment inherits but edgeplane does not map
  is reported for its Worker, marked inherited; top-level bindings it does not inherit
  are named in a note.

Anything else that changes what the Worker does (R2, D1, queues, crons, migrations, ...)
is listed by name in a warning on stderr; keys that only steer wrangler's tooling are
listed as ignored. Nothing is dropped silently. `--check` starts the result in a
throw-away workerd (trial.py writes its config, check.py runs it) before writing.

Layout: project.py, bundle.py, check.py and cli.py read files and run processes;
everything else is pure, values in and values out. config.py (the configuration),
shape.py (the types its keys must have, checked before anything reads them), build.py
(esbuild's options and messages), modules.py (the unbundled module graph, walked over a
SourceTree), bindings.py, routes.py and manifests.py (one Worker's objects), output.py
(the YAML and the messages), comments.py (JSONC and JavaScript comments), trial.py.
"""

from edgeplane.wrangler.cli import main
from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.manifests import Options, Result
from edgeplane.wrangler.output import render
from edgeplane.wrangler.project import convert, find_config, load_config

__all__ = [
    "Options",
    "Result",
    "WranglerImportError",
    "convert",
    "find_config",
    "load_config",
    "main",
    "render",
]
