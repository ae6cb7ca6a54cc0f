# -*- test-case-name: tests.daemon.images.test_upperdir -*-
"""
The layer of an overlayfs upper directory: a container's changes as the
tar of an image layer (L{write_layer}), for C{docker commit} and the
builder's steps (L{dockserve.daemon.images.commit}).

The tar has the whiteouts of the OCI image spec: a 0/0 character device
(an overlayfs deletion) becomes an empty C{.wh.NAME}, a directory marked
C{trusted.overlay.opaque} is followed by C{.wh..wh..opq}, as dockerd's
overlay2 driver writes them. Hard links stay links; devices, FIFOs and
symlinks stay what they are; extended attributes (file capabilities among
them) are kept, but overlayfs's own C{trusted.overlay.*} and the host's
SELinux label. Sockets are left out, as dockerd leaves them.

The container may be running (C{commit --pause=false}) and hostile: the
walk opens every name with C{O_NOFOLLOW} from its parent's fd, reads a
symlink rather than following it, checks that a file it opens is the
regular file it saw, and never opens a FIFO or a device; nothing the
container made leads it outside the upper directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as st
import tarfile
from typing import TYPE_CHECKING

from dockserve.daemon.images import layers
from dockserve.errors import SystemError_

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from pathlib import Path

#: The diff ID of a layer with nothing in it (the empty tar): dockerd
#: leaves such a layer out of the image and marks its history entry
#: C{empty_layer}.
EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"

_BLOCK = tarfile.BLOCKSIZE
_CHUNK = 1 << 20
_OPAQUE_XATTR = "trusted.overlay.opaque"
#: overlayfs's own attributes: never part of an image.
_OVERLAY_XATTRS = "trusted.overlay."
#: overlayfs features whose upper directory is not the whole change: a
#: renamed directory (redirect_dir) or a file whose data is still below
#: (metacopy).
_PARTIAL_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class PartialUpper(SystemError_):
    """
    The upper directory does not hold the whole change (overlayfs
    C{redirect_dir} or C{metacopy} was on): no layer could be made of it.
    """


class _Walk:
    """
    The walk of one upper directory into a tar stream (L{write_layer}).

    @ivar wrote: Whether any entry went into the stream.
    """

    def __init__(
        self,
        write: Callable[[bytes], None],
        lowers: Sequence[Path],
        exclude: frozenset[str],
    ) -> None:
        self._write = write
        self._lowers = list(lowers)
        self._exclude = exclude
        # The directories leading to an excluded path: each is left out
        # when only excluded paths made it appear in the upper directory.
        self._ancestors = {
            parent for path in exclude for parent in _parents(path) if parent != "/"
        }
        self._buffer = bytearray()
        self._links: dict[tuple[int, int], str] = {}
        self.wrote = False

    # --- output ---------------------------------------------------------

    def _emit(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._write(bytes(self._buffer))
            self._buffer.clear()

    def _header(self, info: tarfile.TarInfo) -> None:
        self.wrote = True
        self._emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def close(self) -> None:
        """End the archive (two zero blocks) and flush."""
        self._emit(b"\0" * (2 * _BLOCK))
        self._flush()

    # --- the tree -------------------------------------------------------

    def tree(self, top: int) -> None:
        """Everything below the directory open at C{top} (closed here)."""
        stack: list[tuple[int, str, Iterator[str]]] = [(top, "", iter(_names(top)))]
        try:
            while stack:
                fd, base, names = stack[-1]
                name = next(names, None)
                if name is None:
                    os.close(fd)
                    stack.pop()
                    continue
                child = self._entry(fd, name, f"{base}/{name}")
                if child is not None:
                    stack.append((child, f"{base}/{name}", iter(_names(child))))
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    def _entry(self, parent: int, name: str, path: str) -> int | None:
        """
        Write the entry C{name} of C{parent} (the container path C{path});
        for a directory, return an fd on it for its contents.
        """
        if path in self._exclude:
            return None
        try:
            info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None  # Gone while we walked (commit --pause=false).
        mode = info.st_mode
        arcname = _arcname(path)
        if st.S_ISDIR(mode):
            return self._directory(parent, name, path, info)
        if st.S_ISCHR(mode) and info.st_rdev == 0:
            self._whiteout(arcname, info)
        elif st.S_ISREG(mode):
            self._regular(parent, name, arcname, info)
        elif st.S_ISLNK(mode):
            tar = _tarinfo(arcname, info)
            tar.type = tarfile.SYMTYPE
            tar.linkname = os.fsdecode(os.readlink(name, dir_fd=parent))
            self._header(tar)
        elif st.S_ISCHR(mode) or st.S_ISBLK(mode):
            tar = _tarinfo(arcname, info)
            tar.type = tarfile.CHRTYPE if st.S_ISCHR(mode) else tarfile.BLKTYPE
            tar.devmajor = os.major(info.st_rdev)
            tar.devminor = os.minor(info.st_rdev)
            self._header(tar)
        elif st.S_ISFIFO(mode):
            tar = _tarinfo(arcname, info)
            tar.type = tarfile.FIFOTYPE
            self._header(tar)
        # Sockets cannot be archived; dockerd leaves them out too.
        return None

    def _directory(
        self, parent: int, name: str, path: str, info: os.stat_result
    ) -> int | None:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno in {errno.ENOENT, errno.ENOTDIR, errno.ELOOP}:
                return None  # Replaced while we walked.
            raise
        try:
            xattrs = _xattrs(fd, path)
            opaque = xattrs.pop(_OPAQUE_XATTR, None) == b"y"
            if (
                not opaque
                and path in self._ancestors
                and self._only_excluded(fd, path, info)
            ):
                os.close(fd)
                return None
            tar = _tarinfo(_arcname(path) + "/", info)
            tar.type = tarfile.DIRTYPE
            _add_xattrs(tar, xattrs)
            self._header(tar)
            if opaque:
                marker = tarfile.TarInfo(f"{_arcname(path)}/{layers.OPAQUE}")
                marker.mode = st.S_IMODE(info.st_mode) & 0o777
                marker.uid, marker.gid = info.st_uid, info.st_gid
                marker.mtime = 0
                self._header(marker)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _only_excluded(self, fd: int, path: str, info: os.stat_result) -> bool:
        """
        Whether the directory C{path} (open at C{fd}) is in the upper
        directory only because excluded paths were made in it: nothing
        else below it, and as the layers below have it (or they have no
        such directory, which was then made for those paths alone).
        """
        for name in _names(fd):
            child = f"{path}/{name}"
            if child in self._exclude:
                continue
            if child not in self._ancestors:
                return False
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                return False
            try:
                sub_info = os.fstat(sub)
                opaque = _opaque(sub)
                if opaque or not self._only_excluded(sub, child, sub_info):
                    return False
            finally:
                os.close(sub)
        below = _lower_stat(self._lowers, path)
        return below is None or (
            st.S_ISDIR(below.st_mode)
            and below.st_mode == info.st_mode
            and (below.st_uid, below.st_gid) == (info.st_uid, info.st_gid)
        )

    def _whiteout(self, arcname: str, info: os.stat_result) -> None:
        """An overlayfs deletion: an empty C{.wh.NAME} in its directory."""
        head, _, base = arcname.rpartition("/")
        name = f"{layers.WHITEOUT_PREFIX}{base}"
        if head:
            name = f"{head}/{name}"
        tar = _tarinfo(name, info)
        tar.mode = 0o600
        self._header(tar)

    def _regular(
        self, parent: int, name: str, arcname: str, info: os.stat_result
    ) -> None:
        key = (info.st_dev, info.st_ino)
        tar = _tarinfo(arcname, info)
        if info.st_nlink > 1 and key in self._links:
            tar.type = tarfile.LNKTYPE
            tar.linkname = self._links[key]
            self._header(tar)
            return
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno in {errno.ENOENT, errno.ELOOP, errno.ENXIO}:
                return  # Gone or replaced while we walked.
            raise
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != key or not st.S_ISREG(now.st_mode):
                return  # Replaced while we walked: not what was seen.
            xattrs = _xattrs(fd, "/" + arcname)
            _add_xattrs(tar, xattrs)
            if info.st_nlink > 1:
                self._links[key] = arcname
            size = info.st_size
            tar.size = size
            self._header(tar)
            remaining = size
            while remaining:
                chunk = os.read(fd, min(_CHUNK, remaining))
                if not chunk:
                    # Truncated while we read (--pause=false): pad, so the
                    # archive stays whole.
                    chunk = b"\0" * min(_CHUNK, remaining)
                self._emit(chunk)
                remaining -= len(chunk)
            self._emit(b"\0" * (-size % _BLOCK))
        finally:
            os.close(fd)


def _parents(path: str) -> list[str]:
    """The directories above C{/a/b/c}: C{/a/b}, C{/a}, C{/}."""
    found = []
    while path not in {"", "/"}:
        path = path.rsplit("/", 1)[0] or "/"
        found.append(path)
    return found


def _arcname(path: str) -> str:
    """The tar name of the container path C{path} (no leading slash)."""
    return path.lstrip("/")


def _names(dir_fd: int) -> list[str]:
    """The names in a directory, in the byte order Go's walk takes them."""
    with os.scandir(dir_fd) as entries:
        return sorted((e.name for e in entries), key=os.fsencode)


def _tarinfo(name: str, info: os.stat_result) -> tarfile.TarInfo:
    tar = tarfile.TarInfo(name)
    tar.mode = st.S_IMODE(info.st_mode)
    tar.uid = info.st_uid
    tar.gid = info.st_gid
    tar.mtime = int(info.st_mtime)
    return tar


def _xattrs(fd: int, path: str) -> dict[str, bytes]:
    """
    The extended attributes of the file open at C{fd}.

    @raise PartialUpper: When overlayfs kept part of the change elsewhere.
    """
    found: dict[str, bytes] = {}
    try:
        names = os.listxattr(fd)
    except OSError as e:
        if e.errno in {errno.ENOTSUP, errno.EOPNOTSUPP}:
            return found
        raise
    for name in names:
        if name.startswith(_PARTIAL_XATTRS):
            raise PartialUpper(
                f"cannot commit {path}: overlayfs keeps part of its change "
                "outside the container's layer (redirect_dir or metacopy)"
            )
        if name.startswith(_OVERLAY_XATTRS) and name != _OPAQUE_XATTR:
            continue
        if name == "security.selinux":
            continue  # The host's label, not the image's.
        with contextlib.suppress(OSError):
            found[name] = os.getxattr(fd, name)
    return found


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, _OPAQUE_XATTR) == b"y"
    except OSError:
        return False


def _add_xattrs(tar: tarfile.TarInfo, xattrs: dict[str, bytes]) -> None:
    """Record C{xattrs} as PAX C{SCHILY.xattr.*}, as Go's archive/tar does."""
    if not xattrs:
        return
    headers = dict(tar.pax_headers)
    for name, value in sorted(xattrs.items()):
        headers[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
    tar.pax_headers = headers


def _lower_stat(lowers: Sequence[Path], path: str) -> os.stat_result | None:
    """
    The C{lstat} of C{path} in the topmost of C{lowers} (top first) that
    has it, walked without following a symlink; C{None} when none has it
    or a whiteout hides it.
    """
    parts = [p for p in path.split("/") if p]
    for layer in lowers:
        try:
            fd = os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            found = None
            for i, part in enumerate(parts):
                nxt = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = nxt
                found = os.fstat(fd)
                if i < len(parts) - 1 and not st.S_ISDIR(found.st_mode):
                    found = None
                    break
        except OSError:
            continue
        finally:
            os.close(fd)
        if found is not None:
            if st.S_ISCHR(found.st_mode) and found.st_rdev == 0:
                return None
            return found
    return None


def write_layer(
    upper: Path,
    write: Callable[[bytes], None],
    *,
    lowers: Sequence[Path] = (),
    exclude: Iterable[str] = (),
) -> bool:
    """
    Blocking: write the layer tar of the overlayfs upper directory
    C{upper} to C{write}: entries in Go's walk order (a directory, then
    what is in it, by name), whiteouts as C{.wh.} entries, an opaque
    directory followed by C{.wh..wh..opq}; the upper directory itself is
    not an entry.

    @param lowers: The layers below, the top one first: a directory that
        is in C{upper} only for excluded paths, and is as the layers below
        have it, is left out too.
    @param exclude: Container paths (C{/etc/hosts}) never put in the
        layer: the mount points the runtime made for a container's own
        files, which dockerd keeps in a layer of their own.
    @return: Whether the layer has any entry (an empty one is the empty
        tar, L{EMPTY_LAYER}).
    @raise PartialUpper: When overlayfs kept part of a change outside
        C{upper}.
    """
    walk = _Walk(write, lowers, frozenset(exclude))
    try:
        top = os.open(upper, _DIR_FLAGS)
    except FileNotFoundError:
        top = None
    if top is not None:
        walk.tree(top)
    walk.close()
    return walk.wrote


__all__ = ["EMPTY_LAYER", "PartialUpper", "write_layer"]
