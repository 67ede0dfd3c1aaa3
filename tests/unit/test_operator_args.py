"""`edgeplane operator`'s url flags and their environment defaults become UrlSettings."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeplane.localstack.pki import CertificateAuthority
from edgeplane.operator_main import (
    parse_args,
    replica_settings,
    tail_settings,
    url_settings,
    version_registry,
    versions_retained,
)
from edgeplane.plan.buckets import Timings
from edgeplane.resolve.policy import UrlSettings
from edgeplane.tailserver import TailSettings
from edgeplane.versions.artifacts import RegistrySettings


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, UrlSettings()),
        (["--url-allow-private"], {}, UrlSettings(allow_private=True)),
        ([], {"EDGEPLANE_URL_ALLOW_PRIVATE": "true"}, UrlSettings(allow_private=True)),
        (
            ["--url-allow-network", "10.1.2.3", "--url-allow-network", "fd00::/8"],
            {},
            UrlSettings(allowed_networks=("10.1.2.3/32", "fd00::/8")),
        ),
        (
            [],
            {"EDGEPLANE_URL_ALLOW_NETWORKS": "10.0.0.0/8,192.168.1.7"},
            UrlSettings(allowed_networks=("10.0.0.0/8", "192.168.1.7/32")),
        ),
        (["--url-timeout", "5"], {}, UrlSettings(timeout=5.0)),
        # A budget shorter than one download would make the timeout meaningless.
        ([], {"EDGEPLANE_URL_TIMEOUT": "300"}, UrlSettings(timeout=300.0, budget=300.0)),
    ],
)
def test_url_flags(
    argv: list[str], env: dict[str, str], expected: UrlSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert url_settings(parse_args(argv)) == expected


def test_a_bad_network_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--url-allow-network", "10.0.0.300/8"])
    assert "not a network (CIDR): '10.0.0.300/8'" in capsys.readouterr().err


def test_the_ca_bundle_is_read_at_start(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    ok = url_settings(parse_args(["--url-ca-bundle", str(ca.pair.cert)]))
    assert ok.ca_bundle == str(ca.pair.cert)
    (tmp_path / "junk.pem").write_text("not a certificate")
    for path in (tmp_path / "missing.pem", tmp_path / "junk.pem"):
        with pytest.raises(SystemExit, match=f"--url-ca-bundle {path}: "):
            url_settings(parse_args(["--url-ca-bundle", str(path)]))


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, 70.0),
        (["--watch-idle-timeout", "15"], {}, 15.0),
        ([], {"EDGEPLANE_WATCH_IDLE_TIMEOUT": "120"}, 120.0),
    ],
)
def test_watch_idle_timeout(
    argv: list[str], env: dict[str, str], expected: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert parse_args(argv).watch_idle_timeout == expected


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_watch_idle_timeout_must_be_positive(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--watch-idle-timeout", value])
    assert "--watch-idle-timeout: not a positive number of seconds" in capsys.readouterr().err


TLS = ["--tail-tls-cert", "c.pem", "--tail-tls-key", "k.pem"]


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, None),  # live logs off
        (
            ["--tail-address", "0.0.0.0:8443", *TLS],
            {},
            TailSettings("0.0.0.0:8443", "c.pem", "k.pem"),
        ),
        (
            TLS,
            {"EDGEPLANE_TAIL_ADDRESS": "[::]:9443", "EDGEPLANE_TAIL_CLIENT_CA": "ca.pem"},
            TailSettings("[::]:9443", "c.pem", "k.pem", "ca.pem"),
        ),
        (
            ["--tail-address", ":8443", *TLS, "--tail-review-interval", "5"],
            {},
            TailSettings(":8443", "c.pem", "k.pem", review_interval=5.0),
        ),
    ],
)
def test_tail_flags(
    argv: list[str],
    env: dict[str, str],
    expected: TailSettings | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert tail_settings(parse_args(argv)) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Callers send their Kubernetes token: never over plain HTTP.
        (
            ["--tail-address", "0.0.0.0:8443"],
            "--tail-address needs --tail-tls-cert and --tail-tls-key",
        ),
        (
            ["--tail-address", "0.0.0.0:8443", "--tail-tls-cert", "c.pem"],
            "needs --tail-tls-cert and",
        ),
        (["--tail-address", "somewhere", *TLS], "expected host:port"),
    ],
)
def test_tail_flags_refused(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        tail_settings(parse_args(argv))


REG = "oci://registry.example/edgeplane/versions"


@pytest.mark.parametrize(
    ("argv", "env", "retained"),
    [
        ([], {}, 10),  # ConfigMaps: each version weighs on etcd
        (["--version-registry", REG], {}, 100),  # a small record each
        ([], {"EDGEPLANE_VERSION_REGISTRY": REG}, 100),
        (["--version-registry", REG, "--versions-retained", "7"], {}, 7),
        ([], {"EDGEPLANE_VERSIONS_RETAINED": "30"}, 30),
    ],
)
def test_versions_retained_defaults_to_100_with_a_registry(
    argv: list[str], env: dict[str, str], retained: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert versions_retained(parse_args(argv)) == retained


def test_version_registry_flags_are_checked_at_start(tmp_path: Path) -> None:
    assert version_registry(parse_args([])) is None
    creds = tmp_path / "config.json"
    creds.write_text('{"auths": {"registry.example": {"username": "u", "password": "p"}}}')
    argv = ["--version-registry", REG, "--version-registry-credentials", str(creds)]
    assert version_registry(parse_args(argv)) == RegistrySettings(REG, str(creds))
    with pytest.raises(SystemExit, match=r"^--version-registry: 'https://r/x' must be oci://"):
        version_registry(parse_args(["--version-registry", "https://r/x"]))
    missing = tmp_path / "none.json"
    with pytest.raises(SystemExit, match=r"^--version-registry-credentials: No such file"):
        version_registry(
            parse_args(["--version-registry", REG, "--version-registry-credentials", str(missing)])
        )
    creds.write_text("secret-not-json")
    with pytest.raises(SystemExit) as e:
        version_registry(parse_args(argv))
    assert "is not a JSON object" in str(e.value) and "secret" not in str(e.value)
    with pytest.raises(SystemExit, match=r"^--version-registry-ca "):
        version_registry(
            parse_args(["--version-registry", REG, "--version-registry-ca", str(missing)])
        )


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, (1, 10)),  # one replica: no Leases at all
        (["--replicas", "3"], {}, (3, 10)),
        (["--buckets", "16"], {"EDGEPLANE_REPLICAS": "2"}, (2, 16)),
    ],
)
def test_replica_flags(
    argv: list[str], env: dict[str, str], expected: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("POD_NAME", "edgeplane-abc-1")
    monkeypatch.setenv("POD_NAMESPACE", "ops")
    got = replica_settings(parse_args(argv))
    assert (got["replicas"], got["buckets"]) == expected
    assert got["identity"] == "edgeplane-abc-1" and got["lease_namespace"] == "ops"
    assert got["lease_timings"] == Timings()  # client-go's 15 s, 10 s


def test_lease_duration_flag() -> None:
    assert replica_settings(parse_args(["--lease-duration", "30"]))["lease_timings"].duration == 30
    with pytest.raises(SystemExit):
        parse_args(["--lease-duration", "3"])


@pytest.mark.parametrize("argv", [["--replicas", "0"], ["--buckets", "x"], ["--replicas", "-1"]])
def test_replica_flags_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert "not a whole number of at least 1" in capsys.readouterr().err


def test_peering_and_replicas_do_not_mix() -> None:
    with pytest.raises(SystemExit, match="drop --peering"):
        replica_settings(parse_args(["--replicas", "2", "--peering", "edgeplane"]))
    assert replica_settings(parse_args(["--peering", "edgeplane"]))["replicas"] == 1
