"""Credentials for kopf and the asyncio client, read when needed rather than at import:
the kubernetes client reads $KUBECONFIG once when imported, which is too early for a
process (or a test session) that sets it later."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import kopf
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes import client as sync_client
from kubernetes import config as sync_config
from yarl import URL

# Seconds any one apiserver request (not a watch) may take: without a bound, a request sent
# on a connection that silently stopped delivering would hang its reconcile for good.
API_REQUEST_TIMEOUT = 60.0


def kubeconfig_path() -> Path | None:
    raw = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    path = Path(raw).expanduser() if raw else Path.home() / ".kube" / "config"
    return path if path.exists() else None


def login(logger: Any, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf login handler: the current kubeconfig, else in-cluster credentials."""
    path = kubeconfig_path()
    if path is None:
        return kopf.login_via_client(logger=logger, **kwargs)
    cfg = sync_client.Configuration()
    sync_config.load_kube_config(config_file=str(path), client_configuration=cfg)
    # kubernetes>=30 stores a kubeconfig token under "BearerToken" (older: "authorization");
    # missing it made every token kubeconfig (e.g. a ServiceAccount's) log in anonymously.
    keys = cfg.api_key or {}
    raw = keys.get("BearerToken") or keys.get("authorization") or ""
    token = raw.removeprefix("Bearer ").strip()
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        token=token or None,
        scheme="Bearer" if token else None,
    )


async def async_api_client() -> Any:
    """A kubernetes_asyncio ApiClient from the current kubeconfig, else in-cluster."""
    from kubernetes_asyncio import client as aclient
    from kubernetes_asyncio import config as aconfig

    cfg = aclient.Configuration()
    path = kubeconfig_path()
    if path is not None:
        await aconfig.load_kube_config(config_file=str(path), client_configuration=cfg)
    else:
        aconfig.load_incluster_config(client_configuration=cfg)
    # The client's aiohttp session trusts the environment: each request then looks up
    # proxies and ~/.netrc in a thread, which was a quarter of the operator's CPU under
    # load. The proxy for the apiserver is the same for the life of the process: look it
    # up once; netrc never applies (every request carries the client's credentials).
    if not cfg.proxy:
        with contextlib.suppress(LookupError):
            proxy, proxy_auth = get_env_proxy_for_url(URL(cfg.host))
            cfg.proxy = str(proxy)
            if proxy_auth is not None:
                cfg.proxy_headers = {"Proxy-Authorization": proxy_auth.encode()}
    api = aclient.ApiClient(cfg)
    session = api.rest_client.pool_manager
    if hasattr(session, "_trust_env"):
        session._trust_env = False
    _bound_requests(api.rest_client)
    return api


def _bound_requests(rest: Any) -> None:
    """Every request without a timeout of its own gets API_REQUEST_TIMEOUT (the client's
    default is none at all)."""
    request = rest.request

    async def bounded(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return await request(*args, _request_timeout=_request_timeout or API_REQUEST_TIMEOUT,
                             **kwargs)

    rest.request = bounded
