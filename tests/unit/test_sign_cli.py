"""`edgeplane sign`: a curl config or plain headers, signed, and clear refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgeplane.sign import main
from edgeplane.wire import sign


def _curl_config_headers(text: str) -> dict[str, str]:
    """What curl reads from `header = "..."` lines (backslash escapes inside quotes)."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r'header = "((?:[^"\\]|\\.)*)"', line)
        assert m, line
        name, _, value = re.sub(r"\\(.)", r"\1", m.group(1)).partition(": ")
        out[name] = value
    return out


def test_curl_config_round_trips_quotes_and_signs(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    key_file = tmp_path / "key"
    key_file.write_text("k" * 40 + "\n")
    assert main(["--key-file", str(key_file), "--overrides", 'a.b="12345678"',
                 "--version-key", 'x"y\\z']) == 0
    headers = _curl_config_headers(capsys.readouterr().out)
    assert headers["Edgeplane-Version-Overrides"] == 'a.b="12345678"'
    assert headers["Edgeplane-Version-Key"] == 'x"y\\z'
    t = int(headers["Edgeplane-Signature"].split(",")[0][2:])
    assert headers["Edgeplane-Signature"] == sign("k" * 40, t, "", 'a.b="12345678"', 'x"y\\z')


@pytest.mark.parametrize(
    ("key", "args", "message"),
    [
        ("short", ["--proto", "https"], "at least 32 characters"),
        (None, ["--proto", "https"], "No such file"),
    ],
)
def test_refusals(tmp_path: Path, capsys, key: str | None, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    key_file = tmp_path / "key"
    if key is not None:
        key_file.write_text(key)
    assert main(["--key-file", str(key_file), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeplane sign: --key-file: ") and message in err
