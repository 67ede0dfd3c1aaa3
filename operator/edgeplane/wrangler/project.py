"""Reading a wrangler project from disk: the config file, the entry module and every module
it imports, and .dev.vars. The I/O half of `edgeplane import`; manifests.py turns what is
read here into manifests without touching the filesystem."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from typing import Any

from edgeplane.compile.assets import IGNORE_FILE, ignored
from edgeplane.wrangler import bundle
from edgeplane.wrangler.assets import ASSETS_ONLY_MAIN, assets_docs, assets_table
from edgeplane.wrangler.bindings import declared_secrets
from edgeplane.wrangler.build import (
    Plan,
    additional_modules,
    compactions,
    esbuild_options,
    out_name,
    separate_extensions,
)
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
from edgeplane.wrangler.manifests import (
    CONFIG_MAP_BUDGET,
    Options,
    Result,
    Sources,
    add_worker,
    stored_size,
)
from edgeplane.wrangler.modules import Module, Rules, candidates, module_graph
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
    try:
        for env in envs:
            cfg = environment(top, env, path.name)
            name = worker_name(cfg, top, env)
            sources = read_sources(cfg, top, env, name, path.parent, opts, result.warnings)
            add_worker(cfg, top, name, sources, opts, result)
    except WranglerImportError as e:
        e.warnings = result.warnings  # said before the error, not lost with the output
        raise
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
    """The Worker's modules (bundled, or with no_bundle as they are), and .dev.vars if
    secrets come from there."""
    site = assets_table(cfg, top)
    assets = _assets(site, name, root, opts) if site else None
    if site and not (opts.main is not None or inherited(cfg, top, "main")):
        return Sources([ASSETS_ONLY_MAIN], [], None, "assets only: no main", assets)
    main, base_dir = entry_point(cfg, top, name, root, opts)
    rules = Rules.from_config(inherited(cfg, top, "rules"), warn)
    if inherited(cfg, top, "no_bundle"):
        modules, incomplete, summary = _unbundled(main, base_dir.resolve(), rules, root)
    else:
        bundled = _bundle(_plan(cfg, top, main, base_dir, rules, root), root.resolve(), name,
                          opts.allow_incomplete)
        warn += bundled.warnings
        modules, incomplete, summary = bundled.modules, bundled.unresolved, bundled.summary
    declared = declared_secrets(cfg.get("secrets"))
    return Sources(modules, incomplete, read_dev_vars(root, env) if declared is None else None,
                   summary, assets)


def _assets(
    site: Mapping[str, Any], name: str, root: Path, opts: Options
) -> tuple[dict[str, Any], dict[str, Any]]:
    """[assets]: the directory's regular files (those .assetsignore leaves in) as a
    ConfigMap, and spec.assets."""
    directory = (root / str(site["directory"])).resolve()
    if not directory.is_dir():
        raise WranglerImportError(
            f"{name}: assets.directory {site['directory']} not found; run the project's "
            "build first if it makes that directory"
        )
    files = {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }
    patterns = files.pop(IGNORE_FILE, b"").decode("utf-8", errors="replace").splitlines()
    kept = {p: b for p, b in files.items() if not ignored(p, patterns)}
    return assets_docs(name, site, kept, opts.namespace)


def _bundle(plan: Plan, root: Path, name: str, allow_incomplete: bool) -> bundle.Bundled:
    """The bundle, built again smaller while it does not fit one ConfigMap (a module's
    home); said in the header and a warning, never silently."""
    bundled = bundle.run(plan, root, name, allow_incomplete)
    size = stored_size(bundled.modules[0])
    for what, options in compactions(plan.options):
        if size <= CONFIG_MAP_BUDGET:
            break
        smaller = bundle.run(replace(plan, options=options), root, name, allow_incomplete)
        new_size = stored_size(smaller.modules[0])
        note = (f"minified ({what}) to fit one ConfigMap: {size:,.0f} -> {new_size:,.0f} "
                "bytes; set minify = true to choose this yourself, or serve the bundle "
                "from a url module")
        smaller.summary += f"; {note}"
        smaller.warnings.append(f"{name}: {note}")
        bundled, size = smaller, new_size
    return bundled


def _plan(
    cfg: Mapping[str, Any], top: Mapping[str, Any], main: Path, base_dir: Path, rules: Rules,
    root: Path,
) -> Plan:
    date = inherited(cfg, top, "compatibility_date")
    flags = [str(f) for f in inherited(cfg, top, "compatibility_flags") or []]
    find_all = bool(inherited(cfg, top, "find_additional_modules"))
    return Plan(
        entry=main,
        out_name=out_name(main),
        options=esbuild_options(cfg, top, root.resolve(), str(date or ""), flags),
        date=str(date or ""),
        flags=tuple(flags),
        additional=additional_modules(
            bundle.project_files(base_dir.resolve()), base_dir.resolve(), main, rules, find_all
        ),
        find_all=find_all,
        separate=separate_extensions(rules),
    )


def _unbundled(
    main: Path, base_dir: Path, rules: Rules, root: Path
) -> tuple[list[Module], list[str], str]:
    """no_bundle: the modules main imports, as they are, and (as wrangler uploads them)
    every other file under base_dir that a module rule matches."""
    modules, bare = module_graph(main.resolve(), DiskTree(base_dir), rules)
    have = {m.name for m in modules}
    extra = additional_modules(bundle.project_files(base_dir), base_dir, main, rules, True)
    modules += [
        Module(n, k, Path(p).read_bytes()) for p, (n, k) in sorted(extra.items())
        if n not in have
    ]
    home = root.resolve()
    where = base_dir.relative_to(home).as_posix() if base_dir.is_relative_to(home) else base_dir
    summary = f"not bundled (no_bundle): {len(modules)} modules from {where} as they are"
    # A package import is the bundler's job; workerd has no node_modules to look in.
    return modules, [f'"{b}" (a package, and no_bundle is set)' for b in sorted(bare)], summary


def entry_point(
    cfg: Mapping[str, Any], top: Mapping[str, Any], name: str, root: Path, opts: Options
) -> tuple[Path, Path]:
    """The main module (--main, else `main`) and the base_dir module names start from."""
    main_raw = opts.main if opts.main is not None else inherited(cfg, top, "main")
    if not main_raw:
        if inherited(cfg, top, "assets") or top.get("pages_build_output_dir"):
            raise WranglerImportError(
                f"{name}: no `main`: only static assets (assets / pages_build_output_dir), "
                "which edgeplane does not serve yet; a Worker needs main, its entry file"
            )
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
    base_dir = (root / base_raw).resolve() if base_raw else main.parent
    if not main.is_relative_to(base_dir):
        raise WranglerImportError(
            f"{name}: base_dir {base_raw}: main {main_raw} is not inside it, and module names "
            "start from base_dir; set base_dir to a directory that holds main"
        )
    return main, base_dir


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
