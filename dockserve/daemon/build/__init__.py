"""The classic builder: C{docker build} as dockerd does it without BuildKit."""
