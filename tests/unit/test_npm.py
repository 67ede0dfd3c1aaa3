"""Finding the npm packages edgeplane pins, and the version its lockfile pins them at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeplane.npm import find_pinned, lockfile_of

REPO = Path(__file__).resolve().parents[2]


def test_the_pinned_esbuild_is_the_lockfiles() -> None:
    found = find_pinned(Path("esbuild"))
    assert found == REPO / "node_modules" / "esbuild"
    lock = json.loads((REPO / "package-lock.json").read_text())
    assert lockfile_of(found) == (
        REPO / "package-lock.json", lock["packages"]["node_modules/esbuild"]["version"]
    )


@pytest.mark.parametrize(
    ("lock", "package", "expected"),
    [
        ({"packages": {"node_modules/esbuild": {"version": "0.28.2"}}}, "esbuild", "0.28.2"),
        ({"packages": {"node_modules/@esbuild/linux-x64": {"version": "0.28.2"}}},
         "@esbuild/linux-x64", "0.28.2"),
        ({"packages": {}}, "esbuild", None),  # installed, but not by this lockfile
        (None, "esbuild", None),  # no lockfile
        ("not json", "esbuild", None),
    ],
)
def test_lockfile_of(
    tmp_path: Path, lock: object, package: str, expected: str | None
) -> None:
    if lock is not None:
        text = lock if isinstance(lock, str) else json.dumps(lock)
        (tmp_path / "package-lock.json").write_text(text)
    got = lockfile_of(tmp_path / "node_modules" / package)
    assert got == (None if expected is None else (tmp_path / "package-lock.json", expected))
