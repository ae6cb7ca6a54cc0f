"""Tests for L{dockserve.daemon.build.contextview}: a context as a tree."""

import io
import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.build.context import receive
from dockserve.daemon.build.contextview import ContextView
from tests.daemon.build.test_context import make_tar


class ContextViewTests(SynchronousTestCase):
    def setUp(self) -> None:
        body = make_tar([
            ("d", None, "d"),
            ("d/x", b"hello", "f"),
            ("d/sub/y", b"y", "f"),
            ("abs", "/d", "l"),
            ("out", "../../../d/x", "l"),
            ("loop", "loop", "l"),
        ])  # fmt: skip
        self.context = receive(io.BytesIO(body), Path(self.mktemp()))
        self.view = ContextView(self.context)

    def test_file(self) -> None:
        """
        A file is found with the member's mode, size and time, its data in
        the context's tar at its offset.
        """
        found = self.view.lookup("d/x")
        assert found is not None
        self.assertEqual(found.path, "/d/x")
        self.assertEqual(found.st.st_mode, stat.S_IFREG | 0o640)
        self.assertEqual(found.st.st_size, 5)
        self.assertEqual(found.st.st_mtime_ns, 1_700_000_000 * 10**9)
        with found.real.open("rb") as raw:
            raw.seek(found.offset)
            self.assertEqual(raw.read(5), b"hello")

    def test_symlinks_stay_inside(self) -> None:
        """
        Links are followed inside the context only (an absolute target
        starts at its root, C{..} stops there); a final one is kept
        without C{follow}; a loop is nothing.
        """
        via_abs = self.view.lookup("abs/x")
        out = self.view.lookup("out")
        assert via_abs is not None and out is not None
        self.assertEqual((via_abs.path, out.path), ("/d/x", "/d/x"))
        link = self.view.lookup("abs", follow=False)
        assert link is not None
        self.assertTrue(link.is_symlink)
        self.assertEqual(link.readlink(), "/d")
        self.assertIsNone(self.view.lookup("loop"))
        self.assertIsNone(self.view.lookup("nothing"))
        self.assertIsNone(self.view.lookup("d/x/y"))

    def test_listdir(self) -> None:
        """A directory's children, and the root's, come from the index."""
        root = self.view.lookup("/")
        assert root is not None
        self.assertTrue(root.is_dir)
        self.assertEqual(sorted(self.view.listdir(root)), ["abs", "d", "loop", "out"])
        d = self.view.lookup("d")
        assert d is not None
        children = self.view.listdir(d)
        self.assertEqual(sorted(children), ["sub", "x"])
        self.assertTrue(children["sub"].is_dir)
        self.assertEqual(children["x"].path, "/d/x")
