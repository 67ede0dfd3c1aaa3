"""The tests' OCI registry itself (localstack/registry.py): TLS from its own CA, only the
htpasswd user admitted, and stop/start keeps its port for outage tests."""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.request

import pytest

from edgeplane.localstack.registry import Registry

pytestmark = pytest.mark.integration


def status(registry: Registry, password: str | None) -> int:
    req = urllib.request.Request(f"https://{registry.host}/v2/")
    if password is not None:
        pair = base64.b64encode(f"{registry.user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {pair}")
    ctx = ssl.create_default_context(cafile=str(registry.ca))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_only_the_htpasswd_user_is_admitted_over_tls(registry: Registry) -> None:
    assert status(registry, registry.password) == 200
    assert status(registry, None) == 401
    assert status(registry, registry.password + "x") == 401
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"https://{registry.host}/v2/", timeout=10)


def test_stop_and_start_keep_the_address(registry: Registry) -> None:
    host = registry.host
    registry.stop()
    try:
        with pytest.raises(urllib.error.URLError, match="Connection refused"):
            status(registry, registry.password)
    finally:
        registry.start()
    assert registry.host == host and status(registry, registry.password) == 200
