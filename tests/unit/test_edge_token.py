"""The agent's token file: what a change to it does to the token in force."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeplane.edge.token import TokenFile


@pytest.mark.parametrize(
    ("change", "in_force"),
    [
        (None, "first"),  # untouched
        ("second\n", "second"),  # rewritten: the new token, trimmed
        ("", "first"),  # emptied (a half-written rotation): keep the current one
        ("  \n", "first"),
        ("DELETE", "first"),  # gone for a moment: keep the current one
    ],
)
def test_refresh(tmp_path: Path, change: str | None, in_force: str) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    token = TokenFile.read(path)
    if change == "DELETE":
        path.unlink()
    elif change is not None:
        swap = tmp_path / "swap"
        swap.write_text(change)
        swap.replace(path)  # as kubelet swaps a Secret volume
    token.refresh()
    assert token.value == in_force


def test_an_empty_file_at_start_is_refused(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        TokenFile.read(tmp_path / "token")
