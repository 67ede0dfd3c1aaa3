"""What a location's workerd processes run (pure): the front's and the cells' configs in
Cap'n Proto text, the front's state (routes, placement, cells), and a version's code spec.

Every string is escaped by `text()`, binary content is written as a hex Data literal, so no
user input can change a config's structure. Service names are derived from validated
Worker names and version ids.

Worker code is never in a config but for one case: a Durable Object class cannot be loaded
with the workerLoader (a loaded Worker has no storage of its own, and the namespace API it
expects is synchronous, which an RPC stub cannot be). So a Worker that binds a Durable Object
class gets a cell of its own whose config holds its versions as static services; a deploy
of that Worker restarts that cell only (never another Worker's code), and the front moves
to the new cell once it listens, then the old one drains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

from edgeplane.edge.host_js import FRONT_JS, HOST_JS
from edgeplane.edge.kv_js import KV_CLIENT_JS, KV_JS
from edgeplane.routing import RoutePattern, parse_pattern
from edgeplane.routing.router_js import ROUTER_JS
from edgeplane.wire import Bundle, BundleAssets, Deployment, ModuleType

FRONT = "edgeplane:front"
HOST = "edgeplane:host"
# The front's sockets: public requests; the agent's admin calls; the cells' service and KV
# calls. The last two are on loopback and the agent passes their addresses to no one else.
SOCKETS = ("http", "admin", "internal")
COMPAT_DATE = "2025-09-01"


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


@dataclass(frozen=True)
class Paths:
    do_dir: PurePath  # Durable Object data of DO cells
    kv_dir: PurePath  # the front's KV store
    code_dir: PurePath  # <version>.json code specs the cells load
    front_dir: PurePath  # state.json, the front's state at a cold start
    assets_dir: PurePath | None = None  # <worker> → its site (edge/assets.py)
    blobs_dir: PurePath | None = None  # <ab>/<rest of the sha256>: modules by reference


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


def binds_durable_objects(d: Deployment) -> bool:
    return any(bd.durable_object_class is not None for b in d.versions for bd in b.bindings)


def needs_own_cell(d: Deployment) -> bool:
    """A Worker that binds a Durable Object class runs in a cell of its own (see above), and
    so does one with static assets (its AssetsService is a service of that cell's config)."""
    return binds_durable_objects(d) or _site(d) is not None


def _site(d: Deployment) -> BundleAssets | None:
    return next((b.assets for b in d.versions if b.version == d.primary), None)


# The cells' own code: a cell started with other code (an agent of another release) is not
# adopted, since the code files and blobs it reads may have changed form.
HOST_GENERATION = hashlib.sha256((HOST_JS + KV_CLIENT_JS + ROUTER_JS).encode()).hexdigest()[:16]


def cell_identity(d: Deployment) -> str:
    """What an own cell's config depends on: a change restarts the cell. A Durable Object
    Worker's versions are in it; an assets Worker's is only its assets options, so a new
    version, new files included (a symlink swap, edge/assets.py), restarts nothing."""
    if binds_durable_objects(d):
        return d.identity()
    site = _site(d)
    return "assets:" + (site.config if site else "")


def code_spec(b: Bundle, inline: bool = True) -> dict[str, object]:
    """What a cell's host loads for version `b` (edge/host_js.py): modules with their content
    (binary ones base64) or, not `inline`, by the sha256 of the blob the host reads them from;
    bindings with their values (secret values included, so the file is private)."""
    bindings: list[dict[str, str]] = []
    for bd in b.bindings:
        value = bd.model_dump(by_alias=True, exclude={"name", "secret_digest"}, exclude_none=True)
        bindings.append({"name": bd.name, **value})
    return {
        "worker": b.worker,
        "version": b.version,
        "compatibilityDate": b.compatibility_date,
        "compatibilityFlags": list(b.compatibility_flags),
        "mainModule": b.main_module,
        "modules": [
            {"name": m.name, "type": m.type.value}
            | ({"content": m.content} if inline else {"sha256": m.digest()})
            for m in b.modules
        ],
        "bindings": bindings,
        **({"assets": {"binding": b.assets.binding}} if b.assets else {}),
    }


def route_rank(p: RoutePattern) -> list[object]:
    """The router's precedence key (larger first): specificity, then the canonical pattern,
    as `sort_most_specific_first` orders them."""
    return [*p.specificity(), p.canonical()]


def worker_entry(d: Deployment, cell: str) -> dict[str, object]:
    """What the front holds for Worker `d` (router_js.py): its primary (service bindings reach
    it), its cell, its versions, and its routes with their traffic split."""
    routes = []
    for r in d.routes:
        p = parse_pattern(r.pattern)
        traffic = [
            {"version": t.version, "percent": t.percent} for t in r.traffic if t.percent > 0
        ] or [{"version": d.primary, "percent": 100}]
        routes.append({"pattern": p.to_json(), "rank": route_rank(p), "traffic": traffic})
    return {
        "primary": d.primary,
        "cell": cell,
        "versions": [b.version for b in d.versions],
        "routes": routes,
    }


def front_settings(quarantined: Mapping[str, str], router: RouterSettings) -> dict[str, object]:
    """The front's state besides Workers and cells: routes without a Worker (namespace →
    patterns), versions quarantined here (→ reason), the bypass status, the signing key."""
    exclusions = {
        ns: [
            {"pattern": (p := parse_pattern(x)).to_json(), "rank": route_rank(p)} for x in patterns
        ]
        for ns, patterns in sorted(router.exclusions.items())
    }
    return {
        "exclusions": exclusions,
        "quarantined": dict(quarantined),
        "bypass": {"status": router.bypass_status},
        "signing": {"key": router.signing_key, "trustForwardedProto": router.trust_forwarded_proto},
    }


def _es(name: str, source: str) -> str:
    return f"(name = {text(name)}, esModule = {text(source)})"


def _key_binding(internal_key: str) -> str:
    return f'(name = "INTERNAL_KEY", text = {text(internal_key)})'


def front_config(paths: Paths, internal_key: str) -> str:
    """The front: the router on the public socket, its admin and internal entrypoints on
    sockets of their own, the KV store, and loopback egress to reach the cells."""
    modules = ", ".join(
        [_es("front.js", FRONT_JS), _es("router.js", ROUTER_JS), _es("kv.js", KV_JS)]
    )
    worker = (
        f"modules = [{modules}], compatibilityDate = {text(COMPAT_DATE)}, "
        'bindings = [(name = "STATE_DIR", service = "edgeplane:state"), '
        f'(name = "KV_SHARDS", durableObjectNamespace = "KvShard"), {_key_binding(internal_key)}], '
        'durableObjectNamespaces = [(className = "KvShard", uniqueKey = "edgeplane-kv", '
        'enableSql = true)], durableObjectStorage = (localDisk = "edgeplane:kv-disk"), '
        'globalOutbound = "edgeplane:cells"'
    )
    services = [
        f"(name = {text(FRONT)}, worker = ({worker}))",
        '(name = "edgeplane:cells", network = (allow = ["local"]))',
        f'(name = "edgeplane:state", disk = (path = {text(str(paths.front_dir))}))',
        f'(name = "edgeplane:kv-disk", disk = (path = {text(str(paths.kv_dir))}, writable = true))',
    ]
    sockets = [
        f"(name = {text(s)}, http = (), service = (name = {text(FRONT)}"
        + ("" if s == "http" else f", entrypoint = {text(s)}")
        + "))"
        for s in SOCKETS
    ]
    return workerd_config(services, sockets)


def _add_static(
    paths: Paths, static: Deployment, tail_port: int, services: list[str], bindings: list[str]
) -> None:
    """A Durable Object Worker's own cell: its site, and its versions as services."""
    if (site := _site(static)) is not None:
        services.append(_assets_service(paths, static.worker, site))
        bindings += [
            f"(name = {text(SITE_BINDING)}, service = {text(ASSETS)})",
            f"(name = {text(FILES_BINDING)}, service = (name = {text(ASSETS)}, "
            'entrypoint = "AssetWorker"))',
        ]
    if binds_durable_objects(static):
        primary_svc = service_name(static.worker, static.primary)
        for b in static.versions:
            svc = service_name(static.worker, b.version or "")
            owner = None if svc == primary_svc else primary_svc
            services.append(
                _static_worker(
                    b, svc, owner, files=_site(static) is not None, tailed=tail_port > 0
                )
            )
            bindings.append(f"(name = {text('v:' + (b.version or ''))}, service = {text(svc)})")
        services.append(
            f'(name = "edgeplane:do-disk", disk = (path = {text(str(paths.do_dir))}, '
            "writable = true))"
        )


def cell_config(
    paths: Paths,
    front_internal_port: int,
    internal_key: str,
    static: Deployment | None = None,
    tail_port: int = 0,
) -> str:
    """A cell: the host Worker with the loader, the code store, the front's internal socket;
    with `static` (a Durable Object Worker's own cell), that Worker's versions as services;
    with `tail_port`, the agent's loopback tail sink (edge/tail.py) as `TAIL`."""
    bindings = [
        '(name = "LOADER", workerLoader = ())',
        '(name = "CODE", service = "edgeplane:code")',
        *(['(name = "BLOBS", service = "edgeplane:blobs")'] if paths.blobs_dir else []),
        f'(name = "FRONT", service = {text(FRONT)})',
        _key_binding(internal_key),
    ]
    services: list[str] = []
    if tail_port:
        bindings.append('(name = "TAIL", service = "edgeplane:tail")')
        services.append(
            f'(name = "edgeplane:tail", external = (address = '
            f"{text(f'127.0.0.1:{tail_port}')}, http = ()))"
        )
    if static is not None:
        _add_static(paths, static, tail_port, services, bindings)
    modules = ", ".join(
        [_es("host.js", HOST_JS), _es("kvclient.js", KV_CLIENT_JS), _es("router.js", ROUTER_JS)]
    )
    services += [
        f"(name = {text(HOST)}, worker = (modules = [{modules}], "
        f'compatibilityDate = {text(COMPAT_DATE)}, compatibilityFlags = ["enable_ctx_exports", '
        # Fetcher.scheduled(): a cron trigger's run of a loaded Worker (edge/cron.py).
        '"service_binding_extra_handlers"], '
        f"bindings = [{', '.join(bindings)}]))",
        f'(name = "edgeplane:code", disk = (path = {text(str(paths.code_dir))}))',
        *(
            [f'(name = "edgeplane:blobs", disk = (path = {text(str(paths.blobs_dir))}))']
            if paths.blobs_dir else []
        ),
        f"(name = {text(FRONT)}, external = (address = "
        f"{text(f'127.0.0.1:{front_internal_port}')}, http = ()))",
    ]
    return workerd_config(services, [f'(name = "http", http = (), service = {text(HOST)})'])


ASSETS = "edgeplane:assets"
# The host's bindings to it: the router (files, or `User`: the Worker), and files only.
SITE_BINDING = "ASSETS_SITE"
FILES_BINDING = "ASSETS_FILES"


def _assets_service(paths: Paths, worker: str, site: BundleAssets) -> str:
    """workerd's AssetsService over the Worker's site directory; what it does not serve
    goes to the host's `User` entrypoint, which runs the Worker (edge/host_js.py)."""
    assert paths.assets_dir is not None, "a cell with assets needs Paths.assets_dir"
    props = text(json.dumps({"worker": worker}))
    return (
        f"(name = {text(ASSETS)}, assets = (path = {text(str(paths.assets_dir / worker))}, "
        f"config = {text(site.config)}, userWorker = (name = {text(HOST)}, "
        f'entrypoint = "User", props = (json = {props}))))'
    )


def workerd_config(services: list[str], sockets: list[str]) -> str:
    """A whole workerd config: its services and sockets, each a Cap'n Proto literal."""
    body = ",\n    ".join(services)
    return (
        'using Workerd = import "/workerd/workerd.capnp";\n'
        "const config :Workerd.Config = (\n"
        f"  services = [\n    {body}\n  ],\n"
        f"  sockets = [{', '.join(sockets)}]\n"
        ");\n"
    )


def module_entry(m_name: str, m_type: ModuleType, raw: bytes, content: str) -> str:
    """One worker module: binary content as data, the rest as text."""
    if m_type.is_binary:
        return f"(name = {text(m_name)}, {m_type.value} = {data(raw)})"
    return f"(name = {text(m_name)}, {m_type.value} = {text(content)})"


def _host_entrypoint(name: str, entrypoint: str, props: dict[str, str]) -> str:
    p = text(json.dumps(props))
    return (
        f"(name = {text(name)}, service = (name = {text(HOST)}, "
        f"entrypoint = {text(entrypoint)}, props = (json = {p})))"
    )


def _static_worker(
    b: Bundle, svc: str, namespace_owner: str | None, files: bool = False, tailed: bool = False
) -> str:
    """One version of a Durable Object Worker as a static service. `namespace_owner` is the
    primary's service when this is not the primary: Durable Object classes live in one
    namespace per Worker, the primary's. Service and KV bindings are the host's entrypoints,
    as for loaded Workers; with `tailed`, so is its tail worker (live logs)."""
    mods = ", ".join(module_entry(m.name, m.type, m.raw(), m.content) for m in b.modules)
    binds: list[str] = []
    do_classes: list[str] = []
    for bd in b.bindings:
        n = text(bd.name)
        if bd.text is not None or bd.secret is not None:
            binds.append(f"(name = {n}, text = {text(bd.text or bd.secret or '')})")
        elif bd.json_ is not None:
            binds.append(f"(name = {n}, json = {text(bd.json_)})")
        elif bd.service is not None:
            binds.append(_host_entrypoint(bd.name, "Service", {"worker": bd.service}))
        elif bd.kv_namespace is not None:
            ns = f"{b.worker.split('.')[0]}/{bd.kv_namespace}"
            binds.append(_host_entrypoint(bd.name, "Kv", {"namespace": ns}))
        elif bd.durable_object_class is not None:
            cls = bd.durable_object_class
            binds.append(
                f"(name = {n}, durableObjectNamespace = (className = {text(cls)}, "
                f"serviceName = {text(namespace_owner or svc)}))"
            )
            do_classes.append(cls)
    if files and b.assets is not None and b.assets.binding is not None:
        # Its assets binding: the cell's AssetsService, files only (as for loaded Workers).
        binds.append(
            f"(name = {text(b.assets.binding)}, service = (name = {text(ASSETS)}, "
            'entrypoint = "AssetWorker"))'
        )
    parts = [
        f"modules = [{mods}]",
        f"compatibilityDate = {text(b.compatibility_date)}",
        f"compatibilityFlags = [{', '.join(text(f) for f in b.compatibility_flags)}]",
        f"bindings = [{', '.join(binds)}]",
    ]
    if tailed:
        props = text(json.dumps({"worker": b.worker, "version": b.version}))
        tail = f'(name = {text(HOST)}, entrypoint = "Tail", props = (json = {props}))'
        parts.append(f"tails = [{tail}]")
    if do_classes and namespace_owner is None:
        nss = ", ".join(
            f"(className = {text(c)}, uniqueKey = {text(f'{b.worker}-{c}')}, enableSql = true)"
            for c in dict.fromkeys(do_classes)
        )
        parts.append(f"durableObjectNamespaces = [{nss}]")
        parts.append(f"durableObjectStorage = (localDisk = {text('edgeplane:do-disk')})")
    return f"(name = {text(svc)}, worker = ({', '.join(parts)}))"
