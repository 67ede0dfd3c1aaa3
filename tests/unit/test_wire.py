"""The one redaction rule for every message that leaves the operator or the agent."""

from __future__ import annotations

import pytest

from edgeplane.wire import (
    Bundle,
    BundleBinding,
    BundleModule,
    Deployment,
    Exclusions,
    redact,
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
