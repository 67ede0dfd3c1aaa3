"""Who may call the agent's API: the TLS flags that go together, and which requests need a
client certificate."""

from __future__ import annotations

import pytest

from edgeplane.edge.access import ServerTls, certificate_refusal, server_tls


@pytest.mark.parametrize(
    ("cert", "key", "client_ca", "expected"),
    [
        (None, None, None, None),
        ("a.crt", "a.key", None, ServerTls("a.crt", "a.key")),
        ("a.crt", "a.key", "ca.crt", ServerTls("a.crt", "a.key", "ca.crt")),
        ("a.crt", "a.key", "", ServerTls("a.crt", "a.key")),
        ("a.crt", None, None, "--tls-cert and --tls-key go together"),
        (None, "a.key", "ca.crt", "--tls-cert and --tls-key go together"),
        (None, None, "ca.crt", "--tls-client-ca needs --tls-cert and --tls-key"),
    ],
)
def test_server_tls(
    cert: str | None, key: str | None, client_ca: str | None, expected: ServerTls | str | None
) -> None:
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            server_tls(cert, key, client_ca)
    else:
        assert server_tls(cert, key, client_ca) == expected


@pytest.mark.parametrize(
    ("path", "required", "presented", "refused"),
    [
        ("/v1/workers", False, False, False),  # no --tls-client-ca
        ("/v1/workers", True, True, False),
        ("/v1/workers", True, False, True),
        ("/metrics", True, False, True),
        ("/v1/info", True, False, True),
        ("/healthz", True, False, False),  # kubelet's probes carry no certificate
        ("/readyz", True, False, False),
        ("/healthz/", True, False, True),  # only the exact paths are open
    ],
)
def test_certificate_refusal(path: str, required: bool, presented: bool, refused: bool) -> None:
    message = certificate_refusal(path, required, presented)
    assert (message is not None) is refused
    if message:
        assert "client certificate" in message and "--tls-client-ca" in message
