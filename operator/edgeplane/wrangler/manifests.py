"""Worker, WorkerRoute and ConfigMap manifests for the environments of one project."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgeplane.api.common import API_VERSION, DATA_KEY_RE, DNS_LABEL_RE
from edgeplane.api.route import WorkerRoute
from edgeplane.api.worker import MAX_PLAIN_TEXT, Worker
from edgeplane.routing import pattern_error
from edgeplane.wire import JS_IDENTIFIER_RE
from edgeplane.wrangler.config import (
    MAPPED_KEYS,
    TOOLING_KEYS,
    dev_var_names,
    find_config,
    load_config,
)
from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.modules import Rules, module_graph

# A ConfigMap (like any object) must stay under etcd's request limit; keep a margin for
# metadata and base64.
CONFIG_MAP_BUDGET = 900 * 1024


@dataclass
class Result:
    docs: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[str, list[str]] = field(default_factory=dict)  # Secret name -> keys
    warnings: list[str] = field(default_factory=list)
    unsupported: dict[str, list[str]] = field(default_factory=dict)  # Worker -> keys
    ignored: dict[str, list[str]] = field(default_factory=dict)  # Worker -> tooling keys


def _config_map_key(name: str, taken: set[str]) -> str:
    key = name.replace("/", "__").replace("@", "_at_").replace("+", "_plus_")
    key = re.sub(r"[^-._a-zA-Z0-9]", "_", key)
    base, i = key, 1
    while key in taken:
        i += 1
        key = f"{base}-{i}"
    taken.add(key)
    assert re.fullmatch(DATA_KEY_RE, key)
    return key


def _routes(raw: Any, worker: str, warn: list[str]) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    patterns: list[str] = []
    for item in items:
        custom = False
        if isinstance(item, str):
            pattern = item
        elif isinstance(item, Mapping) and isinstance(item.get("pattern"), str):
            pattern = item["pattern"]
            custom = bool(item.get("custom_domain"))
        else:
            raise WranglerImportError(f"{worker}: route {item!r} has no pattern")
        if custom:
            host = pattern.split("://", 1)[-1].rstrip("/")
            if "/" in host or "*" in host:
                raise WranglerImportError(
                    f"{worker}: custom domain {pattern!r} must be a plain hostname"
                )
            pattern = f"{host}/*"
        elif "/" not in pattern.split("://", 1)[-1]:
            warn.append(
                f"{worker}: route {pattern!r} has no path; imported as {pattern + '/*'!r}"
            )
            pattern += "/*"
        err = pattern_error(pattern)
        if err is not None:
            raise WranglerImportError(f"{worker}: route {pattern!r}: {err}")
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


def _binding_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(JS_IDENTIFIER_RE, name):
        raise WranglerImportError(f"{where}: binding name {name!r} is not a JavaScript identifier")
    return name


@dataclass(frozen=True)
class Options:
    namespace: str | None = None
    main: Path | None = None  # overrides `main` (e.g. a bundler's output)
    # EdgeTarget labels the Workers select (spec.targets.matchLabels); empty: every target.
    target_labels: tuple[tuple[str, str], ...] = ()


def convert_worker(
    cfg: Mapping[str, Any],
    top: Mapping[str, Any],
    env: str | None,
    root: Path,
    opts: Options,
    result: Result,
) -> None:
    """One Worker (the top level when env is None, else [env.<env>]) into result.docs."""
    warn = result.warnings

    def inherited(key: str) -> Any:
        return cfg[key] if key in cfg else top.get(key)

    if env is None:
        name = cfg.get("name")
    else:
        name = cfg.get("name") or (f"{top['name']}-{env}" if top.get("name") else None)
    if not isinstance(name, str) or not name:
        raise WranglerImportError("the wrangler config has no `name`; add one")
    if not re.fullmatch(DNS_LABEL_RE, name):
        raise WranglerImportError(
            f"name {name!r}: a Worker name is at most 63 lowercase letters, digits and '-'"
        )

    unknown = [k for k in cfg if k not in MAPPED_KEYS and k not in TOOLING_KEYS]
    # An empty table or list configures nothing; everything else is reported.
    unsupported = sorted(k for k in unknown if cfg[k] not in ([], {}, None, False))
    if unsupported:
        result.unsupported[name] = unsupported
    ignored = sorted(k for k in cfg if k in TOOLING_KEYS)
    if ignored:
        result.ignored[name] = ignored

    main_raw = opts.main if opts.main is not None else inherited("main")
    if not main_raw:
        raise WranglerImportError(
            f"{name}: no `main`; edgeplane runs ES module Workers: set main to the entry file"
        )
    main = (root / Path(main_raw)).resolve() if not Path(main_raw).is_absolute() else Path(
        main_raw
    )
    if not main.is_file():
        raise WranglerImportError(f"{name}: main {main_raw} not found")
    base_raw = inherited("base_dir")
    base_dir = (root / base_raw).resolve() if base_raw else main.parent
    if opts.main is not None and not base_raw:
        base_dir = main.parent
    rules = Rules.from_config(inherited("rules"), warn)
    bare: set[str] = set()
    modules = module_graph(main, base_dir, rules, warn, bare)
    if bare:
        warn.append(
            f"{name}: imports without a relative path are not bundled: "
            f"{', '.join(sorted(bare))}; bundle the Worker first (e.g. `npx wrangler deploy "
            "--dry-run --outdir dist`) and import with `--main dist/<file>.js`"
        )
    if inherited("find_additional_modules"):
        warn.append(
            f"{name}: find_additional_modules: only modules reachable by import from main "
            "are imported"
        )

    date = inherited("compatibility_date")
    if not isinstance(date, str):
        raise WranglerImportError(f"{name}: no compatibility_date; add one (YYYY-MM-DD)")
    flags = list(inherited("compatibility_flags") or [])

    ns_meta: dict[str, Any] = {"namespace": opts.namespace} if opts.namespace else {}
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "edgeplane-import"}

    # Module sources: ConfigMaps of at most CONFIG_MAP_BUDGET each.
    docs: list[dict[str, Any]] = []
    spec_modules: list[dict[str, Any]] = []
    maps: list[dict[str, Any]] = []
    used = CONFIG_MAP_BUDGET + 1
    keys: set[str] = set()
    for m in modules:
        size = len(m.content) * (4 / 3 if m.type in ("data", "wasm") else 1) + len(m.name)
        if size > CONFIG_MAP_BUDGET:
            raise WranglerImportError(
                f"{name}: module {m.name} is {len(m.content)} bytes, more than one "
                "ConfigMap holds; serve it from an https URL (modules[].url + sha256)"
            )
        if used + size > CONFIG_MAP_BUDGET:
            maps.append({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "", **ns_meta, "labels": labels},
            })
            used = 0
        used += int(size)
        cm = maps[-1]
        key = _config_map_key(m.name, keys)
        if m.type in ("data", "wasm"):
            cm.setdefault("binaryData", {})[key] = base64.b64encode(m.content).decode()
        else:
            try:
                cm.setdefault("data", {})[key] = m.content.decode("utf-8")
            except UnicodeDecodeError:
                raise WranglerImportError(
                    f"{name}: module {m.name} ({m.type}) is not UTF-8; add a rules entry "
                    "with type Data for it"
                ) from None
        spec_modules.append({
            "name": m.name,
            "type": m.type,
            "configMapKeyRef": {"name": "", "key": key},
            "_map": len(maps) - 1,
        })
    for i, cm in enumerate(maps):
        cm["metadata"]["name"] = f"{name}-modules" if len(maps) == 1 else f"{name}-modules-{i+1}"
    for sm in spec_modules:
        sm["configMapKeyRef"]["name"] = maps[sm.pop("_map")]["metadata"]["name"]
        if sm["type"] == "esModule":
            del sm["type"]  # the default
    docs += maps

    bindings = _bindings(cfg, name, root, env, result)
    spec: dict[str, Any] = {
        "compatibilityDate": date,
        **({"compatibilityFlags": flags} if flags else {}),
        "mainModule": modules[0].name,
        "modules": spec_modules,
        **({"bindings": bindings} if bindings else {}),
        **({"targets": {"matchLabels": dict(opts.target_labels)}} if opts.target_labels else {}),
    }
    worker_doc = {
        "apiVersion": API_VERSION,
        "kind": "Worker",
        "metadata": {"name": name, **ns_meta, "labels": labels},
        "spec": spec,
    }
    _validate(Worker, worker_doc, name)
    docs.append(worker_doc)

    routes_raw = inherited("routes") if ("routes" in cfg or "route" not in cfg) else None
    if routes_raw is None:
        routes_raw = inherited("route")
    patterns = _routes(routes_raw, name, warn) if routes_raw else []
    for i, pattern in enumerate(patterns):
        route_doc = {
            "apiVersion": API_VERSION,
            "kind": "WorkerRoute",
            "metadata": {
                "name": name if len(patterns) == 1 else f"{name}-{i + 1}",
                **ns_meta,
                "labels": labels,
            },
            "spec": {"pattern": pattern, "worker": name},
        }
        _validate(WorkerRoute, route_doc, name)
        docs.append(route_doc)
    if not patterns:
        warn.append(f"{name}: no routes; add a WorkerRoute for it to receive requests")
    result.docs += docs


def _bindings(
    cfg: Mapping[str, Any], name: str, root: Path, env: str | None, result: Result
) -> list[dict[str, Any]]:
    warn = result.warnings
    out: list[dict[str, Any]] = []
    var_names: set[str] = set()
    for key, value in (cfg.get("vars") or {}).items():
        bname = _binding_name(key, f"{name}: vars")
        var_names.add(bname)
        if isinstance(value, str):
            if len(value.encode()) > MAX_PLAIN_TEXT:
                raise WranglerImportError(f"{name}: vars.{key} is longer than 5 KiB")
            out.append({"name": bname, "plainText": value})
        elif isinstance(value, dict):
            out.append({"name": bname, "json": value})
        else:
            text = json.dumps(value)
            warn.append(
                f"{name}: vars.{key} is a JSON {type(value).__name__}; edgeplane's json "
                f"binding takes objects, so env.{key} is the string {text!r}"
            )
            out.append({"name": bname, "plainText": text})

    secrets_cfg = cfg.get("secrets")
    names: list[str] = []
    if isinstance(secrets_cfg, Mapping) and "required" in secrets_cfg:
        names = [str(s) for s in secrets_cfg.get("required") or []]
    elif isinstance(secrets_cfg, list):
        names = [str(s) for s in secrets_cfg]
    else:
        for candidate in ([f".dev.vars.{env}"] if env else []) + [".dev.vars"]:
            p = root / candidate
            if p.is_file():
                names = [n for n in dev_var_names(p) if n not in var_names]
                if names:
                    warn.append(
                        f"{name}: secret names taken from {candidate} (names only; its "
                        "values are not read into the output)"
                    )
                break
    if names:
        secret = f"{name}-secrets"
        result.secrets[secret] = []
        for s in names:
            bname = _binding_name(s, f"{name}: secrets")
            if bname in var_names:
                continue
            result.secrets[secret].append(bname)
            out.append({"name": bname, "secretKeyRef": {"name": secret, "key": bname}})

    for kv in cfg.get("kv_namespaces") or []:
        bname = _binding_name(kv.get("binding"), f"{name}: kv_namespaces")
        ns = kv.get("id") or kv.get("preview_id")
        if not ns:
            raise WranglerImportError(f"{name}: kv_namespaces binding {bname} has no id")
        out.append({"name": bname, "kvNamespace": {"namespace": str(ns)}})

    do_cfg = cfg.get("durable_objects") or {}
    for do in do_cfg.get("bindings") or []:
        bname = _binding_name(do.get("name"), f"{name}: durable_objects.bindings")
        script = do.get("script_name")
        if script and script != name:
            result.unsupported.setdefault(name, []).append(
                f"durable_objects.bindings[{bname}].script_name={script}"
            )
            continue
        out.append({"name": bname, "durableObjectNamespace": {"className": do["class_name"]}})

    for svc in cfg.get("services") or []:
        bname = _binding_name(svc.get("binding"), f"{name}: services")
        target = str(svc.get("service", ""))
        if svc.get("environment"):
            target = f"{target}-{svc['environment']}"
        if svc.get("entrypoint"):
            result.unsupported.setdefault(name, []).append(
                f"services[{bname}].entrypoint={svc['entrypoint']}"
            )
            continue
        out.append({"name": bname, "service": {"worker": target}})
    return out


def _validate(model: type[Worker] | type[WorkerRoute], doc: dict[str, Any], name: str) -> None:
    try:
        model.model_validate(doc)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise WranglerImportError(
            f"{name}: the {model.KIND} would be rejected: {problems}"
        ) from None


def convert(
    config_path: Path, envs: Iterable[str | None] = (None,), opts: Options = Options()
) -> Result:
    """Manifests for the given environments (None: the top level) of one wrangler project."""
    path = find_config(config_path)
    top = load_config(path)
    result = Result()
    defined = top.get("env") or {}
    for env in envs:
        if env is None:
            cfg = top
        elif env in defined:
            cfg = defined[env]
        else:
            raise WranglerImportError(
                f"environment {env!r} is not defined in {path.name} (defined: "
                f"{', '.join(sorted(defined)) or 'none'})"
            )
        convert_worker(cfg, top, env, path.parent, opts, result)
    # Two Workers claiming one pattern would both be refused (RouteConflict).
    seen: dict[str, str] = {}
    for d in result.docs:
        if d["kind"] == "WorkerRoute":
            p = d["spec"]["pattern"]
            if p in seen:
                result.warnings.append(
                    f"route {p!r} is claimed by both {seen[p]} and {d['spec']['worker']} "
                    "(environments inherit routes); edgeplane refuses both until one changes"
                )
            seen.setdefault(p, d["spec"]["worker"])
    return result

