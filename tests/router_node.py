"""Running the edge router's own JavaScript (edgeplane.routing.router_js) under node, as the
unit tests do: `run_router(dir, script, payload)` writes the router as `router.mjs` next to
`script` (an ES module that imports from "./router.mjs", reads `payload` as JSON on stdin
and writes its answer as JSON on stdout) and returns that answer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from edgeplane.routing.router_js import ROUTER_JS


def run_router(directory: Path, script: str, payload: object) -> Any:
    (directory / "router.mjs").write_text(ROUTER_JS)
    (directory / "run.mjs").write_text(script)
    res = subprocess.run(
        ["node", str(directory / "run.mjs")],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)
