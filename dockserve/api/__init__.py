"""The Klein resource tree: the Docker Engine API routes, middleware and handlers."""
