"""What changes a location's reachability, and whom a flip requeues (Fleet with a fake
agent client: no process, no socket)."""

from __future__ import annotations

import asyncio

import pytest

from edgeplane.distribute.client import Endpoint, Refused, ServerError, Unreachable
from edgeplane.distribute.fleet import Fleet, FleetSettings
from edgeplane.plan.targets import WorkerKey
from edgeplane.wire import (
    Bundle,
    BundleModule,
    Deployment,
    InventoryChanges,
    InventoryItem,
)


def _deployment(worker: str) -> Deployment:
    bundle = Bundle(
        worker=worker,
        compatibilityDate="2024-09-23",
        mainModule="m.js",
        modules=(BundleModule(name="m.js", type="esModule", content="export default {}"),),
    ).with_version()
    return Deployment(worker=worker, primary=bundle.version or "", versions=(bundle,))


class _Client:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def put(self, ep: Endpoint, deployment: Deployment, by_reference: bool) -> bool:
        raise self.error

    async def delete(self, ep: Endpoint, worker: str) -> None:
        raise self.error

    async def info(self, ep: Endpoint) -> dict:
        raise self.error


def _fleet(
    workers: list[WorkerKey], error: Exception, concurrency: int = 32
) -> tuple[Fleet, list[WorkerKey], list[tuple[WorkerKey, float]]]:
    now: list[WorkerKey] = []
    later: list[tuple[WorkerKey, float]] = []
    fleet = Fleet(
        kube=None,  # type: ignore[arg-type]
        settings=FleetSettings(60, (), 0, ()),
        workers=lambda: workers,
        requeue=now.append,
        requeue_exclusions=lambda namespaces: None,
        requeue_after=lambda key, delay: later.append((key, delay)),
        concurrency=concurrency,
    )
    fleet.client = _Client(error)  # type: ignore[assignment]
    loc = fleet.at("edge-1")
    loc.endpoint = Endpoint("edge-1", "http://127.0.0.1:1", "t")
    loc.reachable, loc.inventory = True, {}
    return fleet, now, later


@pytest.mark.parametrize(
    ("error", "reachable"),
    [
        # A healthy agent failing one push (503 while its front reloads, a full disk):
        # still up, or every push to a full agent would flap it and requeue its Workers.
        (ServerError(503, "edge-1: agent answered 503: not serving it yet"), True),
        (ServerError(507, "edge-1: agent answered 507: no space"), True),
        # No answer at all: down.
        (Unreachable("edge-1: ClientConnectorError: refused"), False),
    ],
)
async def test_what_a_failed_push_says_about_the_location(
    error: Exception, reachable: bool
) -> None:
    workers = [("apps", "a")]
    fleet, now, _ = _fleet(workers, error)
    fleet.desired["apps.a"] = {"edge-1": "i1"}
    assert await fleet.push("edge-1", _deployment("apps.a")) is None
    await fleet.remove("edge-1", "apps.a")
    assert fleet.at("edge-1").reachable is reachable
    assert now == ([] if reachable else [("apps", "a")])


@pytest.mark.parametrize(
    ("status", "stall", "cached", "reachable", "reason"),
    [
        # A token or client certificate the agent rejects: the location's problem, not the
        # Worker's. Nothing is remembered of the deployment; the health check retries.
        (401, None, False, False, "CredentialsRejected"),
        (403, None, False, False, "CredentialsRejected"),
        # A route another Worker holds: retried with backoff, not remembered.
        (409, ("RouteConflict", True), False, True, ""),
        # The bytes pushed: remembered, so the same deployment is not pushed again.
        (413, ("ScriptTooLarge", False), True, True, ""),
        (422, ("ScriptInvalid", False), True, True, ""),
    ],
)
async def test_what_a_refused_push_leaves_behind(
    status: int, stall: tuple[str, bool] | None, cached: bool, reachable: bool, reason: str
) -> None:
    fleet, now, _ = _fleet([("apps", "a")], Refused(status, "no"))
    fleet.desired["apps.a"] = {"edge-1": "i1"}
    deployment = _deployment("apps.a")
    got = await fleet.push("edge-1", deployment)
    assert ((got.reason, got.retry) if got else None) == stall
    assert (fleet.refused("edge-1", "apps.a", deployment.identity()) is not None) is cached
    loc = fleet.at("edge-1")
    assert (loc.reachable, loc.reason) == (reachable, reason)
    facts = fleet.facts("edge-1", "apps.a")
    assert (facts.reason, facts.refused is not None) == (reason, cached)
    assert now == ([] if reachable else [("apps", "a")])  # the flip requeues it


@pytest.mark.parametrize(
    ("status", "reason"), [(401, "CredentialsRejected"), (403, "CredentialsRejected"),
                           (404, "Unreachable")],
)
async def test_a_health_check_names_rejected_credentials(status: int, reason: str) -> None:
    fleet, _, _ = _fleet([], Refused(status, "missing or invalid bearer token"))
    await fleet._ask("edge-1", fleet.at("edge-1").endpoint)  # type: ignore[arg-type]
    loc = fleet.at("edge-1")
    assert (loc.reachable, loc.reason) == (False, reason)
    assert f"({status})" in loc.message


@pytest.mark.parametrize("reason", ["Unreachable", "TLSVerifyFailed"])
async def test_an_unreachable_location_keeps_the_clients_reason(reason: str) -> None:
    fleet, _, _ = _fleet([("apps", "a")], Unreachable("edge-1: no", reason))
    await fleet._ask("edge-1", fleet.at("edge-1").endpoint)  # type: ignore[arg-type]
    assert fleet.at("edge-1").reason == reason
    fleet._set_reachable("edge-1", True)
    assert await fleet.push("edge-1", _deployment("apps.a")) is None
    assert (fleet.at("edge-1").reason, fleet.facts("edge-1", "apps.a").reason) == (reason, reason)


async def test_a_flip_requeues_only_its_workers_spread_when_many() -> None:
    selecting = [("apps", f"w{i}") for i in range(8)]
    others = [("apps", f"x{i}") for i in range(20)]
    fleet, now, later = _fleet([*selecting, *others], Unreachable("edge-1: timeout"), 4)
    for ns, name in selecting:
        fleet.desired[f"{ns}.{name}"] = {"edge-1": "i1", "edge-2": "i1"}
    for ns, name in others:
        fleet.desired[f"{ns}.{name}"] = {"edge-2": "i1"}
    await fleet.push("edge-1", _deployment("apps.w0"))
    assert fleet.at("edge-1").reachable is False
    assert now == [selecting[0]]  # the first of 8 at once, the rest over ~2 s
    assert [k for k, _ in later] == selecting[1:]
    assert 0 < min(d for _, d in later) and max(d for _, d in later) <= 2.0


class _Hanging:
    """An agent that accepts every request and never answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def put(self, ep: Endpoint, deployment: Deployment, by_reference: bool) -> bool:
        self.calls += 1
        await asyncio.sleep(3600)
        return True

    async def delete(self, ep: Endpoint, worker: str) -> None:
        self.calls += 1
        await asyncio.sleep(3600)


async def test_nothing_is_sent_to_a_location_marked_down() -> None:
    fleet, _, _ = _fleet([("apps", "a")], Unreachable("unused"))
    fleet.client = hanging = _Hanging()  # type: ignore[assignment]
    fleet._set_reachable("edge-1", False, "edge-1: TimeoutError: no answer")
    async with asyncio.timeout(1):
        assert await fleet.push("edge-1", _deployment("apps.a")) is None
        await fleet.remove("edge-1", "apps.a")
    assert hanging.calls == 0
    assert fleet.at("edge-1").message == "edge-1: TimeoutError: no answer"


async def test_calls_in_flight_are_given_up_when_the_health_check_marks_it_down() -> None:
    fleet, _, _ = _fleet([("apps", "a")], Unreachable("unused"))
    fleet.client = hanging = _Hanging()  # type: ignore[assignment]
    pushes = [asyncio.create_task(fleet.push("edge-1", _deployment("apps.a"))) for _ in range(3)]
    removal = asyncio.create_task(fleet.remove("edge-1", "apps.b"))
    await asyncio.sleep(0.05)
    assert hanging.calls == 4 and not any(t.done() for t in [*pushes, removal])
    fleet._set_reachable("edge-1", False, "edge-1: health check: TimeoutError")
    async with asyncio.timeout(1):
        assert await asyncio.gather(*pushes) == [None] * 3
        await removal
    assert fleet.at("edge-1").message == "edge-1: health check: TimeoutError"
    fleet._set_reachable("edge-1", True)  # back: calls go out again
    again = asyncio.create_task(fleet.push("edge-1", _deployment("apps.a")))
    await asyncio.sleep(0.05)
    assert hanging.calls == 5 and not again.done()
    again.cancel()


class _Orphaned(_Hanging):
    """Answers its health check with a Worker the apiserver no longer has in its
    inventory, and never answers that Worker's removal."""

    def __init__(self) -> None:
        super().__init__()
        self.removing = asyncio.Event()

    async def delete(self, ep: Endpoint, worker: str) -> None:
        self.removing.set()
        await super().delete(ep, worker)

    async def info(self, ep: Endpoint) -> dict:
        return {}

    async def inventory(self, ep: Endpoint, since: str = "") -> InventoryChanges:
        item = InventoryItem("apps.gone", "i1", "v1", "serving", "")
        return InventoryChanges({item.worker: item})

    async def exclusions(self, ep: Endpoint) -> dict[str, tuple[str, ...]]:
        return {}

    async def put_cron(self, *args: object) -> None:
        return None

    async def close(self) -> None:
        return None


class _NoWorkers:
    async def get(self, plural: str, namespace: str, name: str) -> None:
        return None


async def test_a_removal_that_hangs_holds_neither_the_health_check_nor_the_next() -> None:
    """An orphan's removal runs beside the health checks: one that never answers does
    not stop them, so the next check that finds the location hung gives it up."""
    fleet, _, _ = _fleet([], Unreachable("unused"))
    fleet.kube = _NoWorkers()  # type: ignore[assignment]
    fleet.client = hanging = _Orphaned()  # type: ignore[assignment]
    ep = fleet.at("edge-1").endpoint
    assert ep is not None
    async with asyncio.timeout(1):
        await fleet._ask("edge-1", ep)
        await hanging.removing.wait()
        await fleet._ask("edge-1", ep)  # not waiting for the removal
        removal = fleet._collecting["edge-1"]
        fleet._set_reachable("edge-1", False, "edge-1: TimeoutError: no answer")
        await removal  # given up once the location is marked down
    assert hanging.calls == 1 and fleet._collecting == {}
    await fleet.close()
