# -*- test-case-name: tests.daemon.build.test_dockerignore -*-
r"""
C{.dockerignore}: which paths of a build context are left out, by Docker's
rules (C{moby/patternmatcher} and C{moby/buildkit}'s C{dockerignore}).

A line is a pattern; C{#} starts a comment line; surrounding white space
goes; a leading C{!} makes it an exception; each pattern is cleaned as
Go's C{filepath.Clean} and a leading C{/} dropped. C{*} matches within
one path element, C{?} one character, C{[...]} a class, C{**} any number
of elements, C{\\} escapes. A pattern matches a path when it matches the
path or one of its parent directories; the last pattern that matches a
path decides (an exception takes it back in).

The docker CLI and the Docker SDK leave ignored files out of the context
they send; the daemon applies the same file again (a raw API client gets
the same context as the CLI) and removes the Dockerfile and
C{.dockerignore} themselves only when C{.dockerignore} names them, after
it has read them, as dockerd does.
"""

import posixpath
import re

from attrs import frozen


@frozen
class Pattern:
    """
    One cleaned line of C{.dockerignore}.

    @ivar text: The cleaned pattern.
    @ivar exclusion: It started with C{!}.
    """

    text: str
    exclusion: bool


def read(text: str) -> list[Pattern]:
    """The patterns of a C{.dockerignore} file's text."""
    patterns: list[Pattern] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        if not line:
            continue
        cleaned = posixpath.normpath(line)
        if cleaned.startswith("//"):
            cleaned = "/" + cleaned.lstrip("/")
        if len(cleaned) > 1 and cleaned.startswith("/"):
            cleaned = cleaned[1:]
        patterns.append(Pattern(cleaned, exclusion))
    return patterns


def _compile(pattern: str) -> "re.Pattern[str]":
    """A pattern as patternmatcher's regular expression."""
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                # "**/" is "**"; "**" may match nothing ("**/a" is "a"
                # too), or everything when it ends the pattern.
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("^"):
                    body = "!" + body[1:]
                negate = body.startswith("!")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\")
                out.append(f"[{'^' if negate else ''}{body}]")
                i = end
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


class Matcher:
    """Decides, path by path, whether the context leaves it out."""

    def __init__(self, patterns: list[Pattern]) -> None:
        self._patterns = [(p, _compile(p.text)) for p in patterns]

    @property
    def empty(self) -> bool:
        """No pattern at all: nothing is left out."""
        return not self._patterns

    @property
    def has_exceptions(self) -> bool:
        """
        Some pattern takes paths back in (a left-out directory may then
        still hold kept files).
        """
        return any(p.exclusion for p, _ in self._patterns)

    def excluded(self, path: str) -> bool:
        """
        Whether C{path} (relative to the context, C{/}-separated) is left
        out: the last pattern that matches it, or one of its parent
        directories, decides.
        """
        path = posixpath.normpath(path).lstrip("/")
        parts = path.split("/")
        matched = False
        for pattern, regex in self._patterns:
            if pattern.exclusion != matched:
                # It could only confirm what is already decided.
                continue
            hit = regex.match(path) is not None
            if not hit and len(parts) > 1:
                hit = any(
                    regex.match("/".join(parts[:end])) for end in range(1, len(parts))
                )
            if hit:
                matched = not pattern.exclusion
        return matched
