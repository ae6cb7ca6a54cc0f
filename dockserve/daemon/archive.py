# -*- test-case-name: tests.daemon.test_archive -*-
"""
Safe archive operations on a container's filesystem: C{docker cp}, export,
changes.

Everything here blocks and runs in a thread. The container may be running
and hostile, so no path string is ever handed to the kernel whole: paths
are walked one component at a time from an fd on the root with
C{O_PATH|O_NOFOLLOW}; symlinks are read and resolved by us, absolute ones
relative to the root, and C{..} never climbs above it (L{resolve}).

The contract (names the containers area calls):
 - L{resolve}C{(root, path, *, follow_final) -> Resolved}: an C{O_PATH} fd
   (C{.fd}) and the container path reached (C{.path}); a context manager.
 - L{stat_path}C{(root, path) -> dict}: the C{X-Docker-Container-Path-Stat}
   record C{{"name","size","mode","mtime","linkTarget"}}.
 - L{tar_out}C{(root, path, write)}: the tar C{GET /containers/{id}/archive}
   answers (entries start with the base name of C{path}; C{/.} gives the
   contents only). L{open_source} gives the stat before the first byte.
 - L{tar_in}C{(root, path, read, *, no_overwrite_dir_non_dir, copy_uidgid,
   user="")}: extract a tar (plain, gzip, bzip2, xz, zstd) into a directory.
 - L{export}C{(root, write)}: the tar of the whole filesystem.
 - L{changes}C{(upper_dir, lower_dirs) -> [{"Path", "Kind"}]}.

Errors: C{FileNotFoundError} when the path does not exist (the caller turns
it into L{container_file_not_found}); L{NotADirectoryForExtraction},
L{ArchiveBreakout}, L{OverwriteConflict}, L{BadArchive}, L{SymlinkLoop}
(all L{dockserve.errors.DockerError}s with dockerd's wording).
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import io
import lzma
import os
import posixpath
import shutil
import stat as st
import tarfile
from collections import deque
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Self

import attrs
import zstandard

from dockserve.errors import Conflict, InvalidParameter, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

#: Bytes read or written at a time.
CHUNK = 1 << 20
#: Symlinks followed in one resolution before giving up, as Linux does.
MAX_SYMLINKS = 40
_BLOCK = 512

_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20


class NotADirectoryForExtraction(InvalidParameter):
    """The C{PUT} destination is not a directory."""

    def __init__(self) -> None:
        super().__init__("extraction point is not a directory")


class ArchiveBreakout(InvalidParameter):
    """A tar member (or hardlink target) names a path outside the destination."""


class OverwriteConflict(Conflict):
    """C{noOverwriteDirNonDir} forbade replacing a directory or non-directory."""


class BadArchive(InvalidParameter):
    """The request body is not a readable tar stream."""


class SymlinkLoop(InvalidParameter):
    """Too many symlinks while resolving a path."""


def container_file_not_found(path: str, container_id: str) -> NotFound:
    """Dockerd's 404 for a path missing in a container."""
    return NotFound(f"Could not find the file {path} in container {container_id}")


def _not_found(path: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)


def clean(path: str) -> str:
    """
    The absolute container path for C{path} as moby writes it: cleaned
    lexically, with a trailing C{/} or C{/.} kept (they change C{docker cp}).
    """
    cleaned = "/" + posixpath.normpath("/" + path).lstrip("/")
    if cleaned == "/":
        return "/." if posixpath.basename(path) == "." else "/"
    if path.endswith("/.") or path == ".":
        return cleaned + "/."
    if path.endswith("/"):
        return cleaned + "/"
    return cleaned


def _split(abs_path: str) -> tuple[str, str]:
    """Moby's C{SplitPathDirEntry}: the directory and the final entry."""
    cleaned = "/" + posixpath.normpath("/" + abs_path).lstrip("/")
    if posixpath.basename(abs_path) == "." or abs_path.endswith("/."):
        cleaned = posixpath.join(cleaned, ".")
    if cleaned == "/":
        return "/", "."
    return posixpath.dirname(cleaned), posixpath.basename(cleaned)


def _base_name(abs_path: str) -> str:
    """Go's C{filepath.Base}: trailing slashes dropped, C{/} for the root."""
    stripped = abs_path.rstrip("/")
    if not stripped:
        return "/"
    return posixpath.basename(stripped)


@attrs.define
class Resolved:
    """
    The result of L{resolve}: an C{O_PATH} fd and the path it has in the
    container. Close it (or use it as a context manager).

    @ivar fd: An C{O_PATH} descriptor of the object reached.
    @ivar path: Its absolute path as the container sees it.
    @ivar missing: Components past the last one that exists (lenient
        resolution only); empty when C{fd} is the object itself.
    """

    fd: int
    path: str
    missing: tuple[str, ...] = ()

    def close(self) -> None:
        """Release the descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_root(root: Path) -> int:
    return os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def _walk(root_fd: int, path: str, *, follow_final: bool, strict: bool) -> Resolved:
    """
    Walk C{path} from C{root_fd} one component at a time, as the kernel
    would inside a chroot at the root, holding an fd on every directory
    so C{..} pops back without asking the filesystem.
    """
    stack: list[int] = [os.dup(root_fd)]
    names: list[str] = []
    queue = deque(p for p in path.split("/") if p not in {"", "."})
    links = 0
    missing: list[str] = []
    try:
        while queue:
            comp = queue.popleft()
            if comp in {"", "."}:
                continue
            if missing:
                if comp == "..":
                    missing.pop() if missing else None
                else:
                    missing.append(comp)
                continue
            if comp == "..":
                if names:
                    os.close(stack.pop())
                    names.pop()
                continue
            current = stack[-1]
            try:
                fd = os.open(
                    comp, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current
                )
            except (FileNotFoundError, NotADirectoryError):
                if strict:
                    raise _not_found(path) from None
                missing.append(comp)
                continue
            mode = os.fstat(fd).st_mode
            if st.S_ISLNK(mode) and (queue or follow_final):
                target = os.readlink("", dir_fd=fd)
                os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise SymlinkLoop(f"too many links in {path}")
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                    names.clear()
                queue.extendleft(reversed(target.split("/")))
                continue
            stack.append(fd)
            names.append(comp)
        result = stack.pop()
        return Resolved(result, "/" + "/".join(names + missing), tuple(missing))
    finally:
        for fd in stack:
            os.close(fd)


def resolve(root: Path, path: str, *, follow_final: bool) -> Resolved:
    """
    Resolve C{path} inside C{root} as the container sees it.

    @param follow_final: Whether a symlink as the last component is followed.
    @raise FileNotFoundError: When a component does not exist.
    @raise SymlinkLoop: After L{MAX_SYMLINKS} symlinks.
    """
    root_fd = _open_root(root)
    try:
        return _walk(root_fd, path, follow_final=follow_final, strict=True)
    finally:
        os.close(root_fd)


def go_mode(mode: int) -> int:
    """A C{st_mode} as Go's C{os.FileMode} bits."""
    result = mode & 0o777
    kind = st.S_IFMT(mode)
    result |= {
        st.S_IFBLK: _GO_DEVICE,
        st.S_IFCHR: _GO_DEVICE | _GO_CHARDEV,
        st.S_IFDIR: _GO_DIR,
        st.S_IFIFO: _GO_PIPE,
        st.S_IFLNK: _GO_SYMLINK,
        st.S_IFSOCK: _GO_SOCKET,
    }.get(kind, 0)
    if mode & st.S_ISUID:
        result |= _GO_SETUID
    if mode & st.S_ISGID:
        result |= _GO_SETGID
    if mode & st.S_ISVTX:
        result |= _GO_STICKY
    return result


def rfc3339(ns: int) -> str:
    """Go's C{time.Time} JSON form (RFC 3339, nanoseconds, UTC)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


class Source:
    """
    A path opened for C{GET /containers/{id}/archive}: the stat record for
    the header is known before L{write_tar} writes the first byte, and both
    describe the same object.
    """

    def __init__(self, root: Path, path: str) -> None:
        self._abs = clean(path)
        directory, self._base = _split(self._abs)
        root_fd = _open_root(root)
        try:
            self._parent = _walk(root_fd, directory, follow_final=True, strict=True)
            try:
                self._lstat = _lstat(self._parent.fd, self._base)
                link_target = ""
                if st.S_ISLNK(self._lstat.st_mode):
                    with _walk(
                        root_fd, self._abs, follow_final=True, strict=False
                    ) as full:
                        link_target = full.path
            except BaseException:
                self._parent.close()
                raise
        finally:
            os.close(root_fd)
        self.stat: dict[str, Any] = {
            "name": _base_name(self._abs),
            "size": self._lstat.st_size,
            "mode": go_mode(self._lstat.st_mode),
            "mtime": rfc3339(self._lstat.st_mtime_ns),
            "linkTarget": link_target,
        }

    def write_tar(
        self, write: Callable[[bytes], None], opaque: frozenset[int] = frozenset()
    ) -> None:
        """
        Write the tar stream of the path through C{write}, in chunks.

        @param opaque: Devices (C{st_dev}) of file systems whose directories
            are archived without their contents (a running container's
            C{/proc} and C{/sys}).
        """
        rebase = _base_name(self._abs)
        out = _TarWriter(write, opaque)
        if st.S_ISDIR(self._lstat.st_mode):
            fd = _reopen_dir(self._parent.fd, self._base)
            # The root keeps dockerd's names: "/" then "/bin", "/etc"...
            out.add_tree(fd, rebase, rebase)
        else:
            out.add_entry(self._parent.fd, self._base, rebase)
        out.close()

    def close(self) -> None:
        """Release the descriptors."""
        self._parent.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lstat(dir_fd: int, name: str) -> os.stat_result:
    if name == ".":
        return os.fstat(dir_fd)
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except NotADirectoryError:
        raise _not_found(name) from None


def open_source(root: Path, path: str) -> Source:
    """
    Resolve C{path} for a tar out: its directory with symlinks followed,
    its last component not (moby's C{ResolvePath}).

    @raise FileNotFoundError: When it does not exist.
    """
    return Source(root, path)


def stat_path(root: Path, path: str) -> dict[str, Any]:
    """The C{X-Docker-Container-Path-Stat} record of C{path}."""
    with open_source(root, path) as source:
        return source.stat


def tar_out(
    root: Path,
    path: str,
    write: Callable[[bytes], None],
    *,
    opaque: frozenset[int] = frozenset(),
) -> None:
    """
    The tar stream C{docker cp CONTAINER:path -} expects, through C{write};
    directories on the C{opaque} devices without their contents.
    """
    with open_source(root, path) as source:
        source.write_tar(write, opaque)


def export(root: Path, write: Callable[[bytes], None]) -> None:
    """The tar of the whole filesystem at C{root} (C{docker export})."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    out = _TarWriter(write)
    out.add_tree(root_fd, "", None)
    out.close()


def copy_resource(root: Path, path: str, write: Callable[[bytes], None]) -> None:
    """
    The seed's C{POST /containers/{id}/copy}: every symlink followed, the
    entries named from the base name of what was reached.
    """
    with resolve(root, clean(path), follow_final=True) as reached:
        name = posixpath.basename(reached.path) or "/"
        mode = os.fstat(reached.fd).st_mode
        out = _TarWriter(write)
        if st.S_ISDIR(mode):
            fd = os.open(
                ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=reached.fd
            )
            out.add_tree(fd, name, name)
        else:
            with _walk_parent(root, reached.path) as parent:
                out.add_entry(parent.fd, posixpath.basename(reached.path), name)
        out.close()


def _walk_parent(root: Path, container_path: str) -> Resolved:
    return resolve(root, posixpath.dirname(container_path), follow_final=True)


def _reopen_dir(dir_fd: int, name: str) -> int:
    return os.open(
        name,
        os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
        dir_fd=dir_fd,
    )


class _TarWriter:
    """A PAX tar writer with bounded memory that never follows a symlink."""

    def __init__(
        self, write: Callable[[bytes], None], opaque: frozenset[int] = frozenset()
    ) -> None:
        self._write = write
        self._opaque = opaque
        self._buffer = bytearray()
        self._seen: dict[tuple[int, int], str] = {}

    def _emit(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._write(bytes(self._buffer))
            self._buffer.clear()

    def close(self) -> None:
        self._emit(b"\0" * (2 * _BLOCK))
        self._flush()

    def _header(self, info: tarfile.TarInfo) -> None:
        self._emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def add_entry(self, dir_fd: int, name: str, arcname: str) -> None:
        """
        Add the entry C{name} of C{dir_fd} (not followed) as C{arcname};
        a directory's contents are not added.
        """
        try:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            return  # Removed while we walked: a running container's right.
        try:
            info = os.fstat(fd)
            self._entry(fd, info, arcname)
        finally:
            os.close(fd)

    def _entry(self, fd: int, info: os.stat_result, arcname: str) -> None:
        mode = info.st_mode
        if st.S_ISSOCK(mode):
            return  # Sockets cannot be archived; dockerd skips them too.
        tar = tarfile.TarInfo(arcname)
        tar.mode = st.S_IMODE(mode)
        tar.uid = info.st_uid
        tar.gid = info.st_gid
        tar.mtime = int(info.st_mtime)
        if st.S_ISDIR(mode):
            tar.type = tarfile.DIRTYPE
            tar.name = arcname.rstrip("/") + "/"
            self._header(tar)
            return
        if st.S_ISLNK(mode):
            tar.type = tarfile.SYMTYPE
            tar.linkname = os.readlink("", dir_fd=fd)
            self._header(tar)
            return
        if st.S_ISCHR(mode) or st.S_ISBLK(mode):
            tar.type = tarfile.CHRTYPE if st.S_ISCHR(mode) else tarfile.BLKTYPE
            tar.devmajor = os.major(info.st_rdev)
            tar.devminor = os.minor(info.st_rdev)
            self._header(tar)
            return
        if st.S_ISFIFO(mode):
            tar.type = tarfile.FIFOTYPE
            self._header(tar)
            return
        key = (info.st_dev, info.st_ino)
        if info.st_nlink > 1:
            if key in self._seen:
                tar.type = tarfile.LNKTYPE
                tar.linkname = self._seen[key]
                self._header(tar)
                return
            self._seen[key] = arcname
        # Reopen through the O_PATH fd: the same inode, checked regular,
        # so a device node swapped in by the container is never read.
        data_fd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = info.st_size
            tar.size = size
            self._header(tar)
            remaining = size
            while remaining:
                chunk = os.read(data_fd, min(CHUNK, remaining))
                if not chunk:
                    # Truncated while we read: pad to keep the stream valid.
                    chunk = b"\0" * min(CHUNK, remaining)
                self._emit(chunk)
                remaining -= len(chunk)
            self._emit(b"\0" * (-size % _BLOCK))
        finally:
            os.close(data_fd)

    def add_tree(self, dir_fd: int, prefix: str, top_name: str | None) -> None:
        """
        Add the directory open at C{dir_fd} (closed here) and everything
        below it, names under C{prefix}; the directory itself as
        C{top_name} unless that is C{None}.
        """
        info = os.fstat(dir_fd)
        if top_name is not None:
            self._entry(dir_fd, info, top_name)
        if info.st_dev in self._opaque:
            os.close(dir_fd)
            return
        stack: list[tuple[int, str, Iterator[str]]] = [
            (dir_fd, prefix, iter(_names(dir_fd)))
        ]
        try:
            while stack:
                fd, base, names = stack[-1]
                name = next(names, None)
                if name is None:
                    os.close(fd)
                    stack.pop()
                    continue
                arcname = f"{base.rstrip('/')}/{name}" if base else name
                try:
                    child = _reopen_dir(fd, name)
                except (NotADirectoryError, OSError) as e:
                    if isinstance(e, FileNotFoundError):
                        continue
                    if e.errno not in {errno.ENOTDIR, errno.ELOOP}:
                        raise
                    self.add_entry(fd, name, arcname)
                    continue
                try:
                    info = os.fstat(child)
                    self._entry(child, info, arcname)
                    if info.st_dev in self._opaque:
                        os.close(child)
                        continue
                    stack.append((child, arcname, iter(_names(child))))
                except BaseException:
                    os.close(child)
                    raise
        finally:
            for fd, _, _ in stack:
                os.close(fd)


def _names(dir_fd: int) -> list[str]:
    with os.scandir(dir_fd) as entries:
        return sorted((e.name for e in entries), key=os.fsencode)


# ---- tar in -----------------------------------------------------------------


class _Reader(io.RawIOBase):
    """A file object over a C{read(n)} callable."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._head = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._read(len(view))
        view[: len(data)] = data
        return len(data)

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            more = self._read(n - len(self._head))
            if not more:
                break
            self._head += more
        return self._head


def _decompressed(read: Callable[[int], bytes]) -> IO[bytes]:
    raw = _Reader(read)
    head = raw.peek(6)
    stream: IO[bytes] = io.BufferedReader(raw, CHUNK)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    if head.startswith(b"BZh"):
        return bz2.BZ2File(stream)
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(stream)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return zstandard.ZstdDecompressor().stream_reader(stream)
    return stream


def lookup_user(root: Path, user: str) -> tuple[int, int]:
    """
    The uid and gid of C{user} (C{name}, C{uid}, C{name:group}, C{uid:gid})
    from the container's own C{/etc/passwd} and C{/etc/group}, read safely.
    """
    name, _, group = user.partition(":")

    def table(path: str) -> list[list[str]]:
        try:
            with resolve(root, path, follow_final=True) as found:
                fd = os.open(f"/proc/self/fd/{found.fd}", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, SymlinkLoop):
            return []
        with os.fdopen(fd, "rb") as f:
            text = f.read(1 << 20).decode("utf-8", "replace")
        return [line.split(":") for line in text.splitlines() if ":" in line]

    uid = gid = None
    for row in table("/etc/passwd"):
        if len(row) > 3 and (row[0] == name or row[2] == name):
            uid, gid = int(row[2]), int(row[3])
            break
    if uid is None:
        if not name.isdigit():
            raise InvalidParameter(
                f"unable to find user {name}: no matching entries in passwd file"
            )
        uid, gid = int(name), 0
    if group:
        for row in table("/etc/group"):
            if len(row) > 2 and (row[0] == group or row[2] == group):
                gid = int(row[2])
                break
        else:
            if not group.isdigit():
                raise InvalidParameter(
                    f"unable to find group {group}: no matching entries in group file"
                )
            gid = int(group)
    return uid, gid or 0


def tar_in(
    root: Path,
    path: str,
    read: Callable[[int], bytes],
    *,
    no_overwrite_dir_non_dir: bool,
    copy_uidgid: bool,
    user: str = "",
) -> None:
    """
    Extract the tar stream C{read} returns into the directory C{path}
    inside C{root} (a symlink as its last component is followed).

    Each member is placed by walking its parent directory inside the root
    (symlinks followed as the container would, never out of the root) and
    created without following its own last component. Ownership comes from
    the tar headers, or with C{copy_uidgid} and a C{user} from the
    container's C{user}.

    @raise FileNotFoundError: When C{path} does not exist.
    @raise NotADirectoryForExtraction: When it is not a directory.
    @raise ArchiveBreakout: For a member outside the destination.
    @raise OverwriteConflict: When C{no_overwrite_dir_non_dir} forbids a member.
    @raise BadArchive: When the stream is not a tar archive.
    """
    abs_path = clean(path)
    with resolve(root, abs_path, follow_final=True) as dest:
        if not st.S_ISDIR(os.fstat(dest.fd).st_mode):
            raise NotADirectoryForExtraction
        dest_path = dest.path
    owner = lookup_user(root, user) if copy_uidgid and user else None
    stream = _decompressed(read)
    try:
        tar = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115
    except tarfile.ReadError as e:
        if "empty" in str(e):
            return
        raise BadArchive(f"Error processing tar file: {e}") from None
    dir_times: list[tuple[str, int]] = []
    root_fd = _open_root(root)
    try:
        with tar:
            try:
                for member in tar:
                    _extract(
                        root_fd,
                        dest_path,
                        tar,
                        member,
                        owner,
                        no_overwrite_dir_non_dir,
                        dir_times,
                    )
            except (tarfile.TarError, EOFError) as e:
                raise BadArchive(f"Error processing tar file: {e}") from None
        for target, mtime in reversed(dir_times):
            with (
                contextlib.suppress(OSError),
                _walk(root_fd, target, follow_final=False, strict=True) as found,
            ):
                if st.S_ISDIR(os.fstat(found.fd).st_mode):
                    os.utime(f"/proc/self/fd/{found.fd}", (mtime, mtime))
    finally:
        os.close(root_fd)


def _member_path(dest_path: str, name: str) -> str:
    joined = posixpath.normpath(posixpath.join(dest_path, "./" + name.lstrip("/")))
    rel = posixpath.relpath(joined, dest_path)
    if rel == ".." or rel.startswith("../"):
        raise ArchiveBreakout(f"{name!r} is outside of {dest_path!r}")
    return joined


def _extract(  # noqa: PLR0917 - one member's whole context, private.
    root_fd: int,
    dest_path: str,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    owner: tuple[int, int] | None,
    no_overwrite: bool,
    dir_times: list[tuple[str, int]],
) -> None:
    target = _member_path(dest_path, member.name)
    parent_path, base = posixpath.split(target)
    if target == dest_path or not base:
        parent_path, base = target, "."
    if base == ".":
        if member.isdir():
            dir_times.append((target, int(member.mtime)))
        return
    _mkdirs(root_fd, parent_path)
    with _walk(root_fd, parent_path, follow_final=True, strict=True) as parent:
        pfd = parent.fd
        try:
            existing: os.stat_result | None = os.stat(
                base, dir_fd=pfd, follow_symlinks=False
            )
        except FileNotFoundError:
            existing = None
        if existing is not None:
            is_dir = st.S_ISDIR(existing.st_mode)
            if no_overwrite and is_dir and not member.isdir():
                raise OverwriteConflict(
                    f"cannot overwrite directory {target!r} "
                    f"with non-directory {dest_path!r}"
                )
            if no_overwrite and not is_dir and member.isdir():
                raise OverwriteConflict(
                    f"cannot overwrite non-directory {target!r} "
                    f"with directory {dest_path!r}"
                )
            if not (is_dir and member.isdir()):
                if is_dir:
                    shutil.rmtree(base, dir_fd=pfd)
                else:
                    os.unlink(base, dir_fd=pfd)
        uid, gid = owner or (member.uid, member.gid)
        mode = member.mode & 0o7777
        if member.isdir():
            if existing is None or not st.S_ISDIR(existing.st_mode):
                os.mkdir(base, 0o700, dir_fd=pfd)
            fd = _reopen_dir(pfd, base)
            try:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            dir_times.append((target, int(member.mtime)))
            return
        if member.isreg():
            fd = os.open(
                base,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=pfd,
            )
            try:
                source = tar.extractfile(member)
                assert source is not None  # noqa: S101 - a regular member has data
                while chunk := source.read(CHUNK):
                    os.write(fd, chunk)
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                os.utime(fd, (member.mtime, member.mtime))
            finally:
                os.close(fd)
            return
        if member.issym():
            os.symlink(member.linkname, base, dir_fd=pfd)
        elif member.islnk():
            source_path = _member_path(dest_path, member.linkname)
            with _walk(
                root_fd, posixpath.dirname(source_path), follow_final=True, strict=True
            ) as source_parent:
                os.link(
                    posixpath.basename(source_path),
                    base,
                    src_dir_fd=source_parent.fd,
                    dst_dir_fd=pfd,
                    follow_symlinks=False,
                )
            return
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = (
                st.S_IFCHR
                if member.ischr()
                else st.S_IFBLK
                if member.isblk()
                else st.S_IFIFO
            )
            os.mknod(
                base,
                0o600 | kind,
                os.makedev(member.devmajor, member.devminor),
                dir_fd=pfd,
            )
        else:
            return
        os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            if not member.issym():
                # chmod through the O_PATH fd: the inode we created.
                os.chmod(f"/proc/self/fd/{fd}", mode)  # noqa: PTH101
            os.utime(
                base, (member.mtime, member.mtime), dir_fd=pfd, follow_symlinks=False
            )
        finally:
            os.close(fd)


def mount_point(root: Path, path: str, *, directory: bool) -> tuple[Resolved, str]:
    """
    The place to mount something at C{path} inside C{root}, as runc finds
    it: symlinks followed inside the root, missing directories made (0755)
    and a missing last component made as an empty directory, or an empty
    file when C{directory} is false.

    @return: The parent directory (close it) and the entry's name in it.
    @raise ValueError: C{path} is the root itself.
    """
    root_fd = _open_root(root)
    try:
        with _walk(root_fd, clean(path), follow_final=True, strict=False) as found:
            target = found.path
        parent_path, base = posixpath.split(target.rstrip("/"))
        if not base:
            msg = "cannot mount over the root"
            raise ValueError(msg)
        _mkdirs(root_fd, parent_path)
        parent = _walk(root_fd, parent_path, follow_final=True, strict=True)
    finally:
        os.close(root_fd)
    try:
        _make_missing(parent.fd, base, directory=directory)
    except BaseException:
        parent.close()
        raise
    return parent, base


def _make_missing(dir_fd: int, name: str, *, directory: bool) -> None:
    """Make C{name} in C{dir_fd} unless it is there (as anything)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        if directory:
            os.mkdir(name, 0o755, dir_fd=dir_fd)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(name, flags, 0o644, dir_fd=dir_fd))


def _mkdirs(root_fd: int, directory: str) -> None:
    """Create C{directory}'s missing components inside the root, 0755 root."""
    with _walk(root_fd, directory, follow_final=True, strict=False) as found:
        if not found.missing:
            if not st.S_ISDIR(os.fstat(found.fd).st_mode):
                raise _not_found(directory)
            return
        fd = os.dup(found.fd)
    try:
        for name in found.missing:
            os.mkdir(name, 0o755, dir_fd=fd)
            child = os.open(
                name,
                os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                dir_fd=fd,
            )
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


# ---- changes ----------------------------------------------------------------

_KIND_MODIFY, _KIND_ADD, _KIND_DELETE = 0, 1, 2


def _lower_lookup(lower_dirs: list[Path], rel: str) -> os.stat_result | None:
    """
    The C{lstat} of C{rel} in the topmost lower layer that has it, walked
    without following any symlink; a whiteout hides the layers below.
    """
    parts = [p for p in rel.split("/") if p]
    for layer in lower_dirs:
        try:
            fd = os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            found = None
            for i, part in enumerate(parts):
                flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
                nxt = os.open(part, flags, dir_fd=fd)
                os.close(fd)
                fd = nxt
                info = os.fstat(fd)
                if i < len(parts) - 1 and not st.S_ISDIR(info.st_mode):
                    raise FileNotFoundError
                found = info
        except OSError:
            continue
        finally:
            os.close(fd)
        if found is not None:
            if st.S_ISCHR(found.st_mode) and found.st_rdev == 0:
                return None
            return found
    return None


def _same_time(a: int, b: int) -> bool:
    return a == b or (a // 10**9 == b // 10**9 and (a % 10**9 == 0 or b % 10**9 == 0))


def changes(upper_dir: Path, lower_dirs: list[Path]) -> list[dict[str, Any]]:
    """
    The C{GET /containers/{id}/changes} list from an overlayfs upper
    directory, in moby's walk order: C{Kind} 0 modified, 1 added, 2 deleted.

    @param lower_dirs: The layers below, topmost first (C{lowerdir} order).
    """
    result: list[dict[str, Any]] = []
    changed_dirs: set[str] = set()
    top = os.open(upper_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stack: list[tuple[int, str, Iterator[str]]] = [(top, "", iter(_names(top)))]
    try:
        while stack:
            fd, base, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(fd)
                stack.pop()
                continue
            rel = f"{base}/{name}"
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            child = None
            if st.S_ISDIR(info.st_mode):
                child = _reopen_dir(fd, name)
                stack.append((child, rel, iter(_names(child))))
            display = os.fsencode(rel).decode("utf-8", "replace")
            deleted = st.S_ISCHR(info.st_mode) and info.st_rdev == 0
            if child is not None and not deleted:
                with contextlib.suppress(OSError):
                    deleted = os.getxattr(child, "trusted.overlay.opaque") == b"y"
            if deleted:
                kind = _KIND_DELETE
            else:
                kind = _KIND_ADD
                lower = _lower_lookup(lower_dirs, rel)
                if lower is not None:
                    if (
                        st.S_ISDIR(lower.st_mode)
                        and child is not None
                        and lower.st_size == info.st_size
                        and lower.st_mode == info.st_mode
                        and _same_time(lower.st_mtime_ns, info.st_mtime_ns)
                    ):
                        continue
                    kind = _KIND_MODIFY
            if child is not None:
                changed_dirs.add(display)
            if kind in {_KIND_ADD, _KIND_DELETE}:
                parent = posixpath.dirname(display)
                if parent != "/" and parent not in changed_dirs:
                    result.append({"Path": parent, "Kind": _KIND_MODIFY})
                    changed_dirs.add(parent)
            result.append({"Path": display, "Kind": kind})
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return result
