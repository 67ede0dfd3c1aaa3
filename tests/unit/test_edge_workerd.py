"""How the agent runs workerd (edgeplane.edge.workerd), without running it: the command
line per socket hand-over, and the files a config needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeplane.edge import render, workerd
from tests.integration.edge_fixtures import deployment, text_worker

HEAD = ["/bin/workerd", "serve", "--experimental", "/run/c.capnp", "--control-fd", "7"]


@pytest.mark.parametrize(
    ("sockets", "tail", "fds"),
    [
        ({}, [], [7]),
        (
            {"http": None, "stats": None},  # validation: ports of its own
            ["--socket-addr", "http=127.0.0.1:0", "--socket-addr", "stats=127.0.0.1:0"],
            [7],
        ),
        (
            {"http": 3, "stats": 9},  # serving: the agent's sockets handed over
            ["--socket-fd", "http=3", "--socket-fd", "stats=9"],
            [7, 3, 9],
        ),
        (
            {"http": 3, "stats": None},
            ["--socket-fd", "http=3", "--socket-addr", "stats=127.0.0.1:0"],
            [7, 3],
        ),
    ],
)
def test_command(sockets: dict[str, int | None], tail: list[str], fds: list[int]) -> None:
    got = workerd._command(Path("/bin/workerd"), Path("/run/c.capnp"), 7, sockets)
    assert got == (HEAD + tail, fds)


def test_write_config_makes_the_directories_of_disk_services(tmp_path: Path) -> None:
    paths = render.Paths(do_dir=tmp_path / "do", kv_dir=tmp_path / "kv")
    cfg = tmp_path / "run" / "config-1.capnp"
    deps = [deployment(text_worker("ns.a", "a"), routes=("a.test/*",))]
    workerd.write_config(cfg, deps, paths, render.RouterSettings())
    assert cfg.read_text() == render.render(deps, paths)
    for d in ("run", "do", "kv/objects", "kv/blobs"):
        assert (tmp_path / d).is_dir()
