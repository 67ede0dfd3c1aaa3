"""The watched source cache: which event or read wins, and which events are kept."""

from __future__ import annotations

import base64

import pytest

from edgeplane.resolve.sources import Resolver, newer


@pytest.mark.parametrize(
    ("held", "version", "replaces"),
    [
        (None, 5, True),  # nothing held yet
        ((4, {"k": "v"}), 5, True),  # a newer event
        ((5, {"k": "v"}), 5, True),  # the same version again (a relist)
        ((6, {"k": "v"}), 5, False),  # a read that left before the newer event came
        ((0, None), 1, True),  # read as missing, then created
    ],
)
def test_newer(held: tuple | None, version: int, replaces: bool) -> None:
    assert newer(held, version) is replaces


def _cm(name: str, rv: int, value: str) -> dict:
    return {
        "metadata": {"namespace": "apps", "name": name, "resourceVersion": str(rv)},
        "data": {"index.js": value},
        "binaryData": {"blob": base64.b64encode(b"\x00\x01").decode()},
    }


def _secret(rv: int, value: bytes) -> dict:
    return {
        "metadata": {"namespace": "apps", "name": "s", "resourceVersion": str(rv)},
        "data": {"token": base64.b64encode(value).decode()},
    }


def test_events_keep_referenced_sources_current_and_ignore_the_rest() -> None:
    r = Resolver(kube=None)  # type: ignore[arg-type]
    r.seen("ConfigMap", _cm("unread", 3, "x"), deleted=False, referenced=False)
    assert r.sources == {}  # nobody reads it: not kept
    r.seen("ConfigMap", _cm("code", 3, "v1"), deleted=False, referenced=True)
    assert r.sources[("ConfigMap", "apps", "code")] == (
        3, {"index.js": "v1", "blob": b"\x00\x01"}
    )
    # Once kept, it follows its events even if the index no longer names a reader.
    r.seen("ConfigMap", _cm("code", 7, "v2"), deleted=False, referenced=False)
    r.seen("ConfigMap", _cm("code", 5, "old"), deleted=False, referenced=True)  # late: ignored
    assert r.sources[("ConfigMap", "apps", "code")][1]["index.js"] == "v2"
    r.seen("ConfigMap", _cm("code", 9, "v2"), deleted=True, referenced=True)
    assert r.sources[("ConfigMap", "apps", "code")] == (9, None)
    r.seen("Secret", _secret(4, b"hunter2"), deleted=False, referenced=True)
    assert r.sources[("Secret", "apps", "s")] == (4, {"token": b"hunter2"})


def test_an_event_during_the_first_read_is_kept() -> None:
    """The index may not name the reader yet while its first read is under way."""
    r = Resolver(kube=None)  # type: ignore[arg-type]
    r._fetching.add(("ConfigMap", "apps", "code"))
    r.seen("ConfigMap", _cm("code", 12, "new"), deleted=False, referenced=False)
    assert r.sources[("ConfigMap", "apps", "code")][0] == 12


def test_a_source_read_as_deleted_after_a_watch_gap_is_dropped_unless_an_event_beat_it() -> None:
    r = Resolver(kube=None)  # type: ignore[arg-type]
    r.seen("ConfigMap", _cm("code", 3, "v1"), deleted=False, referenced=True)
    r.seen("ConfigMap", _cm("other", 4, "v1"), deleted=False, referenced=True)
    r.seen("ConfigMap", _cm("gone", 5, "v1"), deleted=True, referenced=True)
    r.seen("Secret", _secret(6, b"x"), deleted=False, referenced=True)
    held = r.held("ConfigMap")
    assert held == {("ConfigMap", "apps", "code"): 3, ("ConfigMap", "apps", "other"): 4}
    # A read found both missing; meanwhile "other" was created again (a newer event).
    r.seen("ConfigMap", _cm("other", 8, "v2"), deleted=False, referenced=True)
    assert r.gone(("ConfigMap", "apps", "code"), held[("ConfigMap", "apps", "code")])
    assert not r.gone(("ConfigMap", "apps", "other"), held[("ConfigMap", "apps", "other")])
    assert r.sources[("ConfigMap", "apps", "code")] == (3, None)
    assert r.sources[("ConfigMap", "apps", "other")][1]["index.js"] == "v2"
    assert not r.gone(("ConfigMap", "apps", "code"), 3)  # already dropped
    # Created again later: its event replaces the drop.
    r.seen("ConfigMap", _cm("code", 9, "v3"), deleted=False, referenced=False)
    assert r.sources[("ConfigMap", "apps", "code")][1]["index.js"] == "v3"
