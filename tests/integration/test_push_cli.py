"""`edgeplane push` against the real registry: a wrangler project's modules go up as one
artifact, one layer per module titled with its name; the printed ref and `modules:` snippet
make a Worker the resolver reads back byte for byte. Pushing the same project again gives
the same digest; wrong credentials fail in one line without the password."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from edgeplane.api import Worker
from edgeplane.compile import Sources, compile_worker
from edgeplane.localstack.registry import Registry
from edgeplane.pushcli import main
from edgeplane.resolve.sources import Resolver
from tests.integration.test_oci_modules import pull_secret, settings

pytestmark = pytest.mark.integration

INDEX = """import { greeting } from "./lib.js";
import note from "./note.txt";
export default { fetch() { return new Response(`${greeting} ${note.trim()}`); } };
"""


def project(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "wrangler.toml").write_text(
        'name = "hello-oci"\nmain = "src/index.js"\ncompatibility_date = "2025-01-01"\n'
    )
    (root / "src" / "index.js").write_text(INDEX)
    (root / "src" / "lib.js").write_text('export const greeting = "hello from oci";\n')
    (root / "src" / "note.txt").write_text("and a text module\n")
    return root


def push(registry: Registry, root: Path, config: str, capsys: pytest.CaptureFixture[str],
         to: str = "acme/hello:v1") -> tuple[int, str, str]:
    docker = root / "docker-config.json"
    docker.write_text(config)
    code = main([str(root / "proj"), "--to", f"{registry.host}/{to}",
                 "--registry-config", str(docker), "--ca-bundle", str(registry.ca)])
    out = capsys.readouterr()
    return code, out.out, out.err


async def _resolve(registry: Registry, w: Worker) -> Sources:
    r = Resolver(kube=None, urls=settings(registry))  # type: ignore[arg-type]
    r.seen("Secret", pull_secret("pull", registry.dockerconfigjson()), False, True)
    try:
        return await r.resolve(w)
    finally:
        await r.close()


def test_push_then_a_worker_from_the_snippet_compiles_the_same_code(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path / "proj")
    code, out, err = push(registry, tmp_path, registry.dockerconfigjson(), capsys)
    assert code == 0, err
    ref, snippet = out.split("\n", 1)
    assert ref.startswith(f"{registry.host}/acme/hello@sha256:")
    modules = yaml.safe_load(snippet)["modules"]
    assert [(m["name"], m["type"], m["oci"]) for m in modules] == [
        ("index.js", "esModule", {"ref": ref, "file": "index.js"}),
        ("note.txt", "text", {"ref": ref, "file": "note.txt"}),
    ]
    w = Worker.model_validate({
        "metadata": {"name": "w", "namespace": "t", "uid": "u"},
        "spec": {"compatibilityDate": "2025-01-01", "modules": modules,
                 "imagePullSecrets": [{"name": "pull"}]},
    })
    # The command runs its own event loop, as from a shell; so does this read.
    bundle = compile_worker(w, asyncio.run(_resolve(registry, w)))
    assert bundle.modules[1].content == "and a text module\n"
    assert "hello from oci" in bundle.modules[0].content
    # Canonical: the same project pushes to the same digest.
    again = push(registry, tmp_path, registry.dockerconfigjson(), capsys, to="acme/hello")
    assert again[0] == 0 and again[1].split("\n", 1)[0] == ref


def test_push_with_a_wrong_password_says_so_without_it(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path / "proj")
    wrong = "Wr0ng-" + registry.password[::-1]
    code, out, err = push(registry, tmp_path, registry.dockerconfigjson(wrong), capsys)
    assert code == 1 and out == ""
    assert err.startswith("edgeplane push: error:") and "HTTP 401" in err
    assert wrong not in err and registry.password not in err


def test_push_to_a_bad_destination_names_the_form(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path / "proj")
    code, _, err = push(registry, tmp_path, json.dumps({"auths": {}}), capsys, to="Acme/X@sha")
    assert code == 1 and "must be <host>/<repository>[:tag]" in err
