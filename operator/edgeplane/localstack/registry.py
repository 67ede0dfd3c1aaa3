"""A real OCI registry for tests: the CNCF distribution registry of the pinned release
(built by tools/build-registry.sh) on a free loopback port, with TLS from a local CA,
htpasswd basic auth, filesystem storage and deletes enabled. `stop()` and `start()` let a
test take it away and bring it back with its content kept, as a real outage would."""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from edgeplane.localstack import procs
from edgeplane.localstack.cluster import built_bin_dir
from edgeplane.localstack.pki import CertificateAuthority


class RegistryError(RuntimeError):
    pass


def registry_bin_dir() -> Path:
    """$EDGEPLANE_REGISTRY_BIN, else the cached build (building it on a fresh machine)."""
    return built_bin_dir("EDGEPLANE_REGISTRY_BIN", "build-registry.sh")


def htpasswd_line(bin_dir: Path, user: str, password: str) -> str:
    """A bcrypt htpasswd line, from the Go helper (the password goes over stdin)."""
    res = subprocess.run(
        [str(bin_dir / "htpasswd"), user], input=password + "\n",
        capture_output=True, text=True, check=True, timeout=30,
    )
    return res.stdout.strip()


@dataclass
class Registry:
    state_dir: Path
    bin_dir: Path = field(default_factory=registry_bin_dir)
    tie_to_parent: bool = False
    user: str = "edgeplane"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    port: int = field(default_factory=procs.free_port)
    # Docker token auth (realm, service, issuer, jwks) instead of htpasswd: clients are
    # sent to a token service, as by ghcr.io or Docker Hub.
    token_auth: dict[str, str] | None = None
    proc: procs.Proc | None = None

    @property
    def host(self) -> str:
        """The registry's host as image references name it: `127.0.0.1:<port>`."""
        return f"127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    def dockerconfigjson(self, password: str | None = None) -> str:
        """A `.dockerconfigjson` value granting this registry (with `password` if given)."""
        pw = self.password if password is None else password
        auth = {"username": self.user, "password": pw}
        return json.dumps({"auths": {self.host: auth}})

    def blob_file(self, digest: str) -> Path:
        """Where the registry's filesystem storage keeps the blob `sha256:<hex>` (for tests
        that tamper with it)."""
        hex_ = digest.removeprefix("sha256:")
        return self.state_dir / "data/docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"

    def _configure(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tls = CertificateAuthority(self.state_dir / "pki", "edgeplane-registry-ca").issue(
            "registry", "127.0.0.1", server_hosts=("127.0.0.1", "localhost")
        )
        htpasswd = self.state_dir / "htpasswd"
        htpasswd.write_text(htpasswd_line(self.bin_dir, self.user, self.password) + "\n")
        htpasswd.chmod(0o600)
        # JSON is YAML: the registry reads this file as its configuration.
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.state_dir / "data")},
                "delete": {"enabled": True},
            },
            "http": {
                "addr": self.host,
                "tls": {"certificate": str(tls.cert), "key": str(tls.key)},
                "draintimeout": "1s",
            },
            "auth": (
                {"token": self.token_auth}
                if self.token_auth
                else {"htpasswd": {"realm": "edgeplane-test", "path": str(htpasswd)}}
            ),
        }
        path = self.state_dir / "config.yml"
        path.write_text(json.dumps(config, indent=1))
        return path

    def up(self) -> None:
        self._configure()
        self.start()

    def start(self) -> None:
        """Start (again) on the same port and storage; returns once it answers."""
        # OTEL: the registry exports traces by default; nothing here collects them.
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
        self.proc = procs.start(
            "registry", [self.bin_dir / "registry", "serve", self.state_dir / "config.yml"],
            self.state_dir, env=env, tie_to_parent=self.tie_to_parent,
        )
        self.wait_ready()

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)
            self.proc = None

    def down(self) -> None:
        self.stop()

    def status(
        self, path: str = "/v2/", method: str = "GET", password: str | None = "",
        headers: dict[str, str] | None = None,
    ) -> int:
        """The HTTP status the registry answers `path` with, over TLS trusting its CA, as its
        user (with `password` if one is given; None: without credentials)."""
        req = urllib.request.Request(f"https://{self.host}{path}", method=method,
                                     headers=headers or {})
        if password is not None:
            pair = f"{self.user}:{password or self.password}".encode()
            req.add_header("Authorization", f"Basic {base64.b64encode(pair).decode()}")
        ctx = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return e.code

    def manifest_status(self, ref: str) -> int:
        """The status of a HEAD of the manifest `<host>/<repository>@<digest>` names: 200
        while it is there, 404 once deleted."""
        repository, digest = ref.split("/", 1)[1].split("@", 1)
        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        return self.status(f"/v2/{repository}/manifests/{digest}", "HEAD", headers=accept)

    def wait_ready(self, timeout: float = 60) -> None:
        """Until `/v2/` answers 401 over TLS: serving, and asking for credentials."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and not self.proc.alive():
                raise RegistryError(f"the registry exited:\n{self.proc.log_tail()}")
            try:
                urllib.request.urlopen(f"https://{self.host}/v2/", context=ctx, timeout=5)
                last = "answered without asking for credentials"
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    return
                last = f"HTTP {e.code}"
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        raise RegistryError(f"the registry is not ready after {timeout:.0f}s: {last}")
