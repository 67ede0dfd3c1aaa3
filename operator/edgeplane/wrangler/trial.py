"""The workerd config `edgeplane import --check` starts an imported Worker with: its modules
as written to the manifests, its bindings backed by stand-ins (secrets empty, KV empty,
services answering 503), so that the check shows whether the code loads, not whether the
cluster has its data. Pure: check.py runs it."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from edgeplane.edge.render import module_entry, text, workerd_config
from edgeplane.wire import ModuleType
from edgeplane.wrangler.errors import WranglerImportError

STANDIN = "standin"
# The stand-in behind KV and service bindings: KV reads find nothing, services are down.
_STANDIN_JS = (
    "export default { fetch(request) { return new Response(null, "
    "{ status: request.method === 'GET' ? 404 : 503 }); } };"
)


def module_content(module: Mapping[str, Any], maps: Mapping[str, Mapping[str, Any]]) -> bytes:
    """A spec.modules entry's bytes, from inline text or the ConfigMap the import wrote."""
    if "inline" in module:
        return str(module["inline"]).encode()
    ref = module.get("configMapKeyRef") or {}
    cm = maps.get(ref.get("name", ""))
    if cm is None:
        raise WranglerImportError(f"module {module['name']}: no ConfigMap {ref.get('name')}")
    key = ref.get("key", "")
    if key in (cm.get("binaryData") or {}):
        return base64.b64decode(cm["binaryData"][key])
    return str((cm.get("data") or {})[key]).encode()


def _module(name: str, kind: str, content: bytes) -> str:
    m_type = ModuleType(kind)
    return module_entry(name, m_type, content, "" if m_type.is_binary else content.decode())


def _binding(b: Mapping[str, Any]) -> str:
    n = text(b["name"])
    if "plainText" in b:
        return f"(name = {n}, text = {text(b['plainText'])})"
    if "json" in b:
        return f"(name = {n}, json = {text(json.dumps(b['json']))})"
    if "secretKeyRef" in b:
        return f"(name = {n}, text = \"\")"
    if "kvNamespace" in b:
        return f"(name = {n}, kvNamespace = {text(STANDIN)})"
    if "service" in b:
        return f"(name = {n}, service = {text(STANDIN)})"
    cls = text(b["durableObjectNamespace"]["className"])
    return f"(name = {n}, durableObjectNamespace = (className = {cls}))"


def trial_config(worker: Mapping[str, Any], maps: Mapping[str, Mapping[str, Any]]) -> str:
    """A workerd config serving the Worker on socket "http"."""
    spec = worker["spec"]
    # workerd runs the first module: the main one, then the rest as listed.
    ordered = sorted(spec["modules"], key=lambda m: m["name"] != spec["mainModule"])
    mods = [
        _module(m["name"], m.get("type", "esModule"), module_content(m, maps))
        for m in ordered
    ]
    bindings = spec.get("bindings") or []
    classes = sorted({b["durableObjectNamespace"]["className"] for b in bindings
                      if "durableObjectNamespace" in b})
    dos = ", ".join(f"(className = {text(c)}, uniqueKey = {text(c)})" for c in classes)
    flags = ", ".join(text(f) for f in spec.get("compatibilityFlags") or [])
    worker_def = (
        f"(modules = [{', '.join(mods)}], "
        f"compatibilityDate = {text(spec['compatibilityDate'])}, "
        f"compatibilityFlags = [{flags}], "
        f"bindings = [{', '.join(_binding(b) for b in bindings)}]"
        + (f", durableObjectNamespaces = [{dos}], durableObjectStorage = (inMemory = void)"
           if classes else "")
        + ")"
    )
    standin = (f"(name = {text(STANDIN)}, worker = (modules = [(name = \"s.js\", esModule = "
               f"{text(_STANDIN_JS)})], compatibilityDate = \"2024-01-01\"))")
    return workerd_config([f'(name = "main", worker = {worker_def})', standin],
                          ['(name = "http", service = "main", http = ())'])
