"""Push sizes and bytes in flight (issue #14 items 7 and 8): the body limit derived from
Cloudflare's Worker size limits, the preflight that refuses a Worker a rollout could not
push, what the agent reserves for a body, an agent's Retry-After, and the byte budget."""

from __future__ import annotations

import asyncio

import pytest

from edgeplane.budget import ByteBudget, share
from edgeplane.distribute.client import encode, weight
from edgeplane.wire import (
    DEPLOYMENT_OVERHEAD,
    MAX_UNCOMPRESSED,
    body_limit,
    body_reservation,
    gzip_worthy,
    retry_after_seconds,
    rollout_size_refusal,
)
from tests.integration.edge_fixtures import bundle, deployment

MIB = 1024 * 1024
LEGAL_MAX_JSON = -(-MAX_UNCOMPRESSED * 4 // 3)  # 64 MB of binary modules, as base64


@pytest.mark.parametrize(
    ("versions", "modules", "expected"),
    [
        (2, MAX_UNCOMPRESSED, 2 * LEGAL_MAX_JSON + DEPLOYMENT_OVERHEAD),
        (1, MAX_UNCOMPRESSED, LEGAL_MAX_JSON + DEPLOYMENT_OVERHEAD),
        (2, 3, 2 * 4 + DEPLOYMENT_OVERHEAD),
        (2, 1, 2 * 2 + DEPLOYMENT_OVERHEAD),  # rounded up, never under
    ],
)
def test_body_limit(versions: int, modules: int, expected: int) -> None:
    assert body_limit(versions, modules) == expected


def test_the_default_limit_takes_two_legal_versions_and_is_far_above_the_old_16_mib() -> None:
    assert body_limit() >= 2 * MAX_UNCOMPRESSED * 4 / 3
    assert body_limit() > 160 * MIB


@pytest.mark.parametrize(
    ("bundle_json", "limits", "refused", "names"),
    [
        (LEGAL_MAX_JSON, {"edge-1": body_limit()}, False, ()),  # the largest legal: fits
        (LEGAL_MAX_JSON + 1, {"edge-1": body_limit()}, True, ("edge-1", "--max-body")),
        (10 * MIB, {"a": 16 * MIB, "b": body_limit()}, True, ("EdgeTarget a", "16777216")),
        (5 * MIB, {"a": 16 * MIB, "b": body_limit()}, False, ()),
        # The smallest limit is named (ties by name), with the size the rollout needs.
        (20 * MIB, {"b": 30 * MIB, "a": 30 * MIB, "c": 40 * MIB}, True, ("EdgeTarget a",)),
        (20 * MIB, {}, False, ()),
        (1, {"a": 1}, True, (str(2 + DEPLOYMENT_OVERHEAD), "1 byte request limit")),
    ],
)
def test_rollout_size_refusal(
    bundle_json: int, limits: dict[str, int], refused: bool, names: tuple[str, ...]
) -> None:
    why = rollout_size_refusal(bundle_json, limits)
    assert (why is not None) == refused, why
    for name in names:
        assert name in (why or ""), why
    if why:
        assert why.startswith("spec.modules: ") and str(bundle_json) in why


@pytest.mark.parametrize(
    ("max_body", "content_length", "encoded", "declared", "expected"),
    [
        (100, 50, False, None, 50),  # plain: its length
        (100, 101, False, None, None),  # plain and over: 413 unread
        (100, 50, False, "80", 50),  # plain: the header is not needed
        (100, None, False, None, 100),  # chunked, no length: up to the limit
        (100, 10, True, "80", 80),  # gzipped: the decoded length it announces
        (100, 10, True, "101", None),  # announces more than the limit: 413 unread
        (100, 10, True, None, 100),  # gzipped without the header: up to the limit
        (100, 10, True, "-5", 100),  # not a length: as if absent
        (100, 10, True, "٣", 100),  # not ASCII digits
        (100, 10, True, "0", 0),
    ],
)
def test_body_reservation(
    max_body: int, content_length: int | None, encoded: bool, declared: str | None,
    expected: int | None,
) -> None:
    assert body_reservation(max_body, content_length, encoded, declared) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("1", 1.0), ("0", 0.1), ("120", 10.0), (" 2 ", 2.0), ("soon", None),
     ("Fri, 27 Nov 2026 14:00:00 GMT", None), ("-1", None), ("1.5", None)],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert retry_after_seconds(header) == expected


@pytest.mark.parametrize(
    ("length", "gzipped"), [(0, False), (64 * 1024 - 1, False), (64 * 1024, True), (MIB, True)]
)
def test_gzip_worthy(length: int, gzipped: bool) -> None:
    assert gzip_worthy(length) == gzipped


@pytest.mark.parametrize(
    ("size", "capacity", "expected"), [(10, 100, 10), (0, 100, 1), (100, 100, 100), (500, 100, 100)]
)
def test_share(size: int, capacity: int, expected: int) -> None:
    assert share(size, capacity) == expected


def test_a_large_body_travels_gzipped_with_its_decoded_length() -> None:
    big = deployment(bundle("ns.big", "export default {};//" + "x" * MIB))
    body = encode(big)
    assert body.encoded and len(body.data) < body.decoded / 10
    assert body.headers() == {
        "Content-Encoding": "gzip",
        "Edgeplane-Decoded-Length": str(body.decoded),
    }
    assert weight(big) >= body.decoded  # what it reserves covers its JSON
    small = encode(deployment(bundle("ns.small", "export default {};")))
    assert not small.encoded and small.headers() == {}


async def test_the_budget_never_holds_more_than_its_capacity_and_serves_in_order() -> None:
    budget = ByteBudget(100)
    order: list[int] = []

    async def push(i: int, size: int) -> None:
        async with budget.holding(size):
            order.append(i)
            assert budget.used <= budget.capacity
            await asyncio.sleep(0.01)

    await asyncio.gather(*(push(i, s) for i, s in enumerate([60, 60, 500, 10, 30])))
    assert budget.peak <= 100 and budget.used == 0
    assert order == [0, 1, 2, 3, 4]  # the large one is not starved by the small ones after it


async def test_a_waiter_cancelled_gives_nothing_back_twice_and_unblocks_the_next() -> None:
    budget = ByteBudget(100)
    first = await budget.take(80)
    blocked = asyncio.ensure_future(budget.take(50))
    small = asyncio.ensure_future(budget.take(10))
    await asyncio.sleep(0)
    assert not blocked.done() and not small.done()  # in line behind the 50
    blocked.cancel()
    await asyncio.sleep(0)
    assert await small == 10 and budget.used == 90
    budget.give(first)
    budget.give(10)
    assert budget.used == 0 and budget.try_take(100) == 100
