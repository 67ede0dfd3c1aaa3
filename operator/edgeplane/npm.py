"""The npm packages edgeplane pins in its package-lock.json (workerd, esbuild): where they
were installed, and the version the lockfile pins."""

from __future__ import annotations

import json
from pathlib import Path


def find_pinned(rel: Path) -> Path | None:
    """`node_modules/<rel>` in the nearest directory above this package, else above the
    working directory: where `npm ci` at the repository root puts it."""
    for base in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in (base, *base.parents):
            candidate = parent / "node_modules" / rel
            if candidate.exists():
                return candidate
    return None


def lockfile_of(package_dir: Path) -> tuple[Path, str] | None:
    """The package-lock.json that pinned the package installed at
    `<root>/node_modules/<name>`, and the version it pins; None without one."""
    parts = package_dir.parts
    if "node_modules" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("node_modules")
    root = Path(*parts[:i])
    lock = root / "package-lock.json"
    try:
        entry = json.loads(lock.read_text())["packages"][Path(*parts[i:]).as_posix()]
        return lock, str(entry["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
