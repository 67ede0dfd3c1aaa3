"""How long one urgent key (a rollback) waits in the operator's work queue behind a burst of
10,000 background keys (a resync), against the same key in an empty queue. A script that
prints figures; it asserts nothing, and needs no servers.

    PYTHONPATH=operator .venv/bin/python bench/queue_bench.py [--keys 10000]

The queue is the operator's own (reconcile/workqueue.py) with its default concurrency (32),
and keys spread over 10 namespaces as the controller's are. The handler takes about 1 ms in
one of two ways:
  - io:  it awaits 1 ms (a reconcile waiting on the apiserver or an agent)
  - cpu: it spins 1 ms without yielding (a reconcile's compile and validation; the operator
         is single-threaded, so handlers already started run before anything else does)
For each, the urgent key's wait (add -> handler start) is measured with an empty queue, then
added once 1,000 keys of the burst have run, and, for scale, added in the burst's own lane
(the wait a single FIFO queue gave it before lanes).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO / "operator") not in sys.path:
    sys.path.insert(0, str(_REPO / "operator"))

from edgeplane.controller import Settings  # noqa: E402
from edgeplane.plan.lanes import Lane  # noqa: E402
from edgeplane.reconcile.workqueue import WorkQueue  # noqa: E402

Key = tuple[str, str, str]
URGENT: Key = ("Worker", "ns3", "rollback")


class Run:
    """One queue, a handler of about `ms`, and when the urgent key was added and started."""

    def __init__(self, work: str, ms: float) -> None:
        self.work, self.seconds = work, ms / 1000
        self.done = 0
        self.added = self.started = 0.0
        self.ran = asyncio.Event()
        self.under_way = asyncio.Event()
        self.burst_before = 0  # burst keys run before the urgent one started
        self.queue: WorkQueue[Key] = WorkQueue(
            "bench", self.handle, Settings().concurrency, namespace=lambda k: k[1]
        )

    async def handle(self, key: Key) -> None:
        if key == URGENT:
            self.started = time.perf_counter()
            self.burst_before = self.done
            self.ran.set()
        if self.work == "io":
            await asyncio.sleep(self.seconds)
        else:
            end = time.perf_counter() + self.seconds
            while time.perf_counter() < end:
                pass
        self.done += 1
        if self.done == 1000:
            self.under_way.set()

    async def wait_of_urgent(self, lane: Lane) -> float:
        self.added = time.perf_counter()
        self.queue.add(URGENT, lane)
        await self.ran.wait()
        return self.started - self.added


async def idle_wait(work: str, ms: float) -> float:
    run = Run(work, ms)
    run.queue.start()
    wait = await run.wait_of_urgent("urgent")
    await run.queue.stop()
    return wait


async def loaded_wait(work: str, ms: float, keys: int, lane: Lane) -> tuple[float, int]:
    run = Run(work, ms)
    for i in range(keys):
        run.queue.add(("Worker", f"ns{i % 10}", f"w{i}"), "background")
    run.queue.start()
    await run.under_way.wait()
    wait = await run.wait_of_urgent(lane)
    await run.queue.stop()
    return wait, run.burst_before - 1000


def queued_bytes(keys: int) -> float:
    """Bytes the queue holds per queued key (tracemalloc), each key added three times."""
    async def fill() -> int:
        q: WorkQueue[Key] = WorkQueue("bench-mem", lambda k: asyncio.sleep(0))
        names = [("Worker", f"ns{i % 10}", f"w{i}") for i in range(keys)]  # not counted
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for lane in ("background", "normal", "urgent"):
            for key in names:
                q.add(key, lane)
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return used

    return asyncio.run(fill()) / keys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--ms", type=float, default=1.0, help="handler time, milliseconds")
    ap.add_argument("--reps", type=int, default=5, help="loaded runs per figure")
    args = ap.parse_args()
    print(f"{args.keys} background keys over 10 namespaces, handler {args.ms} ms, "
          f"concurrency {Settings().concurrency}")
    for work in ("io", "cpu"):
        idle = statistics.median(asyncio.run(idle_wait(work, args.ms)) for _ in range(50))
        loaded = [asyncio.run(loaded_wait(work, args.ms, args.keys, "urgent"))
                  for _ in range(args.reps)]
        waits = [w for w, _ in loaded]
        fifo, fifo_before = asyncio.run(loaded_wait(work, args.ms, args.keys, "background"))
        p50 = statistics.median(waits)
        print(f"[{work}] urgent key, empty queue: p50 {idle * 1000:.3f} ms (50 runs)")
        print(f"[{work}] urgent key behind the burst: p50 {p50 * 1000:.3f} ms, "
              f"max {max(waits) * 1000:.3f} ms ({args.reps} runs; burst keys finished "
              f"before it started: {max(b for _, b in loaded)} at most); ratio to empty "
              f"{p50 / idle:.1f}")
        print(f"[{work}] same key in the burst's lane (one FIFO, as before lanes): "
              f"{fifo * 1000:.1f} ms, {fifo_before} burst keys before it; "
              f"{fifo / p50:.0f}x the urgent wait")
    print(f"memory: {queued_bytes(args.keys):.0f} bytes per queued key "
          f"({args.keys} keys each added in all three lanes)")


if __name__ == "__main__":
    main()
