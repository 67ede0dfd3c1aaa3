"""The `edgeplane` command: a thin dispatcher; each subcommand parses its own arguments."""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, function taking argv and returning an exit code, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "cluster": ("edgeplane.localstack.cluster", "main", "run a local Kubernetes control plane"),
    "crds": ("edgeplane.api.crdgen", "main", "write CustomResourceDefinitions from the models"),
    "agent": ("edgeplane.edge.app", "main", "run an edge agent in front of workerd"),
    "operator": ("edgeplane.operator_main", "main", "run the operator"),
    "demo": ("edgeplane.localstack.demo", "main", "run the whole stack locally"),
    "import": ("edgeplane.wrangler", "main", "write manifests from a wrangler.toml/jsonc"),
    "sign": ("edgeplane.sign", "main", "sign version override headers to test a version"),
    "rollout": ("edgeplane.rolloutcli", "main", "status, promote, abort or undo a rollout"),
    "tail": ("edgeplane.tailcli", "main", "stream a Worker's live logs from its locations"),
    "push": ("edgeplane.pushcli", "main", "publish a wrangler project's modules to a registry"),
}


def usage() -> str:
    lines = ["usage: edgeplane <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        from edgeplane import __version__

        print(__version__)
        return 0
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(f"edgeplane: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, func, _ = entry
    return int(getattr(importlib.import_module(module), func)(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
