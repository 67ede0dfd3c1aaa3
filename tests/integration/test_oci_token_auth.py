"""Docker token auth, as ghcr.io and Docker Hub use it, against the real registry: it
answers 401 with a Bearer challenge, the client asks the token service (basic credentials
from the pull secret, the challenge's scope) and retries with the token the registry then
verifies (ES256, its JWKS). A push and a pull round-trip that way; a wrong password is
refused by the token service and the error does not show it."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from edgeplane.localstack.cluster import REPO
from edgeplane.localstack.pki import CertificateAuthority
from edgeplane.localstack.registry import Registry
from edgeplane.resolve.artifact import Credentials, parse_ref
from edgeplane.resolve.oci import ArtifactError, OciClient
from edgeplane.resolve.policy import UrlSettings

pytestmark = pytest.mark.integration

SERVICE, ISSUER, KID = "edgeplane-test", "edgeplane-test-issuer", "test-key"
INDEX = b"export default { fetch() { return new Response('via a token'); } };\n"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(key: ec.EllipticCurvePrivateKey, user: str, scope: str) -> str:
    """An ES256 token granting `scope` (`repository:<name>:<actions>`)."""
    now = int(time.time())
    access = []
    if scope:
        kind, name, actions = scope.split(":")
        access = [{"type": kind, "name": name, "actions": actions.split(",")}]
    claims = {"iss": ISSUER, "sub": user, "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
              "iat": now, "jti": uuid.uuid4().hex, "access": access}
    head = {"typ": "JWT", "alg": "ES256", "kid": KID}
    signing = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class TokenService:
    """The token endpoint: basic credentials in, a signed token for the scope out."""

    def __init__(self, root: Path, user: str, password: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.asked: list[dict[str, list[str]]] = []
        ca = CertificateAuthority(root / "token-pki", "token-ca")
        self.ca = ca.pair.cert
        pair = ca.issue("token", "127.0.0.1", server_hosts=("127.0.0.1",))
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                service.asked.append(query)
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": jwt(service.key, user, query["scope"][0])}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pair.cert, pair.key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def jwks(self, path: Path) -> Path:
        nums = self.key.public_key().public_numbers()
        key = {"kty": "EC", "crv": "P-256", "kid": KID, "alg": "ES256", "use": "sig",
               "x": b64url(nums.x.to_bytes(32, "big")), "y": b64url(nums.y.to_bytes(32, "big"))}
        path.write_text(json.dumps({"keys": [key]}))
        return path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    """A registry with token auth, its token service, and one CA bundle trusting both."""
    root = tmp_path_factory.mktemp("token-registry")
    registry = Registry(REPO / ".state" / f"test-token-registry-{uuid.uuid4().hex[:8]}",
                        tie_to_parent=True)
    service = TokenService(root, registry.user, registry.password)
    registry.token_auth = {"realm": service.url, "service": SERVICE, "issuer": ISSUER,
                           "jwks": str(service.jwks(root / "jwks.json"))}
    registry.up()
    bundle = root / "cas.pem"
    bundle.write_bytes(registry.ca.read_bytes() + service.ca.read_bytes())
    try:
        yield registry, bundle
    finally:
        registry.down()
        service.close()


async def test_push_and_pull_through_a_token_service(token_registry: tuple[Registry, Path]) -> None:
    registry, cas = token_registry
    client = OciClient(UrlSettings(ca_bundle=str(cas), allowed_networks=("127.0.0.1/32",)))
    creds = Credentials(registry.user, registry.password)
    try:
        digest = await client.push(registry.host, "acme/token", "v1",
                                   [("index.js", "application/javascript", INDEX)], b"{}", creds)
        ref = parse_ref(f"{registry.host}/acme/token@{digest}")
        got = await client.pull(ref, ["index.js"], creds)
        with pytest.raises(ArtifactError) as e:
            await client.pull(ref, ["index.js"], Credentials(registry.user, "Wr0ng-password"))
    finally:
        await client.close()
    assert got == {"index.js": INDEX}
    assert e.value.reason == "ArtifactUnavailable" and str(ref) in e.value.message
    assert "token service answered HTTP 401" in e.value.message
    assert "Wr0ng-password" not in e.value.message


def test_without_a_token_the_registry_refuses(token_registry: tuple[Registry, Path]) -> None:
    """The fixture is real: without a token, no pull (the test above cannot pass by the
    registry letting everyone in), and the challenge sends clients to the token service."""
    registry, cas = token_registry
    ctx = ssl.create_default_context(cafile=str(cas))
    url = f"https://{registry.host}/v2/acme/token/manifests/v1"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, context=ctx, timeout=10)
    assert e.value.code == 401
    assert e.value.headers["WWW-Authenticate"].startswith('Bearer realm="https://127.0.0.1:')
