#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl and an embedded etcd from the
# Go module proxy into a cache outside the repo, keyed by the release and by the hash of
# the wrapper module, so only a fresh machine (or a changed pin) pays for the build.
# Prints the directory holding the binaries.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/k8s"
version="$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$mod/go.mod")"
# The commit of the tag, recorded so `kubectl version` reports what upstream's build would.
commit="7b8c6cf0edd376b3d7c2f255142977c7f93db258"
key="$(cat "$mod/go.mod" "$mod/go.sum" "$mod"/cmd/etcd/*.go "$0" | sha256sum | cut -c1-12)"
out="${EDGEPLANE_CACHE:-$HOME/.cache/edgeplane}/k8s-$version-$key"
bins=(kube-apiserver kube-controller-manager kubectl etcd)

complete=1
for b in "${bins[@]}"; do [[ -x "$out/$b" ]] || complete=0; done
if [[ $complete == 1 ]]; then
    echo "$out"
    exit 0
fi

command -v go >/dev/null || { echo "build-k8s: Go is required (https://go.dev/dl)" >&2; exit 1; }
mkdir -p "$out.tmp"
minor="${version#v1.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=clean"
    ldflags+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done

start=$SECONDS
echo "build-k8s: building Kubernetes $version into $out (first build takes a while)" >&2
cd "$mod"
export GOFLAGS="-buildvcs=false -mod=mod"
go build -trimpath -ldflags "$ldflags" -o "$out.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl \
    ./cmd/etcd >&2
rm -rf "$out"
mv "$out.tmp" "$out"
echo "build-k8s: done in $((SECONDS - start)) s" >&2
echo "$out"
