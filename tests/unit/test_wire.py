"""The one redaction rule for every message that leaves the operator or the agent."""

from __future__ import annotations

import pytest

from edgeplane.wire import (
    Bundle,
    BundleBinding,
    BundleModule,
    Deployment,
    Exclusions,
    derive_key,
    redact,
    secret_digest,
    secrets_of,
)


@pytest.mark.parametrize(
    ("message", "secrets", "expected"),
    [
        # A secret containing another is removed whole, whatever order they come in.
        ("x abcdef y abc", ["abc", "abcdef"], "x [redacted] y [redacted]"),
        ("x abcdef y abc", ["abcdef", "abc"], "x [redacted] y [redacted]"),
        # Short secrets too: a short secret is still a secret.
        ("pin=42", ["42"], "pin=[redacted]"),
        # A value read from a file with a trailing newline, echoed without it.
        ("token tok3n failed", ["tok3n\n"], "token [redacted] failed"),
        # Empty and blank values are not secrets of anything.
        ("nothing to hide", ["", "  "], "nothing to hide"),
        ("no secrets at all", [], "no secrets at all"),
    ],
)
def test_redact(message: str, secrets: list[str], expected: str) -> None:
    assert redact(message, secrets) == expected


def test_secrets_of_collects_every_version_of_every_deployment() -> None:
    def bundle(worker: str, secret: str) -> Bundle:
        return Bundle(
            worker=worker,
            compatibilityDate="2024-09-23",
            mainModule="m.js",
            modules=(BundleModule(name="m.js", type="esModule", content="export default {}"),),
            bindings=(BundleBinding(name="S", secret=secret), BundleBinding(name="T", text="t")),
        ).with_version()

    a1, a2, b = bundle("ns.a", "one"), bundle("ns.a", "two"), bundle("ns.b", "three")
    deps = [
        Deployment(worker="ns.a", primary=a1.version or "", versions=(a1, a2)),
        Deployment(worker="ns.b", primary=b.version or "", versions=(b,)),
    ]
    assert secrets_of(deps) == {"one", "two", "three"}


@pytest.mark.parametrize(
    ("patterns", "error"),
    [
        ((), None),
        (("example.com/static/*", "example.com/robots.txt"), None),
        (("example.com/a", "EXAMPLE.com/a"), "each pattern may appear once"),
        (("example.com/*?q",), "query string"),
    ],
)
def test_exclusions_model(patterns: tuple[str, ...], error: str | None) -> None:
    if error is None:
        assert Exclusions(patterns=patterns).patterns == patterns
        return
    with pytest.raises(ValueError, match=error):
        Exclusions(patterns=patterns)


def _secret_bundle(value: str, digest_key: str = "") -> Bundle:
    digest = secret_digest(digest_key, value)
    return Bundle(
        worker="ns.a",
        compatibilityDate="2024-09-23",
        mainModule="m.js",
        modules=(BundleModule(name="m.js", type="esModule", content="export default {}"),),
        bindings=(BundleBinding(name="S", secret=value, secretDigest=digest),),
    ).with_version()


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (("pin-1234", "k1"), ("pin-1234", "k1"), True),  # deterministic
        (("pin-1234", "k1"), ("pin-1235", "k1"), False),  # a rotated secret is a new version
        (("pin-1234", "k1"), ("pin-1234", "k2"), False),  # another cluster's key
        (("pin-1234", "k1"), ("pin-1234", ""), False),  # keyed and bare differ
    ],
)
def test_version_ids_bind_secrets_by_keyed_digest(a: tuple, b: tuple, same: bool) -> None:
    assert (_secret_bundle(*a).version == _secret_bundle(*b).version) is same


def test_the_canonical_form_holds_no_secret_value() -> None:
    bundle = _secret_bundle("canary-0123456789", "cluster-key")
    assert b"canary-0123456789" not in bundle.canonical()
    assert secret_digest("cluster-key", "canary-0123456789").encode() in bundle.canonical()
    # The agent checks a received bundle's version without the key: digest and id agree.
    again = Bundle.model_validate_json(bundle.model_dump_json(by_alias=True))
    assert again.version == bundle.version


@pytest.mark.parametrize(
    ("key", "prefix"), [("k", "hmac-sha256:"), ("", "sha256:")]
)
def test_secret_digest(key: str, prefix: str) -> None:
    d = secret_digest(key, "v")
    assert d.startswith(prefix) and len(d) == len(prefix) + 64
    assert derive_key("", "x") == "" and derive_key("k", "a") != derive_key("k", "b")
