"""The operator's TLS settings per endpoint: which roots, which client certificate, and
when an endpoint needs no context of its own."""

from __future__ import annotations

import pytest

from edgeplane.distribute.tls import ClientCertificate, ClientTls, client_tls

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PAIR = ClientCertificate("-----BEGIN CERTIFICATE-----\nc\n", "-----BEGIN PRIVATE KEY-----\nk\n")


@pytest.mark.parametrize(
    ("url", "ca_bundle", "certificate", "expected"),
    [
        ("http://127.0.0.1:9443", None, None, None),
        ("http://127.0.0.1:9443", CA, PAIR, None),  # plain http: nothing of TLS applies
        ("https://edge.example.net", None, None, ClientTls()),
        ("https://edge.example.net", "", None, ClientTls()),  # empty: the system's roots
        ("HTTPS://edge.example.net", CA, None, ClientTls(CA)),
        ("https://edge.example.net", CA, PAIR, ClientTls(CA, PAIR)),
        ("https://edge.example.net", None, PAIR, ClientTls(None, PAIR)),
    ],
)
def test_client_tls(
    url: str, ca_bundle: str | None, certificate: ClientCertificate | None,
    expected: ClientTls | None,
) -> None:
    assert client_tls(url, ca_bundle, certificate) == expected


def test_only_the_system_roots_need_no_context_of_their_own() -> None:
    assert ClientTls().default
    assert not ClientTls(CA).default and not ClientTls(None, PAIR).default
    # Equal settings are one cache key; the key never appears in a repr.
    assert hash(ClientTls(CA, PAIR)) == hash(ClientTls(CA, ClientCertificate(PAIR.cert, PAIR.key)))
    assert "PRIVATE" not in repr(ClientTls(CA, PAIR))
