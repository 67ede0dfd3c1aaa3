"""The agent's Prometheus metrics, in a registry of their own (served on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edgeplane.edge import counts


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r, p = self.registry, "edgeplane_agent_"
        self.publishes = Counter(
            p + "publishes_total",
            "State pushes to the front (routes, placement, cells): every deploy is one",
            ["result"],
            registry=r,
        )
        self.publish_time = Histogram(
            p + "publish_duration_seconds",
            "From a batch of changes accepted to the front serving them (code stored, state "
            "pushed; a Durable Object Worker's own cell started)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=r,
        )
        self.workers = Gauge(p + "workers", "Workers served", registry=r)
        self.pushes = Counter(p + "pushes_total", "PUT/DELETE requests", ["result"], registry=r)
        self.validation_failures = Counter(
            p + "validation_failures_total", "Bundles refused by validation", registry=r
        )
        self.validation_runs = Counter(
            p + "validation_runs_total", "Versions loaded by the validator cell", registry=r
        )
        self.restarts = Counter(
            p + "workerd_restarts_total",
            "workerd processes replaced: a cell or the front that exited (crash) or stopped "
            "answering its watchdog probe (hang)",
            ["process", "reason"],
            registry=r,
        )
        self.quarantined = Gauge(
            p + "quarantined_versions", "Versions quarantined at this location", registry=r
        )
        self.corrupt_files = Counter(
            p + "store_corrupt_files_total",
            "Files of the agent's store that did not load at start (truncated, overwritten, "
            "not what was accepted), by kind; each is moved aside as <name>.<time>.corrupt and "
            "the location serves without it (a deployment is pushed again by the operator)",
            ["kind"],
            registry=r,
        )
        self.store_write_failures = Counter(
            p + "store_write_failures_total",
            "Writes to the agent's state dir that failed (a full disk, no file descriptors), "
            "by file: a batch (answered 507/503, nothing of it stored or served), or a file "
            "rewritten in the background (kept and retried)",
            ["file"],
            registry=r,
        )
        self.cells = Gauge(p + "cells", "Cells (workerd processes serving Workers)", registry=r)
        self.requests = Counter(
            p + "requests_total",
            "Requests the router dispatched to a Worker version, by status class (an "
            "exception thrown by the Worker is a 5xx)",
            ["worker", "version", "code"],
            registry=r,
        )
        self._pushes_received(r, p)
        self._exported: counts.Snapshot = {}

    def _pushes_received(self, r: CollectorRegistry, p: str) -> None:
        self.blobs_received = Counter(
            p + "blobs_received_total",
            "Blobs (modules, static assets' files) PUT to the agent: stored, or already present",
            ["result"],
            registry=r,
        )
        self.received_bytes = Counter(
            p + "received_bytes_total",
            "Bytes of pushes as sent (Content-Length, gzipped or not): deployments, blobs",
            ["kind"],
            registry=r,
        )

    def export_requests(self, totals: counts.Snapshot) -> None:
        """Advance the requests counter to `totals` (which only grow)."""
        for key, codes in totals.items():
            done = self._exported.setdefault(key, [0] * len(codes))
            for i, n in enumerate(codes):
                if n > done[i]:
                    self.requests.labels(key[0], key[1], counts.CODES[i]).inc(n - done[i])
                    done[i] = n
