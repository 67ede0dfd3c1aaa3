"""The bearer token the operator presents, read from a file and re-read when the file
changes (a rotated Kubernetes Secret volume swaps it in place), without a restart."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

log = logging.getLogger("edgeplane.agent")
RECHECK = 1.0  # seconds between looks at the file


class TokenFile:
    def __init__(self, path: Path | None, value: str) -> None:
        self.path, self.value = path, value
        self._seen = _stamp(path) if path is not None else None

    @classmethod
    def fixed(cls, value: str) -> TokenFile:
        return cls(None, value)

    @classmethod
    def read(cls, path: Path) -> TokenFile:
        """The token in `path`; ValueError if it is empty."""
        value = path.read_text().strip()
        if not value:
            raise ValueError(f"the token file {path} is empty")
        return cls(path, value)

    def refresh(self) -> None:
        """Take the file's token if the file changed (blocking: run it in a thread). An
        empty or unreadable file keeps the token in force, with a warning."""
        if self.path is None:
            return
        stamp = _stamp(self.path)
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            value = self.path.read_text().strip()
        except OSError as e:
            log.warning(
                "could not read the token file %s: %s; keeping the current token",
                self.path,
                e.strerror,
            )
            return
        if not value:
            log.warning("the token file %s is empty; keeping the current token", self.path)
            return
        if value != self.value:
            self.value = value
            log.info("token file %s changed: the new token is in force", self.path)

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(RECHECK)
            await asyncio.to_thread(self.refresh)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is rewritten or swapped (a Secret volume's symlink)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
