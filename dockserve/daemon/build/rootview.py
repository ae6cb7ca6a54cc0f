# -*- test-case-name: tests.daemon.build.test_rootview -*-
"""
An image's root filesystem seen through its unpacked layers, without
mounting it: what C{COPY --from}, C{WORKDIR} and C{--chown} need to read.

The layers are overlayfs lower directories (L{dockserve.daemon.images.layers}
unpacks them so): a 0/0 character device is a whiteout that hides what
the layers below have at that path, a directory with the
C{trusted.overlay.opaque} xattr hides the layers below it. A path is
resolved as in a chroot at the image's root: symlinks are followed inside
the image (an absolute target starts at its root, C{..} stops there),
never on the host.

Everything here blocks; it runs in a thread.
"""

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from attrs import frozen

_OPAQUE = "trusted.overlay.opaque"
_MAX_LINKS = 40


@frozen
class Found:
    """
    A path of the image.

    @ivar path: The path in the image, normal and absolute.
    @ivar real: The file on the host (in its top-most layer).
    @ivar st: Its C{lstat}.
    @ivar dirs: For a directory: its directory in each layer that merges
        into it, top-most first.
    @ivar offset: Where a regular file's data starts in C{real} (not 0 for
        a member of a build context's tar).
    @ivar linkname: A symlink's target when C{real} is not the link itself
        (a member of a build context's tar).
    """

    path: str
    real: Path
    st: os.stat_result
    dirs: tuple[Path, ...] = ()
    offset: int = 0
    linkname: str | None = None

    def readlink(self) -> str:
        """A symlink's target."""
        if self.linkname is not None:
            return self.linkname
        return str(self.real.readlink())

    @property
    def is_dir(self) -> bool:
        """A directory."""
        return stat.S_ISDIR(self.st.st_mode)

    @property
    def is_symlink(self) -> bool:
        """A symlink."""
        return stat.S_ISLNK(self.st.st_mode)


class Tree(Protocol):
    """
    A read-only tree that C{COPY} and C{ADD} take sources from: an image's
    layers (L{RootView}) or a build context
    (L{dockserve.daemon.build.contextview.ContextView}).
    """

    def lookup(self, path: str, *, follow: bool = True) -> Found | None:
        """What the tree has at C{path} (symlinks followed inside it)."""

    def listdir(self, found: Found) -> dict[str, Found]:
        """The entries of the directory C{found}, by name."""


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, _OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


class RootView:
    """
    The merged, read-only view of an image's layers.

    @param layers: The unpacked layer directories, base first (an empty
        sequence is C{FROM scratch}).
    """

    def __init__(self, layers: Sequence[Path | str]) -> None:
        self._top_first = tuple(Path(p) for p in reversed(layers))

    def _root(self) -> tuple[Path, ...]:
        dirs: list[Path] = []
        for layer in self._top_first:
            dirs.append(layer)
            if _opaque(layer):
                break
        return tuple(dirs)

    def _child(self, dirs: tuple[Path, ...], name: str, path: str) -> Found | None:
        """C{name} in the merged directory made of C{dirs}."""
        for index, directory in enumerate(dirs):
            real = directory / name
            try:
                st = real.lstat()
            except OSError:
                continue
            if _whiteout(st):
                return None
            if not stat.S_ISDIR(st.st_mode):
                return Found(path, real, st)
            merged = [real]
            if not _opaque(real):
                for below in dirs[index + 1 :]:
                    lower = below / name
                    try:
                        lst = lower.lstat()
                    except OSError:
                        continue
                    if not stat.S_ISDIR(lst.st_mode):
                        break
                    merged.append(lower)
                    if _opaque(lower):
                        break
            return Found(path, real, st, tuple(merged))
        return None

    def lookup(self, path: str, *, follow: bool = True) -> Found | None:
        """
        What the image has at C{path} (C{None} if nothing); with
        C{follow}, a final symlink is followed too (inside the image).
        """
        pending = [p for p in path.split("/") if p not in ("", ".")]
        stack: list[tuple[str, tuple[Path, ...]]] = []
        current: Found | None = None
        dirs = self._root()
        links = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if stack:
                    stack.pop()
                dirs = stack[-1][1] if stack else self._root()
                current = None
                continue
            where = "/" + "/".join([*(n for n, _ in stack), part])
            found = self._child(dirs, part, where)
            if found is None:
                return None
            if found.is_symlink and (pending or follow):
                links += 1
                if links > _MAX_LINKS:
                    return None
                target = found.readlink()
                if target.startswith("/"):
                    stack = []
                dirs = stack[-1][1] if stack else self._root()
                pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                current = None
                continue
            if pending and not found.is_dir:
                return None
            stack.append((part, found.dirs))
            dirs = found.dirs
            current = found
        if current is None:
            root = self._root()
            if not root:
                return None
            return Found("/", root[0], root[0].lstat(), root)
        return current

    def listdir(self, found: Found) -> dict[str, Found]:
        """The entries of the directory C{found}, merged, by name."""
        entries: dict[str, Found] = {}
        hidden: set[str] = set()
        for directory in found.dirs:
            try:
                names = [entry.name for entry in directory.iterdir()]
            except OSError:
                continue
            for name in names:
                if name in entries or name in hidden:
                    continue
                child = self._child(
                    (directory,), name, found.path.rstrip("/") + "/" + name
                )
                if child is None:
                    hidden.add(name)
                    continue
                if child.is_dir:
                    # Merge with the layers below this one.
                    index = found.dirs.index(directory)
                    child = self._child(found.dirs[index:], name, child.path) or child
                entries[name] = child
        return entries

    def read_text(self, path: str) -> str:
        """A small file of the image (C{/etc/passwd}), or C{""}."""
        found = self.lookup(path)
        if found is None or not stat.S_ISREG(found.st.st_mode):
            return ""
        try:
            return found.real.read_text(errors="replace")
        except OSError:
            return ""
