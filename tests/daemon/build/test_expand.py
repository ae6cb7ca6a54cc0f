"""
Tests for L{dockserve.daemon.build.expand}: cases written after BuildKit's
lexer tests (C{envVarTest}, C{wordsTest}), with an environment of our own.
"""

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.build.expand import (
    ExpansionError,
    env_map,
    process_word,
    process_words,
)

ENV = {"HOME": "/root", "SH": "ash", "EMPTY": "", "LANG_KO": "한국어"}

ERROR = object()

#: (word, expected) with ENV; ERROR for a word BuildKit refuses.
WORDS = [
    ("plain", "plain"),
    ("qu'ot'ed", "quoted"),
    ("qu'oted", ERROR),
    ("qu\\'oted", "qu'oted"),
    ("qu\\\\'oted", ERROR),
    ("tab\\tstop", "tabtstop"),
    ('"tab\\tstop"', "tab\\tstop"),
    ('"tab\\\\tstop"', "tab\\tstop"),
    ("'tab\\tstop'", "tab\\tstop"),
    ("trailing\\", "trailing"),
    ("trailing\\\\", "trailing\\"),
    ('"open', ERROR),
    ('"escaped\\"', ERROR),
    ('"it\'s"', "it's"),
    ("'open", ERROR),
    ("'back\\'", "back\\"),
    ("'''", ERROR),
    ("$.", "$."),
    ("a$1b", "ab"),
    ("a$.b", "a$.b"),
    ("a$home.", "a."),
    ("a$HOME", "a/root"),
    ("a\\$HOME", "a$HOME"),
    ("a\\\\$HOME", "a\\/root"),
    ('"a\\$HOME"', "a$HOME"),
    ('"a\\\\$HOME"', "a\\/root"),
    ("\\${}", "${}"),
    ("a\\${}b", "a${}b"),
    ("${}", ERROR),
    ("a${}b", ERROR),
    ("a${unset}b", "ab"),
    ("a${HOME}b", "a/rootb"),
    ("a${.}", ERROR),
    ("a${X:-000}b", "a000b"),
    ("a${HOME:-000}b", "a/rootb"),
    ("a${X:-$HOME}b", "a/rootb"),
    ("a${X:-${HOME:-y}}b", "a/rootb"),
    ("a${X:-${Y:-y}}b", "ayb"),
    ("a${X:Y}", ERROR),
    ("a${X?}", ERROR),
    ("a${X:?}", ERROR),
    ("a${HOME?}", "a/root"),
    ("a${EMPTY?}", "a"),
    ("a${EMPTY:?}", ERROR),
    ("a${EMPTY-x}", "a"),
    ("a${EMPTY:-x}", "ax"),
    ("a${EMPTY+x}", "ax"),
    ("a${EMPTY:+x}", "a"),
    ("a${X:+${HOME}}b", "ab"),
    ("a${HOME:+${X}}b", "ab"),
    ("a${HOME:+${SH}}b", "aashb"),
    ("a${HOME:+000}b", "a000b"),
    ("'a${X}'", "a${X}"),
    ('"a${HOME}"', "a/root"),
    ("\"a'$HOME'\"", "a'/root'"),
    ("'$HOME'", "$HOME"),
    ("'\\$HOME'", "\\$HOME"),
    ("'\"q\"'", '"q"'),
    ("a${HOME", ERROR),
    ("a${HOME:=0}b", ERROR),
    ("a${HOME:+${HOME}:}b", "a/root:b"),
    ("a${X:-\\$HOME:}b", "a$HOME:b"),
    ("a${X:-\\${HOME}z}b", "a${HOMEz}b"),
    ("안'녕'", "안녕"),
    ("$LANG_KO!", "한국어!"),
    ("${{a}", ERROR),
    ("${a}}", "}"),
    ("${a", ERROR),
    ("${a}}}", "}}"),
    # The pattern forms.
    ("${HOME#/}", "root"),
    ("${HOME#*o}", "ot"),
    ("${HOME##*o}", "t"),
    ("${HOME%o*}", "/ro"),
    ("${HOME%%o*}", "/r"),
    ("${HOME/o/0}", "/r0ot"),
    ("${HOME//o/0}", "/r00t"),
    ("${HOME/?/_}", "_root"),
    ("${HOME/", ERROR),
]


class ProcessWordTests(SynchronousTestCase):
    def test_words(self) -> None:
        """Each word expands as BuildKit's lexer expands it, or fails."""
        for word, expected in WORDS:
            if expected is ERROR:
                with self.assertRaises(ExpansionError, msg=word):
                    process_word(word, ENV)
            else:
                self.assertEqual(process_word(word, ENV), expected, word)

    def test_error_message(self) -> None:
        """The error names the word, as dockerd's stream shows it."""
        with self.assertRaises(ExpansionError) as e:
            process_word("${B:?nope}", {})
        self.assertEqual(str(e.exception), 'failed to process "${B:?nope}": B: nope')
        with self.assertRaises(ExpansionError) as e:
            process_word("${B:?}", {"B": ""})
        wanted = 'failed to process "${B:?}": B: is not allowed to be empty'
        self.assertEqual(str(e.exception), wanted)

    def test_backtick_escape(self) -> None:
        """With C{# escape=`} the backtick escapes and the backslash is literal."""
        self.assertEqual(process_word("C:\\dir`$X", {}, "`"), "C:\\dir$X")
        self.assertEqual(process_word('"a`"b"', {}, "`"), 'a"b')


SPLITS = [
    ("hello", ["hello"]),
    ("hello${hi}bye", ["hellohibye"]),
    ("hello${space}bye", ["helloabc", "defbye"]),
    ('hello"${space}"bye', ["helloabc  defbye"]),
    ('hello "${space}"bye', ["hello", "abc  defbye"]),
    ("hello${leading}def", ["hello", "ab", "cdef"]),
    ('hello"${leading}" def', ["hello  ab c", "def"]),
    ("hello${trailing}", ["helloab", "c"]),
    ("hello${trailing}d", ["helloab", "c", "d"]),
    ('hello"${trailing}"d', ["helloab c   d"]),
    ('hello" there  "', ["hello there  "]),
    ("hello there     ", ["hello", "there"]),
    ("hello\\ there", ["hello there"]),
    ('hello\\" there', ['hello"', "there"]),
    ('hello"\\\\there"', ["hello\\there"]),
    ("hello'\\\\there'", ["hello\\\\there"]),
    ("hello'$there'", ["hello$there"]),
]


class ProcessWordsTests(SynchronousTestCase):
    def test_splits(self) -> None:
        """Words split after expansion; quoted space stays in its word."""
        env = {"hi": "hi", "space": "abc  def", "leading": "  ab c",
               "trailing": "ab c   "}  # fmt: skip
        for word, expected in SPLITS:
            self.assertEqual(process_words(word, env), expected, word)

    def test_unbalanced(self) -> None:
        with self.assertRaises(ExpansionError):
            process_words('hello" there', {})

    def test_ports(self) -> None:
        """C{EXPOSE $PORTS} with two ports in one variable: two words."""
        self.assertEqual(process_words("$P/udp", {"P": "80 443"}), ["80", "443/udp"])


class EnvMapTests(SynchronousTestCase):
    def test_env_map(self) -> None:
        """Later entries win; a bare name is empty."""
        self.assertEqual(env_map(["A=1", "B", "A=2=3"]), {"A": "2=3", "B": ""})
