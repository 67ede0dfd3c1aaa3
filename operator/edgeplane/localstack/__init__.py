"""The local stack for development, tests and the demo: a real Kubernetes control plane
built from the official Go modules, edge agents with workerd, and the operator."""
