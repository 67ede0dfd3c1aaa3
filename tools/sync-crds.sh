#!/usr/bin/env bash
# Copies the generated CRDs (crds/, written by `edgeplane crds`) to where the kustomize
# base and the Helm chart read them: neither may read files outside its own directory.
# tests/unit/test_packaging.py fails when the copies differ, naming this script.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for dest in "$root/manifests/base/crds" "$root/charts/edgeplane/crds"; do
    mkdir -p "$dest"
    rm -f "$dest"/*.edgeplane.io.yaml
    cp "$root"/crds/*.edgeplane.io.yaml "$dest/"
done
