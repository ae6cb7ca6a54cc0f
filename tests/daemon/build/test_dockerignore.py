"""Tests for L{dockserve.daemon.build.dockerignore}: Docker's matching rules."""

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.build.dockerignore import Matcher, Pattern, read


def matcher(text: str) -> Matcher:
    return Matcher(read(text))


class ReadTests(SynchronousTestCase):
    def test_cleaning(self) -> None:
        """Comments and blanks go; patterns are cleaned; ! makes exceptions."""
        self.assertEqual(
            read("# comment\n\n  /a/b/../c  \n!./d//e\n!\n./\n"),
            [Pattern("a/c", False), Pattern("d/e", True), Pattern(".", False)],
        )


class MatchTests(SynchronousTestCase):
    def test_exact_and_parent(self) -> None:
        """A pattern naming a directory leaves out everything under it."""
        m = matcher("build\n")
        self.assertTrue(m.excluded("build"))
        self.assertTrue(m.excluded("build/x/y.o"))
        self.assertFalse(m.excluded("src/build"))
        self.assertFalse(m.excluded("builder"))

    def test_star_stays_in_one_element(self) -> None:
        m = matcher("*.log\n*/temp*\n")
        self.assertTrue(m.excluded("a.log"))
        self.assertFalse(m.excluded("dir/a.log"))
        self.assertTrue(m.excluded("dir/temporary.txt"))
        self.assertFalse(m.excluded("a/b/temporary.txt"))

    def test_double_star(self) -> None:
        """C{**} is any number of elements, none included."""
        m = matcher("**/*.pyc\nsecret/**\n")
        self.assertTrue(m.excluded("x.pyc"))
        self.assertTrue(m.excluded("a/b/c/x.pyc"))
        self.assertTrue(m.excluded("secret/k"))
        self.assertTrue(m.excluded("secret/a/b"))
        self.assertFalse(m.excluded("notsecret/k"))

    def test_question_mark_and_class(self) -> None:
        m = matcher("file?.txt\n[ab].c\n")
        self.assertTrue(m.excluded("file1.txt"))
        self.assertFalse(m.excluded("file10.txt"))
        self.assertFalse(m.excluded("file/.txt"))
        self.assertTrue(m.excluded("a.c"))
        self.assertFalse(m.excluded("c.c"))

    def test_exception_last_wins(self) -> None:
        """C{!} takes paths back; a later pattern can leave them out again."""
        m = matcher("*.md\n!README.md\nREADME*\n")
        self.assertTrue(m.excluded("CHANGES.md"))
        self.assertTrue(m.excluded("README.md"))
        m = matcher("*.md\n!README.md\n")
        self.assertFalse(m.excluded("README.md"))
        self.assertTrue(m.has_exceptions)

    def test_exception_inside_excluded_directory(self) -> None:
        m = matcher("docs\n!docs/keep.txt\n")
        self.assertTrue(m.excluded("docs"))
        self.assertTrue(m.excluded("docs/other.txt"))
        self.assertFalse(m.excluded("docs/keep.txt"))

    def test_escape(self) -> None:
        m = matcher("\\*star\n")
        self.assertTrue(m.excluded("*star"))
        self.assertFalse(m.excluded("xstar"))

    def test_leading_slash(self) -> None:
        """A leading slash means the context's root, as no slash does."""
        m = matcher("/node_modules\n")
        self.assertTrue(m.excluded("node_modules/x"))

    def test_empty(self) -> None:
        self.assertTrue(matcher("# nothing\n").empty)
        self.assertFalse(matcher("# nothing\n").excluded("a"))
