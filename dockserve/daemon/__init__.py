"""The engine: what a container or an image is. No HTTP here."""
