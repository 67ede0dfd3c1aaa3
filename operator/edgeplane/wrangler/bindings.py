"""A Worker's bindings from its wrangler config, one function a kind: vars, secrets, KV
namespaces, Durable Objects and services. Pure: config values in, binding dicts out."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from edgeplane.api.common import DNS_LABEL_RE
from edgeplane.api.worker import KV_NAMESPACE_RE, MAX_PLAIN_TEXT
from edgeplane.wire import JS_IDENTIFIER_RE
from edgeplane.wrangler.config import DevVars, dev_var_names
from edgeplane.wrangler.errors import WranglerImportError


def binding_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(JS_IDENTIFIER_RE, name):
        raise WranglerImportError(f"{where}: binding name {name!r} is not a JavaScript identifier")
    return name


def var_bindings(vars_cfg: Mapping[str, Any], worker: str, warn: list[str]) -> list[dict[str, Any]]:
    """`vars`: strings as plainText, objects as json, any other JSON value as its JSON text
    (edgeplane's json binding takes objects only), with a warning."""
    out: list[dict[str, Any]] = []
    for key, value in vars_cfg.items():
        name = binding_name(key, f"{worker}: vars")
        if isinstance(value, str):
            if len(value.encode()) > MAX_PLAIN_TEXT:
                raise WranglerImportError(f"{worker}: vars.{key} is longer than 5 KiB")
            out.append({"name": name, "plainText": value})
        elif isinstance(value, dict):
            out.append({"name": name, "json": value})
        else:
            text = json.dumps(value)
            warn.append(
                f"{worker}: vars.{key} is a JSON {type(value).__name__}; edgeplane's json "
                f"binding takes objects, so env.{key} is the string {text!r}"
            )
            out.append({"name": name, "plainText": text})
    return out


def declared_secrets(secrets_cfg: Any) -> list[str] | None:
    """The secret names the config declares (`secrets.required`, or a plain list); None when
    it declares none, so that .dev.vars supplies them."""
    if isinstance(secrets_cfg, Mapping) and "required" in secrets_cfg:
        return [str(s) for s in secrets_cfg.get("required") or []]
    if isinstance(secrets_cfg, list):
        return [str(s) for s in secrets_cfg]
    return None


def secret_source(secrets_cfg: Any, dev_vars: DevVars | None) -> str:
    """Where the secret names come from, as messages name it: the config key that declares
    them, else the .dev.vars file."""
    if isinstance(secrets_cfg, Mapping) and "required" in secrets_cfg:
        return "secrets.required"
    if isinstance(secrets_cfg, list) or dev_vars is None:
        return "secrets"
    return dev_vars.file


def secret_names(
    secrets_cfg: Any, dev_vars: DevVars | None, worker: str, warn: list[str]
) -> list[str]:
    """The declared secrets, else the names in .dev.vars."""
    declared = declared_secrets(secrets_cfg)
    if declared is not None:
        return declared
    if dev_vars is None:
        return []
    names = dev_var_names(dev_vars.content, dev_vars.file)
    if names:
        warn.append(
            f"{worker}: secret names taken from {dev_vars.file} (names only; its "
            "values are not read into the output)"
        )
    return names


def secret_bindings(
    names: list[str], secret: str, var_names: set[str], worker: str, source: str,
    warn: list[str],
) -> tuple[list[str], list[dict[str, Any]]]:
    """The keys of Secret `secret` the Worker reads, and their secretKeyRef bindings. A name
    already bound as a var stays a var (a name binds once), with a warning naming `source`:
    the config key or the .dev.vars file the name came from."""
    keys: list[str] = []
    out: list[dict[str, Any]] = []
    for s in names:
        name = binding_name(s, f"{worker}: {source}")
        if name in var_names:
            local = ""
            if source.startswith(".dev.vars"):
                local = " (in wrangler dev, .dev.vars only overrides it locally)"
            warn.append(f"{worker}: {source}: {name} is also in vars; imported as the var, "
                        f"not as a secret{local}")
            continue
        keys.append(name)
        out.append({"name": name, "secretKeyRef": {"name": secret, "key": name}})
    return keys, out


def unique_bindings(
    groups: list[tuple[str, list[dict[str, Any]]]], worker: str
) -> list[dict[str, Any]]:
    """The bindings of every group (the config key or file they come from, and its
    bindings) in order; a name bound twice is refused naming where both come from."""
    seen: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for source, bindings in groups:
        for b in bindings:
            first = seen.get(b["name"])
            if first is not None:
                where = "is bound twice" if first == source else f"is also bound by {first}"
                raise WranglerImportError(
                    f"{worker}: {source}: {b['name']} {where}; a name binds once: rename "
                    "one of them"
                )
            seen[b["name"]] = source
            out.append(b)
    return out


def kv_bindings(kv_cfg: list[Any], worker: str, warn: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for kv in kv_cfg:
        name = binding_name(kv.get("binding"), f"{worker}: kv_namespaces")
        ns = kv.get("id") or kv.get("preview_id") or kv_namespace_without_id(name, worker, warn)
        out.append({"name": name, "kvNamespace": {"namespace": str(ns)}})
    return out


def kv_namespace_without_id(binding: str, worker: str, warn: list[str]) -> str:
    """The namespace for a KV binding without an id: named as wrangler names the one it
    provisions on deploy (`<worker>-<binding>`, lower case, '-' for '_'), so that each
    environment's Worker has its own, with a warning saying so."""
    name = f"{worker}-{binding.lower().replace('_', '-')}"
    if not re.fullmatch(KV_NAMESPACE_RE, name):
        raise WranglerImportError(
            f"{worker}: kv_namespaces binding {binding} has no id, and {name!r} is no KV "
            "namespace name (letters, digits, '_', '.', '-'; at most 63): set id"
        )
    warn.append(
        f"{worker}: kv_namespaces binding {binding} has no id (wrangler would provision "
        f"one); imported as KV namespace {name!r}, the name wrangler gives the one it "
        "provisions; set id to choose another"
    )
    return name


def durable_object_bindings(
    do_cfg: Mapping[str, Any], worker: str, unsupported: list[str]
) -> list[dict[str, Any]]:
    """Classes of this Worker only; another script's class is listed in `unsupported`."""
    out: list[dict[str, Any]] = []
    for do in do_cfg.get("bindings") or []:
        name = binding_name(do.get("name"), f"{worker}: durable_objects.bindings")
        script = do.get("script_name")
        if script and script != worker:
            unsupported.append(f"durable_objects.bindings[{name}].script_name={script}")
            continue
        # shape.py has checked class_name is there, a string.
        out.append({"name": name, "durableObjectNamespace": {"className": do["class_name"]}})
    return out


def service_bindings(
    svc_cfg: list[Any], worker: str, unsupported: list[str]
) -> list[dict[str, Any]]:
    """A service's environment names its Worker `<service>-<environment>`, as this importer
    names environments; a named entrypoint is listed in `unsupported`."""
    out: list[dict[str, Any]] = []
    for i, svc in enumerate(svc_cfg):
        name = binding_name(svc.get("binding"), f"{worker}: services")
        target = str(svc.get("service", ""))
        if svc.get("environment"):
            target = f"{target}-{svc['environment']}"
        if not re.fullmatch(DNS_LABEL_RE, target):
            raise WranglerImportError(
                f"{worker}: services[{i}].service: {target!r} cannot be the name of a Worker "
                "here (at most 63 lowercase letters, digits and '-'); use the name the "
                "called Worker is imported under"
            )
        if svc.get("entrypoint"):
            unsupported.append(f"services[{name}].entrypoint={svc['entrypoint']}")
            continue
        out.append({"name": name, "service": {"worker": target}})
    return out
