# -*- test-case-name: tests.daemon.volumes.test_copyup -*-
"""
Copy-up: an empty volume is filled with what the image has where the
volume is mounted, before the container that mounts it first runs, as
dockerd does (moby's C{copyExistingContents}): C{VOLUME /var/lib/db} of an
image with files there gives the container those files, now in a volume.

Only an empty volume is filled (anything in it, even one file, means the
volume is someone's data); binds never are, and C{nocopy} turns it off.
The volume's own directory takes the image directory's owner, mode,
extended attributes and times, as the copy of each entry does: files
(their data copied in the kernel), directories, symbolic links (as links,
never followed), hard links (as links between the copies), device nodes
and FIFOs; sockets are left out, as dockerd's copy leaves them.

The source is the container's root as the image gives it (the overlay,
with no volume mounted on it yet). The mount point is resolved inside
that root as the container would resolve it (links followed, but never
out of the root: L{dockserve.daemon.archive.resolve}), and the walk below
it opens every entry relative to its directory's descriptor without
following a link, as L{dockserve.daemon.images.layers} unpacks layers.
Writes into the volume go through descriptors too: a container that
already runs with the same volume cannot turn a directory the copy made
into a link that sends the copy out of the volume.

Everything here blocks: run it in a thread.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict
from typing import TYPE_CHECKING

from attrs import define

from dockserve.daemon import archive
from dockserve.errors import SystemError_

if TYPE_CHECKING:
    from pathlib import Path

#: At most this many copies are held open to give hard links to: past it
#: the oldest is let go (its later links become copies of their own).
MAX_LINK_SOURCES = 256

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})
_CHUNK = 1 << 20


def is_empty(volume: Path) -> bool:
    """Whether the volume directory C{volume} holds nothing at all."""
    fd = os.open(volume, _DIRECTORY)
    try:
        return not os.listdir(fd)  # noqa: PTH208 - an fd, not a path
    finally:
        os.close(fd)


def populate(root: Path, destination: str, volume: Path) -> bool:
    """
    Fill the volume directory C{volume}, if it is empty, with what the
    container's root C{root} has at C{destination}.

    @return: Whether the volume was filled: C{False} when it was not
        empty, or the image has nothing at C{destination}.
    @raise SystemError_: The image has a file, not a directory, there
        (dockerd's C{source ... is not directory}), or the copy failed.
    """
    try:
        found = archive.resolve(root, destination, follow_final=True)
    except FileNotFoundError:
        return False
    with found:
        info = os.fstat(found.fd)
        if not stat.S_ISDIR(info.st_mode):
            msg = f"source {destination} is not directory"
            raise SystemError_(msg)
        source = os.open(".", _DIRECTORY, dir_fd=found.fd)
    try:
        target = os.open(volume, _DIRECTORY)
        try:
            if os.listdir(target):  # noqa: PTH208 - an fd, not a path
                return False
            try:
                _Copy().tree(source, target)
                _attributes(source, target, info)
            except OSError as e:
                reason = (e.strerror or type(e).__name__).lower()
                msg = f"failed to populate volume from {destination}: {reason}"
                raise SystemError_(msg) from None
            return True
        finally:
            os.close(target)
    finally:
        os.close(source)


@define
class _Frame:
    """A directory being copied: both descriptors, the names left."""

    source: int
    target: int
    names: list[str]
    info: os.stat_result


class _Copy:
    """One copy of a tree, with the copies that later hard links join."""

    def __init__(self) -> None:
        #: (dev, ino) of a source file with more links -> [copy's fd, links left].
        self._linked: OrderedDict[tuple[int, int], list[int]] = OrderedDict()

    def tree(self, source: int, target: int) -> None:
        """Copy what directory C{source} holds into directory C{target}."""
        top = _Frame(source, target, _names(source), os.fstat(source))
        frames: list[_Frame] = [top]
        try:
            while frames:
                frame = frames[-1]
                if not frame.names:
                    frames.pop()
                    if frames:
                        # A directory's times are set once its entries are in.
                        _attributes(frame.source, frame.target, frame.info)
                        os.close(frame.source)
                        os.close(frame.target)
                    continue
                name = frame.names.pop()
                below = self._entry(frame.source, frame.target, name)
                if below is not None:
                    frames.append(below)
        finally:
            for frame in frames[1:]:
                os.close(frame.source)
                os.close(frame.target)
            for fd, _ in self._linked.values():
                os.close(fd)
            self._linked.clear()

    def _entry(self, parent: int, into: int, name: str) -> _Frame | None:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=into)
            source = os.open(name, _DIRECTORY, dir_fd=parent)
            try:
                target = os.open(name, _DIRECTORY, dir_fd=into)
            except BaseException:
                os.close(source)
                raise
            return _Frame(source, target, _names(source), info)
        if stat.S_ISREG(mode):
            self._file(parent, into, name, info)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=parent), name, dir_fd=into)
            os.chown(name, info.st_uid, info.st_gid, dir_fd=into, follow_symlinks=False)
            _copy_xattrs(_in(parent, name), _in(into, name), follow=False)
            os.utime(
                name,
                ns=(info.st_atime_ns, info.st_mtime_ns),
                dir_fd=into,
                follow_symlinks=False,
            )
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(name, stat.S_IFMT(mode) | 0o600, info.st_rdev, dir_fd=into)
            made = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=into)
            try:
                if stat.S_IFMT(os.fstat(made).st_mode) != stat.S_IFMT(mode):
                    raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), name)
                # Through the descriptor's own link: never a link put there since.
                node = f"/proc/self/fd/{made}"
                os.chown(node, info.st_uid, info.st_gid)
                _copy_xattrs(_in(parent, name), node, follow=True)
                os.chmod(node, stat.S_IMODE(mode))  # noqa: PTH101 - the fd's inode
                os.utime(node, ns=(info.st_atime_ns, info.st_mtime_ns))
            finally:
                os.close(made)
        return None

    def _file(self, parent: int, into: int, name: str, info: os.stat_result) -> None:
        key = (info.st_dev, info.st_ino)
        first = self._linked.get(key)
        if first is not None:
            os.link(f"/proc/self/fd/{first[0]}", name, dst_dir_fd=into)
            first[1] -= 1
            if first[1] <= 0:
                os.close(first[0])
                del self._linked[key]
            return
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        source = os.open(name, flags, dir_fd=parent)
        try:
            target = os.open(name, _NEW_FILE, 0o600, dir_fd=into)
            try:
                _copy_data(source, target)
                _attributes(source, target, info)
                if info.st_nlink > 1:
                    self._linked[key] = [os.dup(target), info.st_nlink - 1]
                    if len(self._linked) > MAX_LINK_SOURCES:
                        _, (fd, _) = self._linked.popitem(last=False)
                        os.close(fd)
            finally:
                os.close(target)
        finally:
            os.close(source)


def _names(directory: int) -> list[str]:
    # Popped from the end: reversed, so entries are copied in name order.
    return sorted(os.listdir(directory), reverse=True)


def _in(directory: int, name: str) -> str:
    """C{name} in the directory of descriptor C{directory}, as a path."""
    return f"/proc/self/fd/{directory}/{name}"


def _copy_data(source: int, target: int) -> None:
    """C{source}'s bytes into C{target}, in the kernel when it can."""
    try:
        while os.copy_file_range(source, target, 1 << 30):
            pass
    except OSError as e:
        if e.errno not in _NO_KERNEL_COPY:
            raise
        # Across file systems the kernel may refuse: from where it stopped.
        while chunk := os.read(source, _CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(target, view) :]


def _attributes(source: int, target: int, info: os.stat_result) -> None:
    """
    Owner, extended attributes, mode and times of C{source} on C{target}
    (both open descriptors): the owner first, since a chown clears the
    set-id bits and file capabilities.
    """
    os.fchown(target, info.st_uid, info.st_gid)
    _copy_xattrs(source, target, follow=True)
    os.fchmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def _copy_xattrs(source: int | str, target: int | str, *, follow: bool) -> None:
    """
    Every extended attribute of C{source} on C{target}; a file system that
    takes none (or not that name) is passed over, as dockerd passes it.
    """
    try:
        keys = os.listxattr(source, follow_symlinks=follow)
    except OSError as e:
        if e.errno in {errno.ENOTSUP, errno.EOPNOTSUPP}:
            return
        raise
    for key in keys:
        try:
            os.setxattr(
                target, key, os.getxattr(source, key, follow_symlinks=follow),
                follow_symlinks=follow,
            )  # fmt: skip
        except OSError as e:
            if e.errno not in {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA}:
                raise
