# -*- test-case-name: tests.daemon.images.test_layers -*-
"""
Layer tarballs: decompression, hashing, and unpacking for overlayfs.

Everything here blocks (reads, writes, hashes large files) and runs in a
thread, never on the reactor thread. Streams are copied in bounded chunks,
so a layer of any size costs the same memory.
"""

# The unpacking loop works on strings with os.path: it runs once per tar
# member of every layer, and Path objects would cost more than the work.
# ruff: noqa: PTH103, PTH108, PTH112, PTH114, PTH118, PTH119, PTH120, PTH211

import bz2
import contextlib
import ctypes
import gzip
import hashlib
import lzma
import os
import shutil
import stat
import tarfile
import zlib
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


def _inside(root: str, path: str) -> bool:
    """Whether C{path}'s parent, with symlinks resolved, lies within C{root}."""
    parent = os.path.realpath(os.path.dirname(path))
    return parent == root or parent.startswith(root + os.sep)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def unpack(tar_path: Path, target: Path) -> None:
    """
    Unpack the uncompressed layer tarball at C{tar_path} into the empty
    directory C{target} as an overlayfs lower layer.

    AUFS-style whiteouts become overlayfs ones: C{.wh.NAME} a 0/0 character
    device C{NAME}, C{.wh..wh..opq} the C{trusted.overlay.opaque} xattr on
    its directory. Members that would land outside C{target} (absolute
    paths, C{..}, paths through a symlink) are skipped.

    @raise InvalidParameter: When the file is not a tar archive.
    """
    root = os.path.realpath(target)
    dir_times: list[tuple[str, tarfile.TarInfo]] = []
    try:
        tar = tarfile.open(tar_path, mode="r:")  # noqa: SIM115 - closed by `with` below
    except tarfile.TarError as e:
        raise InvalidParameter(f"invalid tar header: {e}") from None
    with tar:
        for member in tar:
            name = _safe_name(member.name)
            if name is None:
                continue
            dest = os.path.join(root, name)
            if not _inside(root, dest):
                continue
            base = os.path.basename(name)
            parent = os.path.dirname(dest)
            if base == OPAQUE:
                os.makedirs(parent, exist_ok=True)
                os.setxattr(parent, "trusted.overlay.opaque", b"y")
                continue
            if base.startswith(WHITEOUT_PREFIX):
                hidden = os.path.join(parent, base[len(WHITEOUT_PREFIX) :])
                os.makedirs(parent, exist_ok=True)
                _remove(hidden)
                os.mknod(hidden, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
                continue
            try:
                os.makedirs(parent, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                # The parent is a file or a dangling symlink: no place for it.
                continue
            if member.isdir():
                if os.path.lexists(dest) and not os.path.isdir(dest):
                    os.unlink(dest)
                os.makedirs(dest, exist_ok=True)
                dir_times.append((dest, member))
                _set_attrs(dest, member)
                continue
            _remove(dest)
            if member.isreg():
                _copy_member(tar, member, dest)
            elif member.issym():
                os.symlink(member.linkname, dest)
            elif member.islnk():
                link_name = _safe_name(member.linkname)
                if link_name is None:
                    continue
                source = os.path.join(root, link_name)
                if not _inside(root, source) or not os.path.lexists(source):
                    continue
                os.link(source, dest, follow_symlinks=False)
                continue
            elif member.ischr() or member.isblk():
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(
                    dest,
                    member.mode | kind,
                    os.makedev(member.devmajor, member.devminor),
                )
            elif member.isfifo():
                os.mkfifo(dest, member.mode)
            else:
                continue
            _set_attrs(dest, member)
    # Directory times last: creating their children changed them.
    for dest, member in reversed(dir_times):
        os.utime(dest, (member.mtime, member.mtime))


def _kernel_copy(src_fd: int, dst_fd: int, offset: int, size: int) -> bool:
    """Copy C{size} bytes at C{offset} of C{src_fd} to C{dst_fd} in the kernel."""
    while size:
        copied = os.copy_file_range(src_fd, dst_fd, size, offset)
        if copied == 0:
            return False
        offset += copied
        size -= copied
    return True


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: str) -> None:
    """
    Write a regular member's data to C{dest}: in the kernel
    (C{copy_file_range}, a reflink on filesystems that have them) when the
    member is stored contiguously, else through Python.
    """
    with open(dest, "wb") as out:  # noqa: PTH123
        fileobj = tar.fileobj
        if not member.issparse() and fileobj is not None and member.size:
            try:
                done = _kernel_copy(
                    cast("Any", fileobj).fileno(),
                    out.fileno(),
                    member.offset_data,
                    member.size,
                )
            except (OSError, AttributeError, ValueError):
                done = False
            if done:
                return
            out.seek(0)
            out.truncate()
        src = tar.extractfile(member)
        assert src is not None  # noqa: S101 - regular files have data
        shutil.copyfileobj(src, out, CHUNK)


def _set_attrs(dest: str, member: tarfile.TarInfo) -> None:
    os.lchown(dest, member.uid, member.gid)
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            with contextlib.suppress(OSError):
                os.setxattr(
                    dest,
                    key[len("SCHILY.xattr.") :],
                    value.encode("utf-8", "surrogateescape"),
                    follow_symlinks=False,
                )
    if not member.issym():
        os.chmod(dest, member.mode & 0o7777)  # noqa: PTH101
    os.utime(dest, (member.mtime, member.mtime), follow_symlinks=False)
