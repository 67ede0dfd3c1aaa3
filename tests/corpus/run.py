"""`edgeplane import` on a corpus of real public wrangler projects: each is imported as it
is and, if it imports, started in a throw-away workerd (`--check`). Prints one line a
project and the counts.

    python -m tests.corpus.run                 # the create-cloudflare templates (pinned)
    python -m tests.corpus.run DIR [DIR ...]   # every wrangler config under DIR as well

The default corpus is the templates create-cloudflare ships in its npm package: the
current release's (JSONC) in current/ and an older release's (TOML) in c3-2.25/, each
pinned by its package-lock.json with the packages its templates import (`npm ci` there
installs both). Each project is copied to a scratch directory beside a link to that
node_modules, with create-cloudflare's placeholders (<WORKER_NAME>, <COMPATIBILITY_DATE>,
"<TBD>") filled in as create-cloudflare fills them when it creates a project.

Each project falls in one of four kinds; the share that counts is of the first:
- supported: uses only what edgeplane supports;
- unsupported: uses a feature edgeplane does not support (a key that changes what the
  Worker does, or Python);
- build-first: its main module is made by its framework's build (a missing main with a
  build script in package.json, or a `virtual:` module a Vite plugin makes): wrangler
  deploy cannot deploy it without that build either;
- not-a-project: what wrangler deploy refuses as well: no name or compatibility_date (a
  test harness's config), no main and nothing else to deploy, or a main that is not
  there and no build that makes it (create-cloudflare's partial templates, which a
  framework's own generator completes).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgeplane.edge.workerd import workerd_version
from edgeplane.wrangler import Options, WranglerImportError, convert, load_config
from edgeplane.wrangler.check import check_one
from edgeplane.wrangler.config import CONFIG_NAMES, key_report

HERE = Path(__file__).resolve().parent
# create-cloudflare's current templates (JSONC) and those of an older release (TOML).
SETS = (HERE / "current", HERE / "c3-2.25")
# Keys that set how Cloudflare's platform runs or observes a Worker (logs, placement, CPU
# limits, the workers.dev route), not what it answers: a project using only these and
# mapped keys counts as using only what edgeplane supports.
PLATFORM_ONLY = frozenset({
    "observability", "placement", "limits", "workers_dev", "preview_urls", "logpush",
    "upload_source_maps",
})
SKIPPED = frozenset({"node_modules", ".git", ".wrangler"})


@dataclass(frozen=True)
class Outcome:
    project: str
    status: str  # started | not-started | refused | crashed
    kind: str  # supported | unsupported | build-first | not-a-project
    detail: str

    def line(self) -> str:
        return f"{self.status:12} {self.kind:14} {self.project}  {self.detail}"


def configs(root: Path) -> Iterator[Path]:
    """Each project's config under root: the first of CONFIG_NAMES in a directory."""
    for d in sorted({p.parent for name in CONFIG_NAMES for p in root.rglob(name)}):
        if SKIPPED & set(d.relative_to(root).parts):
            continue
        yield next(d / n for n in CONFIG_NAMES if (d / n).is_file())


def prepare(config: Path, root: Path) -> Path:
    """Fill create-cloudflare's placeholders in the (copied) project's config, as it fills
    them when it creates a project; the config."""
    rel = config.parent.relative_to(root)
    slug = re.sub(r"[^a-z0-9]+", "-", rel.as_posix().lower()).strip("-")[:50] or "worker"
    date = workerd_version()
    text = config.read_text(encoding="utf-8", errors="replace")
    text = text.replace("<WORKER_NAME>", slug).replace("<PACKAGE_NAME>", slug)
    text = text.replace("<COMPATIBILITY_DATE>", date)
    # Older releases wrote "<TBD>" for both.
    text = re.sub(r'("?name"?\s*[=:]\s*)"<TBD>"', rf'\1"{slug}"', text)
    text = re.sub(r'("?compatibility_date"?\s*[=:]\s*)"<TBD>"', rf'\1"{date}"', text)
    config.write_text(text, encoding="utf-8")
    return config


def copy_root(root: Path, scratch: Path, node_modules: Path) -> Path:
    """A copy of the whole tree (projects may reach outside their directory), with the
    corpus's node_modules linked at its top, where module resolution looks last."""
    copy = scratch / "tree"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(*SKIPPED), symlinks=True)
    (scratch / "node_modules").symlink_to(node_modules)
    return copy


def kind_of(config: Path) -> str:
    """Which of the four kinds (see the module's docstring) a prepared project is."""
    try:
        top = load_config(config)
    except WranglerImportError:
        return "supported"  # a config edgeplane cannot read is a refusal that counts
    main = top.get("main")
    if not top.get("name") or not top.get("compatibility_date"):
        return "not-a-project"  # wrangler deploy refuses it too (a test harness's config)
    if not isinstance(main, str) or not (config.parent / main).is_file():
        package = config.parent / "package.json"
        builds = package.is_file() and '"build"' in package.read_text(errors="replace")
        return "build-first" if isinstance(main, str) and builds else "not-a-project"
    if any(_imports_virtual(p) for p in config.parent.rglob("*.[jt]s*")):
        return "build-first"
    unsupported = key_report(top).unsupported
    python = main.endswith(".py")
    return "unsupported" if python or set(unsupported) - PLATFORM_ONLY else "supported"


def _imports_virtual(path: Path) -> bool:
    return path.is_file() and re.search(
        r"""["']virtual:""", path.read_text(errors="replace")
    ) is not None


async def run_one(config: Path, root: Path, label: str) -> Outcome:
    name = f"{label}/{config.parent.relative_to(root).as_posix()}"
    prepared = prepare(config, root)
    kind = kind_of(prepared)
    try:
        result = convert(prepared, [None], Options())
    except WranglerImportError as e:
        return Outcome(name, "refused", kind, str(e))
    except Exception as e:  # a bug: the command would say "internal error"
        return Outcome(name, "crashed", kind, f"{type(e).__name__}: {e}")
    maps = {d["metadata"]["name"]: d for d in result.docs if d["kind"] == "ConfigMap"}
    workers = [d for d in result.docs if d["kind"] == "Worker"]
    checks = [await check_one(w, maps) for w in workers]
    if all(c.started for c in checks):
        return Outcome(name, "started", kind, "; ".join(c.detail for c in checks))
    return Outcome(name, "not-started", kind,
                   "; ".join(c.detail for c in checks if not c.started))


async def run(roots: list[tuple[Path, Path]]) -> list[Outcome]:
    """Every project under each root, with the node_modules given beside it."""
    out: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="edgeplane-corpus-") as tmp:
        for i, (root, node_modules) in enumerate(roots):
            scratch = Path(tmp) / str(i)
            scratch.mkdir()
            copy = copy_root(root, scratch, node_modules)
            label = root.parents[2].name if root.parent.name == "create-cloudflare" else root.name
            for config in configs(copy):
                out.append(await run_one(config, copy, label))
    return out


def default_roots() -> list[tuple[Path, Path]]:
    return [(s / "node_modules" / "create-cloudflare" / "templates", s / "node_modules")
            for s in SETS]


def summary(outcomes: list[Outcome]) -> list[str]:
    lines = [f"projects: {len(outcomes)}"]
    for kind in ("supported", "unsupported", "build-first", "not-a-project"):
        of_kind = [o for o in outcomes if o.kind == kind]
        statuses = Counter(o.status for o in of_kind)
        lines.append(f"  {kind}: {len(of_kind)} ("
                     + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) + ")")
    lines.append(f"supported projects imported and started in workerd: {share(outcomes)}")
    return lines


def share(outcomes: list[Outcome]) -> str:
    supported = [o for o in outcomes if o.kind == "supported"]
    ok = sum(o.status == "started" for o in supported)
    return f"{ok}/{len(supported)} ({100 * ok / max(len(supported), 1):.0f}%)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="more directories of projects")
    parser.add_argument("--node-modules", type=Path, default=SETS[0] / "node_modules",
                        help="the packages the projects in DIRs import")
    args = parser.parse_args(argv)
    roots = default_roots()
    missing = [r for r, _ in roots if not r.is_dir()]
    if missing:
        print(f"{missing[0]} is missing: run `npm ci` in {SETS}", file=sys.stderr)
        return 2
    roots += [(d.resolve(), args.node_modules.resolve()) for d in args.dirs]
    outcomes = asyncio.run(run(roots))
    for o in outcomes:
        print(o.line())
    print("\n".join(summary(outcomes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
