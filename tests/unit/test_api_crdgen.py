"""CRD generation: the committed YAML is what the models generate, and the schemas are
structural, documented and bounded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from edgeplane.api import RESOURCES
from edgeplane.api.crdgen import SchemaError, crd, generate, main, model_schema

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"


def test_committed_crds_match_the_models() -> None:
    files = generate()
    committed = {p.name for p in CRDS.glob("*.yaml")}
    assert committed == set(files), "run `edgeplane crds` and commit crds/"
    for name, text in files.items():
        assert (CRDS / name).read_text() == text, f"crds/{name} is stale: run `edgeplane crds`"


def test_check_mode_reports_a_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    target = tmp_path / "workers.edgeplane.io.yaml"
    target.write_text(target.read_text().replace("Names on the Worker", "Names"))
    (tmp_path / "old.edgeplane.io.yaml").write_text("{}")
    assert main(["--out", str(tmp_path), "--check"]) == 1
    out = capsys.readouterr().out
    assert "workers.edgeplane.io.yaml: differs" in out and "old.edgeplane.io.yaml" in out


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "default", "const"}


@pytest.mark.parametrize("res", RESOURCES, ids=lambda r: r.KIND)
def test_schema_is_structural_documented_and_bounded(res: Any) -> None:
    doc = crd(res)
    (version,) = doc["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        assert not FORBIDDEN & node.keys(), f"{path}: {FORBIDDEN & node.keys()}"
        assert node.get("additionalProperties") is not False, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        if path.startswith((".spec", ".status")):
            if path.count(".") > 1 and not path.endswith(("[]", "{}")):
                assert node.get("description"), f"{path}: no description"
            if node.get("type") == "string":
                assert "maxLength" in node, f"{path}: unbounded string"
            if node.get("type") == "array":
                assert "maxItems" in node, f"{path}: unbounded list"
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"], path
    assert version["subresources"] == {"status": {}}
    assert "status" in schema["properties"] and "spec" in schema["required"]
    names = doc["spec"]["names"]
    assert names["categories"] == ["edgeplane"] and names["shortNames"]


def test_printer_columns() -> None:
    cols = {r.KIND: [c["name"] for c in crd(r)["spec"]["versions"][0]
                     ["additionalPrinterColumns"] if not c.get("priority")] for r in RESOURCES}
    assert cols["Worker"] == ["Ready", "Targets", "Rollout", "Step", "Age"]
    assert cols["EdgeTarget"] == ["Ready", "Endpoint", "Workers", "Age"]


def test_every_cel_rule_the_issue_asks_for_is_present() -> None:
    text = "\n".join(generate().values())
    for needle in [
        "set exactly one source",  # module sources
        "set exactly one of plainText",  # binding kinds
        "mainModule: must name one of",
        "x-kubernetes-list-map-keys",  # unique module and binding names
        "query string",  # route pattern syntax
        "percents must sum to 100",
        "must be an absolute https:// URL",
        "a url source needs sha256",
        "self.metadata.name.matches",
    ]:
        assert needle in text, needle


def test_generated_yaml_is_plain_yaml() -> None:
    for text in generate().values():
        doc = yaml.safe_load(text)
        assert doc["kind"] == "CustomResourceDefinition"


class _Undocumented(BaseModel):
    name: str = Field(max_length=3)


class _Unbounded(BaseModel):
    name: str = Field(description="x")


class _Union(BaseModel):
    value: int | str = Field(description="x")


@pytest.mark.parametrize(("model", "error"), [
    (_Undocumented, "without a description"),
    (_Unbounded, "without max_length"),
    (_Union, "not structural"),
])
def test_generator_refuses_schemas_the_project_forbids(model: type[BaseModel], error: str) -> None:
    with pytest.raises(SchemaError, match=error):
        model_schema(model, "spec")
