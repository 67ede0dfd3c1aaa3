"""Signed override headers: what `edgeplane.wire.sign` makes, the router's JavaScript
accepts, under node, and nothing else: a tampered header, another key, an old or future
time, no key at the location."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgeplane.routing.router_js import ROUTER_JS
from edgeplane.wire import sign, signed_headers

KEY = "k" * 40
NOW = 1_800_000_000
OVR = 'shop.api="9bcdb4caa8d8"'

RUN_JS = r"""
import { readFileSync } from "node:fs";
import { verified } from "./router.mjs";
const cases = JSON.parse(readFileSync(0, "utf8"));
const out = [];
for (const c of cases) out.push(await verified(new Headers(c.headers), c.signing, c.now));
process.stdout.write(JSON.stringify(out));
"""


def _case(headers: dict[str, str], *, key: str = KEY, now: int = NOW) -> dict[str, Any]:
    return {"headers": headers, "signing": {"key": key}, "now": now}


def _signed(**kw: Any) -> dict[str, str]:
    return signed_headers(KEY, NOW, **kw)


CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("overrides", _case(_signed(overrides=OVR)), True),
    ("sticky key", _case(_signed(version_key="alice")), True),
    ("proto", _case(_signed(proto="https")), True),
    ("all three", _case(_signed(proto="https", overrides=OVR, version_key="bob")), True),
    ("4 min later", _case(_signed(overrides=OVR), now=NOW + 240), True),
    ("unsigned", _case({"Edgeplane-Version-Overrides": OVR}), False),
    ("tampered", _case({**_signed(overrides=OVR),
                        "Edgeplane-Version-Overrides": 'shop.api="00000000"'}), False),
    ("header added", _case({**_signed(overrides=OVR), "Edgeplane-Version-Key": "x"}), False),
    ("another key", _case(signed_headers("z" * 40, NOW, overrides=OVR)), False),
    ("6 min later", _case(_signed(overrides=OVR), now=NOW + 360), False),
    ("from the future", _case(_signed(overrides=OVR), now=NOW - 360), False),
    ("no key here", _case(_signed(overrides=OVR), key=""), False),
    ("malformed", _case({"Edgeplane-Signature": "t=1,v=zz",
                         "Edgeplane-Version-Overrides": OVR}), False),
]


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> list[bool]:
    d: Path = tmp_path_factory.mktemp("signing")
    (d / "router.mjs").write_text(ROUTER_JS)
    (d / "run.mjs").write_text(RUN_JS)
    res = subprocess.run(
        ["node", str(d / "run.mjs")], input=json.dumps([c for _, c, _ in CASES]),
        capture_output=True, text=True, check=True, timeout=60,
    )
    return list(json.loads(res.stdout))


@pytest.mark.parametrize("i", range(len(CASES)), ids=[name for name, _, _ in CASES])
def test_router_accepts_exactly_what_sign_makes(answers: list[bool], i: int) -> None:
    assert answers[i] is CASES[i][2]


@pytest.mark.parametrize(
    ("proto", "overrides", "key", "text"),
    [
        ("", "", "", f"{NOW}\n\n\n"),
        ("https", OVR, "alice", f"{NOW}\nhttps\n{OVR}\nalice"),
    ],
)
def test_signature_covers_time_and_all_three_headers(
    proto: str, overrides: str, key: str, text: str
) -> None:
    import hashlib
    import hmac

    want = hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()
    assert sign(KEY, NOW, proto, overrides, key) == f"t={NOW},v={want}"
