"""An EdgeTarget's status from what its last health check saw, and when to write it (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edgeplane.api import EdgeTargetStatus, set_condition


@dataclass(frozen=True)
class Health:
    """What the operator last learnt of one location's agent."""

    reachable: bool | None
    reason: str = ""  # why not: Unreachable, CredentialsNotFound, InsecureEndpoint, ...
    message: str = ""
    workers: int | None = None  # None: the inventory was never read
    info: dict[str, Any] = field(default_factory=dict)  # the agent's /v1/info


COUNT_EVERY = 10.0  # seconds; the WORKERS column may lag a deploy by this much


def write_due(
    prev: EdgeTargetStatus, health: Health, changed: bool, since_write: float, heartbeat: float
) -> bool:
    """Write when something changed (pushes change the count between health checks), when
    the Ready condition written says otherwise than the health (a push, not a health
    check, found the location down, and why), and at least every `heartbeat` seconds so
    lastHeartbeat stays fresh. A new count alone waits `COUNT_EVERY` seconds after the last
    write: a deploy of 10,000 Workers changes it at every health check for as long as it
    lasts, which was a write per location every few seconds."""
    count = health.workers if health.workers is not None else prev.workers
    versions = (health.info.get("agentVersion", prev.agent_version) != prev.agent_version
                or health.info.get("runtimeVersion", prev.runtime_version)
                != prev.runtime_version)
    recount = count != prev.workers and (prev.workers is None or since_write >= COUNT_EVERY)
    return (changed or versions or recount or since_write >= heartbeat
            or shown_ready(prev) != ready_of(health))


def heartbeat_age(prev: EdgeTargetStatus, now: datetime) -> float:
    """Seconds since the lastHeartbeat written, by whichever operator wrote it: a started
    operator's first checks rewrite nothing but a heartbeat that is due."""
    if prev.last_heartbeat is None:
        return float("inf")
    return (now - prev.last_heartbeat).total_seconds()


def ready_of(health: Health) -> tuple[bool, str]:
    """The Ready condition's status and reason for a health check's result."""
    if health.reachable:
        return True, "Reachable"
    return False, health.reason or "Unreachable"


def shown_ready(prev: EdgeTargetStatus) -> tuple[bool, str] | None:
    """The Ready condition's status and reason as last written; None if never."""
    cond = next((c for c in prev.conditions if c.type == "Ready"), None)
    return None if cond is None else (cond.status == "True", cond.reason)


def target_status(
    prev: EdgeTargetStatus, generation: int | None, health: Health, now: datetime
) -> EdgeTargetStatus:
    """The status after a health check. Only the previous status and the generation are
    read, so a target whose spec the model now refuses (admitted before a rule) still gets
    a status saying why."""
    ready, reason = ready_of(health)
    message = ("the agent answers and reports its inventory" if ready
               else health.message or "the agent does not answer")
    cond = (ready, reason, message)
    return EdgeTargetStatus(
        observed_generation=generation,
        conditions=set_condition(
            list(prev.conditions), "Ready", *cond, observed_generation=generation
        ),
        last_heartbeat=now if health.reachable else prev.last_heartbeat,
        agent_version=health.info.get("agentVersion", prev.agent_version),
        runtime_version=health.info.get("runtimeVersion", prev.runtime_version),
        workers=health.workers if health.workers is not None else prev.workers,
    )
