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


class ArchiveOwnersTests(SynchronousTestCase):
    """ADD of a local tar keeps its members' owners, as dockerd's UntarPath."""

    def test_owners_kept(self) -> None:
        """Members keep their uid/gid and mode; --chown and --chmod do not apply."""
        inner = io.BytesIO()
        with tarfile.open(fileobj=inner, mode="w") as tar:
            info = tarfile.TarInfo("owned.txt")
            info.size, info.mode, info.uid, info.gid = 3, 0o604, 1234, 5678
            tar.addfile(info, io.BytesIO(b"abc"))
            info = tarfile.TarInfo("dir")
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o711, 42, 43
            tar.addfile(info)
        base = Path(self.mktemp())
        base.mkdir()
        context = receive(
            io.BytesIO(make_tar([("pack.tar", inner.getvalue(), "f")])), base / "ctx"
        )
        tree = ContextView(context)
        upper = base / "upper"
        upper.mkdir()
        request = copying.Request(
            keyword="ADD",
            sources=["pack.tar"],
            dest="/dst/",
            owner=copying.Owner(7, 7),
            chmod=0o777,
        )
        items = copying.resolve_sources(request, tree, context=True)
        copying.perform(request, tree, RootView([]), upper, items)
        owned = (upper / "dst" / "owned.txt").lstat()
        self.assertEqual((owned.st_uid, owned.st_gid), (1234, 5678))
        self.assertEqual(stat.S_IMODE(owned.st_mode), 0o604)
        directory = (upper / "dst" / "dir").lstat()
        self.assertEqual((directory.st_uid, directory.st_gid), (42, 43))
        self.assertEqual(stat.S_IMODE(directory.st_mode), 0o711)
        # A plain COPY of the context's files still gives them to --chown.
        request = copying.Request(
            keyword="COPY", sources=["pack.tar"], dest="/c", owner=copying.Owner(7, 8)
        )
        items = copying.resolve_sources(request, tree, context=True)
        copying.perform(request, tree, RootView([]), upper, items)
        copied = (upper / "c").lstat()
        self.assertEqual((copied.st_uid, copied.st_gid), (7, 8))


class DownloadedTests(SynchronousTestCase):
    """ADD <url>'s file as a source."""

    def setUp(self) -> None:
        base = Path(self.mktemp())
        (base / "dl").mkdir(parents=True)
        self.file = base / "dl" / "app.tar"
        self.file.write_bytes(make_tar([("x", b"x", "f")]))
        self.upper = base / "upper"
        self.upper.mkdir()
        self.tree = RootView([])

    def add(self, dest: str, item: copying.Item) -> str:
        request = copying.Request(
            keyword="ADD", sources=["http://h/app.tar"], dest=dest
        )
        items = copying.resolve_sources(
            request, self.tree, context=True, downloaded={0: item}
        )
        copying.perform(request, self.tree, RootView([]), self.upper, items)
        return copying.checksum(items, self.tree, [], None)

    def test_file_mode_time_key(self) -> None:
        """
        It is copied as a file (never unpacked), 0600, with Last-Modified's
        time; its key is bare hex, the same for the same name and content
        whatever the time.
        """
        item = copying.downloaded(self.file, "app.tar", 1_600_000_000.0, "c0ffee")
        key = self.add("/opt/", item)
        written = self.upper / "opt" / "app.tar"
        self.assertEqual(written.read_bytes(), self.file.read_bytes())
        self.assertEqual(stat.S_IMODE(written.stat().st_mode), 0o600)
        self.assertEqual(written.stat().st_mtime, 1_600_000_000)
        self.assertRegex(key, "^[0-9a-f]{64}$")
        again = copying.downloaded(self.file, "app.tar", None, "c0ffee")
        self.assertEqual(again.digest, item.digest)
        self.assertEqual(self.file.stat().st_mtime, 0)
        other = copying.downloaded(self.file, "app.tar", None, "decaf")
        self.assertNotEqual(other.digest, item.digest)

    def test_named_dest(self) -> None:
        """Without a trailing slash the destination is the file's name."""
        item = copying.downloaded(self.file, "app.tar", None, "c0ffee")
        self.add("/srv/file", item)
        self.assertTrue((self.upper / "srv" / "file").is_file())
