"""`edgeplane operator`: run the kopf operator with edgeplane's settings."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import kopf
from prometheus_client import disable_created_metrics, start_http_server

from edgeplane.controller import Settings
from edgeplane.plan.buckets import DEFAULT_BUCKETS, Timings, replica_identity
from edgeplane.resolve.download import tls_context
from edgeplane.resolve.policy import UrlSettings
from edgeplane.tailserver import TailSettings
from edgeplane.versions.artifacts import (
    RETAINED_IN_CONFIGMAPS,
    RETAINED_IN_REGISTRY,
    RegistrySettings,
)
from edgeplane.versions.registry import VersionRegistry
from edgeplane.wire import MIN_SIGNING_KEY

MIN_LEASE_DURATION = 6.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="edgeplane operator", description=__doc__)
    parser.add_argument(
        "-n", "--namespace", action="append", default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument(
        "--metrics-address", default=env("EDGEPLANE_METRICS_ADDRESS", "0.0.0.0:8080"),
        help="host:port for Prometheus /metrics (empty to disable)",
    )
    parser.add_argument(
        "--liveness", default=env("EDGEPLANE_LIVENESS", ""),
        help="URL for kopf's liveness probe endpoint, e.g. http://0.0.0.0:8081/healthz",
    )
    parser.add_argument(
        "--versions-retained", type=int,
        default=int(env("EDGEPLANE_VERSIONS_RETAINED", "0")) or None,
        help=f"WorkerVersions kept per Worker (default {RETAINED_IN_CONFIGMAPS}; "
        f"{RETAINED_IN_REGISTRY} with --version-registry)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=int(env("EDGEPLANE_CONCURRENCY", "32")),
        help="Workers reconciled at the same time (default 32)",
    )
    parser.add_argument(
        "--health-interval", type=float, default=float(env("EDGEPLANE_HEALTH_INTERVAL", "5")),
        help="seconds between health checks of each EdgeTarget (default 5); each renews the "
        "location's cron lease, which lasts three of them (at most 300 s)",
    )
    parser.add_argument(
        "--watch-idle-timeout", type=_positive,
        default=_positive(env("EDGEPLANE_WATCH_IDLE_TIMEOUT", "70")),
        help="seconds a watch may deliver nothing (the apiserver sends a bookmark about "
        "every 60 s) before it is taken as stalled and opened again; this bounds how long a "
        "silently dead connection hides changes (default 70)",
    )
    parser.add_argument(
        "--peering", default=env("EDGEPLANE_PEERING", ""),
        help="kopf peering object name for several replicas; default: standalone",
    )
    parser.add_argument(
        "--credentials-namespace", action="append",
        default=[n for n in env("EDGEPLANE_CREDENTIALS_NAMESPACE", "").split(",") if n],
        help="namespace EdgeTargets' credential Secrets may be in (repeatable); default: "
        "the operator's own ($POD_NAMESPACE), else edgeplane-system",
    )
    parser.add_argument(
        "--signing-key-file", default=env("EDGEPLANE_SIGNING_KEY_FILE", ""),
        help="file with the cluster's key (32+ characters) for signed version override "
        "headers, handed to every location; `edgeplane sign` signs with it",
    )
    parser.add_argument("--log-level", default=env("EDGEPLANE_LOG_LEVEL", "INFO"))
    _url_args(parser)
    _replica_args(parser)
    _tail_args(parser)
    _version_registry_args(parser)
    return parser.parse_args(argv)


def _replica_args(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--replicas", type=_count, default=_count(env("EDGEPLANE_REPLICAS", "1")),
        help="operators running at once (the Deployment's replicas); above 1 they split the "
        "Workers into --buckets, each held through a Lease in $POD_NAMESPACE (default 1: "
        "no Leases)",
    )
    parser.add_argument(
        "--lease-duration", type=_lease_duration,
        default=_lease_duration(env("EDGEPLANE_LEASE_DURATION", "15")),
        help="seconds a bucket's Lease lasts unrenewed before another replica takes it; a "
        "replica stops writing for a bucket two thirds of it after its last renewal "
        "(default 15; wider on a loaded cluster, takeovers then take as much longer)",
    )
    parser.add_argument(
        "--buckets", type=_count, default=_count(env("EDGEPLANE_BUCKETS", str(DEFAULT_BUCKETS))),
        help=f"buckets the Workers are split into with --replicas above 1; every replica "
        f"must use the same number (default {DEFAULT_BUCKETS})",
    )


def _tail_args(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--tail-address", default=env("EDGEPLANE_TAIL_ADDRESS", ""),
        help="host:port of the live-log endpoint `edgeplane tail` uses (HTTPS; callers "
        "prove with their own Kubernetes token that they may get the Worker); empty: off",
    )
    parser.add_argument(
        "--tail-tls-cert", default=env("EDGEPLANE_TAIL_TLS_CERT", ""),
        help="certificate (PEM) of the live-log endpoint; required with --tail-address",
    )
    parser.add_argument(
        "--tail-tls-key", default=env("EDGEPLANE_TAIL_TLS_KEY", ""),
        help="private key (PEM) of --tail-tls-cert",
    )
    parser.add_argument(
        "--tail-client-ca", default=env("EDGEPLANE_TAIL_CLIENT_CA", ""),
        help="the CA the apiserver trusts for client certificates (its --client-ca-file): "
        "callers may then prove who they are with their kubeconfig's client certificate",
    )
    parser.add_argument(
        "--tail-review-interval", type=_positive,
        default=_positive(env("EDGEPLANE_TAIL_REVIEW_INTERVAL", "60")),
        help="seconds between reviews of a streaming caller's token and right to get the "
        "Worker: a revoked right ends the stream within this (default 60)",
    )


def tail_settings(args: argparse.Namespace) -> TailSettings | None:
    """The live-log endpoint's settings; tokens never cross it in clear, so TLS is required."""
    if not args.tail_address:
        return None
    if not (args.tail_tls_cert and args.tail_tls_key):
        raise SystemExit("--tail-address needs --tail-tls-cert and --tail-tls-key: callers "
                         "send their Kubernetes token to it")
    _, _, port = args.tail_address.rpartition(":")
    if not port.isdigit():
        raise SystemExit(f"--tail-address {args.tail_address!r}: expected host:port")
    return TailSettings(
        args.tail_address,
        args.tail_tls_cert,
        args.tail_tls_key,
        args.tail_client_ca,
        args.tail_review_interval,
    )


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {text!r}")
    return int(text)


def _lease_duration(text: str) -> float:
    seconds = _positive(text)
    if seconds < MIN_LEASE_DURATION:
        raise argparse.ArgumentTypeError(
            f"--lease-duration {text}: at least {MIN_LEASE_DURATION:g} s (renewals every 2 s)")
    return seconds


def replica_settings(args: argparse.Namespace) -> dict[str, Any]:
    """--replicas and --buckets as Settings fields; kopf peering (one active replica)
    and buckets (all active) do not mix."""
    if args.replicas > 1 and args.peering:
        raise SystemExit("--peering and --replicas above 1 do not mix: with --replicas every "
                         "replica works (on its own buckets); drop --peering")
    return {
        "replicas": args.replicas,
        "buckets": args.buckets,
        "identity": replica_identity(
            os.environ.get("POD_NAME", ""), socket.gethostname(), os.getpid()
        ),
        "lease_namespace": os.environ.get("POD_NAMESPACE") or "edgeplane-system",
        "lease_timings": Timings.for_duration(args.lease_duration),
    }


def _network(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a network (CIDR): {text!r}") from None


def _url_args(parser: argparse.ArgumentParser) -> None:
    """How the modules of Workers' spec.modules[].url are downloaded."""
    env = os.environ.get
    parser.add_argument(
        "--url-allow-private", action="store_true",
        default=env("EDGEPLANE_URL_ALLOW_PRIVATE", "").lower() in ("1", "true", "yes"),
        help="download modules from non-public addresses too (loopback, private, "
        "link-local, ...); default: public addresses only",
    )
    parser.add_argument(
        "--url-allow-network", action="append", type=_network,
        default=[_network(n) for n in env("EDGEPLANE_URL_ALLOW_NETWORKS", "").split(",") if n],
        help="a non-public network (CIDR) modules may be downloaded from, e.g. an internal "
        "file server (repeatable)",
    )
    parser.add_argument(
        "--url-ca-bundle", default=env("EDGEPLANE_URL_CA_BUNDLE", ""),
        help="PEM file of CAs trusted for module downloads, besides the system's",
    )
    parser.add_argument(
        "--url-timeout", type=float, default=float(env("EDGEPLANE_URL_TIMEOUT", "30")),
        help="seconds for one module download, redirects included (default 30)",
    )


def url_settings(args: argparse.Namespace) -> UrlSettings:
    """The download settings; a CA bundle that cannot be read stops the operator here
    rather than failing every download later."""
    if args.url_ca_bundle:
        try:
            tls_context(args.url_ca_bundle)
        except (OSError, ssl.SSLError) as e:
            raise SystemExit(f"--url-ca-bundle {args.url_ca_bundle}: {e}") from None
    return UrlSettings(
        allow_private=args.url_allow_private,
        allowed_networks=tuple(args.url_allow_network),
        ca_bundle=args.url_ca_bundle or None,
        timeout=args.url_timeout,
        budget=max(UrlSettings.budget, args.url_timeout),
    )


def _version_registry_args(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--version-registry", default=env("EDGEPLANE_VERSION_REGISTRY", ""),
        help="oci://<host>/<repository prefix>: keep versions' code there (by digest) "
        "instead of in ConfigMaps; WorkerVersions then hold only digests",
    )
    parser.add_argument(
        "--version-registry-credentials",
        default=env("EDGEPLANE_VERSION_REGISTRY_CREDENTIALS", ""),
        help="a .dockerconfigjson file granting push, pull and delete on --version-registry",
    )
    parser.add_argument(
        "--version-registry-ca", default=env("EDGEPLANE_VERSION_REGISTRY_CA", ""),
        help="PEM file of CAs to trust for --version-registry, beside the system's",
    )


def versions_retained(args: argparse.Namespace) -> int:
    """--versions-retained, by default more with a registry: versions there cost etcd
    only a small record each."""
    if args.versions_retained:
        return int(args.versions_retained)
    return RETAINED_IN_REGISTRY if args.version_registry else RETAINED_IN_CONFIGMAPS


def version_registry(args: argparse.Namespace) -> RegistrySettings | None:
    """The version registry flags, checked now (an unreadable credentials file or a
    malformed URL stops the operator here rather than failing every version later)."""
    if args.version_registry:
        try:
            VersionRegistry.configure(RegistrySettings(
                args.version_registry, args.version_registry_credentials,
                args.version_registry_ca,
            ))
        except ValueError as e:
            raise SystemExit(str(e)) from None
        if args.version_registry_ca:
            try:
                tls_context(args.version_registry_ca)
            except (OSError, ssl.SSLError) as e:
                raise SystemExit(f"--version-registry-ca {args.version_registry_ca}: {e}") from None
        return RegistrySettings(
            args.version_registry, args.version_registry_credentials, args.version_registry_ca
        )
    return None


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # kopf logs every event handler call at INFO; keep its own chatter at WARNING.
    logging.getLogger("kopf").setLevel(max(logging.WARNING, logging.getLogger().level))
    signing_key = ""
    if not args.signing_key_file:
        logging.getLogger("edgeplane").warning(
            "no --signing-key-file: nobody but each location's own probes can sign version "
            "override headers, and version ids bind secret values by a bare hash (a short "
            "secret can be guessed from one)"
        )
    else:
        signing_key = Path(args.signing_key_file).read_text().strip()
        if len(signing_key) < MIN_SIGNING_KEY:
            print(f"edgeplane operator: --signing-key-file: the key needs at least "
                  f"{MIN_SIGNING_KEY} characters", file=sys.stderr)
            return 2
    disable_created_metrics()  # *_created series only double the scrape size
    if args.metrics_address:
        host, _, port = args.metrics_address.rpartition(":")
        start_http_server(int(port), addr=host or "0.0.0.0")

    from edgeplane import handlers  # registers the handlers with kopf

    settings = Settings(
        versions_retained=versions_retained(args),
        version_registry=version_registry(args),
        concurrency=args.concurrency,
        health_interval=args.health_interval,
        watch_idle_timeout=args.watch_idle_timeout,
        namespaces=tuple(args.namespace),
        signing_key=signing_key,
        credentials_namespaces=tuple(
            args.credentials_namespace or [os.environ.get("POD_NAMESPACE") or "edgeplane-system"]
        ),
        urls=url_settings(args),
        **replica_settings(args),
    )
    assert handlers.startup is not None
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=not args.peering,
        peering_name=args.peering or None,
        liveness_endpoint=args.liveness or None,
        memo=kopf.Memo(settings=settings, tail=tail_settings(args)),
        loop=asyncio.new_event_loop(),
    )
    return 0
