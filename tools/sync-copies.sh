#!/usr/bin/env bash
# Copies files to where the kustomize base and the Helm chart read them: neither may read
# files outside its own directory.
#   crds/*.yaml (written by `edgeplane crds`)  -> manifests/base/crds/, charts/edgeplane/crds/
#   manifests/monitoring/{prometheus-rule.yaml,grafana-dashboard.json} -> charts/edgeplane/files/
# tests/unit/test_packaging.py fails when a copy differs, naming this script.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for dest in "$root/manifests/base/crds" "$root/charts/edgeplane/crds"; do
    mkdir -p "$dest"
    rm -f "$dest"/*.edgeplane.io.yaml
    cp "$root"/crds/*.edgeplane.io.yaml "$dest/"
done
mkdir -p "$root/charts/edgeplane/files"
cp "$root/manifests/monitoring/prometheus-rule.yaml" \
   "$root/manifests/monitoring/grafana-dashboard.json" "$root/charts/edgeplane/files/"
