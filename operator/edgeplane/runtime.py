"""Finding the workerd binary that the npm lockfile pins."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from functools import cache
from pathlib import Path

_ARCH = {"x86_64": "64", "amd64": "64", "aarch64": "arm64", "arm64": "arm64"}


def _native_package() -> str:
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    return f"@cloudflare/workerd-{system}-{arch}"


def find_workerd() -> Path:
    """The native workerd binary: $EDGEPLANE_WORKERD, else node_modules near the package or
    the working directory (the native binary, not npm's node wrapper), else $PATH."""
    explicit = os.environ.get("EDGEPLANE_WORKERD")
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise FileNotFoundError(f"EDGEPLANE_WORKERD={explicit} is not an executable file")
        return path
    rel = Path("node_modules") / _native_package() / "bin" / "workerd"
    for base in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in (base, *base.parents):
            candidate = parent / rel
            if candidate.is_file():
                return candidate
    on_path = shutil.which("workerd")
    if on_path:
        return Path(on_path)
    raise FileNotFoundError(
        "workerd not found: run `npm ci` at the repository root, or set EDGEPLANE_WORKERD"
    )


@cache
def workerd_version(path: Path | None = None) -> str:
    """e.g. "2026-11-17", as `workerd --version` prints it after the program name."""
    out = subprocess.run(
        [str(path or find_workerd()), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[-1]
