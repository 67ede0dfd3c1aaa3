#!/usr/bin/env bash
# Copies files to where the kustomize base and the Helm chart read them: neither may read
# files outside its own directory.
#   crds/*.yaml (written by `edgeplane crds`)  -> manifests/base/crds/, charts/edgeplane/crds/
#   manifests/monitoring/{prometheus-rule.yaml,grafana-dashboard.json} -> charts/edgeplane/files/
#   manifests/argocd/*.lua -> the data of manifests/argocd/argocd-cm.yaml
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
# argocd-cm.yaml: its header as it is, then each script as a literal block.
python3 - "$root/manifests/argocd" <<'PY'
import sys
from pathlib import Path

d = Path(sys.argv[1])
text = (d / "argocd-cm.yaml").read_text()
out = [text[: text.index("\ndata:\n") + len("\ndata:\n")]]
for kind, script in (("Worker", "worker"), ("WorkerRoute", "workerroute"),
                     ("EdgeTarget", "edgetarget")):
    out.append(f"  resource.customizations.health.edgeplane.io_{kind}: |\n")
    for line in (d / f"{script}.lua").read_text().splitlines(keepends=True):
        out.append("    " + line if line.strip() else "\n")
(d / "argocd-cm.yaml").write_text("".join(out))
PY
