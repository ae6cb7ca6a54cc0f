"""Containers: records, names, state machine, life cycle."""
