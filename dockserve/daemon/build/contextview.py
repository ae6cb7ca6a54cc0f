# -*- test-case-name: tests.daemon.build.test_contextview -*-
"""
A received build context seen as a tree, from its index: what C{COPY} and
C{ADD} resolve their sources in and read them from, without the context
ever being unpacked.

Paths resolve as L{dockserve.daemon.build.context.Context.resolve} does
(as in a chroot at the context's root: a symlink is followed only inside
the context). A regular file's L{Found} names the context's archive as its
C{real} file, with the C{offset} of its data there; a symlink carries its
target; a directory's children come from the index. The C{st} of each is
made from the index (the member's mode, owner, size and time), so
the copying code reads a context as it reads an image's layers
(L{dockserve.daemon.build.rootview.RootView}).
"""

import stat
from os import stat_result

from dockserve.daemon.build.context import Context, Entry
from dockserve.daemon.build.rootview import Found

_KINDS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}


class ContextView:
    """The tree of a received context (a L{dockserve.daemon.build.rootview.Tree})."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self._children: dict[str, dict[str, str]] | None = None

    def _found(self, name: str, entry: Entry) -> Found:
        seconds = entry.mtime
        nanos = round(seconds * 1e9)
        st = stat_result((
            _KINDS[entry.kind] | entry.mode, 0, 0, 1, entry.uid, entry.gid, entry.size,
            int(seconds), int(seconds), int(seconds),
            seconds, seconds, seconds, nanos, nanos, nanos,
        ))  # fmt: skip
        return Found(
            "/" + name,
            self._context.archive,
            st,
            offset=entry.offset,
            linkname=entry.digest if entry.kind == "symlink" else None,
        )

    def _root(self) -> Found:
        return self._found("", Entry("dir", 0o755, mtime=self._context.received))

    def lookup(self, path: str, *, follow: bool = True) -> Found | None:
        """
        What the context has at C{path} (C{None} if nothing); with
        C{follow}, a final symlink is followed too (inside the context).
        """
        name = self._context.resolve(path, follow=follow)
        if name is None:
            return None
        if not name:
            return self._root()
        return self._found(name, self._context.entries[name])

    def listdir(self, found: Found) -> dict[str, Found]:
        """The entries of the directory C{found}, by name."""
        if self._children is None:
            children: dict[str, dict[str, str]] = {}
            for name in self._context.entries:
                parent, _, base = name.rpartition("/")
                children.setdefault(parent, {})[base] = name
            self._children = children
        entries = self._context.entries
        names = self._children.get(found.path.strip("/"), {})
        return {base: self._found(name, entries[name]) for base, name in names.items()}
