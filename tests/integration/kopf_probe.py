"""A minimal kopf operator used by test_foundation to prove kopf talks to the cluster."""

import kopf

from edgeplane.kube.auth import login

kopf.on.login()(login)


@kopf.on.create("configmaps", labels={"edgeplane.io/probe": "kopf"})
def annotate(patch: kopf.Patch, **_: object) -> None:
    patch.metadata.annotations["edgeplane.io/seen-by"] = "kopf"
