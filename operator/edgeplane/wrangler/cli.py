"""The `edgeplane import` command: arguments in, YAML and messages out."""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from pathlib import Path

from edgeplane.api.common import LABEL_KEY_RE
from edgeplane.wrangler.check import check_all
from edgeplane.wrangler.config import all_environments
from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.manifests import Options, Result
from edgeplane.wrangler.output import messages, render
from edgeplane.wrangler.project import convert, find_config, load_config

PREFIX = "edgeplane import:"


def main(argv: list[str] | None = None) -> int:
    """Exit 0 with the manifests, 1 for a project to fix (one line saying what), 2 for a
    usage error or a bug in edgeplane; never a traceback."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        labels = tuple(target_label(item) for item in args.target)
    except ValueError as e:
        parser.error(str(e))
    try:
        return _run(args, labels)
    except WranglerImportError as e:
        for w in e.warnings:
            print(f"{PREFIX} warning: {w}", file=sys.stderr)
        return _fail(1, f"error: {e}")
    except OSError as e:
        # Unreadable project files, or an -o that cannot be written.
        return _fail(1, f"error: {e.filename or args.config}: {e.strerror or e}")
    except Exception as e:  # a bug: say where, not the values (they may be secret)
        return _fail(2, f"internal error: {type(e).__name__} at {_where(e)}; this is a bug "
                     "in edgeplane, please report it")


def _run(args: argparse.Namespace, labels: tuple[tuple[str, str], ...]) -> int:
    path = find_config(Path(args.config))
    envs: list[str | None]
    if args.all_envs:
        envs = all_environments(load_config(path))
    else:
        envs = list(args.env) if args.env else [None]
    # --main is read from the current directory, as wrangler reads its script argument
    # (Node's path.resolve: lexical, so `..` is taken off before any link is followed).
    main = None if args.main is None else Path(os.path.abspath(args.main))
    opts = Options(namespace=args.namespace, main=main, target_labels=labels,
                   allow_incomplete=args.allow_incomplete)
    result = convert(path, envs, opts)
    if args.check and not _checked(result):
        return 1
    # YAML is UTF-8 whatever the locale says.
    text = render(result, path.name)
    stdout = getattr(sys.stdout, "buffer", None)  # absent when stdout is a StringIO
    if args.output:
        args.output.write_bytes(text.encode("utf-8"))
    elif stdout is None:
        sys.stdout.write(text)
    else:
        sys.stdout.flush()
        stdout.write(text.encode("utf-8"))
        stdout.flush()
    for line in messages(result):
        print(line, file=sys.stderr)
    return 0


def _checked(result: Result) -> bool:
    """--check: every Worker starts in a throw-away workerd; otherwise nothing is written
    and the warnings and workerd's first error are said."""
    outcomes = check_all(result.docs)
    for o in outcomes:
        print(f"{PREFIX} {o.line()}", file=sys.stderr)
    if all(o.started for o in outcomes):
        return True
    for w in result.warnings:
        print(f"{PREFIX} warning: {w}", file=sys.stderr)
    return False


def _fail(code: int, message: str) -> int:
    print(f"{PREFIX} {message}", file=sys.stderr)
    return code


def _where(e: BaseException) -> str:
    """The file and line the exception was raised at, for a bug report."""
    tb = traceback.extract_tb(e.__traceback__)
    if not tb:
        return "unknown"
    frame = tb[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def target_label(item: str) -> tuple[str, str]:
    """LABEL=VALUE from --target; a ValueError says what is wrong with it. The value is
    checked later, with the Worker, as the apiserver checks it."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--target {item!r}: expected LABEL=VALUE")
    if not re.fullmatch(LABEL_KEY_RE, key):
        raise ValueError(f"--target {item!r}: {key!r} is not a valid label key")
    return key, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeplane import",
        description="Write Worker, WorkerRoute and ConfigMap manifests from a wrangler "
        "project (wrangler.toml, wrangler.jsonc or wrangler.json). The Worker is bundled as "
        "`wrangler deploy` bundles it: TypeScript, JSX and npm packages (installed in the "
        "project's node_modules) with the esbuild edgeplane pins, honouring main, rules, "
        "base_dir, find_additional_modules, no_bundle, minify, keep_names, define, alias, "
        "tsconfig, jsx_factory, jsx_fragment and the nodejs_compat flags.",
        epilog="Exit status: 0 manifests written; 1 the project needs a change (one line "
        "says which key or file, and what to do); 2 a usage error or a bug in edgeplane.",
    )
    parser.add_argument(
        "config", nargs="?", default=".",
        help="the wrangler config file, or a directory holding one (default: .)",
    )
    parser.add_argument(
        "-e", "--env", action="append", default=None,
        help="import this [env.NAME] instead of the top level (repeatable)",
    )
    parser.add_argument(
        "--all-envs", action="store_true",
        help="import the top level and every environment",
    )
    parser.add_argument("-n", "--namespace", help="set metadata.namespace on every object")
    parser.add_argument(
        "--main", type=Path,
        help="entry module to use instead of `main` (e.g. a bundler's JavaScript output); "
        "a relative path is from the current directory, as wrangler reads it",
    )
    parser.add_argument(
        "--target", action="append", default=[], metavar="LABEL=VALUE",
        help="run only on EdgeTargets with this label (repeatable); default: every target",
    )
    parser.add_argument(
        "--allow-incomplete", action="store_true",
        help="write a Worker even if some of its imports will not load (an npm package that "
        "is not installed, a package import with no_bundle); they are listed in the output's "
        "header. Without it such a Worker is refused (exit 1)",
    )
    parser.add_argument(
        "--check", action="store_true",
        help="before writing, start each Worker in a throw-away workerd (the one edgeplane "
        "pins; secrets empty, KV empty, services answering 503) and request /; if one does "
        "not start, say why and write nothing (exit 1)",
    )
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    return parser
