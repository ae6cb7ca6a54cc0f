# -*- test-case-name: tests.api.policy.test_file -*-
"""
Where a key of a TOML document is written, so that a policy file's errors
name their line.

Python's C{tomllib} reports the line of a syntax error but gives values
without positions; a value that is the wrong type, or a key that is not
known, is found again here by scanning the document's table headers and
C{key = value} lines, as the TOML grammar lays them out.
"""

import re
from collections.abc import Sequence

#: A key path: table names, keys, and the index of each array of tables.
Path = tuple[str | int, ...]

#: One key of a dotted key: bare, "basic" or 'literal'.
_KEY = re.compile(r"""\s*(?:([A-Za-z0-9_-]+)|"((?:[^"\\]|\\.)*)"|'([^']*)')\s*""")


def split_key(text: str) -> tuple[str, ...] | None:
    """
    The parts of a dotted key (C{policy."read-only".body}), or C{None}
    when C{text} is not a key.
    """
    parts: list[str] = []
    position = 0
    while True:
        match = _KEY.match(text, position)
        if match is None or match.end() == position:
            return None
        bare, basic, literal = match.groups()
        parts.append(bare if bare is not None else basic or literal or "")
        position = match.end()
        if position == len(text):
            return tuple(parts)
        if text[position] != ".":
            return None
        position += 1


def _key_part(line: str) -> str | None:
    """What comes before the first C{=} outside quotes, if any."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "=":
            return line[:index]
    return None


class KeyLines:
    """
    The line of each table and key of a TOML document.

    @ivar lines: Each key path's first line.
    """

    def __init__(self, source: str) -> None:
        self.lines: dict[Path, int] = {}
        # The current index of each array of tables, by its resolved path.
        arrays: dict[Path, int] = {}
        table: Path = ()
        for number, raw in enumerate(source.splitlines(), 1):
            line = raw.strip()
            if line.startswith("[["):
                keys = split_key(line[2:].split("]]", 1)[0])
                if keys is None:
                    continue
                parent = self._resolve(keys[:-1], arrays)
                plain = (*parent, keys[-1])
                arrays[plain] = arrays.get(plain, -1) + 1
                table = (*plain, arrays[plain])
                self.lines.setdefault(plain, number)
                self.lines.setdefault(table, number)
            elif line.startswith("["):
                keys = split_key(line[1:].split("]", 1)[0])
                if keys is None:
                    continue
                table = self._resolve(keys, arrays)
                self.lines.setdefault(table, number)
            else:
                before = _key_part(line)
                keys = split_key(before) if before is not None else None
                if keys is not None:
                    self.lines.setdefault((*table, *keys), number)

    @staticmethod
    def _resolve(keys: Sequence[str], arrays: dict[Path, int]) -> Path:
        """C{keys} with the current index after each array of tables."""
        path: Path = ()
        for key in keys:
            path = (*path, key)
            if path in arrays:
                path = (*path, arrays[path])
        return path

    def line_of(self, path: Path) -> int:
        """
        The line where C{path} is written, or where the nearest table or
        key that holds it is (an inline table's keys share its line); 1
        when nothing of it is written (a key the file lacks at the top).
        """
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1
