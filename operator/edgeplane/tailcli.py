"""`edgeplane tail <worker>`: a Worker's live logs from every edge location it runs at.

The operator's live-log endpoint (edgeplane/tailserver.py, `--tail-address`) answers only
callers the cluster says may `get` the Worker: this command sends it the bearer token of
your kubeconfig's user (a static token, a token file or an exec plugin's token), which the
operator checks with a TokenReview and a SubjectAccessReview, or else presents the user's
client certificate (for an endpoint started with --tail-client-ca). Neither reaches an agent.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from edgeplane.report.tail import FORMATS, render


def parse_args(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    ap = argparse.ArgumentParser(prog="edgeplane tail", description=__doc__.split("\n\n")[0])
    ap.add_argument("worker", help="the Worker's name")
    ap.add_argument("-n", "--namespace", help="its namespace (default: the context's)")
    ap.add_argument("--location", help="only this edge location (an EdgeTarget's name)")
    ap.add_argument(
        "--status",
        choices=("ok", "error", "canceled"),
        action="append",
        help="only requests with this outcome (repeatable); error: an exception or a 5xx",
    )
    ap.add_argument("--search", help="only requests whose console lines or exceptions contain this")
    ap.add_argument("--format", choices=FORMATS, default="pretty")
    ap.add_argument(
        "--endpoint",
        default=env("EDGEPLANE_TAIL_ENDPOINT", ""),
        help="https://host:port of the operator's live-log endpoint ($EDGEPLANE_TAIL_ENDPOINT)",
    )
    ap.add_argument(
        "--ca-file",
        default=env("EDGEPLANE_TAIL_CA", ""),
        help="CA (PEM) that signed the endpoint's certificate ($EDGEPLANE_TAIL_CA; default: "
        "the system's)",
    )
    ap.add_argument(
        "--kubeconfig", help="kubeconfig to take your token from (default: $KUBECONFIG)"
    )
    ap.add_argument("--context", help="its context (default: the current one)")
    args = ap.parse_args(argv)
    if not args.endpoint.startswith("https://"):
        ap.error(
            "--endpoint (or $EDGEPLANE_TAIL_ENDPOINT) must be the https:// address of the "
            "operator's live-log endpoint (its --tail-address)"
        )
    return args


@dataclass(frozen=True)
class Who:
    """What proves the caller: a bearer token, else a client certificate and its key."""

    token: str
    cert: str | None
    key: str | None


def credentials(args: argparse.Namespace) -> tuple[Who, str]:
    """(credentials, namespace) of the kubeconfig's user and context; SystemExit saying
    why not."""
    from kubernetes import client, config

    path = args.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    cfg = client.Configuration()
    try:
        config.load_kube_config(path, args.context, client_configuration=cfg)
        _, current = config.list_kube_config_contexts(path)
        if args.context:
            contexts, _ = config.list_kube_config_contexts(path)
            current = next(c for c in contexts if c["name"] == args.context)
    except (config.ConfigException, OSError, StopIteration) as e:
        raise SystemExit(f"edgeplane tail: kubeconfig: {e or 'context not found'}") from None
    keys = cfg.api_key or {}
    token = (keys.get("BearerToken") or keys.get("authorization") or "").removeprefix("Bearer ")
    if not token.strip() and not (cfg.cert_file and cfg.key_file):
        raise SystemExit(
            "edgeplane tail: your kubeconfig's user has neither a bearer token nor a client "
            "certificate: use a context with a token, an exec plugin or a certificate"
        )
    namespace = args.namespace or current.get("context", {}).get("namespace") or "default"
    return Who(token.strip(), cfg.cert_file, cfg.key_file), namespace


def _url(args: argparse.Namespace, namespace: str) -> str:
    query = {k: v for k, v in (("location", args.location), ("search", args.search)) if v}
    if args.status:
        query["status"] = ",".join(args.status)
    path = f"/v1/namespaces/{namespace}/workers/{args.worker}/tail"
    return args.endpoint.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")


def _open(url: str, who: Who, ca_file: str) -> Any:
    ctx = ssl.create_default_context(cafile=ca_file or None)
    headers = {}
    if who.token:
        headers["Authorization"] = f"Bearer {who.token}"
    elif who.cert and who.key:
        ctx.load_cert_chain(who.cert, who.key)
    req = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(req, context=ctx, timeout=60)
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body.strip() or e.reason
        raise SystemExit(f"edgeplane tail: refused ({e.code}): {message}") from None
    except (urllib.error.URLError, OSError) as e:
        raise SystemExit(f"edgeplane tail: {_origin(url)}: {e}") from None


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    who, namespace = credentials(args)
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    resp = _open(_url(args, namespace), who, args.ca_file)
    with resp:
        for raw in resp:
            if not raw.strip():
                continue
            text = render(json.loads(raw), args.format)
            if text is not None:
                print(text, flush=True)
    print("edgeplane tail: the operator ended the stream", file=sys.stderr)
    return 1
