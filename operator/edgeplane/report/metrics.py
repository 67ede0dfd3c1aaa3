"""The operator's Prometheus metrics, named after controller-runtime's with an
`edgeplane_` prefix so existing dashboards and alerts translate directly."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# `bucket`: the bucket of the key (plan/buckets.py); with several replicas, each replica's
# series show which buckets it reconciled.
RECONCILE_TOTAL = Counter(
    "edgeplane_reconcile_total", "Reconciles by controller, result and bucket.",
    ["controller", "result", "bucket"],
)
BUCKET_HELD = Gauge(
    "edgeplane_bucket_held", "1 for each bucket this replica holds (several replicas).",
    ["bucket"],
)
RECONCILE_ERRORS = Counter(
    "edgeplane_reconcile_errors_total", "Reconciles that ended in an error.", ["controller"]
)
RECONCILE_TIME = Histogram(
    "edgeplane_reconcile_time_seconds",
    "Time of one reconcile.",
    ["controller"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
# `lane`: urgent, normal or background (plan/lanes.py); `sum by (name)` reads the old totals.
WORKQUEUE_DEPTH = Gauge(
    "edgeplane_workqueue_depth", "Keys waiting in the queue.", ["name", "lane"]
)
WORKQUEUE_ADDS = Counter("edgeplane_workqueue_adds_total", "Keys added.", ["name", "lane"])
WORKQUEUE_RETRIES = Counter("edgeplane_workqueue_retries_total", "Keys retried.", ["name"])
WORKQUEUE_QUEUE_DURATION = Histogram(
    "edgeplane_workqueue_queue_duration_seconds",
    "Time a key waited in the queue.",
    ["name", "lane"],
)
WORKQUEUE_WORK_DURATION = Histogram(
    "edgeplane_workqueue_work_duration_seconds", "Time spent handling a key.", ["name"]
)
WORKQUEUE_LONGEST_RUNNING = Gauge(
    "edgeplane_workqueue_longest_running_processor_seconds",
    "Seconds the longest-running handler of the queue has been running.",
    ["name"],
)
WORKQUEUE_UNFINISHED_WORK = Gauge(
    "edgeplane_workqueue_unfinished_work_seconds",
    "Seconds of work in progress not yet observed in the work duration; a large value "
    "with little throughput means stuck handlers.",
    ["name"],
)
PUSHES = Counter(
    "edgeplane_pushes_total", "Deployments pushed to edge agents.", ["target", "result"]
)
PUSH_TIME = Histogram(
    "edgeplane_push_duration_seconds",
    "Time of one push, until the agent serves it.",
    ["target"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
WORKERS = Gauge("edgeplane_workers", "Workers by readiness.", ["ready"])
CRON_RUNS = Counter(
    "edgeplane_cron_runs",
    "Cron trigger occurrences run, by Worker and outcome (after retries), as the locations "
    "report them.",
    ["namespace", "name", "outcome"],
)
TARGET_UP = Gauge("edgeplane_target_up", "1 when an EdgeTarget's agent answers.", ["target"])
ROLLOUTS = Counter(
    "edgeplane_rollouts_total",
    "Rollouts of a new version that ended, by result: complete or rolled_back.",
    ["result"],
)
for _result in ("complete", "rolled_back"):
    ROLLOUTS.labels(_result)  # exported at 0, so alerts on it have a series from the start
