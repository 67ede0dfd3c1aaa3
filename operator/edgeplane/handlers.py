"""kopf wiring only: watch events feed the controller's caches and work queue; the
controller's own timers check the locations (their interval is a setting, not fixed at
import as a kopf timer's would be).

Only event handlers and timers are used, never kopf's change-detecting handlers, so kopf
keeps no `last-handled-configuration` annotation: large inline scripts cannot overflow
its 256 KiB limit, and the level-triggered reconcile does not depend on diffs.
"""

from __future__ import annotations

from typing import Any

import kopf

from edgeplane import tailserver
from edgeplane.api import GROUP, VERSION
from edgeplane.controller import Controller, Settings
from edgeplane.kube.auth import API_REQUEST_TIMEOUT, async_api_client, login

kopf.on.login()(login)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    cfg: Settings = memo.get("settings") or Settings()
    # Watches that stall silently are kopf's best-known failure: a watch is reopened when
    # it delivers nothing (not even a bookmark) for watch_idle_timeout, and in any case
    # every 300 s (the apiserver ends it) or 330 s (we do).
    settings.watching.inactivity_timeout = cfg.watch_idle_timeout
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # A watch's first LIST in pages: 10,000 Workers (or their archive ConfigMaps) read in
    # one answer are held whole, decoded, until the last of them is handled.
    settings.watching.chunk_size = 500
    settings.networking.request_timeout = API_REQUEST_TIMEOUT
    # Our own Events say what happened; kopf posting its log lines would be noise.
    settings.posting.enabled = False
    controller = Controller(await async_api_client(), cfg)
    memo["controller"] = controller
    await controller.start()
    if memo.get("tail") is not None:
        memo["tail_server"] = await tailserver.serve(memo["tail"], controller)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("tail_server") is not None:
        await memo["tail_server"].close()
    controller: Controller | None = memo.get("controller")
    if controller is not None:
        await controller.stop()
        await controller.api.close()


# The event handlers are coroutines so that kopf runs them on the event loop: a plain
# function would run in a thread, where the controller's queue and tasks are not safe.


def _deleted(event: dict[str, Any]) -> bool:
    return event.get("type") == "DELETED"


def _listed(plural: str, event: dict[str, Any], memo: kopf.Memo) -> None:
    """kopf delivers what it lists at a watch's (re)start as events without a type."""
    if event.get("type") is None:
        memo["controller"].listing(plural)


@kopf.on.event(GROUP, VERSION, "workers")
async def worker_event(event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _listed("workers", event, memo)
    memo["controller"].worker_seen(dict(body), _deleted(event))


@kopf.on.event(GROUP, VERSION, "workerroutes")
async def route_event(event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _listed("workerroutes", event, memo)
    memo["controller"].route_seen(dict(body), _deleted(event))


@kopf.on.event(GROUP, VERSION, "hostclaims")
async def claim_event(event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _listed("hostclaims", event, memo)
    memo["controller"].claim_seen(dict(body), _deleted(event))


@kopf.on.event(GROUP, VERSION, "edgetargets")
async def target_event(event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _listed("edgetargets", event, memo)
    memo["controller"].target_seen(dict(body), _deleted(event))


def _source_event(kind: str, event: dict[str, Any], body: kopf.Body, memo: kopf.Memo) -> None:
    memo["controller"].source_seen(kind, dict(body), _deleted(event))


# Which Workers read a ConfigMap or Secret is the controller's own index (reconcile/cache),
# not a kopf index: kopf holds back every event at start until each object of an indexed
# kind is indexed, and that wait costs time in proportion to the square of the Workers.
@kopf.on.event("", "v1", "configmaps")
async def configmap_event(
    event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    _listed("configmaps", event, memo)
    _source_event("ConfigMap", event, body, memo)


@kopf.on.event("", "v1", "secrets")
async def secret_event(event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _listed("secrets", event, memo)
    _source_event("Secret", event, body, memo)
