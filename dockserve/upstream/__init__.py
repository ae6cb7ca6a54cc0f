"""Later: forward the API to an existing engine (dockerd, podman)."""
