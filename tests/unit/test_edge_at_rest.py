"""The agent's state dir at rest (edgeplane.edge.store): what it writes is 0600 in 0700
directories whatever the umask, and what a killed agent left behind is purged at start."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeplane.edge import render, store
from edgeplane.edge.blobs import Blobs
from edgeplane.edge.store import (
    LazyFile,
    Store,
    atomic_write,
    leftovers,
    private_dir,
    secure_state,
    write_private,
)
from edgeplane.wire import BundleBinding
from tests.integration.edge_fixtures import bundle, deployment

KEY = "k" * 43  # the location's internal key (store.load_internal_key)


def mode(p: Path) -> int:
    return p.lstat().st_mode & 0o777


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def loose_umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process umask an agent may be started with: files would be 0644 or 0666."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


V = "ab" * 32  # a version id: code/<version>.json


@pytest.mark.parametrize(
    ("directory", "names", "purged"),
    [
        ("run", [], []),
        # The configs of the front, the cells and the validator hold secrets or paths to
        # them; the validator's check dir holds code specs. Adopted processes read their
        # config when they started, so none is needed once they run.
        (
            "run",
            [
                "config-front.capnp",
                "config-c0.capnp",
                "config-do-ns.a.capnp",
                "config-validator-0.capnp",
                "check",
                "dataplane.json",
                "placement.json",
                "endpoints.json",
                "front.log",
                "cell-c0.log",
            ],
            [
                "check",
                "config-c0.capnp",
                "config-do-ns.a.capnp",
                "config-front.capnp",
                "config-validator-0.capnp",
            ],
        ),
        # What a killed agent of the previous release (one workerd, restarted per change)
        # left: numbered configs and validation runs, each holding secret values.
        (
            "run",
            ["config-1.capnp", "config-42.capnp", "validate-3", "endpoints.json"],
            ["config-1.capnp", "config-42.capnp", "validate-3"],
        ),
        ("run", [".endpoints.json.tmp-812", "endpoints.json"], [".endpoints.json.tmp-812"]),
        # Only names the agent makes: nothing that merely looks alike.
        (
            "run",
            [
                "config-.capnp",
                "config-c0.capnp.bak",
                "checks",
                "check.1",
                "validate-",
                "validate-1x",
            ],
            [],
        ),
        ("run", ["config.capnp", "validate", ".tmp-1", "x.tmp-1", ".x.tmp-"], []),
        (
            "deployments",
            ["ns.a.json", ".ns.a.json.tmp-7", ".ns.b.json.tmp-12345"],
            [".ns.a.json.tmp-7", ".ns.b.json.tmp-12345"],
        ),
        # Workerd configs and validation runs live in run/ only: a Worker's file stays.
        ("deployments", ["config-1.capnp", "validate-2", "check"], []),
        ("code", [f"{V}.json", f".{V}.json.tmp-7"], [f".{V}.json.tmp-7"]),
        ("code", ["config-c0.capnp", "check"], []),
        ("front", ["state.json", ".state.json.tmp-3"], [".state.json.tmp-3"]),
        (
            ".",
            [
                ".exclusions.json.tmp-9",
                ".quarantine.json.tmp-9",
                ".signing-key.tmp-9",
                "exclusions.json",
                "quarantine.json",
                "signing-key",
                *("deployments", "code", "front", "run", "do", "kv"),
            ],
            [".exclusions.json.tmp-9", ".quarantine.json.tmp-9", ".signing-key.tmp-9"],
        ),
        (".", ["config-1.capnp", "validate-1", "check"], []),
    ],
)
def test_leftovers(directory: str, names: list[str], purged: list[str]) -> None:
    assert leftovers(directory, names) == purged


def test_atomic_write_is_private(tmp_path: Path, loose_umask: int) -> None:
    p = tmp_path / "endpoints.json"
    p.write_text("{}")
    p.chmod(0o644)  # as an older agent left it
    atomic_write(p, b'{"a": 1}')
    assert mode(p) == 0o600 and p.read_bytes() == b'{"a": 1}'


def test_store_files_and_directory_are_private(tmp_path: Path, loose_umask: int) -> None:
    (tmp_path / "deployments").mkdir(mode=0o755)
    (tmp_path / "deployments").chmod(0o755)
    s = Store(tmp_path, Blobs(tmp_path))
    secret = BundleBinding(name="K", secret="s3cr3t")
    d = deployment(bundle("ns.a", "export default {}", bindings=(secret,)))
    s._commit_sync(s._prepare_sync({"ns.a": d}))
    asyncio.run(s.save_exclusions({"ns": ("x.test/*",)}))
    # A code spec holds the secret's value: the cells load it as the Worker's binding.
    asyncio.run(s.save_code({d.primary: json.dumps(render.code_spec(d.versions[0])).encode()}))
    asyncio.run(s.save_quarantine({d.primary: "it hung its cell"}))
    s.load_signing_key()
    for directory in ("deployments", "code"):
        assert mode(tmp_path / directory) == 0o700, directory
    files = ["deployments/ns.a.json", f"code/{d.primary}.json", "exclusions.json"]
    for f in (*files, "quarantine.json", "signing-key"):
        assert mode(tmp_path / f) == 0o600, f


def test_workerd_configs_and_disks_are_private(tmp_path: Path, loose_umask: int) -> None:
    """What the agent gives workerd (cells.py, validate.py): a config written with
    write_private, its disk services' directories made with private_dir."""
    (tmp_path / "kv").mkdir(mode=0o755)
    (tmp_path / "kv").chmod(0o755)  # made by an older agent
    cfg = tmp_path / "run" / "config-c0.capnp"
    cfg.parent.mkdir(mode=0o755)
    cfg.write_text("old")
    cfg.chmod(0o644)  # as an older agent left them
    paths = render.Paths(tmp_path / "do", tmp_path / "kv", tmp_path / "code", tmp_path / "front")
    run = tmp_path / "run"
    for d in (run, paths.do_dir, paths.kv_dir, paths.front_dir, run / "check" / "do"):
        private_dir(Path(d))
    write_private(cfg, render.cell_config(paths, 9, KEY).encode())
    assert mode(cfg) == 0o600
    assert cfg.read_text() == render.cell_config(paths, 9, KEY)
    for d in ("run", "run/check", "run/check/do", "do", "kv", "front"):
        assert mode(tmp_path / d) == 0o700, d


def _loose_tree(root: Path) -> dict[str, str]:
    """A state dir as a killed agent of an older release left it: umask modes, leftovers."""
    files = {
        "deployments/ns.a.json": "{}",
        "deployments/.ns.b.json.tmp-77": "half",
        "exclusions.json": "{}",
        ".exclusions.json.tmp-77": "half",
        "quarantine.json": "{}",
        f"code/{V}.json": "secret",
        f"code/.{V}.json.tmp-77": "half",
        "front/state.json": "{}",
        "front/.state.json.tmp-77": "half",
        "run/endpoints.json": "{}",
        "run/.endpoints.json.tmp-77": "half",
        "run/dataplane.json": "{}",
        "run/config-c0.capnp": "secret",
        "run/check/ab.json": "secret",
        # An agent of the previous release.
        "run/config-3.capnp": "secret",
        "run/validate-2/config.capnp": "secret",
        "run/validate-2/do/x.sqlite": "",
        "do/ns.a-Counter/abc.sqlite": "data",
        "kv/objects/ns/x.sqlite": "data",
    }
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
        p.chmod(0o644)
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        d.chmod(0o755)
    return files


def test_secure_state_purges_leftovers_and_tightens(tmp_path: Path, loose_umask: int) -> None:
    root = tmp_path / "state"
    _loose_tree(root)
    outside = tmp_path / "outside"
    outside.write_text("not the agent's")
    outside.chmod(0o644)
    (root / "run" / "link").symlink_to(outside)
    secure_state(root)
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == [
        f"code/{V}.json",
        "deployments/ns.a.json",
        "do/ns.a-Counter/abc.sqlite",
        "exclusions.json",
        "front/state.json",
        "kv/objects/ns/x.sqlite",
        "quarantine.json",
        "run/dataplane.json",
        "run/endpoints.json",
        "run/link",
    ]
    assert mode(root) == 0o700
    for p in root.rglob("*"):
        if not p.is_symlink():
            assert mode(p) == (0o700 if p.is_dir() else 0o600), p
    assert mode(outside) == 0o644  # a symlink is not followed out of the state dir


def test_a_state_dir_not_the_agents_is_left_as_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mount point owned by root (emptyDir with fsGroup): the agent cannot chmod it, and
    still makes everything inside private."""
    root = tmp_path / "state"
    _loose_tree(root)
    chmod = os.chmod

    def refuse_root(path: str, m: int) -> None:
        if path == str(root):
            raise PermissionError(1, "Operation not permitted", path)
        chmod(path, m)

    monkeypatch.setattr(store.os, "chmod", refuse_root)
    secure_state(root)
    assert mode(root) == 0o755
    assert mode(root / "deployments") == 0o700
    assert mode(root / "deployments" / "ns.a.json") == 0o600


def test_store_files_that_do_not_load_are_set_aside(tmp_path: Path) -> None:
    """Each loader of the store sets a file it cannot use aside (renamed, never removed) and
    serves without it: garbage, a truncation, a deployment in another Worker's file."""
    s = Store(tmp_path, Blobs(tmp_path))
    good = deployment(bundle("ns.good", "export default {};"))
    other = deployment(bundle("ns.other", "export default {};"))
    (s.dir / "ns.good.json").write_bytes(good.model_dump_json(by_alias=True).encode())
    (s.dir / "ns.moved.json").write_bytes(other.model_dump_json(by_alias=True).encode())
    (s.dir / "ns.cut.json").write_bytes(b'{"worker": "ns.cut", "prim')
    s.quarantine_file.write_bytes(b"[1, 2, 3]")
    s.signing_key_file.write_bytes(b"\xff" * 50)
    s.internal_key_file.write_bytes(KEY.encode())
    # Written by an older agent (modules inline): it loads, its modules now by sha256 too.
    good = good.hydrated(s.blobs.read)
    assert s.load_all() == {"ns.good": good}
    assert s.load_quarantine() == {}
    assert len(s.load_signing_key()) >= 32  # a new one
    assert s.load_internal_key() == KEY  # a good one is kept
    assert s.load_exclusions() == {}  # missing: nothing set aside
    assert [(f.kind, f.path.name) for f in s.set_aside] == [
        ("deployment", "ns.cut.json"),
        ("deployment", "ns.moved.json"),
        ("quarantine", "quarantine.json"),
        ("key", "signing-key"),
    ]
    for f in s.set_aside:
        assert f.moved_to.name.startswith(f.path.name + ".")
        assert f.moved_to.name.endswith(".corrupt") and f.moved_to.exists()
    assert "not 'ns.moved'" in s.set_aside[1].reason
    assert sorted(p.name for p in s.dir.glob("*.json")) == ["ns.good.json"]  # the next start
    # The next start finds nothing more to set aside.
    assert Store(tmp_path, Blobs(tmp_path)).load_all() == {"ns.good": good}


async def _until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.01)


async def test_a_lazy_file_keeps_and_retries_what_it_could_not_write(tmp_path: Path) -> None:
    # The real fault: its directory is missing (a full disk fails the same write path).
    path = tmp_path / "missing" / "state.json"
    failures: list[int] = []
    f = LazyFile(path, 0.01, lambda: failures.append(1))
    f.write_soon(lambda: b"one")
    await _until(lambda: len(failures) >= 2)  # counted, and tried again
    f.write_soon(lambda: b"two")  # a newer content while it fails: that one is written
    await _until(lambda: len(failures) >= 4)
    private_dir(path.parent)
    await _until(path.exists)
    assert path.read_bytes() == b"two"
    f.cancel()
