# -*- test-case-name: tests.daemon.test_store -*-
"""
Atomic, durable writes of small records.

A write the daemon acknowledged must survive a SIGKILL or a power cut, and
a write interrupted half-way must leave the old content, never a torn one:
write a temporary file beside the target, fsync it, rename it over the
target, fsync the directory. Temporary files carry L{TEMP_SUFFIX} so the
next start can sweep the ones a crash left behind.
"""

import json
import os
from pathlib import Path
from typing import Any

#: The suffix of every temporary file; L{sweep_temporaries} removes them.
TEMP_SUFFIX = ".dockserve-tmp"


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in C{directory} durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, mode: int = 0o600, *, durable: bool = True
) -> None:
    """
    Replace C{path} with C{data} so that readers see the old or the new
    content, and the new content is on disk when this returns.

    @param durable: C{False} for a file that is made again whenever it is
        needed (an OCI bundle's C{config.json}): the replace is still atomic
        for readers and against a crash of the daemon, but not against a
        power cut, and costs no fsync.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    if durable:
        fsync_dir(path.parent)


def write_json(path: Path, value: Any) -> None:
    """L{atomic_write} of C{value} as JSON."""
    atomic_write(path, json.dumps(value, sort_keys=True).encode("utf-8"))


class CorruptRecord(ValueError):
    """A stored record that is not the JSON L{write_json} wrote."""


def read_json(path: Path) -> Any:
    """
    The JSON value stored at C{path} by L{write_json}.

    @raise CorruptRecord: Naming the file, when it is not valid JSON (a
        disk error, or a hand edit): an operator must know which file.
    """
    data = path.read_bytes()
    try:
        return json.loads(data)
    except ValueError as e:
        raise CorruptRecord(f"{path} is not valid JSON: {e}") from e


def remove_durably(path: Path) -> None:
    """Unlink C{path} (if present) and make the removal durable."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def sweep_temporaries(root: Path) -> int:
    """
    Remove the temporary files a crash left under C{root}.

    @return: How many were removed.
    """
    count = 0
    if not root.exists():
        return 0
    for tmp in root.rglob(f"*{TEMP_SUFFIX}"):
        if tmp.is_file() or tmp.is_symlink():
            tmp.unlink()
            count += 1
    return count
