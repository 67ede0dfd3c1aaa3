"""`edgeplane import` arguments (pure parts)."""

from __future__ import annotations

import pytest

from edgeplane.wrangler.cli import target_label


@pytest.mark.parametrize(
    ("item", "label"),
    [
        ("tier=edge", ("tier", "edge")),
        ("edgeplane.io/region=eu-central", ("edgeplane.io/region", "eu-central")),
        ("tier=", ("tier", "")),
        ("a=b=c", ("a", "b=c")),
        ("region=not a value", ("region", "not a value")),  # values: checked with the Worker
    ],
)
def test_target_label(item: str, label: tuple[str, str]) -> None:
    assert target_label(item) == label


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("no-equals-sign", "--target 'no-equals-sign': expected LABEL=VALUE"),
        ("=v", "--target '=v': expected LABEL=VALUE"),
        ("bad key=x", "--target 'bad key=x': 'bad key' is not a valid label key"),
        ("a/b/c=x", "'a/b/c' is not a valid label key"),
    ],
)
def test_target_label_refuses(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        target_label(item)
