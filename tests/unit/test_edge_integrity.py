"""What the agent does with each file of its store at start (edgeplane.edge.integrity):
tables of file contents and the decision, and that no reason quotes a file's content."""

from __future__ import annotations

import pytest

from edgeplane.edge.integrity import (
    RETRY_MAX,
    code_fault,
    next_retry,
    parse_deployment,
    parse_json_object,
    parse_key,
)
from edgeplane.wire import BundleBinding
from tests.integration.edge_fixtures import body_of, bundle, deployment, text_worker

SECRET = "s3cr3t-value-never-in-a-log"
D = deployment(
    bundle(
        "ns.a",
        "export default { fetch() { return new Response('a') } };",
        bindings=(BundleBinding(name="KEY", secret=SECRET),),
    )
)
RAW = body_of(D)


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("ns.a", RAW, ""),
        ("ns.a", RAW[: len(RAW) // 2], "not JSON, truncated or overwritten"),
        ("ns.a", b"", "not JSON, truncated or overwritten (0 bytes)"),
        ("ns.a", b'{"worker": ', "not JSON, truncated or overwritten (11 bytes)"),
        ("ns.a", b"\xff\xfe\x00garbage", "not UTF-8 (10 bytes)"),
        ("ns.a", b"[1, 2]", "not a deployment: 1 invalid fields"),
        # The model's own checks (a version id is its content's hash) hold too.
        ("ns.a", RAW.replace(b'"ns.a"', b'"ns.b"'), "not a deployment: 2 invalid fields"),
        ("ns.b", RAW, "holds Worker 'ns.a', not 'ns.b'"),  # not the file it is in
        # The secret in a field of the wrong type: named by field, never by value.
        ("ns.a", RAW.replace(f'"{SECRET}"'.encode(), f"[\"{SECRET}\"]".encode()), "not a "),
    ],
)
def test_parse_deployment(name: str, raw: bytes, reason: str) -> None:
    d, why = parse_deployment(name, raw)
    if reason:
        assert d is None and why.startswith(reason), why
    else:
        assert d == D and why == ""
    assert SECRET not in why


@pytest.mark.parametrize(
    ("raw", "doc", "reason"),
    [
        (b'{"a": "b"}', {"a": "b"}, ""),
        (b"{}", {}, ""),
        (b'{"a": ', None, "not JSON, truncated or overwritten (6 bytes)"),
        (b"\x00\xff", None, "not JSON, truncated or overwritten (2 bytes)"),
        (b"[]", None, "not a JSON object but list"),
        (b'"x"', None, "not a JSON object but str"),
    ],
)
def test_parse_json_object(raw: bytes, doc: dict | None, reason: str) -> None:
    assert parse_json_object(raw) == (doc, reason)


SPEC = b'{"version":"v1","modules":[{"name":"index.js","type":"esModule","sha256":"ab"}]}'
# The same version's file as the release before wrote it: modules inline.
INLINE = b'{"version":"v1","modules":[{"name":"index.js","type":"esModule","content":"x"}]}'


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (SPEC, None),  # whole: kept
        (INLINE, ""),  # an older release's form: written again, not set aside
        (INLINE.replace(b"v1", b"v2"), "differs from the accepted version"),  # another version
        (None, ""),  # missing: written
        (SPEC[:10], f"truncated (10 of {len(SPEC)} bytes)"),
        (b"", f"truncated (0 of {len(SPEC)} bytes)"),
        (b"x" * 5, f"differs from the accepted version (5 bytes, {len(SPEC)} expected)"),
        (SPEC + b"\n", f"differs from the accepted version ({len(SPEC) + 1} bytes, "),
    ],
)
def test_code_fault(stored: bytes | None, expected: str | None) -> None:
    got = code_fault(stored, SPEC)
    if expected:
        assert got is not None and got.startswith(expected)
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        (b"k" * 40 + b"\n", "k" * 40, ""),
        (b"short", "", ""),  # replaced, as ever
        (b"", "", ""),  # missing
        (b"\xff" * 40, "", "not UTF-8 (40 bytes)"),  # set aside, then replaced
    ],
)
def test_parse_key(raw: bytes, key: str, reason: str) -> None:
    assert parse_key(raw, 32) == (key, reason)


def test_next_retry_doubles_up_to_a_cap() -> None:
    delays = [next_retry(None)]
    for _ in range(10):
        delays.append(next_retry(delays[-1]))
    assert delays[:3] == [1.0, 2.0, 4.0]
    assert delays[-1] == RETRY_MAX and delays == sorted(delays)


def test_text_worker_round_trip() -> None:
    raw = body_of(deployment(text_worker("ns.t", "t")))
    assert parse_deployment("ns.t", raw)[1] == ""
