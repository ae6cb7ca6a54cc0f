# -*- test-case-name: tests.daemon.build.test_expand -*-
r"""
Word and variable expansion of Dockerfile arguments, as BuildKit's shell
lexer (C{frontend/dockerfile/shell/lex.go}) does it for the classic builder.

Quotes are removed (single quotes keep everything literal, double quotes
keep all but C{$} and the escape character before C{"}, C{$} or itself),
the escape character (C{\\} or the C{# escape=} directive's) makes the next
character literal, and C{$NAME}, C{${NAME}} and the forms
C{${NAME:-word}} C{${NAME-word}} C{${NAME:+word}} C{${NAME+word}}
C{${NAME:?message}} C{${NAME?message}} C{${NAME#pattern}}
C{${NAME##pattern}} C{${NAME%pattern}} C{${NAME%%pattern}}
C{${NAME/pattern/replacement}} C{${NAME//pattern/replacement}} are
substituted from the build's environment. An unset variable is empty.

L{process_word} gives one string (spaces kept); L{process_words} splits
the result into words after substitution, quoted spaces staying inside
their word (C{EXPOSE $PORTS} with C{PORTS="80 443"} is two ports).
"""

import re
from collections.abc import Mapping

from attrs import frozen


class ExpansionError(ValueError):
    """A word cannot be expanded; the message is BuildKit's."""


_EOF = ""
_SPECIAL = frozenset("@*#?-$!0")


@frozen
class _Result:
    text: str
    words: tuple[str, ...]


class _Words:
    """Word splitting as the lexer does it while it expands."""

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.word += ch
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw_string(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def get(self) -> tuple[str, ...]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return tuple(self.words)


class _Scanner:
    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0

    def peek(self) -> str:
        return self._text[self._pos] if self._pos < len(self._text) else _EOF

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self._pos += 1
        return ch


class _Lexer:
    """One expansion of one word."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self._scanner = _Scanner(text)
        self._env = env
        self._escape = escape
        self._raw_escapes = False

    def run(self) -> _Result:
        return self._until(_EOF, raw_escapes=False)

    def _until(self, stop: str, *, raw_escapes: bool) -> _Result:
        saved, self._raw_escapes = self._raw_escapes, raw_escapes
        try:
            return self._scan(stop)
        finally:
            self._raw_escapes = saved

    def _scan(self, stop: str) -> _Result:
        s = self._scanner
        result: list[str] = []
        words = _Words()
        while s.peek() != _EOF:
            ch = s.peek()
            if stop and ch == stop:
                s.next()
                return _Result("".join(result), words.get())
            if ch == "$":
                value = self._dollar()
                result.append(value)
                words.add_string(value)
                continue
            if ch in "'\"":
                value = self._single() if ch == "'" else self._double()
                result.append(value)
                words.add_raw_string(value)
                continue
            ch = s.next()
            if ch == self._escape:
                if self._raw_escapes:
                    words.add_raw_char(ch)
                    result.append(ch)
                ch = s.next()
                if ch == _EOF:
                    break
                words.add_raw_char(ch)
            else:
                words.add_char(ch)
            result.append(ch)
        if stop:
            raise ExpansionError(
                "unexpected end of statement while looking for matching " + stop
            )
        return _Result("".join(result), words.get())

    def _single(self) -> str:
        s = self._scanner
        s.next()
        out: list[str] = []
        while True:
            ch = s.next()
            if ch == _EOF:
                raise ExpansionError(
                    "unexpected end of statement while looking for matching "
                    "single-quote"
                )
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double(self) -> str:
        s = self._scanner
        s.next()
        out: list[str] = []
        while True:
            ch = s.peek()
            if ch == _EOF:
                raise ExpansionError(
                    "unexpected end of statement while looking for matching "
                    "double-quote"
                )
            if ch == '"':
                s.next()
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            ch = s.next()
            if ch == self._escape:
                if self._raw_escapes:
                    out.append(ch)
                following = s.peek()
                if following == _EOF:
                    continue
                if following in ('"', "$", self._escape):
                    ch = s.next()
            out.append(ch)

    def _name(self) -> str:
        s = self._scanner
        name: list[str] = []
        while s.peek() != _EOF:
            ch = s.peek()
            if not name and ch.isdigit():
                while s.peek() != _EOF and s.peek().isdigit():
                    name.append(s.next())
                return "".join(name)
            if not name and ch in _SPECIAL:
                return s.next()
            if not (ch.isalnum() or ch == "_"):
                break
            name.append(s.next())
        return "".join(name)

    def _get(self, name: str) -> tuple[str, bool]:
        if name in self._env:
            return self._env[name], True
        return "", False

    def _dollar(self) -> str:
        s = self._scanner
        s.next()
        if s.peek() != "{":
            name = self._name()
            if not name:
                return "$"
            return self._get(name)[0]
        s.next()
        if s.peek() == _EOF:
            raise ExpansionError("syntax error: missing '}'")
        if s.peek() in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self._name()
        ch = s.next()
        modifier = ch
        null_is_unset = False
        if ch == "}":
            return self._get(name)[0]
        if ch == "/":
            return self._replace(name)
        if ch == ":":
            null_is_unset = True
            ch = s.next()
            modifier += ch
        if ch not in "+-?#%" or ch == _EOF:
            raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")
        try:
            word = self._until("}", raw_escapes=ch in "#%").text
        except ExpansionError:
            if s.peek() == _EOF:
                raise ExpansionError("syntax error: missing '}'") from None
            raise
        value, is_set = self._get(name)
        empty = not is_set or (null_is_unset and value == "")
        if ch == "-":
            return word if empty else value
        if ch == "+":
            return "" if empty else word
        if ch == "?":
            if not is_set:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        if ch == "%":
            return _trim_suffix(word, value, greedy=greedy)
        return _trim_prefix(word, value, greedy=greedy)

    def _replace(self, name: str) -> str:
        s = self._scanner
        replace_all = s.peek() == "/"
        if replace_all:
            s.next()
        try:
            pattern = self._until("/", raw_escapes=True).text
        except ExpansionError:
            if s.peek() == _EOF:
                raise ExpansionError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement = self._until("}", raw_escapes=True).text
        except ExpansionError:
            if s.peek() == _EOF:
                raise ExpansionError("syntax error: missing '}'") from None
            raise
        value, _ = self._get(name)
        regex = _pattern_regex(pattern, greedy=True, anchored=False)
        return regex.sub(lambda _m: replacement, value, count=0 if replace_all else 1)


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> "re.Pattern[str]":
    """A shell wildcard pattern (C{*}, C{?}, escapes) as a regular expression."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            following = pattern[i] if i < len(pattern) else ""
            if following in "}/" and following:
                continue
            i += 1
            if following not in ("*", "?", "\\"):
                raise ExpansionError(
                    f"invalid pattern ({pattern}) in substitution: "
                    f"invalid escape '\\{following}'"
                )
            out.append(re.escape(following))
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _trim_prefix(word: str, value: str, *, greedy: bool) -> str:
    match = _pattern_regex(word, greedy=greedy, anchored=True).match(value)
    return value[match.end() :] if match else value


def _trim_suffix(word: str, value: str, *, greedy: bool) -> str:
    # The shortest suffix is the longest match anchored at the end, tried
    # from the right: match the reversed pattern against the reversed value.
    reversed_pattern = _reverse_pattern(word)
    match = _pattern_regex(reversed_pattern, greedy=greedy, anchored=True).match(
        value[::-1]
    )
    return value[: len(value) - match.end()] if match else value


def _reverse_pattern(pattern: str) -> str:
    """C{pattern} reversed, its escapes kept before what they escape."""
    units: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            units.append(pattern[i : i + 2])
            i += 2
        else:
            units.append(pattern[i])
            i += 1
    return "".join(reversed(units))


def process_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """
    C{word} with its quotes removed and its variables substituted.

    @raise ExpansionError: With BuildKit's message (unbalanced quotes, a bad
        substitution, C{${X:?}} of an unset C{X}).
    """
    try:
        return _Lexer(word, env, escape).run().text
    except ExpansionError as e:
        raise ExpansionError(f"failed to process {_go_quote(word)}: {e}") from None


def process_words(word: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """C{word} expanded, then split on unquoted white space."""
    try:
        return list(_Lexer(word, env, escape).run().words)
    except ExpansionError as e:
        raise ExpansionError(f"failed to process {_go_quote(word)}: {e}") from None


def _go_quote(text: str) -> str:
    """Go's C{%q} of a string (close enough for messages)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def env_map(env: list[str] | tuple[str, ...]) -> dict[str, str]:
    """C{["A=1", "B"]} as C{{"A": "1", "B": ""}}; later entries win."""
    result: dict[str, str] = {}
    for entry in env:
        key, _, value = entry.partition("=")
        result[key] = value
    return result
