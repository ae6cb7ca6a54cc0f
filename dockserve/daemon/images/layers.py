# -*- test-case-name: tests.daemon.images.test_layers -*-
"""
Layer tarballs: decompression, hashing, and unpacking for overlayfs.

Everything here blocks (reads, writes, hashes large files) and runs in a
thread, never on the reactor thread. Streams are copied in bounded chunks,
so a layer of any size costs the same memory.
"""

# The unpacking loop works on names relative to directory fds: it runs once
# per tar member of every layer, and Path objects would cost more than the
# work (and could not say "relative to this fd").

import bz2
import contextlib
import ctypes
import errno
import gzip
import hashlib
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast

import zstandard

from dockserve.errors import InvalidParameter

#: The chunk size of every copy.
CHUNK = 1 << 20

_GZIP = b"\x1f\x8b"
_XZ = b"\xfd7zXZ\x00"

#: What reading a corrupt (compressed) stream raises. An OSError with an
#: errno is the disk's fault, not the data's: callers re-raise that one.
BAD_STREAM_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ValueError,
    lzma.LZMAError,
    zlib.error,
    zstandard.ZstdError,
)
_ZSTD = b"\x28\xb5\x2f\xfd"
_BZIP2 = b"BZh"

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"


def sniff(head: bytes) -> str:
    """The compression of a stream starting with C{head}: C{gzip}, C{xz},
    C{zstd}, C{bzip2} or C{none}.
    """
    if head.startswith(_GZIP):
        return "gzip"
    if head.startswith(_XZ):
        return "xz"
    if head.startswith(_ZSTD):
        return "zstd"
    if head.startswith(_BZIP2):
        return "bzip2"
    return "none"


class _Prefixed:
    """A reader that first returns C{head} then the rest of C{raw}."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._raw.read(size)

    def readable(self) -> bool:
        return True


def decompressed(raw: IO[bytes]) -> IO[bytes]:
    """C{raw} decompressed by whatever compression it starts with."""
    head = raw.read(6)
    src: Any = _Prefixed(head, raw)
    kind = sniff(head)
    if kind == "gzip":
        return cast("IO[bytes]", gzip.GzipFile(fileobj=src, mode="rb"))
    if kind == "xz":
        return cast("IO[bytes]", lzma.LZMAFile(src))
    if kind == "zstd":
        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(src)
        return reader
    if kind == "bzip2":
        return cast("IO[bytes]", bz2.BZ2File(src))
    return src  # type: ignore[no-any-return]


def _read_exactly(src: IO[bytes], size: int) -> bytes:
    """C{size} bytes of C{src}; C{b""} at its end; EOFError part-way."""
    parts: list[bytes] = []
    left = size
    while left:
        data = src.read(left)
        if not data:
            if left == size:
                return b""
            raise EOFError("unexpected end of data")
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


class _MemberData:
    """The data of one tar member, read straight from the archive's stream."""

    def __init__(self, src: IO[bytes], size: int) -> None:
        self._src = src
        self.left = size

    def read(self, size: int = -1) -> bytes:
        """Up to C{size} bytes (all that is left when negative); short at the end."""
        if size < 0 or size > self.left:
            size = self.left
        if size <= 0:
            return b""
        data = self._src.read(size)
        if len(data) == size:
            self.left -= size
            return data
        parts = [data]
        got = len(data)
        while data and got < size:
            data = self._src.read(size - got)
            parts.append(data)
            got += len(data)
        if got < size:
            raise EOFError("unexpected end of data")
        self.left -= size
        return b"".join(parts)

    def readable(self) -> bool:
        return True


def _pax_records(payload: bytes) -> dict[str, str]:
    """The C{key=value} records of a pax extended header."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(payload):
        space = payload.index(b" ", pos)
        length = int(payload[pos:space])
        if length <= 0:
            raise tarfile.ReadError("invalid pax header")
        key, _, value = payload[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode(
            "utf-8", "surrogateescape"
        )
        pos += length
    return records


def iter_tar(
    src: IO[bytes],
) -> "Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]":
    """
    The members of the tar stream C{src} in order, each with a reader of
    its data for a regular file (C{None} otherwise), read in large pieces
    straight from C{src} (tarfile's stream mode copies every 10 kB through
    a buffer). Names and sizes from pax and GNU long-name headers apply.
    What the consumer does not read of a member is skipped.

    @raise tarfile.ReadError: For a bad header.
    @raise EOFError: When the stream ends inside a member.
    """
    pax: dict[str, str] = {}
    global_pax: dict[str, str] = {}
    long_name = long_link = None
    while True:
        block = _read_exactly(src, tarfile.BLOCKSIZE)
        if not block or block == tarfile.NUL * tarfile.BLOCKSIZE:
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as e:
            raise tarfile.ReadError(str(e) or type(e).__name__) from None
        padding = -info.size % tarfile.BLOCKSIZE
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE):
            payload = _read_exactly(src, info.size + padding)[: info.size]
            (global_pax if info.type == tarfile.XGLTYPE else pax).update(
                _pax_records(payload)
            )
            continue
        if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            payload = _read_exactly(src, info.size + padding)[: info.size]
            text = payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            if info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = text
            else:
                long_link = text
            continue
        extra = {**global_pax, **pax}
        if "path" in extra:
            info.name = extra["path"]
        if "linkpath" in extra:
            info.linkname = extra["linkpath"]
        if "size" in extra:
            info.size = int(extra["size"])
            padding = -info.size % tarfile.BLOCKSIZE
        if long_name is not None:
            info.name = long_name
        if long_link is not None:
            info.linkname = long_link
        pax, long_name, long_link = {}, None, None
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise tarfile.ReadError("sparse files are not supported")
        if info.isreg():
            data = _MemberData(src, info.size)
            yield info, cast("IO[bytes]", data)
            left = data.left + padding
        else:
            yield info, None
            # As tarfile: only regular files and unknown types carry data.
            unknown = info.type not in tarfile.SUPPORTED_TYPES
            left = info.size + padding if unknown else 0
        while left:
            skipped = src.read(min(left, CHUNK))
            if not skipped:
                raise EOFError("unexpected end of data")
            left -= len(skipped)


def copy_hashing(
    src: IO[bytes], dst: IO[bytes], progress: Callable[[int], None] | None = None
) -> tuple[str, int]:
    """
    Copy C{src} to C{dst} in chunks.

    @return: C{("sha256:<hex>", size)} of what was copied.
    """
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        dst.write(chunk)
        size += len(chunk)
        if progress is not None:
            progress(size)
    return "sha256:" + digest.hexdigest(), size


def hash_file(path: Path) -> tuple[str, int]:
    """C{("sha256:<hex>", size)} of the file at C{path}."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return "sha256:" + digest.hexdigest(), size


def fsync_file(f: IO[bytes]) -> None:
    """Flush C{f} and its data to disk."""
    f.flush()
    os.fsync(f.fileno())


_libc: Any = None


def syncfs(path: Path) -> None:
    """Flush every dirty page of the filesystem holding C{path}."""
    global _libc  # noqa: PLW0603
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def human_size(n: int) -> str:
    """A size as Docker's progress bars show it (C{2.13MB})."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.3g}{unit}"
        value /= 1000
    return f"{value}B"


def progress_bar(current: int, total: int) -> str:
    """Docker's progress bar: C{[=====>     ] 1.05MB/2.13MB}."""
    if total <= 0:
        return ""
    width = 50
    filled = min(width, int(width * current / total))
    arrow = ">" if filled < width else ""
    return (
        "["
        + "=" * max(0, filled - (1 if arrow else 0))
        + arrow
        + " " * (width - filled)
        + f"] {human_size(current)}/{human_size(total)}"
    )


def disk_size(root: Path) -> int:
    """
    The size dockerd gives an unpacked layer (its overlay2 C{DiffSize}): the
    sizes of everything but directories, symlinks counting their target's
    length, hard links once.
    """
    seen: set[int] = set()
    total = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
                    continue
                if not st.st_size or st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
                total += st.st_size
    return total


def _safe_name(name: str) -> str | None:
    """The member's path made relative and normal, or C{None} to skip it."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


#: Directory fds one unpack keeps open; tar writers group members by
#: directory, so a few cover nearly every lookup.
_OPEN_DIRS = 64
#: Symlinks followed in resolving one parent, as Linux allows.
_MAX_SYMLINKS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: Extended attributes a layer may not set: overlayfs's own, which say
#: what the layers below look like (whiteouts come from C{.wh.} names).
_RESERVED_XATTRS = "trusted.overlay."


class _Dirs:
    """
    Open directories of one layer's root, by their path below it.

    A path here never passes through a symlink (L{_Unpacker._resolve}
    builds them from real directories only), and each component is opened
    from its parent's fd with C{O_NOFOLLOW}, so no fd can be outside the
    root. The least recently used fds are closed past L{_OPEN_DIRS}.
    """

    def __init__(self, root_fd: int) -> None:
        self._root = root_fd
        self._fds: OrderedDict[str, int] = OrderedDict()

    def get(self, path: str) -> int:
        """
        A borrowed fd of the directory C{path} (C{""}: the root), valid
        until the next L{get} or L{forget}.

        @raise OSError: When a component is missing, not a directory, or
            a symlink (C{ELOOP}).
        """
        if not path:
            return self._root
        fd = self._fds.get(path)
        if fd is not None:
            self._fds.move_to_end(path)
            return fd
        parent, _, name = path.rpartition("/")
        fd = os.open(name, _DIR_FLAGS, dir_fd=self.get(parent))
        self._fds[path] = fd
        if len(self._fds) > _OPEN_DIRS:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def forget(self) -> None:
        """Close every fd but the root's: a directory or link was removed."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class _Unpacker:
    """
    One layer tarball unpacked into one directory, never following a
    symlink the layer made: every member's parent is resolved inside the
    root as a chroot at it would resolve it, and every member is made and
    given its attributes through fds relative to that parent.

    @ivar _tar_fd: The tarball, read in the kernel (C{copy_file_range}).
    @ivar _parents: The resolved directory of each parent path already
        seen, so a member costs no walk; emptied with L{_Dirs.forget}.
    @ivar _dir_times: Each directory member's resolved path and mtime, set
        last (making its children changed them).
    """

    def __init__(self, root_fd: int, tar_fd: int) -> None:
        self._dirs = _Dirs(root_fd)
        self._tar_fd = tar_fd
        self._parents: dict[str, str] = {}
        self._dir_times: list[tuple[str, float]] = []
        self._kernel_copy = True

    def close(self) -> None:
        """Release every directory fd."""
        self._dirs.forget()

    def _forget(self) -> None:
        self._dirs.forget()
        self._parents.clear()

    def _resolve(self, path: str, *, create: bool) -> str | None:
        """
        The directory C{path} names inside the root, as a path of real
        directories below it: symlinks are followed as in a chroot at the
        root (absolute ones from the root, C{..} never above it), and
        missing components of C{path} itself are made when C{create}
        (never those a link names, as C{mkdir -p} does not).

        @return: The resolved path, or C{None} when there is no such
            directory (a file in the way, a dangling link, a loop).
        """
        known = self._parents.get(path)
        if known is not None:
            return known
        names: list[str] = []
        queue = deque((part, False) for part in path.split("/") if part)
        links = 0
        while queue:
            part, from_link = queue.popleft()
            if part in {"", "."}:
                continue
            if part == "..":
                if names:
                    names.pop()
                continue
            here = self._dirs.get("/".join(names))
            try:
                info = os.stat(part, dir_fd=here, follow_symlinks=False)
            except FileNotFoundError:
                if from_link or not create:
                    return None
                os.mkdir(part, 0o755, dir_fd=here)
            else:
                if stat.S_ISLNK(info.st_mode):
                    links += 1
                    if links > _MAX_SYMLINKS:
                        return None
                    target = os.readlink(part, dir_fd=here)
                    if target.startswith("/"):
                        names.clear()
                    queue.extendleft((p, True) for p in reversed(target.split("/")))
                    continue
                if not stat.S_ISDIR(info.st_mode):
                    return None
            names.append(part)
        resolved = "/".join(names)
        self._parents[path] = resolved
        return resolved

    def _clear(self, parent: str, name: str) -> None:
        """
        Remove C{name} from the resolved directory C{parent} if it is
        there, a directory with all it holds, a symlink itself.
        """
        fd = self._dirs.get(parent)
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            self._forget()
            shutil.rmtree(name, dir_fd=self._dirs.get(parent))
        else:
            os.unlink(name, dir_fd=fd)
            if stat.S_ISLNK(info.st_mode):
                self._forget()

    def add(self, member: tarfile.TarInfo) -> None:
        """
        Unpack one member (its data read from the tarball at its offset).

        @raise InvalidParameter: For a whiteout of C{.}, C{..} or nothing,
            and a name with a NUL byte.
        """
        name = _safe_name(member.name)
        if name is None:
            return
        if "\0" in name or "\0" in member.linkname:
            raise InvalidParameter(f"invalid tar header: NUL in {name!r}")
        parent_path, _, base = name.rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent_path, base)
            return
        parent = self._resolve(parent_path, create=True)
        if parent is None:
            return  # No directory to put it in, as tar would fail.
        if member.isdir():
            self._directory(parent, base, member)
            return
        if member.isreg():
            self._clear(parent, base)
            self._regular(parent, base, member)
        elif member.issym():
            self._clear(parent, base)
            os.symlink(member.linkname, base, dir_fd=self._dirs.get(parent))
            self._attrs_at(parent, base, member)
        elif member.islnk():
            self._hard_link(parent, base, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._clear(parent, base)
            kind = (
                stat.S_IFCHR
                if member.ischr()
                else stat.S_IFBLK
                if member.isblk()
                else stat.S_IFIFO
            )
            device = os.makedev(member.devmajor, member.devminor)
            os.mknod(base, 0o600 | kind, device, dir_fd=self._dirs.get(parent))
            self._attrs_at(parent, base, member)

    def _whiteout(self, parent_path: str, base: str) -> None:
        """
        C{.wh.NAME}: NAME in the member's directory becomes an overlayfs
        whiteout (a 0/0 character device); C{.wh..wh..opq} marks that
        directory opaque. Other AUFS metadata (C{.wh..wh.*}) is skipped.

        @raise InvalidParameter: When NAME is empty, C{.} or C{..}: it
            would remove the directory itself or its parent (as
            containerd, and the OCI spec since image-spec#1314).
        """
        if base != OPAQUE and base.startswith(WHITEOUT_PREFIX * 2):
            return
        hidden = base[len(WHITEOUT_PREFIX) :]
        if base != OPAQUE and hidden in {"", ".", ".."}:
            raise InvalidParameter(f"invalid whiteout name: {base}")
        parent = self._resolve(parent_path, create=True)
        if parent is None:
            return
        if base == OPAQUE:
            os.setxattr(self._dirs.get(parent), "trusted.overlay.opaque", b"y")
            return
        self._clear(parent, hidden)
        os.mknod(
            hidden,
            0o600 | stat.S_IFCHR,
            os.makedev(0, 0),
            dir_fd=self._dirs.get(parent),
        )

    def _directory(self, parent: str, base: str, member: tarfile.TarInfo) -> None:
        """
        Make (or keep) the directory C{base}: anything else of that name,
        a symlink included, is replaced, as dockerd does.
        """
        fd = self._dirs.get(parent)
        info: os.stat_result | None
        try:
            info = os.stat(base, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is None or not stat.S_ISDIR(info.st_mode):
            if info is not None:
                self._clear(parent, base)
            os.mkdir(base, 0o700, dir_fd=self._dirs.get(parent))
        path = f"{parent}/{base}" if parent else base
        _attrs_fd(self._dirs.get(path), member)
        self._dir_times.append((path, member.mtime))

    def _regular(self, parent: str, base: str, member: tarfile.TarInfo) -> None:
        """Write a regular (maybe sparse) member's data, then its attributes."""
        fd = os.open(base, _FILE_FLAGS, 0o600, dir_fd=self._dirs.get(parent))
        try:
            self._write_data(fd, member)
            _attrs_fd(fd, member)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)

    def _write_data(self, fd: int, member: tarfile.TarInfo) -> None:
        """
        Copy the member's data segments to their offsets in C{fd}: one for
        a plain member; for a sparse one (GNU or pax) only those its map
        lists, and holes between them, so a 10 kB tar of a 4 GiB sparse
        file allocates 10 kB, not 4 GiB.
        """
        # tarfile's (offset, size) pairs; typeshed calls them bytes.
        sparse = cast("list[tuple[int, int]] | None", member.sparse)
        segments = [(0, member.size)] if sparse is None else sparse
        source = member.offset_data
        for offset, length in segments:
            if offset < 0 or length < 0 or offset + length > member.size:
                raise InvalidParameter(
                    f"invalid tar header: bad sparse map for {member.name!r}"
                )
            self._copy(source, fd, offset, length)
            source += length
        if sparse is not None:
            os.ftruncate(fd, member.size)

    def _copy(self, source: int, fd: int, offset: int, length: int) -> None:
        """
        C{length} bytes at C{source} in the tarball to C{offset} in C{fd}:
        in the kernel (C{copy_file_range}, a reflink where the filesystem
        has them), else through a buffer.
        """
        while length and self._kernel_copy:
            try:
                copied = os.copy_file_range(self._tar_fd, fd, length, source, offset)
            except OSError as e:
                if e.errno not in _NO_KERNEL_COPY:
                    raise
                self._kernel_copy = False
                break
            if not copied:
                self._kernel_copy = False  # The loop below tells EOF apart.
                break
            source, offset, length = source + copied, offset + copied, length - copied
        while length:
            data = os.pread(self._tar_fd, min(length, CHUNK), source)
            if not data:
                raise InvalidParameter("invalid tar header: unexpected end of data")
            written = os.pwrite(fd, data, offset)
            source, offset = source + written, offset + written
            length -= written

    def _hard_link(self, parent: str, base: str, member: tarfile.TarInfo) -> None:
        """
        Link C{base} to the member's target, found inside the root as a
        chroot would (a symlink as the target is linked, not followed); a
        target the layer lacks is skipped.
        """
        target = _safe_name(member.linkname)
        if target is None or target == (f"{parent}/{base}" if parent else base):
            return
        target_parent, _, target_base = target.rpartition("/")
        source = self._resolve(target_parent, create=False)
        if source is None:
            return
        self._clear(parent, base)
        try:
            # A copy: finding the other directory may close a borrowed fd.
            source_fd = os.dup(self._dirs.get(source))
        except (FileNotFoundError, NotADirectoryError):
            return  # The target's directory was the name just replaced.
        try:
            os.link(
                target_base,
                base,
                src_dir_fd=source_fd,
                dst_dir_fd=self._dirs.get(parent),
                follow_symlinks=False,
            )
        except FileNotFoundError:
            return
        finally:
            os.close(source_fd)

    def _attrs_at(self, parent: str, base: str, member: tarfile.TarInfo) -> None:
        """
        Owner, xattrs, mode (not a symlink's) and times of C{base}, never
        following it: for what no fd can be opened on to write (symlinks,
        devices, FIFOs).
        """
        fd = self._dirs.get(parent)
        os.chown(base, member.uid, member.gid, dir_fd=fd, follow_symlinks=False)
        # /proc/self/fd/N is the directory we hold; the last name is not followed.
        _set_xattrs(f"/proc/self/fd/{fd}/{base}", member, follow=False)
        if not member.issym():
            node = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            try:
                # chmod through the O_PATH fd: the inode just made.
                os.chmod(f"/proc/self/fd/{node}", member.mode & 0o7777)  # noqa: PTH101
            finally:
                os.close(node)
        times = (member.mtime, member.mtime)
        os.utime(base, times, dir_fd=fd, follow_symlinks=False)

    def finish(self) -> None:
        """Set the directories' times, now that nothing is made in them."""
        for path, mtime in reversed(self._dir_times):
            try:
                fd = self._dirs.get(path)
            except OSError as e:
                if e.errno in {errno.ENOENT, errno.ENOTDIR, errno.ELOOP}:
                    continue  # Removed or replaced later in the layer.
                raise
            os.utime(fd, (mtime, mtime))


#: What C{copy_file_range} raises where the kernel cannot copy these files.
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


def _set_xattrs(target: int | str, member: tarfile.TarInfo, *, follow: bool) -> None:
    """The member's C{SCHILY.xattr.*} records, but overlayfs's own."""
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr.") :]
        if name.startswith(_RESERVED_XATTRS):
            continue
        with contextlib.suppress(OSError, ValueError):
            os.setxattr(
                target,
                name,
                value.encode("utf-8", "surrogateescape"),
                follow_symlinks=follow,
            )


def _attrs_fd(fd: int, member: tarfile.TarInfo) -> None:
    """Owner, xattrs and mode through an fd (owner first: chown clears setuid)."""
    os.fchown(fd, member.uid, member.gid)
    _set_xattrs(fd, member, follow=True)
    os.fchmod(fd, member.mode & 0o7777)


def unpack(tar_path: Path, target: Path) -> None:
    """
    Unpack the uncompressed layer tarball at C{tar_path} into the empty
    directory C{target} as an overlayfs lower layer.

    AUFS-style whiteouts become overlayfs ones: C{.wh.NAME} a 0/0 character
    device C{NAME}, C{.wh..wh..opq} the C{trusted.overlay.opaque} xattr on
    its directory. No step follows a symlink the layer made: a member's
    parent is resolved inside C{target} as in a chroot there (see
    L{_Unpacker}), and what the member names is replaced, never followed.
    Members with C{..} or nowhere to go (a file as their parent) are
    skipped; absolute ones are taken from C{target}.

    @raise InvalidParameter: When the file is not a tar archive, or holds
        a whiteout of its own directory or parent.
    @raise OSError: When the disk fails; its file name is relative to
        C{target} (the member's), never a host path.
    """
    root_fd = os.open(target, _DIR_FLAGS)
    try:
        with open(tar_path, "rb") as raw:  # noqa: PTH123
            try:
                tar = tarfile.open(fileobj=raw, mode="r:")  # noqa: SIM115 - closed below
            except tarfile.TarError as e:
                raise InvalidParameter(f"invalid tar header: {e}") from None
            unpacker = _Unpacker(root_fd, raw.fileno())
            try:
                _unpack_members(tar, unpacker)
                unpacker.finish()
            finally:
                unpacker.close()
                tar.close()
    finally:
        os.close(root_fd)


def _unpack_members(tar: tarfile.TarFile, unpacker: _Unpacker) -> None:
    """Each member of C{tar} in order; a disk error names the member."""
    members = iter(tar)
    while True:
        try:
            member = next(members, None)
        except tarfile.TarError as e:
            raise InvalidParameter(f"invalid tar header: {e}") from None
        if member is None:
            return
        try:
            unpacker.add(member)
        except OSError as e:
            raise OSError(e.errno, e.strerror, _safe_name(member.name)) from None
        except (ValueError, OverflowError) as e:
            raise InvalidParameter(
                f"invalid tar header: {member.name!r}: {e}"
            ) from None
