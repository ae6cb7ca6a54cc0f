"""The content-addressed image store and its operations."""
