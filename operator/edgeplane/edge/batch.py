"""What pushes (PUT/DELETE of a Worker) do, as pure decisions apart from I/O.

A push is answered at once when `precheck` already knows the answer (nothing changes, a
route is taken, nothing to delete); otherwise it joins the next batch. For a batch,
`to_validate` names the bundles the validator cell must load, and `decide` turns the
validation errors into each Worker's answer and the deployments to store and serve."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from edgeplane.edge.result import Result
from edgeplane.routing import conflict_key
from edgeplane.wire import Bundle, Deployment

Changes = Mapping[str, Deployment | None]  # worker -> its new deployment; None: delete
Excluded = Mapping[str, tuple[str, ...]]  # namespace -> its route patterns without a Worker
MAX_MESSAGE = 4000  # the longest validation message an answer carries


def desired(accepted: Mapping[str, Deployment], pending: Changes) -> dict[str, Deployment]:
    """What will be served once the pending changes are applied."""
    out = dict(accepted)
    for w, d in pending.items():
        if d is None:
            out.pop(w, None)
        else:
            out[w] = d
    return out


class Served(dict[str, Deployment]):
    """Deployments by Worker, and which Worker holds each route (by conflict key), kept in
    step: who holds a route is found at the same cost at 10 or 10,000 Workers. Change it only
    by `[w] = d`, `del`, `pop` (dict's update and setdefault would bypass the index)."""

    def __init__(self, deployments: Mapping[str, Deployment] | None = None) -> None:
        super().__init__()
        self.holders: dict[str, str] = {}
        # Worker -> its deployment's identity, hashed once, not at each inventory.
        self.identities: dict[str, str] = {}
        for w, d in (deployments or {}).items():
            self[w] = d

    def __setitem__(self, worker: str, d: Deployment) -> None:
        self._release(worker)
        super().__setitem__(worker, d)
        self.identities[worker] = d.identity()
        for r in d.routes:
            self.holders.setdefault(conflict_key(r.pattern), worker)

    def __delitem__(self, worker: str) -> None:
        self._release(worker)
        super().__delitem__(worker)

    def pop(self, worker: str, default: Deployment | None = None) -> Deployment | None:  # type: ignore[override]
        d = self.get(worker, default)
        if worker in self:
            del self[worker]
        return d

    def _release(self, worker: str) -> None:
        old = self.get(worker)
        self.identities.pop(worker, None)
        for r in old.routes if old is not None else ():
            if self.holders.get(k := conflict_key(r.pattern)) == worker:
                del self.holders[k]

    def copy(self) -> Served:  # type: ignore[override]
        out = Served()
        dict.update(out, self)
        out.holders, out.identities = dict(self.holders), dict(self.identities)
        return out


Holder = Callable[[str], str | None]  # conflict key → the Worker holding it, or None


def holder_of(served: Mapping[str, Deployment], overlay: Changes | None = None) -> Holder:
    """Who holds a route in `served` with `overlay`'s changes on top: a changed Worker holds
    only its new routes (none once deleted)."""
    base = served.holders if isinstance(served, Served) else Served(served).holders
    changed = overlay or {}
    mine = {conflict_key(r.pattern): w for w, d in changed.items() if d for r in d.routes}

    def holder(key: str) -> str | None:
        if key in mine:
            return mine[key]
        h = base.get(key)
        return None if h is None or h in changed else h

    return holder


def route_conflict(
    d: Deployment, others: Mapping[str, Deployment] | Holder, excluded: Excluded | None = None
) -> str | None:
    """Why `d` cannot have its routes: another Worker in `others` (or as `holder_of` says)
    has one of them, or a namespace excludes it."""
    holder = others if callable(others) else holder_of(others)
    return _claimed([r.pattern for r in d.routes], d.worker, holder, excluded or {})


def exclusion_conflict(
    namespace: str, patterns: Iterable[str], served: Mapping[str, Deployment], excluded: Excluded
) -> str | None:
    """Why `namespace` cannot exclude `patterns`: a Worker's route or another namespace's
    exclusion has one of them (the operator never sends such; a race might)."""
    others = {ns: ps for ns, ps in excluded.items() if ns != namespace}
    return _claimed(patterns, None, holder_of(served), others)


def _claimed(
    patterns: Iterable[str], worker: str | None, holder: Holder, excluded: Excluded
) -> str | None:
    mine = {conflict_key(p): p for p in patterns}
    for c, pattern in mine.items():
        h = holder(c)
        if h is not None and h != worker:
            return f"route pattern {pattern!r} is already served by Worker {h}"
    for ns, excluded_patterns in sorted(excluded.items()) if mine else ():
        for p in excluded_patterns:
            if (c := conflict_key(p)) in mine:
                return (
                    f"route pattern {mine[c]!r} is excluded by a route without a Worker in "
                    f"namespace {ns}"
                )
    return None


def unchanged(current: Deployment | None, d: Deployment) -> bool:
    return current is not None and current.identity() == d.identity()


def _unchanged_result(d: Deployment) -> Result:
    return Result(200, {"changed": False, "version": d.primary})


@dataclass(frozen=True)
class Early:
    """A push answered without joining a batch."""

    result: Result
    push: str | None  # its edgeplane_agent_pushes_total label; None: not counted


def precheck(
    worker: str,
    d: Deployment | None,
    accepted: Mapping[str, Deployment],
    pending: Changes,
    refused: Mapping[str, str],
    excluded: Excluded,
) -> Early | None:
    """The answer to a push (`d` None: delete) that needs no batch, or None to batch it."""
    if d is None:
        present = pending[worker] is not None if worker in pending else worker in accepted
        if present or worker in refused:
            return None
        return Early(Result.error(404, f"Worker {worker} is not deployed here"), None)
    # A pending change of this Worker may be undone by this push: not a no-op then.
    if worker not in pending and unchanged(accepted.get(worker), d):
        return Early(_unchanged_result(d), "unchanged")
    conflict = route_conflict(d, holder_of(accepted, pending), excluded)
    if conflict:
        return Early(Result.error(409, conflict), "conflict")
    return None


def versions_of(deployments: Changes) -> set[str]:
    return {b.version or "" for d in deployments.values() if d is not None for b in d.versions}


def to_validate(
    accepted: Mapping[str, Deployment], batch: Changes, validated: set[str]
) -> list[Bundle]:
    """The bundles of the batch's real changes that no validation has loaded yet, once each."""
    out: dict[str, Bundle] = {}
    for w, d in batch.items():
        if d is None or unchanged(accepted.get(w), d):
            continue
        for b in d.versions:
            if b.version not in validated:
                out[b.version or ""] = b
    return list(out.values())


@dataclass(frozen=True)
class Decision:
    results: dict[str, Result]  # every Worker of the batch
    changes: dict[str, Deployment | None]  # to store and serve
    candidate: Served  # what is served once the changes are
    refused: dict[str, str]  # Worker -> the validation error that refused it


def decide(
    accepted: Mapping[str, Deployment],
    batch: Changes,
    errors: Mapping[str, str],
    excluded: Excluded,
    unavailable: Mapping[str, str] | None = None,
) -> Decision:
    """Each Worker's answer, given the validation errors (version -> message) and the
    versions the location could not check (version -> why: 503, retryable, never a
    refusal). Workers are taken in batch order: a route goes to the first that claims it."""
    results: dict[str, Result] = {}
    candidate = accepted.copy() if isinstance(accepted, Served) else Served(accepted)
    changes: dict[str, Deployment | None] = {}
    refused: dict[str, str] = {}
    unknown = unavailable or {}
    for w, d in batch.items():
        if d is None:
            if w in accepted:
                changes[w] = None
            results[w] = Result(200, {"deleted": True, "worker": w})
            continue
        if unchanged(accepted.get(w), d):
            results[w] = _unchanged_result(d)
            continue
        bad = [errors[v] for b in d.versions if (v := b.version or "") in errors]
        unchecked = [unknown[v] for b in d.versions if (v := b.version or "") in unknown]
        if unchecked and not bad:
            results[w] = Result.error(503, unchecked[0], worker=w)
            continue
        if bad:
            results[w] = Result.error(422, bad[0], worker=w)
            refused[w] = bad[0]
            continue
        # Workers deleted by this batch still count here: they leave only after the loop.
        conflict = route_conflict(d, candidate.holders.get, excluded)
        if conflict:
            results[w] = Result.error(409, conflict, worker=w)
            continue
        candidate[w] = d
        changes[w] = d
        results[w] = Result(200, {"changed": True, "version": d.primary})
    for w, d in changes.items():
        if d is None:
            candidate.pop(w, None)
    return Decision(results, changes, candidate, refused)


# What one check of a version in the validator found.
CHECK_OK = "ok"
CHECK_REFUSED = "refused"  # workerd loaded it and said what is wrong with it
CHECK_TIMED_OUT = "timeout"  # no answer within the timeout (its process is then replaced)
CHECK_CRASHED = "crashed"  # the validator process died while checking it
CHECK_UNAVAILABLE = "unavailable"  # the validator could not check (did not start, no fds...)


def check_verdict(kind: str, alone: bool) -> str:
    """What a check's outcome means for its version: "ok", "blame" (refuse it: 422),
    "again" (check it again on its own: a version checked beside it in the same process
    may have caused it), or "unavailable" (the location cannot check now: 503, retried by
    the operator). A timeout or a crash is the version's fault only when it was alone; a
    validator that did not start or answer had no version loaded to blame."""
    if kind == CHECK_OK:
        return "ok"
    if kind == CHECK_UNAVAILABLE:
        return "unavailable"
    if kind in (CHECK_TIMED_OUT, CHECK_CRASHED) and not alone:
        return "again"
    return "blame"


def crash_reason(stderr: str) -> str:
    """What a workerd that died says about why, from its stderr: the fatal error line (V8's
    "Reached heap limit"), else its last line that is not the signal or the stack."""
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    fatal = [x for x in lines if "fatal" in x.lower()]
    rest = [x for x in lines if not x.startswith(("stack:", "*** "))]
    return (fatal or rest or ["it exited without a word"])[-1][:MAX_MESSAGE]


# errno of a failed store write → the answer's status: out of space is 507 (Insufficient
# Storage), anything else (EMFILE, EIO...) 503; both retryable, neither a refusal.
_OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT}


def store_failed(err: OSError) -> tuple[int, str]:
    """The status and message of a change that could not be stored: nothing of it was
    stored or served, the location keeps serving the last good versions."""
    status = 507 if err.errno in _OUT_OF_SPACE else 503
    what = "out of disk space" if status == 507 else "cannot write its store"
    message = (
        f"this location is {what} ({err.strerror or err}): nothing of this change was "
        "stored or served, the last good version keeps serving; retry once it has room"
    )
    return status, message


def own_cell_failure(worker: str, why: str, retryable: bool) -> Result:
    """The answer to a Durable Object Worker whose own cell did not start: a start that timed
    out or lacked a resource (a loaded machine, no fds) is retried (503); one where workerd
    exited on the Worker is refused (422)."""
    if retryable:
        message = f"the Worker's cell did not start here, retry: {why}"
        return Result.error(503, message, worker=worker)
    return Result.error(422, f"workerd refused the Worker: {why}", worker=worker)
