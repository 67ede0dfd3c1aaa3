"""`edgeplane push <wrangler project> --to <host>/<repo>[:tag]`: publish the project's
modules (built as `edgeplane import` builds them) as one OCI artifact, one layer per module
titled with its name, and print its `ref@digest` and the `modules:` to put in a Worker."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from pathlib import Path

import aiohttp
import yaml

from edgeplane.resolve.artifact import (
    MEDIA_TYPES,
    OCI_REPO_RE,
    Credentials,
    credentials_for,
    parse_dockerconfig,
)
from edgeplane.resolve.download import explain
from edgeplane.resolve.oci import OciClient
from edgeplane.resolve.policy import DownloadError, UrlSettings
from edgeplane.wrangler.config import environment, worker_name
from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.manifests import Options
from edgeplane.wrangler.modules import Module
from edgeplane.wrangler.project import find_config, load_config, read_sources

PREFIX = "edgeplane push:"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeplane push", description=__doc__)
    p.add_argument("project", help="the wrangler project directory (or its config file)")
    p.add_argument("--to", required=True, help="<host>/<repository>[:tag] to push to")
    p.add_argument("--env", default=None, help="the wrangler environment (default: top level)")
    p.add_argument(
        "--registry-config", type=Path,
        default=Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json",
        help="docker config.json with the registry's credentials (default: ~/.docker)",
    )
    p.add_argument("--ca-bundle", default=None, help="PEM file of CAs to trust for the registry")
    return p


def project_modules(path: Path, env: str | None) -> list[Module]:
    """The project's modules, the main one first, as `edgeplane import` builds them."""
    config = find_config(path)
    top = load_config(config)
    cfg = environment(top, env, config.name)
    warnings: list[str] = []
    sources = read_sources(
        cfg, top, env, worker_name(cfg, top, env), config.parent, Options(), warnings
    )
    for w in warnings:
        print(f"{PREFIX} warning: {w}", file=sys.stderr)
    if sources.incomplete:
        raise WranglerImportError(
            "imports that will not load: " + ", ".join(sources.incomplete)
        )
    return sources.modules


def credentials(config: Path, host: str) -> Credentials | None:
    try:
        raw = config.read_bytes()
    except FileNotFoundError:
        return None  # anonymous
    try:
        return credentials_for(host, [parse_dockerconfig(raw)])
    except ValueError as e:
        raise WranglerImportError(f"{config}: {e}") from None


def snippet(ref: str, modules: list[Module]) -> str:
    entries = [
        {"name": m.name, "type": m.type, "oci": {"ref": ref, "file": m.name}} for m in modules
    ]
    return yaml.safe_dump({"modules": entries}, sort_keys=False)


async def _push(args: argparse.Namespace, modules: list[Module]) -> str:
    m = re.match(OCI_REPO_RE, args.to)
    if m is None:
        raise WranglerImportError(f"--to {args.to}: must be <host>/<repository>[:tag]")
    host, repo, tag = m["host"], m["repo"].lstrip("/"), m["tag"]
    # The user's own registry, named on their command line: private addresses are fine.
    client = OciClient(UrlSettings(allow_private=True, ca_bundle=args.ca_bundle))
    config = json.dumps({"mainModule": modules[0].name}, sort_keys=True).encode()
    layers = [(x.name, MEDIA_TYPES.get(x.type, "application/octet-stream"), x.content)
              for x in modules]
    try:
        digest = await client.push(
            host, repo, tag, layers, config, credentials(args.registry_config, host)
        )
    finally:
        await client.close()
    return f"{host}/{repo}@{digest}"


def main(argv: list[str] | None = None) -> int:
    """Exit 0 having printed the ref and snippet, 1 with one line saying what failed."""
    args = _parser().parse_args(argv)
    try:
        modules = project_modules(Path(args.project), args.env)
        ref = asyncio.run(_push(args, modules))
    except (WranglerImportError, DownloadError) as e:
        print(f"{PREFIX} error: {e}", file=sys.stderr)
        return 1
    except aiohttp.ClientError as e:
        print(f"{PREFIX} error: {explain(e, args.to)}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"{PREFIX} error: the registry did not answer in time", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PREFIX} error: {e.strerror or e}", file=sys.stderr)
        return 1
    print(ref)
    print(snippet(ref, modules), end="")
    return 0
