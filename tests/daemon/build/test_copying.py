"""
Tests for L{dockserve.daemon.build.copying}: COPY and ADD from a context
that was never unpacked (its files read from its tar by offset).
"""

import io
import stat
import tarfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.build import copying
from dockserve.daemon.build.context import receive
from dockserve.daemon.build.contextview import ContextView
from dockserve.daemon.build.rootview import RootView
from tests.daemon.build.test_context import make_tar


class CopyFromContextTests(SynchronousTestCase):
    def setUp(self) -> None:
        inner = make_tar([("in/tar.txt", b"from the tar", "f")])
        body = make_tar([
            ("app", None, "d"),
            ("app/a.txt", b"a" * 70_000, "f"),
            ("app/lib/b.txt", b"b", "f"),
            ("app/link", "a.txt", "l"),
            ("pack.tar", inner, "f"),
            ("other.txt", b"other", "f"),
        ])  # fmt: skip
        base = Path(self.mktemp())
        base.mkdir()
        self.context = receive(io.BytesIO(body), base / "ctx")
        self.tree = ContextView(self.context)
        self.upper = base / "upper"
        self.upper.mkdir()

    def perform(self, keyword: str, sources: list[str], dest: str) -> str:
        request = copying.Request(keyword=keyword, sources=sources, dest=dest)
        items = copying.resolve_sources(request, self.tree, context=True)
        copying.perform(request, self.tree, RootView([]), self.upper, items)
        return copying.checksum(items, self.tree, [], self.context)

    def test_directory(self) -> None:
        """
        A directory's files are written with their data, modes and times;
        a symlink stays a symlink.
        """
        self.perform("COPY", ["app"], "/srv/")
        a = self.upper / "srv" / "a.txt"
        self.assertEqual(a.read_bytes(), b"a" * 70_000)
        self.assertEqual(stat.S_IMODE(a.stat().st_mode), 0o640)
        self.assertEqual(a.stat().st_mtime, 1_700_000_000)
        self.assertEqual((self.upper / "srv" / "lib" / "b.txt").read_bytes(), b"b")
        self.assertEqual(str((self.upper / "srv" / "link").readlink()), "a.txt")
        self.assertEqual((self.upper / "srv").stat().st_mtime, 1_700_000_000)

    def test_only_what_is_copied(self) -> None:
        """A COPY of one file writes that file alone."""
        self.perform("COPY", ["other.txt"], "/o.txt")
        self.assertEqual([p.name for p in self.upper.iterdir()], ["o.txt"])
        self.assertEqual((self.upper / "o.txt").read_bytes(), b"other")

    def test_checksum_by_content(self) -> None:
        """The cache key is the content's, as the index hashed it."""
        first = self.perform("COPY", ["app/*.txt"], "/x/")
        again = self.perform("COPY", ["app/a.txt"], "/x/")
        self.assertEqual(first, again)
        self.assertTrue(first.startswith("file:"))
        self.assertNotEqual(first, self.perform("COPY", ["other.txt"], "/x/"))

    def test_add_local_tar(self) -> None:
        """ADD of a tar in the context unpacks it, read from the context's tar."""
        self.perform("ADD", ["pack.tar"], "/dst/")
        self.assertEqual(
            (self.upper / "dst" / "in" / "tar.txt").read_bytes(), b"from the tar"
        )
        self.assertFalse(list(self.upper.parent.glob("*.add")))

    def test_copy_tar_as_file(self) -> None:
        """COPY of the same tar copies the file as it is."""
        self.perform("COPY", ["pack.tar"], "/dst/")
        with tarfile.open(self.upper / "dst" / "pack.tar") as tar:
            self.assertEqual(tar.getnames(), ["in/tar.txt"])
