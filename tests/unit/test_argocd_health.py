"""The Argo CD health checks (manifests/argocd/*.lua), run in Lua 5.1 (Argo CD's
gopher-lua is 5.1) over objects captured from real end-to-end runs (tests/data/argocd/,
written by tests/e2e/test_argocd_health.py) and over hand-made edge cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "manifests" / "argocd"
FIXTURES = REPO / "tests" / "data" / "argocd"
SCRIPT_OF = {"Worker": "worker.lua", "WorkerRoute": "workerroute.lua",
             "EdgeTarget": "edgetarget.lua"}
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def _lua_value(lua: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: _lua_value(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_lua_value(lua, v) for v in value])
    return value


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """What Argo CD would show: the script runs with the object as the global `obj` and
    returns a table with status and message."""
    from lupa.lua51 import LuaRuntime

    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = _lua_value(lua, obj)
    hs = lua.execute((SCRIPTS / SCRIPT_OF[kind]).read_text())
    result = {"status": hs["status"], "message": hs["message"] or ""}
    assert result["status"] in STATUSES
    return result


def fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def test_fixtures_cover_every_kind_and_outcome() -> None:
    cases = [json.loads(p.read_text()) for p in fixtures()]
    seen = {(c["object"]["kind"], c["expected"]) for c in cases}
    assert {("Worker", "Healthy"), ("Worker", "Degraded"), ("Worker", "Progressing"),
            ("WorkerRoute", "Healthy"), ("WorkerRoute", "Degraded"),
            ("WorkerRoute", "Progressing"), ("EdgeTarget", "Healthy"),
            ("EdgeTarget", "Degraded")} <= seen, (
        "capture them: EDGEPLANE_WRITE_FIXTURES=1 pytest tests/e2e/test_argocd_health.py"
    )


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: p.stem)
def test_health_of_captured_objects(path: Path) -> None:
    case = json.loads(path.read_text())
    got = health(case["object"]["kind"], case["object"])
    assert got["status"] == case["expected"], got
    ready = next((c for c in case["object"].get("status", {}).get("conditions", [])
                  if c["type"] == "Ready"), None)
    if ready is not None:
        assert got["message"].startswith(ready["reason"]) or got["status"] == "Degraded"


def worker_obj(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "edgeplane.io/v1alpha1", "kind": "Worker",
                           "metadata": {"name": "w", "generation": generation}, "spec": {}}
    if status is not None:
        obj["status"] = status
    return obj


def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(("obj", "expected"), [
    (worker_obj(1, None), "Progressing"),
    (worker_obj(1, {}), "Progressing"),
    # Ready, but for an older generation: the new spec is not deployed yet.
    (worker_obj(3, {"observedGeneration": 2, "conditions": [cond("Ready", "True", "Deployed")]}),
     "Progressing"),
    (worker_obj(2, {"observedGeneration": 2, "conditions": [cond("Ready", "True", "Deployed")]}),
     "Healthy"),
    (worker_obj(2, {"observedGeneration": 2, "conditions": [
        cond("Ready", "False", "ScriptInvalid", "x"), cond("Stalled", "True", "ScriptInvalid", "x"),
    ]}), "Degraded"),
    (worker_obj(2, {"observedGeneration": 2, "conditions": [
        cond("Ready", "False", "TargetUnreachable"),
        cond("Reconciling", "True", "TargetUnreachable"),
        cond("Stalled", "False", "TargetUnreachable"),
    ]}), "Progressing"),
    # A paused step: neither Reconciling nor Stalled, waiting for a promote.
    (worker_obj(2, {"observedGeneration": 2, "conditions": [
        cond("Ready", "False", "Paused", "paused at step 1/2"),
        cond("Reconciling", "False", "Paused"),
        cond("Stalled", "False", "Paused"),
    ]}), "Suspended"),
])
def test_worker_edge_cases(obj: dict[str, Any], expected: str) -> None:
    assert health("Worker", obj)["status"] == expected


@pytest.mark.parametrize(("reason", "status", "expected"), [
    ("Routed", "True", "Healthy"),
    ("RouteConflict", "False", "Degraded"),
    ("VersionNotFound", "False", "Degraded"),
    ("WorkerNotFound", "False", "Progressing"),
    ("Excluded", "True", "Healthy"),
    ("Excluding", "False", "Progressing"),
    ("ExclusionRefused", "False", "Degraded"),
    ("HostNotClaimed", "False", "Degraded"),
])
def test_route_reasons(reason: str, status: str, expected: str) -> None:
    obj = {"kind": "WorkerRoute", "metadata": {"generation": 1},
           "status": {"observedGeneration": 1, "conditions": [cond("Ready", status, reason)]}}
    assert health("WorkerRoute", obj) == {"status": expected, "message": reason}


@pytest.mark.parametrize(("reason", "status", "expected"), [
    ("Reachable", "True", "Healthy"),
    ("Unreachable", "False", "Degraded"),
    ("CredentialsNotFound", "False", "Degraded"),
    ("InsecureEndpoint", "False", "Degraded"),
])
def test_edge_target_reasons(reason: str, status: str, expected: str) -> None:
    obj = {"kind": "EdgeTarget", "metadata": {"generation": 1},
           "status": {"observedGeneration": 1, "conditions": [cond("Ready", status, reason)]}}
    assert health("EdgeTarget", obj)["status"] == expected
    assert health("EdgeTarget", {"kind": "EdgeTarget", "metadata": {}})["status"] == "Progressing"


def test_argocd_cm_snippet_holds_the_scripts() -> None:
    cm = yaml.safe_load((SCRIPTS / "argocd-cm.yaml").read_text())
    assert cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"] == {
        f"resource.customizations.health.edgeplane.io_{kind}": (SCRIPTS / f).read_text()
        for kind, f in SCRIPT_OF.items()
    }, "run tools/sync-copies.sh"
