"""`edgeplane sign`: headers that make edge locations honour a version override, a sticky
key or X-Forwarded-Proto, signed with the cluster's key (the operator's
--signing-key-file), valid for five minutes. Test a dark (0 %) version with curl:

    edgeplane sign --key-file key --overrides 'shop.api="9bcdb4ca"' | curl -K - https://api.example.com/
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from edgeplane.wire import MIN_SIGNING_KEY, signed_headers


def parse_args(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    ap = argparse.ArgumentParser(
        prog="edgeplane sign", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--key-file", default=env("EDGEPLANE_SIGNING_KEY_FILE"),
                    help="the cluster's signing key (default: $EDGEPLANE_SIGNING_KEY_FILE)")
    ap.add_argument("--overrides", help='e.g. <namespace>.<worker>="<version prefix>"')
    ap.add_argument("--version-key", help="a sticky key: the same key, the same version")
    ap.add_argument("--proto", choices=("http", "https"), help="X-Forwarded-Proto to send")
    ap.add_argument("--format", choices=("curl", "headers"), default="curl",
                    help="curl: a config for `curl -K -` (default); headers: one per line")
    args = ap.parse_args(argv)
    if not args.key_file:
        ap.error("--key-file (or EDGEPLANE_SIGNING_KEY_FILE) is required")
    if not (args.overrides or args.version_key or args.proto):
        ap.error("give at least one of --overrides, --version-key, --proto")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        key = Path(args.key_file).read_text().strip()
    except OSError as e:
        print(f"edgeplane sign: --key-file: {e.strerror}: {args.key_file}", file=sys.stderr)
        return 2
    if len(key) < MIN_SIGNING_KEY:
        print(f"edgeplane sign: --key-file: the key needs at least {MIN_SIGNING_KEY} "
              "characters", file=sys.stderr)
        return 2
    headers = signed_headers(key, int(time.time()), proto=args.proto,
                             overrides=args.overrides, version_key=args.version_key)
    if args.format == "headers":
        print("\n".join(f"{k}: {v}" for k, v in headers.items()))
    else:
        print("\n".join(f'header = "{_curl_escape(f"{k}: {v}")}"' for k, v in headers.items()))
    return 0


def _curl_escape(text: str) -> str:
    """A value inside double quotes in a curl config file."""
    return text.replace("\\", "\\\\").replace('"', '\\"')

