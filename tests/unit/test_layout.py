"""The layout's promise, checked: modules decide or do I/O, never both. A module not named
below as doing I/O must import nothing that reaches a process, a socket, a file or the
clock, nor any module that does; and no function in the package grows past ~60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "edgeplane"

# Modules that do I/O, each with why. Every other module is a pure decision or a model.
IO_MODULES = {
    "edgeplane.cli": "the command line",
    "edgeplane.sign": "`edgeplane sign`: reads the key file",
    "edgeplane.rolloutcli": "`edgeplane rollout`: the caller's kubeconfig, the apiserver",
    "edgeplane.tailcli": "`edgeplane tail`: the kubeconfig, the operator's stream",
    "edgeplane.budget": "waits for bytes in flight (asyncio)",
    "edgeplane.operator_main": "the operator process",
    "edgeplane.tailserver": "the operator's live-log endpoint (TokenReview, agents' streams)",
    "edgeplane.handlers": "kopf wiring",
    "edgeplane.controller": "the caches, the queue and the timers",
    "edgeplane.kube": "the apiserver",
    "edgeplane.resolve.sources": "reads what Workers reference",
    "edgeplane.resolve.download": "downloads url modules",
    "edgeplane.resolve.oci": "pulls and pushes OCI artifacts",
    "edgeplane.pushcli": "`edgeplane push`: reads the project, uploads to a registry",
    "edgeplane.versions.store": "WorkerVersions and archives in the apiserver",
    "edgeplane.versions.registry": "pushes, pulls and deletes version artifacts",
    "edgeplane.distribute.client": "the agents' API",
    "edgeplane.distribute.fleet": "asks the agents, reads their credentials, writes status",
    "edgeplane.report.writer": "status and Events",
    "edgeplane.reconcile": "the loops that call the steps",
    "edgeplane.edge.agent": "the agent: its state, batches and probes",
    "edgeplane.edge.app": "the agent's HTTP API and process",
    "edgeplane.edge.cron": "sleeps to each cron occurrence and runs it in a cell",
    "edgeplane.edge.cells": "the front and cell workerds, their state pushes, the watchdog",
    "edgeplane.edge.store": "the durable store of accepted deployments",
    "edgeplane.edge.blobs": "the content-addressed blob store on disk",
    "edgeplane.edge.pull": "pulls blobs from a registry into the blob store",
    "edgeplane.edge.assets": "the static sites on disk, made from blobs",
    "edgeplane.edge.supervise": "the supervisor that starts the agent again when it dies",
    "edgeplane.edge.tail": "the live-log sink and streams",
    "edgeplane.edge.token": "re-reads the token file",
    "edgeplane.edge.validate": "the validator cell that loads new versions",
    "edgeplane.edge.workerd": "finding and running workerd",
    "edgeplane.npm": "finds the pinned npm packages and reads their lockfile",
    "edgeplane.wrangler.bundle": "runs esbuild on a wrangler project",
    "edgeplane.wrangler.check": "starts the imported Worker in a throw-away workerd",
    "edgeplane.localstack": "the local control plane for tests and the demo",
    "edgeplane.wrangler.project": "reads a wrangler project",
    "edgeplane.wrangler.cli": "`edgeplane import`: arguments, output files",
    "edgeplane.api.crdgen": "writes crds/ (its generation is pure; main writes files)",
    "edgeplane.api.refdoc": "writes docs/reference.md (likewise)",
}
# Packages whose __init__ re-exports an I/O entry point, while their other modules are pure.
IO_PACKAGE_INITS = {"edgeplane.wrangler": "exports the command's main"}
# Standard and third-party modules that reach outside the process, or the clock; pure
# path arithmetic (pathlib.PurePath) is fine, pathlib.Path is not.
FORBIDDEN = {
    "aiohttp",
    "asyncio",
    "http",
    "kopf",
    "kubernetes",
    "kubernetes_asyncio",
    "os",
    "pathlib.Path",
    "shutil",
    "socket",
    "ssl",
    "subprocess",
    "sys",
    "time",
    "urllib.request",
}
FORBIDDEN_CALLS = {"open", "print", "input"}
MAX_FUNCTION_LINES = 60
# Functions over the limit, each with why it stays whole.
LONG_FUNCTIONS: dict[str, str] = {
    "edgeplane.localstack.cluster._start": "starts etcd, apiserver and controller manager in "
    "order; one sequence, read top to bottom",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _does_io(module: str) -> bool:
    if module in IO_PACKAGE_INITS:
        return True
    return any(module == m or module.startswith(m + ".") for m in IO_MODULES)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PURE = sorted(m for m in MODULES if not _does_io(m))


def _imports(tree: ast.AST) -> list[str]:
    """Every module and name imported: `import a.b` gives a.b, `from a import b` gives a.b
    (a module or a name in it)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name if a.name != "pathlib" else "pathlib.Path" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def test_every_io_module_exists() -> None:
    for module in [*IO_MODULES, *IO_PACKAGE_INITS]:
        assert module in MODULES, f"{module} is listed as doing I/O but does not exist"


@pytest.mark.parametrize("module", PURE)
def test_pure_module_does_no_io(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text())
    for name in _imports(tree):
        parts = name.split(".")
        prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
        assert not (prefixes & FORBIDDEN), f"{module} imports {name}: move the I/O out"
        if name.startswith("edgeplane."):
            assert not _does_io(name), f"{module} (pure) imports {name}, which does I/O"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{module} calls {node.func.id}()"


def _functions() -> list[tuple[str, int]]:
    out = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                out.append((f"{module}.{node.name}", node.end_lineno - node.lineno + 1))
    return out


def test_no_function_is_long() -> None:
    long = {f"{name} ({n} lines)" for name, n in _functions() if n > MAX_FUNCTION_LINES}
    long = {f for f in long if f.split(" ")[0] not in LONG_FUNCTIONS}
    assert not long, f"split these into named parts: {sorted(long)}"


def test_the_checks_can_fail() -> None:
    """The import check catches an I/O import, and the length check a long function."""
    bad = ast.parse("import socket\nfrom edgeplane.kube.client import Kube\n")
    assert {"socket", "edgeplane.kube.client.Kube"} <= set(_imports(bad))
    assert "pathlib.Path" in _imports(ast.parse("from pathlib import Path, PurePath"))
    assert _does_io("edgeplane.kube.client") and not _does_io("edgeplane.plan.rollout")
    assert "edgeplane.plan.rollout" in PURE and "edgeplane.reconcile.worker" not in PURE
