"""wrangler's `[assets]` as `spec.assets` (pure): the directory's files in a generated
ConfigMap (binaryData, one key per file, `items` giving each its path, since keys cannot
hold '/'), and Cloudflare's options under their edgeplane names. A directory over one
ConfigMap is refused with the archive route to take instead. An assets-only project (no
`main`) gets a Worker that answers 404, as Cloudflare does for a path with no file."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.manifests import CONFIG_MAP_BUDGET, config_map_key, metadata
from edgeplane.wrangler.modules import Module

# wrangler's key -> spec.assets's (the values are Cloudflare's, the same in both).
OPTIONS = {
    "binding": "binding",
    "html_handling": "htmlHandling",
    "not_found_handling": "notFoundHandling",
    "run_worker_first": "runWorkerFirst",
}
ASSETS_ONLY_MAIN = Module(
    "index.js",
    "esModule",
    b"// Assets only (wrangler's [assets] with no main): a path with no file is a 404.\n"
    b"export default { fetch() { return new Response(null, { status: 404 }); } };\n",
)


def assets_table(cfg: Mapping[str, Any], top: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Worker's `[assets]` (an environment inherits the top level's), if it has one."""
    value = cfg.get("assets", top.get("assets"))
    return value if isinstance(value, Mapping) and value.get("directory") else None


def assets_docs(
    worker: str, table: Mapping[str, Any], files: Mapping[str, bytes], namespace: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ConfigMap holding the files and the Worker's spec.assets."""
    size = sum(len(b) * 4 / 3 + len(p) for p, b in files.items())
    if size > CONFIG_MAP_BUDGET:
        raise WranglerImportError(
            f"{worker}: assets.directory {table['directory']} takes {size:,.0f} bytes as "
            f"binaryData, more than one ConfigMap holds ({CONFIG_MAP_BUDGET:,}); publish it "
            "as an archive (tar -C <directory> -czf site.tgz .) at an https URL and set "
            "spec.assets.archive {url, sha256} instead of spec.assets.configMap"
        )
    name = f"{worker}-assets"
    taken: set[str] = set()
    items, data = [], {}
    for path in sorted(files):
        key = config_map_key(path, taken)
        data[key] = base64.b64encode(files[path]).decode()
        items.append({"key": key, "path": path})
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(name, worker, namespace)}
    if data:
        cm["binaryData"] = data
    spec: dict[str, Any] = {"configMap": {"name": name, "items": items}}
    spec |= {ours: table[theirs] for theirs, ours in OPTIONS.items() if theirs in table}
    first = spec.pop("runWorkerFirst", False)
    if first:  # spec.assets takes patterns only: true is every path
        spec["runWorkerFirst"] = ["/*"] if first is True else first
    return cm, spec
