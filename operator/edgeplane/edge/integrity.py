"""What to do with a file of the agent's store as it is read at start (pure): accept it, or
set it aside with a reason. A reason never quotes the file's content: deployments hold
secret values in clear, and a parser's error message may echo them."""

from __future__ import annotations

import json

from pydantic import ValidationError

from edgeplane.wire import Deployment

CORRUPT = ".corrupt"  # the suffix of a file set aside (`<name>.<unix time>.corrupt`)
RETRY_FIRST = 1.0  # seconds before a cell that did not start is tried again
RETRY_MAX = 60.0  # and at most this long, doubling in between


def parse_deployment(name: str, raw: bytes) -> tuple[Deployment | None, str]:
    """The deployment stored as `<name>.json`, or None and why it cannot be served from it."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None, f"not UTF-8 ({len(raw)} bytes)"
    try:
        d = Deployment.model_validate_json(text)
    except ValidationError as e:
        if not _is_json(text):
            return None, f"not JSON, truncated or overwritten ({len(raw)} bytes)"
        fields = sorted({".".join(map(str, err["loc"])) or "(root)" for err in e.errors()})
        return None, f"not a deployment: {e.error_count()} invalid fields ({', '.join(fields)})"
    if d.worker != name:
        return None, f"holds Worker {d.worker!r}, not {name!r}"
    return d, ""


def parse_json_object(raw: bytes) -> tuple[dict[str, object] | None, str]:
    """A small store file holding one JSON object, or None and why not."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None, f"not JSON, truncated or overwritten ({len(raw)} bytes)"
    if not isinstance(doc, dict):
        return None, f"not a JSON object but {type(doc).__name__}"
    return doc, ""


def code_fault(stored: bytes | None, expected: bytes) -> str | None:
    """What to do with a version's code file holding `stored` (None: missing), given the
    spec the accepted deployment makes of it: None to keep it, "" to write it, else why it
    is set aside before it is written again."""
    if stored == expected:
        return None
    if stored is None or _older_form(stored, expected):
        return ""
    if len(stored) < len(expected) and expected.startswith(stored):
        return f"truncated ({len(stored)} of {len(expected)} bytes)"
    return f"differs from the accepted version ({len(stored)} bytes, {len(expected)} expected)"


def parse_key(raw: bytes, min_length: int) -> tuple[str, str]:
    """The key a key file holding `raw` holds ("" if none: a new one is made), and why the
    file is set aside first ("" if it is not: a missing or short key is simply replaced)."""
    try:
        key = raw.decode().strip()
    except UnicodeDecodeError:
        return "", f"not UTF-8 ({len(raw)} bytes)"
    return (key if len(key) >= min_length else ""), ""


def next_retry(previous: float | None) -> float:
    """Seconds until a cell that did not start is tried again, after `previous` (None: the
    first failure)."""
    return RETRY_FIRST if previous is None else min(previous * 2, RETRY_MAX)


def _older_form(stored: bytes, expected: bytes) -> bool:
    """Whether `stored` is the same version's code file as an older release wrote it: its
    modules with their content where the expected one names their blobs (rewritten, not
    set aside as corrupt)."""
    try:
        old, new = json.loads(stored), json.loads(expected)
        return bool(
            old["version"] == new["version"]
            and all("content" in m for m in old["modules"])
            and all("sha256" in m for m in new["modules"])
        )
    except (ValueError, KeyError, TypeError):
        return False


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
