"""The tests' OCI registry itself (localstack/registry.py): TLS from its own CA, only the
htpasswd user admitted, and stop/start keeps its port for outage tests."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from edgeplane.localstack.registry import Registry

pytestmark = pytest.mark.integration


def test_only_the_htpasswd_user_is_admitted_over_tls(registry: Registry) -> None:
    assert registry.status() == 200
    assert registry.status(password=None) == 401
    assert registry.status(password=registry.password + "x") == 401
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"https://{registry.host}/v2/", timeout=10)


def test_stop_and_start_keep_the_address(registry: Registry) -> None:
    host = registry.host
    registry.stop()
    try:
        with pytest.raises(urllib.error.URLError, match="Connection refused"):
            registry.status()
    finally:
        registry.start()
    assert registry.host == host and registry.status() == 200
