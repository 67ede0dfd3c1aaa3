"""Target drivers: how the operator hands compiled Deployments to edge locations."""
