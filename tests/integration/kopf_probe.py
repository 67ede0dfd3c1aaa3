"""A minimal kopf operator used by test_foundation to prove kopf talks to the cluster."""

import kopf


@kopf.on.create("configmaps", labels={"edgeplane.io/probe": "kopf"})
def annotate(patch: kopf.Patch, **_: object) -> None:
    patch.metadata.annotations["edgeplane.io/seen-by"] = "kopf"
