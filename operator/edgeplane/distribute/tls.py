"""The operator's side of TLS to an agent, as settings (pure): which roots to trust and
which client certificate to present. `distribute.client` makes ssl contexts of them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClientCertificate:
    """A certificate and its private key (PEM), from a kubernetes.io/tls Secret."""

    cert: str
    key: str

    def __repr__(self) -> str:  # never print the key
        return "ClientCertificate(...)"


@dataclass(frozen=True)
class ClientTls:
    """How to open TLS to one agent; equal settings share one ssl context."""

    ca_bundle: str | None = None  # PEM roots; None: the system's trust store
    certificate: ClientCertificate | None = None  # presented when the agent asks

    @property
    def default(self) -> bool:
        """Nothing beyond the system's roots: no context of its own is needed."""
        return self.ca_bundle is None and self.certificate is None


def client_tls(
    url: str, ca_bundle: str | None, certificate: ClientCertificate | None
) -> ClientTls | None:
    """The TLS settings for an agent at `url`; None for plain http (loopback only, which
    the EdgeTarget's validation and `api.target.endpoint_refusal` enforce)."""
    if not url.lower().startswith("https://"):
        return None
    return ClientTls(ca_bundle or None, certificate)
