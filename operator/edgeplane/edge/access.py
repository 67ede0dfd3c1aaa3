"""Who may call the agent's API (pure): the bearer token, and with --tls-client-ca a client
certificate signed by that CA, on everything but the health checks. `edge.app` makes the
ssl context from `ServerTls` and asks these questions of each request."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

# Kubelet's probes carry neither a token nor a client certificate.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


@dataclass(frozen=True)
class ServerTls:
    """The API's TLS: PEM files of its certificate and key, and of the CA that signs the
    client certificates it requires (None: none required)."""

    cert: str
    key: str
    client_ca: str | None = None


def server_tls(cert: str | None, key: str | None, client_ca: str | None) -> ServerTls | None:
    """The settings the flags ask for (None: plain http); ValueError if they do not fit."""
    if bool(cert) != bool(key):
        raise ValueError("--tls-cert and --tls-key go together")
    if not cert or not key:
        if client_ca:
            raise ValueError(
                "--tls-client-ca needs --tls-cert and --tls-key: client "
                "certificates are part of TLS"
            )
        return None
    return ServerTls(cert, key, client_ca or None)


def token_ok(header: str | None, token: str) -> bool:
    """Constant-time check of an `Authorization: Bearer <token>` header."""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


def certificate_refusal(path: str, required: bool, presented: bool) -> str | None:
    """Why a request without a verified client certificate may not go on. The handshake
    lets a client without one connect, so that the health checks stay open; one that
    presents a certificate the CA did not sign never gets this far."""
    if not required or presented or path in OPEN_PATHS:
        return None
    return "a client certificate signed by the agent's --tls-client-ca is required"
