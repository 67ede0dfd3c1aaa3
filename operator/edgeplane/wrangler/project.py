"""Reading a wrangler project from disk: the config file, the entry module and every module
it imports, and .dev.vars. The I/O half of `edgeplane import`; manifests.py turns what is
read here into manifests without touching the filesystem."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from edgeplane.wrangler.bindings import declared_secrets
from edgeplane.wrangler.config import (
    CONFIG_NAMES,
    DevVars,
    decode_text,
    dev_vars_files,
    environment,
    inherited,
    parse_config,
    refuse_python_worker,
    worker_name,
)
from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.manifests import Options, Result, Sources, add_worker
from edgeplane.wrangler.modules import Rules, candidates, module_graph
from edgeplane.wrangler.routes import conflict_warnings
from edgeplane.wrangler.shape import check_config

DEFAULT_OPTIONS = Options()


def convert(
    config_path: Path, envs: Iterable[str | None] = (None,), opts: Options = DEFAULT_OPTIONS
) -> Result:
    """Manifests for the given environments (None: the top level) of one wrangler project."""
    path = find_config(config_path)
    top = load_config(path)
    result = Result(warnings=shadowed_configs(path))
    for env in envs:
        cfg = environment(top, env, path.name)
        name = worker_name(cfg, top, env)
        sources = read_sources(cfg, top, env, name, path.parent, opts, result.warnings)
        add_worker(cfg, top, name, sources, opts, result)
    result.warnings += conflict_warnings(result.docs)
    return result


def find_config(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = [path / n for n in CONFIG_NAMES if (path / n).is_file()]
        if found:
            # wrangler prefers its JSON formats over TOML when both are present.
            return found[0]
        raise WranglerImportError(f"{path}: no {', '.join(CONFIG_NAMES)} in this directory")
    raise WranglerImportError(f"{path}: no such file or directory")


def shadowed_configs(path: Path) -> list[str]:
    """Warnings for the other config files beside the one read: wrangler reads only the
    first of CONFIG_NAMES, so the rest are easy to edit in vain."""
    if path.name not in CONFIG_NAMES:
        return []
    others = [n for n in CONFIG_NAMES if n != path.name and (path.parent / n).is_file()]
    return [f"{n} is ignored: {path.name} is read instead, as wrangler does" for n in others]


def load_config(path: Path) -> dict[str, Any]:
    """The configuration, its mapped keys checked for type (shape.py)."""
    top = parse_config(decode_text(path.read_bytes(), path.name), path)
    try:
        check_config(top)
    except WranglerImportError as e:
        raise WranglerImportError(f"{path.name}: {e}") from None
    return top


def read_sources(
    cfg: Mapping[str, Any],
    top: Mapping[str, Any],
    env: str | None,
    name: str,
    root: Path,
    opts: Options,
    warn: list[str],
) -> Sources:
    """The module graph from the Worker's main, and .dev.vars if secrets come from there."""
    main, base_dir = entry_point(cfg, top, name, root, opts)
    rules = Rules.from_config(inherited(cfg, top, "rules"), warn)
    modules, bare = module_graph(main.resolve(), DiskTree(base_dir.resolve()), rules)
    declared = declared_secrets(cfg.get("secrets"))
    return Sources(modules, bare, read_dev_vars(root, env) if declared is None else None)


def entry_point(
    cfg: Mapping[str, Any], top: Mapping[str, Any], name: str, root: Path, opts: Options
) -> tuple[Path, Path]:
    """The main module (--main, else `main`) and the base_dir module names start from."""
    main_raw = opts.main if opts.main is not None else inherited(cfg, top, "main")
    if not main_raw:
        raise WranglerImportError(
            f"{name}: no `main`; edgeplane runs ES module Workers: set main to the entry file"
        )
    refuse_python_worker(cfg, top, name, main_raw)
    main = (root / Path(main_raw)).resolve() if not Path(main_raw).is_absolute() else Path(
        main_raw
    )
    if not main.is_file():
        given = "--main" if opts.main is not None else "main"
        raise WranglerImportError(f"{name}: {given} {main_raw} not found")
    base_raw = inherited(cfg, top, "base_dir")
    # Without base_dir, modules are named from main's directory, as wrangler does.
    return main, (root / base_raw).resolve() if base_raw else main.parent


@dataclass(frozen=True)
class DiskTree:
    """A project directory as module_graph's SourceTree."""

    base_dir: Path

    def find(self, parts: Sequence[str]) -> Path | None:
        found = next((p for p in candidates(self.base_dir.joinpath(*parts)) if p.is_file()), None)
        return None if found is None else found.resolve()

    def read(self, path: PurePath) -> bytes:
        return Path(path).read_bytes()


def read_dev_vars(root: Path, env: str | None) -> DevVars | None:
    for file in dev_vars_files(env):
        path = root / file
        if path.is_file():
            return DevVars(file, path.read_bytes())
    return None
