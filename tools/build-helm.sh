#!/usr/bin/env bash
# Builds `helm` from the Go module proxy into a cache outside the repo, keyed by the
# release and by the hash of this script, like tools/build-k8s.sh does for Kubernetes,
# so only a fresh machine (or a changed pin) pays for the build.
# Prints the directory holding the binary.
set -euo pipefail

version="v3.22.0"
key="$(sha256sum "$0" | cut -c1-12)"
out="${EDGEPLANE_CACHE:-$HOME/.cache/edgeplane}/helm-$version-$key"

if [[ -x "$out/helm" ]]; then
    echo "$out"
    exit 0
fi

command -v go >/dev/null || { echo "build-helm: Go is required (https://go.dev/dl)" >&2; exit 1; }
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
# The version helm reports (`helm version`), as upstream's release build sets it.
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"

start=$SECONDS
echo "build-helm: building helm $version into $out" >&2
# `go install module@version` builds exactly the released module graph (its go.sum),
# outside any local module.
cd "$out.tmp"
GOFLAGS="-buildvcs=false -trimpath" GOBIN="$out.tmp" CGO_ENABLED=0 \
    go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$version" >&2
rm -rf "$out"
mv "$out.tmp" "$out"
echo "build-helm: done in $((SECONDS - start)) s" >&2
echo "$out"
