"""docs/reference.md is current with the models, and docs/troubleshooting.md has a section
for every condition reason the operator writes."""

from __future__ import annotations

import re
from pathlib import Path

from edgeplane.api import RESOURCES, refdoc
from edgeplane.api.crdgen import resource_schema

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "edgeplane"
# Reasons named in the issue; the scan below finds any the code adds later.
KNOWN_REASONS = {
    "Deployed", "Deploying", "TargetUnreachable", "ScriptInvalid", "SourceNotFound",
    "SourceChecksumMismatch", "InvalidSource", "InvalidSpec", "ScriptTooLarge", "NoTargets",
    "RouteConflict", "WorkerNotFound", "VersionNotFound", "Unreachable",
    "CredentialsNotFound", "Quarantined", "ServiceMissing",
}
REASON_RES = (
    re.compile(r'\((?:True|False),\s*"([A-Z][A-Za-z]+)"'),
    re.compile(r'(?:CompileError|Stall)\(\s*"([A-Z][A-Za-z]+)"'),
    re.compile(r'\d{3}:\s*\(?"([A-Z][A-Za-z]+)"'),  # agent refusals by HTTP status
    re.compile(r'\breason="([A-Z][A-Za-z]+)"'),  # e.g. _set_reachable(..., reason=...)
    re.compile(r'^[A-Z_]+ = "(Artifact[A-Za-z]+)"', re.M),  # resolve/artifact.py's reasons
)


def reasons_in_code() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if "edge" in path.relative_to(PACKAGE).parts[:1]:
            continue  # the agent's own vocabulary, not condition reasons
        text = path.read_text()
        for rx in REASON_RES:
            found |= set(rx.findall(text))
    return found


def test_reference_is_current() -> None:
    assert refdoc.main(["--check"]) == 0, "run `python -m edgeplane.api.refdoc`"


def test_reference_lists_every_field() -> None:
    text = (REPO / "docs" / "reference.md").read_text()
    for res in RESOURCES:
        schema = resource_schema(res)
        assert f"## {res.KIND}" in text
        for part in ("spec", "status"):
            for name in schema["properties"][part].get("properties", {}):
                assert f"`{part}.{name}`" in text, (res.KIND, part, name)


def test_the_reason_scan_finds_the_known_reasons() -> None:
    assert {"Deployed", "NoTargets", "RouteConflict", "CredentialsNotFound"} <= reasons_in_code()


def test_troubleshooting_has_a_section_per_reason() -> None:
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    headings = set(re.findall(r"^### (\w+)", text, re.M))
    missing = (KNOWN_REASONS | reasons_in_code()) - headings
    assert not missing, f"add a section to docs/troubleshooting.md for: {sorted(missing)}"
