"""One Worker's manifests (ConfigMaps with its module sources, the Worker, its
WorkerRoutes) from its wrangler config and the files read for it. Pure: nothing here
touches the filesystem, so every decision runs on plain values."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from pydantic import ValidationError

from edgeplane.api.common import API_VERSION, DATA_KEY_RE
from edgeplane.api.route import WorkerRoute
from edgeplane.api.worker import STRICT_COMPAT_DATE_RE, Worker
from edgeplane.fieldpath import describe
from edgeplane.wrangler.bindings import (
    durable_object_bindings,
    kv_bindings,
    secret_bindings,
    secret_names,
    secret_source,
    service_bindings,
    unique_bindings,
    var_bindings,
)
from edgeplane.wrangler.config import DevVars, inherited, key_report
from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.modules import Module
from edgeplane.wrangler.routes import route_config, route_patterns

# A ConfigMap (like any object) must stay under etcd's request limit; keep a margin for
# metadata and base64.
CONFIG_MAP_BUDGET = 900 * 1024
# Module types stored base64-encoded under binaryData; the others are UTF-8 text.
BINARY_TYPES = ("data", "wasm")


@dataclass(frozen=True)
class Options:
    """The command's choices that apply to every Worker imported."""

    namespace: str | None = None
    main: PurePath | None = None  # overrides `main` (e.g. a bundler's output)
    # EdgeTarget labels the Workers select (spec.targets.matchLabels); empty: every target.
    target_labels: tuple[tuple[str, str], ...] = ()
    # Write a Worker some of whose imports will not load (listed in the header), instead
    # of refusing it.
    allow_incomplete: bool = False


@dataclass
class Result:
    """The manifests of one import, and what to tell the user about them."""

    docs: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[str, list[str]] = field(default_factory=dict)  # Secret name -> keys
    warnings: list[str] = field(default_factory=list)
    unsupported: dict[str, list[str]] = field(default_factory=dict)  # Worker -> keys
    ignored: dict[str, list[str]] = field(default_factory=dict)  # Worker -> tooling keys
    built: dict[str, str] = field(default_factory=dict)  # Worker -> how its code was built
    incomplete: dict[str, list[str]] = field(default_factory=dict)  # Worker -> imports left out
    # Worker -> top-level bindings its environment does not inherit (so it has none)
    not_inherited: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Sources:
    """What was read from disk for one Worker."""

    modules: list[Module]  # the main module first
    incomplete: list[str]  # imports that will not load, each with its importer
    dev_vars: DevVars | None  # read only when the config declares no secrets
    built: str = ""  # how the modules were built: bundled by what, from which lockfile
    # [assets]: the ConfigMap with the directory's files and spec.assets (wrangler/assets.py)
    assets: tuple[dict[str, Any], dict[str, Any]] | None = None


def add_worker(
    cfg: Mapping[str, Any],
    top: Mapping[str, Any],
    name: str,
    sources: Sources,
    opts: Options,
    result: Result,
) -> None:
    """One Worker (cfg: the top level or an [env.x] table) into result. The checks run in a
    fixed order (date, module sources, bindings, Worker, routes), so a project with several
    problems always gets the same first error."""
    _report_keys(cfg, top, name, result)
    warn = result.warnings
    _check_complete(name, sources, opts, result)
    if sources.built:
        result.built[name] = sources.built
    date = inherited(cfg, top, "compatibility_date")
    if not isinstance(date, str):
        raise WranglerImportError(f"{name}: no compatibility_date; add one (YYYY-MM-DD)")
    if not re.fullmatch(STRICT_COMPAT_DATE_RE, date):
        # Named by its config key here: the Worker's check would say spec.compatibilityDate.
        raise WranglerImportError(
            f"{name}: compatibility_date {date!r} is not a date; write YYYY-MM-DD, e.g. "
            '"2024-09-23"'
        )
    flags = list(inherited(cfg, top, "compatibility_flags") or [])
    crons = cron_triggers(inherited(cfg, top, "triggers"), name)
    maps, modules = config_maps(name, sources.modules, opts.namespace)
    bindings = worker_bindings(cfg, name, sources.dev_vars, result)
    spec: dict[str, Any] = {
        "compatibilityDate": date,
        **({"compatibilityFlags": flags} if flags else {}),
        "mainModule": sources.modules[0].name,
        "modules": modules,
        **({"bindings": bindings} if bindings else {}),
        **({"assets": sources.assets[1]} if sources.assets else {}),
        **({"targets": {"matchLabels": dict(opts.target_labels)}} if opts.target_labels else {}),
        **({"triggers": {"crons": crons}} if crons else {}),
    }
    worker = {
        "apiVersion": API_VERSION,
        "kind": "Worker",
        "metadata": metadata(name, name, opts.namespace),
        "spec": spec,
    }
    validate(Worker, worker, name)
    routes = route_docs(name, route_config(cfg, top), opts.namespace, warn)
    result.docs += [*maps, *([sources.assets[0]] if sources.assets else []), worker, *routes]


def cron_triggers(triggers: Any, name: str) -> list[str]:
    """`[triggers] crons` as spec.triggers.crons, each expression once (as Cloudflare runs
    a repeated one once). The Worker's check refuses an expression Cloudflare would."""
    crons = triggers.get("crons") if isinstance(triggers, Mapping) else triggers
    if crons is None:
        return []
    if not isinstance(crons, list) or not all(isinstance(c, str) for c in crons):
        raise WranglerImportError(
            f'{name}: triggers.crons is a list of cron expressions, e.g. ["*/5 * * * *"]'
        )
    return list(dict.fromkeys(c.strip() for c in crons))


def _check_complete(name: str, sources: Sources, opts: Options, result: Result) -> None:
    """A Worker with imports that will not load is refused, or with --allow-incomplete
    written and listed: never deployed broken without a word."""
    if not sources.incomplete:
        return
    listed = ", ".join(sources.incomplete)
    if not opts.allow_incomplete:
        raise WranglerImportError(
            f"{name}: these imports will not load: {listed}; install them and let edgeplane "
            "bundle (remove no_bundle), or pass --allow-incomplete to write it anyway"
        )
    result.incomplete[name] = list(sources.incomplete)
    result.warnings.append(f"{name}: written with imports that will not load: {listed}")


def _report_keys(
    cfg: Mapping[str, Any], top: Mapping[str, Any], name: str, result: Result
) -> None:
    report = key_report(cfg, top)
    if report.unsupported:
        result.unsupported[name] = report.unsupported
    if report.ignored:
        result.ignored[name] = report.ignored
    if report.not_inherited:
        result.not_inherited[name] = report.not_inherited


def metadata(name: str, worker: str, namespace: str | None) -> dict[str, Any]:
    """An object's metadata, labelled with the Worker it belongs to."""
    return {
        "name": name,
        **({"namespace": namespace} if namespace else {}),
        "labels": {"app.kubernetes.io/name": worker,
                   "app.kubernetes.io/managed-by": "edgeplane-import"},
    }


def config_maps(
    worker: str, modules: list[Module], namespace: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ConfigMaps holding the module sources, filled in order up to CONFIG_MAP_BUDGET
    each, and the Worker's spec.modules entries referring into them."""
    maps: list[dict[str, Any]] = []
    placed: list[tuple[Module, int, str]] = []  # module, index in maps, key
    keys: set[str] = set()
    used = CONFIG_MAP_BUDGET + 1  # no map yet: the first module opens one
    for m in modules:
        size = stored_size(m)
        if size > CONFIG_MAP_BUDGET:
            raise WranglerImportError(
                f"{worker}: module {m.name} is {len(m.content)} bytes, more than one "
                "ConfigMap holds; serve it from an https URL (modules[].url + sha256)"
            )
        if used + size > CONFIG_MAP_BUDGET:
            maps.append({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": metadata("", worker, namespace)})
            used = 0
        used += int(size)
        key = config_map_key(m.name, keys)
        section, value = _stored_value(worker, m)
        maps[-1].setdefault(section, {})[key] = value
        placed.append((m, len(maps) - 1, key))
    for i, cm in enumerate(maps):
        cm["metadata"]["name"] = (
            f"{worker}-modules" if len(maps) == 1 else f"{worker}-modules-{i + 1}"
        )
    entries = [
        {
            "name": m.name,
            **({} if m.type == "esModule" else {"type": m.type}),  # esModule: the default
            "configMapKeyRef": {"name": maps[i]["metadata"]["name"], "key": key},
        }
        for m, i, key in placed
    ]
    return maps, entries


def stored_size(m: Module) -> float:
    """What a module takes of a ConfigMap: its name and content, binary content as base64."""
    return len(m.content) * (4 / 3 if m.type in BINARY_TYPES else 1) + len(m.name)


def _stored_value(worker: str, m: Module) -> tuple[str, str]:
    if m.type in BINARY_TYPES:
        return "binaryData", base64.b64encode(m.content).decode()
    try:
        return "data", m.content.decode("utf-8")
    except UnicodeDecodeError:
        raise WranglerImportError(
            f"{worker}: module {m.name} ({m.type}) is not UTF-8; add a rules entry "
            "with type Data for it"
        ) from None


def config_map_key(name: str, taken: set[str]) -> str:
    """A ConfigMap key for module `name`, not yet in `taken` (which it is added to)."""
    key = name.replace("/", "__").replace("@", "_at_").replace("+", "_plus_")
    key = re.sub(r"[^-._a-zA-Z0-9]", "_", key)
    base, i = key, 1
    while key in taken:
        i += 1
        key = f"{base}-{i}"
    taken.add(key)
    assert re.fullmatch(DATA_KEY_RE, key)
    return key


def worker_bindings(
    cfg: Mapping[str, Any], name: str, dev_vars: DevVars | None, result: Result
) -> list[dict[str, Any]]:
    """The Worker's bindings in wrangler's order of kinds; the Secret they read goes to
    result.secrets, bindings left out to result.unsupported. A name bound twice is refused
    naming both places (a .dev.vars name that is also a KV binding, say)."""
    warn = result.warnings
    var_refs = var_bindings(cfg.get("vars") or {}, name, warn)
    var_names = {b["name"] for b in var_refs}
    source = secret_source(cfg.get("secrets"), dev_vars)
    names = secret_names(cfg.get("secrets"), dev_vars, name, warn)
    secret = f"{name}-secrets"
    keys, secret_refs = secret_bindings(names, secret, var_names, name, source, warn)
    if names:
        result.secrets[secret] = keys
    unsupported: list[str] = []
    groups = [
        ("vars", var_refs),
        (source, secret_refs),
        ("kv_namespaces", kv_bindings(cfg.get("kv_namespaces") or [], name, warn)),
        ("durable_objects.bindings",
         durable_object_bindings(cfg.get("durable_objects") or {}, name, unsupported)),
        ("services", service_bindings(cfg.get("services") or [], name, unsupported)),
    ]
    if unsupported:
        result.unsupported.setdefault(name, []).extend(unsupported)
    return unique_bindings(groups, name)


def route_docs(
    worker: str, raw: Any, namespace: str | None, warn: list[str]
) -> list[dict[str, Any]]:
    """A WorkerRoute a pattern; a Worker without any is warned about."""
    patterns = route_patterns(raw, worker, warn) if raw else []
    docs: list[dict[str, Any]] = []
    for i, pattern in enumerate(patterns):
        doc = {
            "apiVersion": API_VERSION,
            "kind": "WorkerRoute",
            "metadata": metadata(
                worker if len(patterns) == 1 else f"{worker}-{i + 1}", worker, namespace
            ),
            "spec": {"pattern": pattern, "worker": worker},
        }
        validate(WorkerRoute, doc, worker)
        docs.append(doc)
    if not patterns:
        warn.append(f"{worker}: no routes; add a WorkerRoute for it to receive requests")
    return docs


def validate(model: type[Worker] | type[WorkerRoute], doc: dict[str, Any], name: str) -> None:
    """Refuse here what the apiserver would refuse, with the same reasons."""
    try:
        model.model_validate(doc)
    except ValidationError as e:
        raise WranglerImportError(
            f"{name}: the {model.KIND} would be rejected: {describe(e)}"
        ) from None
