"""The operator's TLS settings per endpoint: which roots, which client certificate, and
when an endpoint needs no context of its own."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiohttp import web

from edgeplane.distribute.client import AgentClient, Endpoint, Unreachable
from edgeplane.distribute.tls import ClientCertificate, ClientTls, client_tls
from edgeplane.localstack.pki import CertificateAuthority

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


async def test_an_agent_certificate_the_ca_bundle_does_not_sign_names_itself(
    tmp_path: Path,
) -> None:
    """A wrong spec.caBundle (or a certificate that does not name the endpoint's host) is
    TLSVerifyFailed, not a plain Unreachable: the fix is the EdgeTarget's, not the network's."""
    agents_ca = CertificateAuthority(tmp_path / "agents", "agents-ca")
    other_ca = CertificateAuthority(tmp_path / "other", "other-ca")
    pair = agents_ca.issue("agent", "edge-1", server_hosts=("127.0.0.1",))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pair.cert, pair.key)

    async def info(_: web.Request) -> web.Response:
        return web.json_response({"agentVersion": "x"})

    app = web.Application()
    app.router.add_get("/v1/info", info)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = AgentClient(timeout=10)
    try:
        url = f"https://127.0.0.1:{port}"
        right = Endpoint("edge-1", url, "t", agents_ca.pair.cert.read_text())
        assert await client.info(right) == {"agentVersion": "x"}
        wrong = Endpoint("edge-1", url, "t", other_ca.pair.cert.read_text())
        with pytest.raises(Unreachable) as caught:
            await client.info(wrong)
        assert caught.value.reason == "TLSVerifyFailed"
        assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    finally:
        await client.close()
        await runner.cleanup()
