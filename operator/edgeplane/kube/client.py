"""The apiserver verbs the operator uses, with 404 and 409 handled in one place: a read of
something gone answers None, a create of something that exists answers what is there,
a delete of something gone is done."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client as kclient
from kubernetes_asyncio.client.rest import ApiException

from edgeplane.api import GROUP, VERSION
from edgeplane.kube import fence
from edgeplane.plan.relist import resource_version
from edgeplane.report.status import Event

log = logging.getLogger("edgeplane.kube")
MERGE_PATCH = "application/merge-patch+json"


def namespace_terminating(e: ApiException) -> bool:
    return e.status == 403 and "NamespaceTerminating" in str(e.body)


def status_patch(status: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """A merge patch that sets the whole status; null clears fields no longer reported."""
    return {"status": _replacing(status, old)}


def _replacing(new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """A merge patch turning `old` into `new`: a merge patch merges nested objects, so a
    nested field no longer reported (status.rollout.holdUntil, failure, pausedSince) needs
    its own null, or the last rollout's value stays."""
    old = old or {}
    out: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        was = old.get(k)
        out[k] = _replacing(v, was) if isinstance(v, dict) and isinstance(was, dict) else v
    return out


def contents(kind: str, body: dict[str, Any]) -> dict[str, str | bytes]:
    """A ConfigMap's data and binaryData, or a Secret's data, decoded, in one mapping."""
    if kind == "Secret":
        return {k: base64.b64decode(v) for k, v in (body.get("data") or {}).items()}
    out: dict[str, str | bytes] = dict(body.get("data") or {})
    for k, v in (body.get("binaryData") or {}).items():
        out[k] = base64.b64decode(v)
    return out


async def _or_none(call: Any) -> Any:
    try:
        return await call
    except ApiException as e:
        if e.status == 404:
            return None
        raise


class Conflict(Exception):
    """The object changed since it was read (409 on a write fenced by resourceVersion)."""


def finalizers_patch(seen: dict[str, Any], finalizers: list[str]) -> dict[str, Any]:
    """A merge patch setting the finalizers, fenced on the resourceVersion they were read
    at: a merge patch replaces the whole list, so written from a stale read it would drop
    a finalizer another controller added since (the apiserver answers 409 instead)."""
    meta = seen["metadata"]
    return {"metadata": {"resourceVersion": meta["resourceVersion"], "finalizers": finalizers}}


class Kube:
    """edgeplane's custom objects (by plural), ConfigMaps, Secrets and Events."""

    def __init__(self, api: kclient.ApiClient, identity: str = "") -> None:
        """`identity`: this replica's name, as the field manager of its patches and the
        reporting instance of its Events (with several replicas; "": as one replica)."""
        self.api = api
        self.identity = identity
        self._manager: dict[str, Any] = (
            {"field_manager": f"edgeplane/{identity}"} if identity else {}
        )
        self.custom = kclient.CustomObjectsApi(api)
        self.core = kclient.CoreV1Api(api)

    async def get(self, plural: str, ns: str, name: str) -> dict[str, Any] | None:
        return await _or_none(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
        )

    async def list(self, plural: str, ns: str, label_selector: str) -> list[dict[str, Any]]:
        listed = await self.custom.list_namespaced_custom_object(
            GROUP, VERSION, ns, plural, label_selector=label_selector
        )
        return list(listed.get("items", []))

    async def list_all(
        self, plural: str, namespaces: tuple[str, ...] = (), page: int = 500
    ) -> list[tuple[list[dict[str, Any]], int]]:
        """Every object of a kind, as one list per namespace of `namespaces` (none: one
        cluster-wide list), each with the resourceVersion it was read at (a paged list is
        one snapshot). Only each object's name, namespace and resourceVersion are kept:
        enough to tell what was deleted, without holding 10,000 whole Workers at once."""
        out = []
        for ns in namespaces or (None,):
            items, version = [], None
            async for listed, at in self._pages(plural, ns, page):
                items.extend({"metadata": _identifying(b.get("metadata") or {})} for b in listed)
                version = at if version is None else version
            out.append((items, version or 0))
        return out

    async def list_pages(
        self, plural: str, namespaces: tuple[str, ...] = (), limit: int = 500
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every object of a kind (in `namespaces`, or cluster-wide), a page at a time, so a
        caller keeping a little of each never holds them all at once."""
        for ns in namespaces or (None,):
            async for page, _ in self._pages(plural, ns, limit):
                yield page

    async def _pages(
        self, plural: str, ns: str | None, limit: int
    ) -> AsyncIterator[tuple[list[dict[str, Any]], int]]:
        """The pages of one LIST (of a namespace, or cluster-wide), each with the list's
        resourceVersion."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": limit}
            if token:
                kwargs["_continue"] = token
            if ns is None:
                call = self.custom.list_cluster_custom_object(GROUP, VERSION, plural, **kwargs)
            else:
                call = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, ns, plural, **kwargs
                )
            listed = await call
            yield list(listed.get("items", [])), resource_version(listed)
            token = (listed.get("metadata") or {}).get("continue")
            if not token:
                break

    async def create_or_get(self, plural: str, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the object; if it exists already (immutable objects), the one there."""
        fence.check(f"create {plural}")
        try:
            return dict(
                await self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, body)
            )
        except ApiException as e:
            if e.status != 409:
                raise
        name = body["metadata"]["name"]
        return dict(
            await self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
        )

    async def patch(
        self, plural: str, ns: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        fence.check(f"patch {plural} {ns}/{name}")
        return await _or_none(
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, plural, name, patch, _content_type=MERGE_PATCH,
                **self._manager,
            )
        )

    async def set_finalizers(
        self, plural: str, seen: dict[str, Any], finalizers: list[str]
    ) -> dict[str, Any] | None:
        """Write `finalizers` onto the object as `seen`; None if it is gone, Conflict if it
        changed since."""
        meta = seen["metadata"]
        try:
            return await self.patch(plural, meta["namespace"], meta["name"],
                                    finalizers_patch(seen, finalizers))
        except ApiException as e:
            if e.status == 409:
                raise Conflict(f"{plural} {meta['namespace']}/{meta['name']} changed") from None
            raise

    async def patch_status(
        self, plural: str, ns: str | None, name: str, status: dict[str, Any], old: Any
    ) -> dict[str, Any] | None:
        """Write the whole status (ns None: a cluster-scoped object); None if it is gone."""
        fence.check(f"status of {plural} {name}")
        patch = status_patch(status, old)
        if ns is None:
            call = self.custom.patch_cluster_custom_object_status(
                GROUP, VERSION, plural, name, patch, _content_type=MERGE_PATCH, **self._manager
            )
        else:
            call = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, ns, plural, name, patch, _content_type=MERGE_PATCH,
                **self._manager,
            )
        return await _or_none(call)

    async def delete(self, plural: str, ns: str, name: str) -> None:
        fence.check(f"delete {plural} {ns}/{name}")
        call = self.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
        await _or_none(call)

    async def read(self, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        """A ConfigMap or Secret as the watch would deliver it (a plain body)."""
        if kind == "ConfigMap":
            call = self.core.read_namespaced_config_map(name, ns)
        else:
            call = self.core.read_namespaced_secret(name, ns)
        obj = await _or_none(call)
        return None if obj is None else self.api.sanitize_for_serialization(obj)

    async def config_map(self, ns: str, name: str) -> dict[str, str | bytes] | None:
        """A ConfigMap's data and binaryData (decoded) in one mapping."""
        body = await self.read("ConfigMap", ns, name)
        return None if body is None else contents("ConfigMap", body)

    async def create_config_map(self, ns: str, body: kclient.V1ConfigMap) -> None:
        """Create an immutable ConfigMap; one already there is the same one."""
        fence.check("create configmap")
        try:
            await self.core.create_namespaced_config_map(ns, body)
        except ApiException as e:
            if e.status != 409:
                raise

    async def secret(self, ns: str, name: str) -> dict[str, bytes] | None:
        body = await self.read("Secret", ns, name)
        if body is None:
            return None
        return {k: v for k, v in contents("Secret", body).items() if isinstance(v, bytes)}

    async def event(self, body: dict[str, Any], event: Event) -> None:
        """Record an Event on a namespaced object; a failure is logged, never raised (but
        one refused by the fence is: the work it reports is no longer this replica's)."""
        fence.check(f"event {event.reason}")
        meta = body["metadata"]
        now = datetime.now(UTC)
        ev = kclient.CoreV1Event(
            metadata=kclient.V1ObjectMeta(
                generate_name=f"{meta['name']}.", namespace=meta["namespace"]
            ),
            involved_object=kclient.V1ObjectReference(
                api_version=body["apiVersion"],
                kind=body["kind"],
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta["uid"],
                resource_version=meta.get("resourceVersion"),
            ),
            reason=event.reason,
            message=event.message[:1024],
            type=event.type,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=kclient.V1EventSource(component="edgeplane-operator"),
            reporting_component="edgeplane.io/operator",
            reporting_instance=self.identity or "edgeplane-operator",
        )
        try:
            await self.core.create_namespaced_event(meta["namespace"], ev)
        except ApiException as e:
            if namespace_terminating(e):
                return  # the namespace is going away with the object in it
            log.warning("could not record event %s on %s: %s", event.reason, meta["name"], e.reason)


def _identifying(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in ("namespace", "name", "resourceVersion") if k in meta}
