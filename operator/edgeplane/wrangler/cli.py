"""The `edgeplane import` command: arguments in, YAML and messages out."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from edgeplane.api.common import LABEL_KEY_RE
from edgeplane.wrangler.config import all_environments
from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.manifests import Options
from edgeplane.wrangler.output import messages, render
from edgeplane.wrangler.project import convert, find_config, load_config


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        labels = tuple(target_label(item) for item in args.target)
    except ValueError as e:
        parser.error(str(e))
    try:
        path = find_config(Path(args.config))
        envs: list[str | None]
        if args.all_envs:
            envs = all_environments(load_config(path))
        else:
            envs = list(args.env) if args.env else [None]
        opts = Options(namespace=args.namespace, main=args.main, target_labels=labels)
        result = convert(path, envs, opts)
    except WranglerImportError as e:
        print(f"edgeplane import: error: {e}", file=sys.stderr)
        return 1
    text = render(result, path.name)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    for line in messages(result):
        print(line, file=sys.stderr)
    return 0


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
        "project (wrangler.toml, wrangler.jsonc or wrangler.json).",
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
        help="entry module to use instead of `main` (e.g. a bundler's JavaScript output)",
    )
    parser.add_argument(
        "--target", action="append", default=[], metavar="LABEL=VALUE",
        help="run only on EdgeTargets with this label (repeatable); default: every target",
    )
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    return parser
