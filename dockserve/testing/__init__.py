"""Verified fakes and contract suites, importable like C{treq.testing}."""
