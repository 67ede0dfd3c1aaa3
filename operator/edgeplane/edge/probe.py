"""Probes: one HTTP request through the agent's own public socket to one Worker version.

`resolve()` is pure: it checks that the Worker serves the version here and, with `target()`,
picks the scheme and host the probe sends, from the Worker's routes or the host given,
making sure the router would hand that request to this Worker (not another Worker with a
more specific route). The router's version override header then selects the version,
whatever the traffic split gives it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from edgeplane.routing import RoutePattern, normalize_host, parse_pattern, sort_most_specific_first
from edgeplane.wire import Deployment

BODY_CHARS = 1024
PROBE_HOST_LABEL = "edgeplane-probe"
DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 30.0
VERSION_RE = re.compile(r"^[0-9a-f]{64}$")
PATH_RE = re.compile(r"^/[\x21-\x7e]{0,2047}$")  # printable ASCII, no spaces
HOST_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?$")


class ProbeError(Exception):
    def __init__(self, status: int, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra  # more fields of the error answer


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # the Host header sent

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"


def _host_for(p: RoutePattern) -> str:
    if not p.host_wildcard:
        return p.host
    if p.host.startswith("."):  # *.example.com
        return PROBE_HOST_LABEL + p.host
    return p.host or PROBE_HOST_LABEL  # *example.com → example.com; "*" alone → any host


def _owner(deployments: Mapping[str, Deployment], scheme: str, host: str, path: str) -> str | None:
    """The Worker the router hands this request to (its rule: most specific match wins)."""
    best: tuple[tuple[tuple[int, ...], str], str] | None = None
    for d in deployments.values():
        for r in d.routes:
            p = parse_pattern(r.pattern)
            if p.matches(scheme, host, path):
                key = (p.specificity(), p.canonical())
                if best is None or key > best[0]:
                    best = (key, d.worker)
    return best[1] if best else None


def target(
    deployments: Mapping[str, Deployment], worker: str, path: str, host: str | None
) -> Target:
    """Scheme and host for a probe of `worker` at `path`; ProbeError(422) when the router
    would not hand such a request to this Worker."""
    d = deployments[worker]
    if host is None:
        ordered = sort_most_specific_first((parse_pattern(r.pattern), None) for r in d.routes)
        first = next((p for p, _ in ordered if p.matches_path(path)), None)
        if first is None:
            raise ProbeError(
                422,
                f"probe path {path} matches none of the Worker's routes at this "
                "location; set host or add a route",
            )
        candidates = [Target(first.scheme or "https", _host_for(first))]
    else:
        candidates = [Target("https", host), Target("http", host)]
    owners = []
    for t in candidates:
        owner = _owner(deployments, t.scheme, normalize_host(t.host), path)
        if owner == worker:
            return t
        owners.append(owner)
    t = candidates[0]
    other = next((o for o in owners if o is not None), None)
    if other is not None:
        raise ProbeError(
            422,
            f"probe URL {t.url(path)} is served by Worker {other} at this location, "
            f"not {worker}; set a host that only {worker}'s routes match",
        )
    raise ProbeError(
        422,
        f"probe URL {t.url(path)} matches none of the Worker's routes at this location; "
        "set host or add a route",
    )


def resolve(
    deployments: Mapping[str, Deployment], worker: str, version: str, path: str, host: str | None
) -> Target:
    """`target()` of a probe of `version` of `worker`; ProbeError(404) when the Worker is
    not deployed here, ProbeError(409) when it does not serve that version."""
    d = deployments.get(worker)
    if d is None:
        raise ProbeError(404, f"Worker {worker} is not deployed here")
    if version not in {b.version for b in d.versions}:
        served = ", ".join((b.version or "")[:12] for b in d.versions)
        raise ProbeError(
            409,
            f"version {version[:12]} of Worker {worker} is not served at this location (it "
            f"serves {served})",
            versions=[b.version for b in d.versions],
        )
    return target(deployments, worker, path, host)


def base_url(sockname: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """The URL of the public socket bound at `sockname`, as the agent itself reaches it."""
    host, port = sockname[:2]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def answer(
    t: Target, path: str, *, status: int = 0, body: str = "", elapsed: float = 0.0, error: str = ""
) -> dict[str, object]:
    """A probe's answer; status 0: no HTTP answer, `error` says why."""
    return {
        "status": status,
        "body": body,
        "url": t.url(path),
        "elapsedMs": round(elapsed * 1000, 3),
        "error": error,
    }
