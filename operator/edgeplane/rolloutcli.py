"""`edgeplane rollout status|promote|abort|undo <worker>`: with the caller's kubeconfig, so
the apiserver's RBAC decides who may act and its audit log records who did. Every action
is a change to the Worker (an annotation, or spec.version for undo) that the operator reads
like any other: nothing goes behind the resource's back."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from edgeplane.api import GROUP, VERSION, RolloutPhase, RolloutStatus, Worker
from edgeplane.plan.rollout import ABORT_ANNOTATION, PROMOTE_ANNOTATION, names_version
from edgeplane.plan.targets import TargetView, select
from edgeplane.report.rollout_view import FINAL, render, short
from edgeplane.versions.objects import WORKER_LABEL

ACK_TIMEOUT = 30.0  # how long promote/abort wait to print what the operator made of them


class CliError(Exception):
    """A message for the user; exit code 1."""


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        api, namespace = _client(args.kubeconfig, args.namespace)
        return int(args.run(api, namespace, args))
    except CliError as e:
        print(f"edgeplane rollout {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeplane rollout",
        description="See and steer a Worker's progressive rollout, through the Worker "
        "itself (your kubeconfig; RBAC and audit apply).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    cmds = (
        ("status", _status, "draw the steps, locations, versions, gates and hold time"),
        ("promote", _promote, "let a paused step go on (annotation edgeplane.io/promote)"),
        ("abort", _abort, "roll the rollout back (annotation edgeplane.io/abort)"),
        ("undo", _undo, "pin spec.version to the previous version (a spec change)"),
    )
    for name, run, help_ in cmds:
        c = sub.add_parser(name, help=help_, description=help_)
        c.add_argument("worker", help="name of the Worker")
        c.add_argument("-n", "--namespace", help="its namespace (default: the context's)")
        c.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
        c.set_defaults(run=run)
        if name == "status":
            c.add_argument("-w", "--watch", action="store_true",
                           help="redraw on every change until the rollout completes "
                           "(exit 0) or rolls back (exit 1)")
        if name in ("promote", "abort"):
            c.add_argument("--no-wait", action="store_true",
                           help="do not wait for the operator to act on it")
        if name == "undo":
            c.add_argument("--to-version", help="the version to pin (a unique prefix of "
                           "at least 8 hex digits); default: the rollout's fromVersion")
    return p


def _client(kubeconfig: str | None, namespace: str | None) -> tuple[Any, str]:
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        api = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError) as e:
        path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise CliError(f"cannot load the kubeconfig {path}: {e}") from e
    return api, namespace or (active.get("context") or {}).get("namespace") or "default"


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """One apiserver request, its refusal turned into a sentence naming what was asked."""
    from kubernetes.client.exceptions import ApiException

    try:
        return fn(*args, **kwargs)
    except ApiException as e:
        reason = _reason(e)
        if e.status == 403:
            raise CliError(f"the apiserver refused to {what}: {reason}") from e
        if e.status == 404:
            raise CliError(f"cannot {what}: not found ({reason})") from e
        if e.status == 409:
            raise CliError(f"cannot {what}: the Worker changed meanwhile; try again") from e
        raise CliError(f"cannot {what}: {e.status} {reason}") from e


def _reason(e: Any) -> str:
    with contextlib.suppress(ValueError, TypeError):
        return str(json.loads(e.body).get("message") or e.reason)
    return str(e.reason)


def _get(api: Any, ns: str, name: str) -> dict[str, Any]:
    got = _call(f"get Worker {ns}/{name}", api.get_namespaced_custom_object,
                GROUP, VERSION, ns, "workers", name)
    return dict(got)


def _patch(api: Any, ns: str, name: str, body: dict[str, Any], verb: str) -> dict[str, Any]:
    what = f"{verb} Worker {ns}/{name} (it takes the `patch` verb on workers.edgeplane.io)"
    got = _call(what, api.patch_namespaced_custom_object,
                GROUP, VERSION, ns, "workers", name, body)
    return dict(got)


def _views(api: Any, worker: Worker) -> list[TargetView]:
    """The Worker's selected locations: the EdgeTargets its selector picks, or, for a
    caller who may not list EdgeTargets, the names its status lists (their labels then
    unknown, which only a selector step needs)."""
    from kubernetes.client.exceptions import ApiException

    try:
        items = api.list_cluster_custom_object(GROUP, VERSION, "edgetargets")["items"]
    except ApiException:
        names = [t.name for t in (worker.status.targets if worker.status else [])]
        return [TargetView(n) for n in sorted(names)]
    views = [TargetView(i["metadata"]["name"], i["metadata"].get("labels") or {}) for i in items]
    return select(worker.spec.targets, views)


def _status(api: Any, ns: str, args: argparse.Namespace) -> int:
    body = _get(api, ns, args.worker)
    worker = Worker.model_validate(body)
    views = _views(api, worker)
    if not args.watch:
        print("\n".join(render(worker, views, datetime.now(UTC))))
        return 0
    return _watch(api, ns, body, views)


def _watch(api: Any, ns: str, body: dict[str, Any], views: list[TargetView]) -> int:
    """Redraw on each watch event (and each second on a terminal, for the countdown)
    until the rollout of the version the spec asks for settles. The watch runs in this
    thread and ends every `idle` seconds, then resumes from the last resourceVersion."""
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    name, tty = body["metadata"]["name"], sys.stdout.isatty()
    rv, idle, last = body["metadata"]["resourceVersion"], 1 if tty else 30, [""]
    worker = Worker.model_validate(body)
    while True:
        if (code := _draw(worker, views, tty, last)) is not None:
            return code
        try:
            for event in watch.Watch().stream(
                api.list_namespaced_custom_object, GROUP, VERSION, ns, "workers",
                field_selector=f"metadata.name={name}", resource_version=rv,
                timeout_seconds=idle,
            ):
                if event["type"] not in ("ADDED", "MODIFIED"):
                    continue
                rv = event["object"]["metadata"]["resourceVersion"]
                worker = Worker.model_validate(event["object"])
                if (code := _draw(worker, views, tty, last)) is not None:
                    return code
        except ApiException as e:
            if e.status != 410:
                raise CliError(f"cannot watch Worker {ns}/{name}: {_reason(e)}") from e
            body = _get(api, ns, name)  # the history is gone: start from now
            rv, worker = body["metadata"]["resourceVersion"], Worker.model_validate(body)


def _draw(worker: Worker, views: list[TargetView], tty: bool, last: list[str]) -> int | None:
    """Draw the frame (a terminal: in place; else only when it changed); the exit code
    once the rollout settled."""
    frame = "\n".join(render(worker, views, datetime.now(UTC)))
    if tty:
        print(f"\x1b[H\x1b[J{frame}", flush=True)
    elif frame != last[0]:
        print(frame + "\n", flush=True)
    last[0] = frame
    done = _settled(worker)
    if done is None:
        return None
    return 0 if done is RolloutPhase.COMPLETE else 1


def _settled(worker: Worker) -> RolloutPhase | None:
    """The final phase of the rollout of the version the current spec asks for."""
    s = worker.status
    if s is None or s.rollout is None or s.observed_generation != worker.metadata.generation:
        return None
    if s.rollout.version != s.latest_version or s.rollout.phase not in FINAL:
        return None
    return s.rollout.phase


def _promote(api: Any, ns: str, args: argparse.Namespace) -> int:
    worker = Worker.model_validate(_get(api, ns, args.worker))
    r = _current(worker)
    if r.phase is not RolloutPhase.PAUSED:
        raise CliError(
            f"nothing to promote: the rollout of version {short(r.version)} is {r.phase.value} "
            f"at step {r.progress}, not paused"
        )
    value = f"{short(r.version)}/{r.step}"
    _patch(api, ns, args.worker, {"metadata": {"annotations": {PROMOTE_ANNOTATION: value}}},
           "promote")
    print(f"Worker {ns}/{args.worker}: asked to promote version {short(r.version)} past step "
          f"{r.progress} ({PROMOTE_ANNOTATION}={value})")
    return 0 if args.no_wait else _acknowledged(api, ns, args.worker, "Promote", value)


def _abort(api: Any, ns: str, args: argparse.Namespace) -> int:
    worker = Worker.model_validate(_get(api, ns, args.worker))
    r = _current(worker)
    if r.phase is RolloutPhase.COMPLETE:
        raise CliError(
            f"nothing to abort: version {short(r.version)} already reached every location; "
            f"to go back, `edgeplane rollout undo {args.worker} -n {ns}`"
        )
    if r.phase is RolloutPhase.ROLLED_BACK:
        raise CliError(f"nothing to abort: version {short(r.version)} is already rolled back")
    value = short(r.version)
    _patch(api, ns, args.worker, {"metadata": {"annotations": {ABORT_ANNOTATION: value}}},
           "abort the rollout of")
    print(f"Worker {ns}/{args.worker}: asked to abort version {value} at step {r.progress}; "
          f"every location goes back to {short(r.from_version)} ({ABORT_ANNOTATION}={value})")
    return 0 if args.no_wait else _acknowledged(api, ns, args.worker, "Abort", value)


def _current(worker: Worker) -> RolloutStatus:
    """The rollout the operator reports, for the version the spec asks for now."""
    s = worker.status
    if s is None or s.rollout is None:
        raise CliError("the operator has not reported a rollout for this Worker yet")
    if s.observed_generation != worker.metadata.generation:
        raise CliError("the operator has not caught up with the Worker's latest change "
                       "yet; try again in a moment")
    return s.rollout


def _acknowledged(api: Any, ns: str, name: str, action: str, value: str) -> int:
    """Wait for the operator to record the action; print what it made of it."""
    deadline = time.monotonic() + ACK_TIMEOUT
    while time.monotonic() < deadline:
        r = Worker.model_validate(_get(api, ns, name)).status
        rollout = r.rollout if r else None
        for a in rollout.actions if rollout else []:
            if a.action.value == action and a.value == value:
                print(f"operator: {a.message}")
                return 0 if a.applied else 1
        time.sleep(0.5)
    print(f"the operator has not acted on it within {ACK_TIMEOUT:g} s; "
          f"`edgeplane rollout status {name} -n {ns}` shows when it does")
    return 0


def _undo(api: Any, ns: str, args: argparse.Namespace) -> int:
    body = _get(api, ns, args.worker)
    worker = Worker.model_validate(body)
    s = worker.status
    r = s.rollout if s else None
    target = _resolve(api, ns, args.worker, args.to_version) if args.to_version else (
        r.from_version if r else None
    )
    if not target:
        raise CliError("no earlier version to go back to; name one with --to-version "
                       f"(`kubectl get workerversions -n {ns} -l {WORKER_LABEL}={args.worker}`)")
    if worker.spec.version and names_version(worker.spec.version, target):
        raise CliError(f"spec.version already pins {short(target)}")
    patch = {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
             "spec": {"version": target}}
    _patch(api, ns, args.worker, patch, "undo (set spec.version of)")
    was = short(worker.spec.version) if worker.spec.version else "not pinned"
    print(f"Worker {ns}/{args.worker}: spec.version set to {short(target)} (was {was}); "
          "the operator rolls it out now.")
    print(f'This is a spec change: with Argo CD or Flux, commit `version: "{target}"` to git '
          "too, or the next sync reverts it (remove it from git to follow the spec again).")
    return 0


def _resolve(api: Any, ns: str, name: str, wanted: str) -> str:
    """The WorkerVersion of `name` that `wanted` names (full id or a unique prefix)."""
    listed = _call(f"list WorkerVersions in {ns}", api.list_namespaced_custom_object,
                   GROUP, VERSION, ns, "workerversions", label_selector=f"{WORKER_LABEL}={name}")
    ids = [str((i.get("spec") or {}).get("versionId") or "") for i in listed["items"]]
    found = sorted({v for v in ids if v and names_version(wanted, v)})
    if len(found) != 1:
        kept = ", ".join(short(v) for v in sorted(set(ids)) if v) or "none"
        how = "names no" if not found else "is a prefix of more than one"
        raise CliError(f"--to-version {wanted!r} {how} retained version of {name} "
                       f"(kept: {kept}; at least 8 hex digits)")
    return found[0]
