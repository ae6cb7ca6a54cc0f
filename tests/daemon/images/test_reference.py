"""Tests for L{dockserve.daemon.images.reference}."""

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.images import reference
from dockserve.errors import InvalidParameter


class ParseTests(SynchronousTestCase):
    """Names normalise as the docker CLI normalises them."""

    def test_official(self) -> None:
        """C{busybox} is C{docker.io/library/busybox:latest}."""
        ref = reference.parse("busybox")
        self.assertEqual(ref.tagged(), "docker.io/library/busybox:latest")
        self.assertEqual(ref.familiar(), "busybox:latest")

    def test_user_repository(self) -> None:
        """C{me/app:1} lives on Docker Hub without C{library/}."""
        ref = reference.parse("me/app:1")
        self.assertEqual(ref.full(), "docker.io/me/app:1")
        self.assertEqual(ref.familiar(), "me/app:1")

    def test_registry_with_port(self) -> None:
        """A first component with a port or a dot is a registry."""
        ref = reference.parse("127.0.0.1:5000/busybox")
        self.assertEqual(
            (ref.domain, ref.path, ref.tag), ("127.0.0.1:5000", "busybox", "latest")
        )
        self.assertEqual(reference.parse("localhost/x").domain, "localhost")
        self.assertEqual(reference.parse("quay.io/a/b:c").familiar(), "quay.io/a/b:c")

    def test_digest(self) -> None:
        """C{repo@sha256:...} has a digest and no default tag."""
        digest = "sha256:" + "a" * 64
        ref = reference.parse(f"busybox@{digest}")
        self.assertEqual((ref.tag, ref.digest), (None, digest))
        self.assertEqual(ref.familiar(), f"busybox@{digest}")

    def test_legacy_hub_domain(self) -> None:
        """C{index.docker.io} is Docker Hub."""
        self.assertEqual(
            reference.parse("index.docker.io/library/busybox").familiar(),
            "busybox:latest",
        )

    def test_invalid(self) -> None:
        """Upper case, bad tags and 64-hex names are rejected with dockerd's words."""
        e = self.assertRaises(InvalidParameter, reference.parse, "Busybox")
        self.assertIn("must be lowercase", e.message)
        self.assertRaises(InvalidParameter, reference.parse, "busybox:-bad")
        self.assertRaises(InvalidParameter, reference.parse, "busybox@sha256:12")
        e = self.assertRaises(InvalidParameter, reference.parse, "a" * 64)
        self.assertIn("cannot specify 64-byte hexadecimal strings", e.message)
        self.assertRaises(InvalidParameter, reference.parse, "")

    def test_is_full_id(self) -> None:
        """Full IDs are recognised with and without the algorithm."""
        self.assertTrue(reference.is_full_id("f" * 64))
        self.assertTrue(reference.is_full_id("sha256:" + "f" * 64))
        self.assertFalse(reference.is_full_id("f" * 12))
