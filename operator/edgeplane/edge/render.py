"""Accepted deployments → one workerd config in Cap'n Proto text (pure).

Every string is escaped by `text()`, binary content is written as a hex Data literal, so no
user input can change the config's structure. Service names are derived from validated
Worker names and version ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

from edgeplane.routing import parse_pattern, sort_most_specific_first
from edgeplane.routing.router_js import ROUTER_JS as _ROUTER_JS
from edgeplane.wire import Bundle, Deployment, ModuleType

ROUTER_SERVICE = "edgeplane:router"
KV_SERVICE = "edgeplane:kv"
SOCKET = "http"
# The router's `stats` entrypoint (request counts), on a socket only the agent reaches.
STATS_SOCKET = "stats"
_MISSING_JS = """export default { fetch(request, env) {
  return new Response(`edgeplane: Worker ${env.WORKER} is not deployed at this location\\n`,
    { status: 503, headers: { "content-type": "text/plain; charset=utf-8" } });
} };
"""


def text(s: str) -> str:
    """A Cap'n Proto text literal: quotes, backslashes and control characters escaped."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def data(b: bytes) -> str:
    return f'0x"{b.hex()}"'


def service_name(worker: str, version: str) -> str:
    return f"w:{worker}@{version}"


def missing_name(worker: str) -> str:
    return f"missing:{worker}"


@dataclass(frozen=True)
class Paths:
    do_dir: PurePath
    kv_dir: PurePath


@dataclass(frozen=True)
class RouterSettings:
    """What the router needs besides the deployments: routes without a Worker (namespace
    -> patterns) and the status for the requests they match (a location has no origin to
    send them to); the key that signs version override and sticky headers (empty: none
    count); whether X-Forwarded-Proto counts unsigned (the location is behind a proxy)."""

    exclusions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    bypass_status: int = 404
    signing_key: str = field(default="", repr=False)
    trust_forwarded_proto: bool = False


def _module(m_name: str, m_type: ModuleType, raw: bytes, content: str) -> str:
    if m_type.is_binary:
        return f"(name = {text(m_name)}, {m_type.value} = {data(raw)})"
    return f"(name = {text(m_name)}, {m_type.value} = {text(content)})"


def _worker(
    b: Bundle,
    svc: str,
    primaries: Mapping[str, str],
    namespace_owner: str | None,
) -> str:
    """One Worker version. `namespace_owner` is the primary's service when this is not the
    primary: Durable Object classes live in one namespace per Worker, the primary's."""
    mods = ", ".join(_module(m.name, m.type, m.raw(), m.content) for m in b.modules)
    binds: list[str] = []
    do_classes: list[str] = []
    for bd in b.bindings:
        n = text(bd.name)
        if bd.text is not None:
            binds.append(f"(name = {n}, text = {text(bd.text)})")
        elif bd.secret is not None:
            binds.append(f"(name = {n}, text = {text(bd.secret)})")
        elif bd.json_ is not None:
            binds.append(f"(name = {n}, json = {text(bd.json_)})")
        elif bd.service is not None:
            target = primaries.get(bd.service) or missing_name(bd.service)
            binds.append(f"(name = {n}, service = {text(target)})")
        elif bd.kv_namespace is not None:
            # KV namespaces are shared by the Workers of one Kubernetes namespace.
            ns = f"{b.worker.split('.')[0]}/{bd.kv_namespace}"
            props = text(json.dumps({"namespace": ns}))
            binds.append(
                f"(name = {n}, kvNamespace = (name = {text(KV_SERVICE)}, props = (json = {props})))"
            )
        elif bd.durable_object_class is not None:
            cls = bd.durable_object_class
            owner = namespace_owner or svc
            binds.append(
                f"(name = {n}, durableObjectNamespace = (className = {text(cls)}, "
                f"serviceName = {text(owner)}))"
            )
            do_classes.append(cls)
    parts = [
        f"modules = [{mods}]",
        f"compatibilityDate = {text(b.compatibility_date)}",
        f"compatibilityFlags = [{', '.join(text(f) for f in b.compatibility_flags)}]",
        f"bindings = [{', '.join(binds)}]",
    ]
    if do_classes and namespace_owner is None:
        nss = ", ".join(
            f"(className = {text(c)}, uniqueKey = {text(f'{b.worker}-{c}')}, enableSql = true)"
            for c in dict.fromkeys(do_classes)
        )
        parts.append(f"durableObjectNamespaces = [{nss}]")
        parts.append(f"durableObjectStorage = (localDisk = {text('edgeplane:do-disk')})")
    return f"(name = {text(svc)}, worker = ({', '.join(parts)}))"


def router_table(
    deployments: Iterable[Deployment], exclusions: Mapping[str, tuple[str, ...]] | None = None
) -> tuple[list[dict[str, object]], dict[str, str]]:
    """The router's route list (most specific first) and its binding name → service map.
    An excluded pattern is an entry of its own that names the namespace excluding it."""
    bindings: dict[str, str] = {}
    by_service: dict[str, str] = {}

    def bind(svc: str) -> str:
        if svc not in by_service:
            by_service[svc] = f"s{len(by_service)}"
            bindings[by_service[svc]] = svc
        return by_service[svc]

    entries = []
    for d in deployments:
        versions = [
            {"version": b.version, "binding": bind(service_name(d.worker, b.version or ""))}
            for b in d.versions
        ]
        for r in d.routes:
            if r.traffic:
                traffic = [
                    {
                        "version": t.version,
                        "percent": t.percent,
                        "binding": bind(service_name(d.worker, t.version)),
                    }
                    for t in r.traffic
                    if t.percent > 0
                ]
            else:
                traffic = [
                    {
                        "version": d.primary,
                        "percent": 100,
                        "binding": bind(service_name(d.worker, d.primary)),
                    }
                ]
            entries.append(
                (
                    parse_pattern(r.pattern),
                    {"worker": d.worker, "traffic": traffic, "versions": versions},
                )
            )
    for ns, patterns in sorted((exclusions or {}).items()):
        entries += [(parse_pattern(pattern), {"exclude": ns}) for pattern in patterns]
    table = [{"pattern": p.to_json(), **e} for p, e in sort_most_specific_first(entries)]
    return table, bindings


def render(
    deployments: Iterable[Deployment], paths: Paths, router: RouterSettings | None = None
) -> str:
    """The whole config: every version of every Worker, stubs for missing service-binding
    targets, the KV service when used, and the router on the `http` socket."""
    router = router or RouterSettings()
    deps = sorted(deployments, key=lambda d: d.worker)
    primaries = {d.worker: service_name(d.worker, d.primary) for d in deps}
    services: list[str] = []
    missing: set[str] = set()
    uses_kv = uses_do = False
    for d in deps:
        primary_svc = primaries[d.worker]
        for b in d.versions:
            svc = service_name(d.worker, b.version or "")
            owner = None if svc == primary_svc else primary_svc
            services.append(_worker(b, svc, primaries, owner))
            for bd in b.bindings:
                if bd.service is not None and bd.service not in primaries:
                    missing.add(bd.service)
                uses_kv |= bd.kv_namespace is not None
                uses_do |= bd.durable_object_class is not None
    for w in sorted(missing):
        services.append(
            f'(name = {text(missing_name(w))}, worker = (modules = [(name = "missing.js", '
            f'esModule = {text(_MISSING_JS)})], compatibilityDate = "2024-09-23", '
            f'bindings = [(name = "WORKER", text = {text(w)})]))'
        )
    if uses_do:
        services.append(
            f'(name = "edgeplane:do-disk", disk = (path = {text(str(paths.do_dir))}, '
            "writable = true))"
        )
    if uses_kv:
        services.append(_kv_services(paths.kv_dir))
    table, bindings = router_table(deps, router.exclusions)
    signing = {"key": router.signing_key, "trustForwardedProto": router.trust_forwarded_proto}
    rb = [
        f'(name = "ROUTES", json = {text(json.dumps(table, separators=(",", ":")))})',
        f'(name = "BYPASS", json = {text(json.dumps({"status": router.bypass_status}))})',
        f'(name = "SIGNING", json = {text(json.dumps(signing))})',
    ]
    rb += [f"(name = {text(k)}, service = {text(v)})" for k, v in bindings.items()]
    services.append(
        f'(name = {text(ROUTER_SERVICE)}, worker = (modules = [(name = "router.js", '
        f'esModule = {text(_ROUTER_JS)})], compatibilityDate = "2024-09-23", '
        f"bindings = [{', '.join(rb)}]))"
    )
    body = ",\n    ".join(services)
    return (
        'using Workerd = import "/workerd/workerd.capnp";\n'
        "const config :Workerd.Config = (\n"
        f"  services = [\n    {body}\n  ],\n"
        f"  sockets = [(name = {text(SOCKET)}, http = (), service = {text(ROUTER_SERVICE)}), "
        f"(name = {text(STATS_SOCKET)}, http = (), "
        f'service = (name = {text(ROUTER_SERVICE)}, entrypoint = "stats"))]\n'
        ");\n"
    )


def _kv_services(kv_dir: PurePath) -> str:
    # workerd's bundled KV Worker: a SQLite Durable Object per namespace plus a blob disk.
    return ",\n    ".join(
        [
            f'(name = {text(KV_SERVICE)}, worker = (modules = [(name = "kv.js", '
            'bundled = "/workerd/kv.js")], compatibilityDate = "2024-09-23", '
            'bindings = [(name = "SHARD", durableObjectNamespace = "KVNamespace"), '
            '(name = "BLOBS", service = "edgeplane:kv-blobs")], '
            'durableObjectNamespaces = [(className = "KVNamespace", '
            'uniqueKey = "edgeplane-kv", enableSql = true)], '
            'durableObjectStorage = (localDisk = "edgeplane:kv-disk")))',
            f'(name = "edgeplane:kv-disk", disk = (path = {text(str(kv_dir / "objects"))}, '
            "writable = true))",
            f'(name = "edgeplane:kv-blobs", disk = (path = {text(str(kv_dir / "blobs"))}, '
            "writable = true))",
        ]
    )
