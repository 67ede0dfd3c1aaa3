"""edgeplane: a Kubernetes operator that deploys edge Workers to workerd-based locations."""

__version__ = "0.1.0"
