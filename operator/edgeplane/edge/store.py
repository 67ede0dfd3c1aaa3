"""Durable store of accepted deployments: one JSON file per Worker (its modules by sha256,
their bytes in the blob store), the code spec of each version they hold
(`code/<version>.json`, what the cells load, naming the modules' blobs), the versions
quarantined at this location, and one file with every namespace's routes without a Worker;
each written atomically (temp file, fsync, rename, fsync of the directory) so a crash leaves
old or new, never half.

And the state dir at rest: deployments and workerd configs hold secret values in clear, so
every file the agent writes there is 0600 and every directory 0700, whatever the umask;
`secure_state` enforces it at start and removes what a killed agent left behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path
from typing import TYPE_CHECKING

from edgeplane.edge import integrity
from edgeplane.wire import MIN_SIGNING_KEY, WORKER_NAME_RE, Deployment, Exclusions

if TYPE_CHECKING:  # edge/blobs.py writes its files with this module's functions
    from edgeplane.edge.blobs import Blobs

log = logging.getLogger("edgeplane.agent")
FILE_MODE = 0o600
DIR_MODE = 0o700
# O_NOFOLLOW: never write a secret through a symlink to somewhere else.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
_TMP = r"\..+\.tmp-\d+"  # an atomic write that never reached its rename: never accepted
# What a killed agent leaves behind, per directory of the state dir ("." the dir itself):
# temp files of atomic writes, the workerd configs (they hold secrets) and the validator's
# check directory; and what an agent of the previous release left (one workerd restarted per
# change: numbered configs and validation directories, each holding secrets).
LEFTOVERS: dict[str, tuple[str, ...]] = {
    ".": (_TMP,),
    "deployments": (_TMP,),
    "code": (_TMP,),
    "front": (_TMP,),
    "run": (_TMP, r"config-.+\.capnp", r"check", r"validate-\d+"),
}


class LazyFile:
    """A private file rewritten in the background, at most every `every` seconds, with the
    latest content: state that must survive a restart but need not be on disk before a
    change is answered (its cost then never lands on a deploy)."""

    def __init__(self, path: Path, every: float, failed: Callable[[], None] | None = None) -> None:
        self.path = path
        self.every = every
        self.failed = failed  # called on each write that failed (a metric)
        self._content: Callable[[], bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False  # logged once per run of failures, not every retry

    def write_soon(self, content: Callable[[], bytes]) -> None:
        self._content = content
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        await asyncio.sleep(self.every)
        content, self._content = self._content, None
        if content is None:
            return
        try:
            await asyncio.to_thread(lambda: atomic_write(self.path, content()))
        except OSError as e:
            # A full disk or no fds: keep the content (unless a newer one came meanwhile)
            # and try again, never drop it silently.
            if self.failed is not None:
                self.failed()
            if not self._failing:
                log.error("could not write %s, retrying: %s", self.path, e)
            self._failing = True
            if self._content is None:
                self._content = content
            self._task = asyncio.create_task(self._write())
            return
        if self._failing:
            log.info("wrote %s again", self.path)
        self._failing = False

    async def flush(self) -> None:
        """Write what is pending now (at a graceful stop)."""
        if self._task is not None:
            self._task.cancel()
        content, self._content = self._content, None
        if content is not None:
            try:
                await asyncio.to_thread(lambda: atomic_write(self.path, content()))
            except OSError as e:  # a stop must go on: what this file held is lost
                log.error("could not write %s at stop: %s", self.path, e)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


def json_member(key: str, value: object) -> str:
    """`"key":value` as JSON, a member of a JSON object that `json_object` joins: a large
    object (an entry per Worker) kept as its members is encoded once per change, and
    written whole at the cost of a join."""
    return f"{json.dumps(key)}:{json.dumps(value, separators=(',', ':'))}"


def json_object(head: dict[str, object], field: str, members: Iterable[str]) -> bytes:
    """`head`'s fields and `field`, an object joined from `members` (each `json_member`)."""
    fields = json.dumps(head, separators=(",", ":"))[1:-1]
    return f'{{{fields}{"," if fields else ""}"{field}":{{{",".join(members)}}}}}'.encode()


def leftovers(directory: str, names: Iterable[str]) -> list[str]:
    """Of `names` (a listing of `directory`, a key of LEFTOVERS), those to remove at start."""
    patterns = LEFTOVERS[directory]
    return sorted(n for n in names if any(re.fullmatch(p, n) for p in patterns))


def private_dir(path: Path) -> Path:
    """`path`, made if missing (missing parents too) and 0700 whatever the umask: an existing
    one may come from an older agent that left it to the umask."""
    missing = list(takewhile(lambda p: not p.exists(), (path, *path.parents)))
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE, exist_ok=True)
        d.chmod(DIR_MODE)  # mkdir's mode passes through the umask
    path.chmod(DIR_MODE)
    return path


def write_private(path: Path, content: bytes, *, fsync: bool = False) -> None:
    """`path` (created or truncated) holds `content`, 0600 whatever the umask."""
    with os.fdopen(os.open(path, _CREATE, FILE_MODE), "wb") as f:
        os.fchmod(f.fileno(), FILE_MODE)  # an existing file keeps its mode through O_CREAT
        f.write(content)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _stage(path: Path, content: bytes) -> Path:
    """A temp file beside `path` holding `content`, fsynced; none left if that fails (a full
    disk must not keep a half-written temp file taking what room is left)."""
    tmp = _tmp(path)
    try:
        write_private(tmp, content, fsync=True)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def _replace(path: Path, content: bytes) -> None:
    """`path` becomes `content` whole (temp file, fsync, rename); the caller fsyncs the dir."""
    os.replace(_stage(path, content), path)


def atomic_write(path: Path, content: bytes) -> None:
    _replace(path, content)
    fsync_dir(path.parent)


def fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def purge_leftovers(root: Path) -> None:
    """Remove what a killed agent left under the state dir `root` (see LEFTOVERS). Only safe
    before the agent starts workerd: none of its own is running yet, so none uses these
    files. An agent that adopted still-running workerds would have to spare theirs."""
    for directory in LEFTOVERS:
        d = root / directory
        for name in leftovers(directory, os.listdir(d) if d.is_dir() else ()):
            p = d / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)


def _tighten(path: str) -> None:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return  # chmod would follow it out of the state dir
    want = DIR_MODE if stat.S_ISDIR(st.st_mode) else FILE_MODE
    if stat.S_IMODE(st.st_mode) != want:
        os.chmod(path, want)


def tighten_tree(root: Path) -> None:
    """Every file under `root` 0600, every directory 0700: an older agent, or a workerd
    under another umask, may have left them readable by others."""
    try:
        _tighten(str(root))
    except PermissionError:
        # The state dir may be a mount point that is not the agent's (a Kubernetes emptyDir
        # with fsGroup belongs to root): what the agent makes inside it is still private.
        log.warning("state dir %s is not the agent's: cannot make it 0700", root)
    for top, dirs, files in os.walk(root):
        for name in (*dirs, *files):  # directories before os.walk descends into them
            _tighten(os.path.join(top, name))


def secure_state(root: Path) -> None:
    """At start, before any workerd runs: purge a killed agent's leftovers, then make the
    state dir private."""
    purge_leftovers(root)
    tighten_tree(root)


@dataclass(frozen=True)
class SetAside:
    """A store file that did not load, moved aside (never removed: it may be the only copy
    of someone's data); the agent counts it and serves without it."""

    kind: str  # deployment, code, exclusions, quarantine, key
    path: Path  # where it was
    moved_to: Path
    reason: str  # never its content: it may hold secret values


def set_aside(kind: str, path: Path, reason: str) -> SetAside:
    """Rename `path` to `<name>.<unix time>.corrupt` beside it (out of every glob the store
    reads), and log one line naming it and why."""
    moved = path.with_name(f"{path.name}.{int(time.time())}{integrity.CORRUPT}")
    os.replace(path, moved)
    fsync_dir(path.parent)
    log.error("store file %s did not load (%s): moved it to %s", path, reason, moved.name)
    return SetAside(kind, path, moved, reason)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


@dataclass
class Staged:
    """A batch of deployment writes, prepared but not yet the store."""

    write: dict[str, tuple[Path, Path]]  # Worker → (its temp file, its store file)
    remove: list[Path]  # store files of deleted Workers

    def drop(self, worker: str) -> None:
        """Leave `worker` as stored (its change was refused after all)."""
        tmp, _ = self.write.pop(worker, (None, None))
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        self.remove = [p for p in self.remove if p.stem != worker]


def _discard(staged: Staged) -> None:
    for tmp, _ in staged.write.values():
        with contextlib.suppress(OSError):
            tmp.unlink()
    staged.write.clear()
    staged.remove.clear()


class Store:
    def __init__(self, root: Path, blobs: Blobs) -> None:
        self.blobs = blobs  # the modules of every version stored (by sha256)
        private_dir(blobs.root)  # the cells' disk service of it must exist from the start
        self.dir = private_dir(root / "deployments")
        self.code_dir = private_dir(root / "code")
        self.exclusions_file = root / "exclusions.json"
        self.signing_key_file = root / "signing-key"
        self.quarantine_file = root / "quarantine.json"
        self.internal_key_file = root / "internal-key"
        self.set_aside: list[SetAside] = []  # files that did not load, in order

    def _aside(self, kind: str, path: Path, reason: str) -> None:
        self.set_aside.append(set_aside(kind, path, reason))

    def _path(self, worker: str) -> Path:
        if not re.match(WORKER_NAME_RE, worker):  # never a path outside the store
            raise ValueError(f"invalid worker name {worker!r}")
        return self.dir / f"{worker}.json"

    def load_all(self) -> dict[str, Deployment]:
        """Every stored deployment, its modules read from the blob store; one that does not
        load is set aside, so its Worker is missing from the inventory and the operator
        pushes it again."""
        out: dict[str, Deployment] = {}
        for p in sorted(self.dir.glob("*.json")):
            raw = _read(p)
            if raw is None:
                continue
            d, why = integrity.parse_deployment(p.stem, raw)
            if d is not None:
                try:
                    d = d.hydrated(self.blobs.read)
                    self._put_modules(d)  # an older agent's file holds them inline
                except OSError as e:  # a blob gone or corrupt (the message names its path)
                    d, why = None, f"a module is not in the blob store: {e}"
                except ValueError:  # never quoted: a validation error may echo secrets
                    d, why = None, "its version ids do not match the modules in the blob store"
            if d is None:
                self._aside("deployment", p, why)
            else:
                out[d.worker] = d
        return out

    def _load_object(self, kind: str, path: Path) -> dict[str, object]:
        """A small JSON object file ({} if missing; set aside and {} if it does not parse)."""
        raw = _read(path)
        if raw is None:
            return {}
        doc, why = integrity.parse_json_object(raw)
        if doc is None:
            self._aside(kind, path, why)
            return {}
        return doc

    def _prepare_sync(self, changes: dict[str, Deployment | None]) -> Staged:
        staged = Staged({}, [])
        try:
            for worker, d in changes.items():
                path = self._path(worker)
                if d is None:
                    staged.remove.append(path)
                else:
                    # Modules are blobs: each stored once per location, however many
                    # versions and Workers share it.
                    self._put_modules(d)
                    data = d.by_reference().model_dump_json(
                        by_alias=True, exclude_none=True
                    ).encode()
                    staged.write[worker] = (_stage(path, data), path)
        except BaseException:
            _discard(staged)
            raise
        return staged

    def _put_modules(self, d: Deployment) -> None:
        for b in d.versions:
            for m in b.modules:
                if m.content is not None and not self.blobs.has(sha := m.digest()):
                    self.blobs.put(sha, m.raw())

    async def prepare(self, changes: dict[str, Deployment | None]) -> Staged:
        """Write every changed deployment to a temp file, fsynced: where a full disk or a
        lack of fds fails a batch (OSError), and then nothing of it is left. `commit`
        makes them the store; `Staged.drop` takes one Worker out first."""
        return await asyncio.to_thread(self._prepare_sync, changes)

    def _commit_sync(self, staged: Staged) -> None:
        for tmp, path in staged.write.values():
            os.replace(tmp, path)
        for path in staged.remove:
            path.unlink(missing_ok=True)
        fsync_dir(self.dir)  # one directory fsync for the whole batch

    async def commit(self, staged: Staged) -> None:
        """Renames and unlinks only: they take no room, so a batch is stored whole."""
        await asyncio.to_thread(self._commit_sync, staged)

    def load_exclusions(self) -> dict[str, tuple[str, ...]]:
        """Namespace -> its route patterns without a Worker, as last accepted."""
        raw = self._load_object("exclusions", self.exclusions_file)
        try:
            return {ns: Exclusions.model_validate(e).patterns for ns, e in raw.items()}
        except ValueError:
            self._aside("exclusions", self.exclusions_file, "not a namespace → patterns map")
            return {}

    async def save_exclusions(self, exclusions: dict[str, tuple[str, ...]]) -> None:
        body = {ns: {"patterns": list(ps)} for ns, ps in sorted(exclusions.items())}
        data = json.dumps(body, separators=(",", ":")).encode()
        await asyncio.to_thread(atomic_write, self.exclusions_file, data)

    def load_signing_key(self) -> str:
        """The key that signs override headers here: the operator's, once it sent one;
        until then one of the location's own, so that its probes still work and nobody
        else can sign."""
        return self._load_key(self.signing_key_file, MIN_SIGNING_KEY)

    def load_internal_key(self) -> str:
        """The key the location's own processes present to each other (front, cells,
        agent): made once, kept so that a restarted agent can still talk to the processes
        it adopts."""
        return self._load_key(self.internal_key_file, 32)

    def _load_key(self, path: Path, min_length: int) -> str:
        raw = _read(path)
        key, why = integrity.parse_key(raw or b"", min_length)
        if why:
            self._aside("key", path, why)
        if key:
            return key
        key = secrets.token_urlsafe(32)
        atomic_write(path, key.encode())
        return key

    async def save_signing_key(self, key: str) -> None:
        await asyncio.to_thread(atomic_write, self.signing_key_file, key.encode())

    def _code_path(self, version: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", version):  # never a path outside the store
            raise ValueError(f"invalid version id {version!r}")
        return self.code_dir / f"{version}.json"

    def _save_code_sync(self, specs: dict[str, bytes]) -> None:
        for version, spec in specs.items():
            path = self._code_path(version)
            if not path.exists():  # a version id is a content hash: same id, same file
                _replace(path, spec)
        fsync_dir(self.code_dir)

    async def save_code(self, specs: dict[str, bytes]) -> None:
        """Version → its code spec (render.code_spec as JSON), for the cells to load."""
        if specs:
            await asyncio.to_thread(self._save_code_sync, specs)

    def missing_code(self, versions: Iterable[str]) -> set[str]:
        """Of `versions`, those without a code file: one stat each, never a listing of every
        version stored (10,000 files at 10,000 Workers, for each batch)."""
        return {v for v in versions if not self._code_path(v).exists()}

    def _repair_code_sync(self, specs: dict[str, bytes]) -> None:
        """Each version's code file holds its spec: a missing one is written, one that
        differs (truncated, overwritten) is set aside and written again."""
        for version, spec in specs.items():
            path = self._code_path(version)
            why = integrity.code_fault(_read(path), spec)
            if why:
                self._aside("code", path, why)
            if why is not None:
                _replace(path, spec)
        fsync_dir(self.code_dir)

    async def repair_code(self, specs: dict[str, bytes]) -> None:
        """Version → its code spec: what every accepted version's code file must hold (at
        start; an older agent kept none, a crash or a full disk may have cut one short)."""
        if specs:
            await asyncio.to_thread(self._repair_code_sync, specs)

    def _remove_code_sync(self, versions: set[str]) -> None:
        for v in versions:
            self._code_path(v).unlink(missing_ok=True)

    async def remove_code(self, versions: set[str]) -> None:
        """Remove the code of versions no longer deployed (a cell still running one keeps
        its loaded isolate; only a cold load would miss it, and nothing routes there)."""
        if versions:
            await asyncio.to_thread(self._remove_code_sync, versions)

    def load_quarantine(self) -> dict[str, str]:
        """Version → why it is quarantined at this location."""
        raw = self._load_object("quarantine", self.quarantine_file)
        return {str(v): str(r) for v, r in raw.items()}

    async def save_quarantine(self, quarantine: dict[str, str]) -> None:
        data = json.dumps(quarantine, sort_keys=True).encode()
        await asyncio.to_thread(atomic_write, self.quarantine_file, data)
