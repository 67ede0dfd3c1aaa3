#!/usr/bin/env bash
# Builds the CNCF distribution registry (cmd/registry) and the htpasswd helper from the Go
# module proxy into a cache outside the repo, keyed by the hash of the wrapper module, like
# tools/build-k8s.sh, so only a fresh machine (or a changed pin) pays for the build.
# Prints the directory holding the binaries.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/registry"
version="$(awk '$1 == "github.com/distribution/distribution/v3" {print $2; exit}' "$mod/go.mod")"
key="$(cat "$mod/go.mod" "$mod/go.sum" "$mod"/cmd/htpasswd/*.go "$0" | sha256sum | cut -c1-12)"
out="${EDGEPLANE_CACHE:-$HOME/.cache/edgeplane}/registry-$version-$key"

if [[ -x "$out/registry" && -x "$out/htpasswd" ]]; then
    echo "$out"
    exit 0
fi

command -v go >/dev/null || { echo "build-registry: Go is required (https://go.dev/dl)" >&2; exit 1; }
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
start=$SECONDS
echo "build-registry: building distribution $version into $out" >&2
cd "$mod"
export GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0
go build -trimpath -ldflags "-s -w -X github.com/distribution/distribution/v3/version.version=$version" \
    -o "$out.tmp/" github.com/distribution/distribution/v3/cmd/registry ./cmd/htpasswd >&2
rm -rf "$out"
mv "$out.tmp" "$out"
echo "build-registry: done in $((SECONDS - start)) s" >&2
echo "$out"
