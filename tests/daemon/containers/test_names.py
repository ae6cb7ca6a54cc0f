# -*- test-case-name: tests.daemon.containers.test_names -*-
"""Tests for L{dockserve.daemon.containers.names}."""

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import names
from dockserve.errors import InvalidParameter, NotFound, SystemError_


class NameTests(SynchronousTestCase):
    def test_validate(self) -> None:
        """Docker's rule: two or more of [a-zA-Z0-9_.-], not starting with _.-."""
        self.assertEqual(names.validate("web-1.a_b"), "/web-1.a_b")
        self.assertEqual(names.validate("/web"), "/web")
        for bad in ("a", "_web", "-web", "we b", "web/x", ""):
            self.assertRaises(InvalidParameter, names.validate, bad)

    def test_new_id(self) -> None:
        """IDs are 64 hex digits whose short form is not all digits."""
        for _ in range(50):
            cid = names.new_id()
            self.assertRegex(cid, "^[0-9a-f]{64}$")
            self.assertFalse(cid[:12].isdigit())

    def test_lookup_order(self) -> None:
        """Full ID, then name, then unique prefix."""
        a, b = "ab" + "0" * 62, "ac" + "0" * 62
        table = {"/ab": b}
        self.assertEqual(names.lookup(a, [a, b], table), a)
        self.assertEqual(names.lookup("ab", [a, b], table), b)
        self.assertEqual(names.lookup("/ab", [a, b], table), b)
        self.assertEqual(names.lookup("ac", [a, b], table), b)
        error = self.assertRaises(SystemError_, names.lookup, "a", [a, b], table)
        self.assertEqual(error.message, "Multiple IDs found with provided prefix: a")
        self.assertRaises(NotFound, names.lookup, "zz", [a, b], table)
        self.assertRaises(NotFound, names.lookup, "", [a, b], table)

    def test_random_name_avoids_taken(self) -> None:
        """A generated name is never one that is taken."""
        taken: set[str] = set()
        for _ in range(200):
            name = names.random_name(taken.__contains__)
            self.assertNotIn(name, taken)
            taken.add(name)
