"""Runs esbuild on a wrangler project, as wrangler's bundle step does: esbuild.mjs under
node with the esbuild edgeplane pins in its package-lock.json. The options and the
meaning of esbuild's messages come from build.py; this module only runs and reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeplane.npm import find_pinned, lockfile_of
from edgeplane.wrangler.build import (
    SKIPPED_DIRS,
    Fixes,
    Message,
    Plan,
    bundle_error,
    explain,
)
from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.modules import Module

SCRIPT = Path(__file__).with_name("esbuild.mjs")
TIMEOUT = 300.0  # a big project on a slow machine; esbuild itself takes seconds
# The lockfiles npm, pnpm, yarn and bun write, for saying which one pinned the packages.
LOCKFILES = ("package-lock.json", "pnpm-lock.yaml", "yarn.lock", "bun.lock", "bun.lockb")


@dataclass
class Bundled:
    """A bundled Worker: its modules (the bundle first) and what to say about them."""

    modules: list[Module]
    unresolved: list[str] = field(default_factory=list)  # left as imports: will not load
    warnings: list[str] = field(default_factory=list)
    summary: str = ""  # for the YAML header: what was bundled, with what, from where


def find_esbuild() -> Path:
    """The esbuild package: $EDGEPLANE_ESBUILD, else the one edgeplane's lockfile pins."""
    explicit = os.environ.get("EDGEPLANE_ESBUILD")
    found = Path(explicit) if explicit else find_pinned(Path("esbuild"))
    if found is None or not (found / "package.json").is_file():
        where = f"EDGEPLANE_ESBUILD={explicit} is not" if explicit else "no"
        raise WranglerImportError(
            f"{where} esbuild package found: run `npm ci` in edgeplane's repository (it pins "
            "esbuild), or set EDGEPLANE_ESBUILD to an esbuild package directory"
        )
    return found


def _node_compat(plan: Plan) -> dict[str, Any]:
    """What esbuild.mjs needs for the Node.js mode: with "v2", where Cloudflare's unenv
    preset and unenv are (pinned beside esbuild) and the date and flags it reads."""
    mode: dict[str, Any] = {"mode": plan.node_mode}
    if plan.node_mode != "v2":
        return mode
    dirs = {k: find_pinned(Path(p)) for k, p in
            (("preset", "@cloudflare/unenv-preset"), ("unenv", "unenv"))}
    if None in dirs.values():
        raise WranglerImportError(
            "nodejs_compat needs Cloudflare's unenv preset: run `npm ci` in edgeplane's "
            "repository (it pins @cloudflare/unenv-preset and unenv)"
        )
    return {**mode, **{k: str(d) for k, d in dirs.items()}, "date": plan.date,
            "flags": list(plan.flags)}


def find_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise WranglerImportError("bundling needs Node.js (`node` on PATH) to run esbuild")
    return node


def project_files(base_dir: Path) -> Iterator[Path]:
    """Every file under base_dir, outside dependencies and tool state."""
    for dirpath, dirnames, filenames in os.walk(base_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            yield Path(dirpath, name)


def run(plan: Plan, root: Path, worker: str, allow_incomplete: bool) -> Bundled:
    """Bundle plan.entry; a WranglerImportError names the first thing that stops it."""
    esbuild = find_esbuild()
    request = {
        "esbuild": str(esbuild),
        "entry": str(plan.entry),
        "projectRoot": str(root),
        "outName": plan.out_name,
        "options": plan.options,
        "additional": {path: name for path, (name, _) in plan.additional.items()},
        "separate": plan.separate,
        "nodeCompat": _node_compat(plan),
        "allowIncomplete": allow_incomplete,
    }
    try:
        proc = subprocess.run(
            [find_node(), str(SCRIPT)], input=json.dumps(request), capture_output=True,
            text=True, timeout=TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired:
        raise WranglerImportError(
            f"{worker}: esbuild did not finish within {TIMEOUT:.0f} s; is an import "
            "resolving into a huge directory (base_dir, a symlink loop)?"
        ) from None
    try:
        res = json.loads(proc.stdout)
    except ValueError:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise WranglerImportError(f"{worker}: esbuild did not run: {last}") from None
    has_package_json = (root / "package.json").is_file()
    builtins = frozenset(res.get("builtins", ()))
    if not res["ok"]:
        errors = [Message.of(e) for e in res["errors"]]
        not_utf8 = frozenset(e.file for e in errors if e.file and not _utf8(root / e.file))
        raise bundle_error(errors, Fixes(has_package_json, builtins, not_utf8), worker)
    fixes = Fixes(has_package_json, builtins)
    return Bundled(
        modules=[Module(plan.out_name, "esModule", res["bundle"].encode()),
                 *_additional(plan, set(res["imported"])),
                 *(Module(name, o["type"], Path(o["path"]).read_bytes())
                   for name, o in sorted(res["outside"].items()))],
        unresolved=[f'"{u["spec"]}" (imported by {u["importer"]})' for u in res["unresolved"]],
        warnings=[f"{worker}: esbuild: {explain(Message.of(w), fixes)}" for w in res["warnings"]],
        summary=_summary(plan, root, esbuild, res),
    )


def _utf8(path: Path) -> bool:
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return False
    except OSError:
        pass
    return True


def _additional(plan: Plan, imported: set[str]) -> list[Module]:
    """The separate modules: those the bundle imports, or all of them with
    find_additional_modules (plan.find_all), since code may import them by computed name."""
    return [
        Module(name, kind, Path(path).read_bytes())
        for path, (name, kind) in sorted(plan.additional.items(), key=lambda i: i[1][0])
        if plan.find_all or name in imported
    ]


def _summary(plan: Plan, root: Path, esbuild: Path, res: dict[str, Any]) -> str:
    by = f"esbuild {res['version']}"
    ours = lockfile_of(esbuild.resolve())
    if ours:
        by += " (pinned by edgeplane's package-lock.json)"
    n = len(res["inputs"])
    line = (f"bundled {plan.entry.relative_to(root)} with {by}: {n} input "
            f"file{'' if n == 1 else 's'}")
    packages: dict[str, dict[str, str]] = res["packages"]
    if packages:
        listed = ", ".join(f"{n}@{p['version']}" for n, p in sorted(packages.items()))
        locks = sorted({_shown(package_lockfile(Path(p["dir"])), root, ours and ours[0])
                        for p in packages.values()})
        line += f"; npm packages {listed} (from {', '.join(locks)})"
    return line


def package_lockfile(package_dir: Path) -> Path | None:
    """The lockfile that pinned an installed package: in the nearest directory above it
    that is not a node_modules (the project's, or a monorepo's root)."""
    for d in package_dir.resolve().parents:
        if "node_modules" in d.parts:
            continue
        for name in LOCKFILES:
            if (d / name).is_file():
                return d / name
    return None


def _shown(lock: Path | None, root: Path, ours: Path | None) -> str:
    """A lockfile as the header shows it: edgeplane's by that name (unenv's polyfills come
    from there), else from the project's directory when it is near."""
    if lock is None:
        return "no lockfile"
    if lock == ours:
        return "edgeplane's package-lock.json"
    rel = Path(os.path.relpath(lock, root))
    return str(rel if len(rel.parts) <= 4 else lock)
