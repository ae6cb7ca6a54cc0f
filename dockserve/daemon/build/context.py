# -*- test-case-name: tests.daemon.build.test_context -*-
"""
The build context: the tar a client sends with C{POST /build}, kept on
disk as the one tar it arrives as, with an index of what it holds.

The body may be a tar (plain, gzip, bzip2, xz or zstd: sniffed, as
dockerd's C{DecompressStream}) or, for a client that sends a Dockerfile
alone, the Dockerfile's text (it becomes a context holding just that
file). It is read member by member as it arrives, never held whole: the
plain tar goes to C{context.tar} in a fresh directory of the daemon's,
and the index (L{Context.entries}) records for each member its kind,
mode, time, size, where its data starts in that file, and its content's
digest (hashed as it streams past, so C{COPY}'s cache key costs no second
read). Nothing is unpacked: a rebuild whose steps all hit the cache
writes one file, not one per member of the context. A C{COPY} or C{ADD}
that misses reads its sources from the tar by offset
(L{dockserve.daemon.build.contextview}).

The index keeps the stance of L{dockserve.daemon.images.layers}: names
are made relative and normal, and one naming C{..} is skipped; a member
whose path goes through a symlink (or a file) of the context is skipped;
a symlink is recorded as a symlink and only ever resolved inside the
context; hard links only join two regular files of the context (they
share the data); devices and FIFOs are dropped. Owners are indexed (C{ADD}
of a local tar keeps them) but C{COPY} gives files to root unless
C{--chown}. The last member of a name wins, as when a tar is unpacked.

The disk is watched as the tar grows: when the free space left goes under
L{RESERVE} (or a write fails with C{ENOSPC}), the receive stops with
dockerd's C{no space left on device} and the caller removes what was
written.

Everything here blocks; it runs in a thread.
"""

import errno
import hashlib
import os
import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Self, cast

from attrs import define, field, frozen

from dockserve.daemon.build import dockerignore
from dockserve.daemon.images import layers
from dockserve.errors import DockerError, InvalidParameter, SystemError_

#: Free bytes a context may not eat into (the rest of the daemon needs
#: some room for its records).
RESERVE = 64 << 20
#: How often (bytes written) the free space is looked at.
_CHECK_EVERY = 8 << 20
_CHUNK = 1 << 20
#: A Dockerfile sent alone (not in a tar) is read up to this size.
_MAX_BARE_DOCKERFILE = 16 << 20
#: The file in a context's directory that holds its data.
ARCHIVE = "context.tar"
_MAX_LINKS = 40


class ContextError(SystemError_):
    """The context could not be received (a 500 with dockerd's text)."""


@frozen
class Entry:
    """
    What the context holds at one path.

    @ivar kind: C{"file"}, C{"dir"} or C{"symlink"}.
    @ivar mode: Its permission bits (with setuid/setgid/sticky).
    @ivar digest: A regular file's content C{sha256:<hex>}; a symlink's
        target; C{""} for a directory.
    @ivar size: A regular file's size.
    @ivar offset: Where a regular file's data starts in the context's
        archive.
    @ivar mtime: Its modification time (seconds); a directory no member
        named has the time the context was received.
    @ivar uid: Its owner as the member says (C{ADD} of a local tar keeps
        it; C{COPY} gives files to root or C{--chown}).
    @ivar gid: Its group, likewise.
    """

    kind: str
    mode: int
    digest: str = ""
    size: int = 0
    offset: int = 0
    mtime: float = 0.0
    uid: int = 0
    gid: int = 0


@define
class Context:
    """
    A received context on disk.

    @ivar root: Its directory (holding L{ARCHIVE}).
    @ivar entries: What it holds, by C{/}-separated relative path.
    @ivar received: When it was received (the time of the directories no
        member named, and of its root).
    """

    root: Path
    entries: dict[str, Entry] = field(factory=dict)
    received: float = field(factory=time.time)

    @property
    def archive(self) -> Path:
        """The file holding the members' data."""
        return self.root / ARCHIVE

    def open(self, entry: Entry) -> IO[bytes]:
        """Blocking: a reader of a regular file's data."""
        raw = self.archive.open("rb")
        raw.seek(entry.offset)
        return cast("IO[bytes]", Slice(raw, entry.size))

    def read(self, entry: Entry) -> bytes:
        """Blocking: a regular file's data."""
        with self.archive.open("rb") as raw:
            raw.seek(entry.offset)
            return raw.read(entry.size)

    def resolve(self, relative: str, *, follow: bool = True) -> str | None:
        """
        C{relative} resolved in the context as in a chroot there: symlinks
        followed (the last one only with C{follow}), never out of it
        (C{..} stops at its root, an absolute target starts there); the
        path of what it names (C{""}: the root), or C{None} if nothing.
        """
        pending = _parts(relative)
        resolved: list[str] = []
        links = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            name = "/".join([*resolved, part])
            entry = self.entries.get(name)
            if entry is None:
                return None
            if entry.kind == "symlink" and (pending or follow):
                links += 1
                if links > _MAX_LINKS:
                    return None
                if entry.digest.startswith("/"):
                    resolved = []
                pending = _parts(entry.digest) + pending
                continue
            if pending and entry.kind != "dir":
                return None
            resolved.append(part)
        return "/".join(resolved)

    def remove(self) -> None:
        """Blocking: delete it."""
        shutil.rmtree(self.root, ignore_errors=True)


class Slice:
    """At most C{size} bytes of C{raw} from where it stands; closes it."""

    def __init__(self, raw: IO[bytes], size: int) -> None:
        self._raw = raw
        self._left = size

    def read(self, size: int = -1) -> bytes:
        """Up to C{size} bytes (all that is left when negative)."""
        if size < 0 or size > self._left:
            size = self._left
        data = self._raw.read(size) if size else b""
        self._left -= len(data)
        return data

    def readable(self) -> bool:
        """It is."""
        return True

    def close(self) -> None:
        """Close the file under it."""
        self._raw.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parts(path: str) -> list[str]:
    return [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]


FreeSpace = Callable[[Path], int]


def free_space(path: Path) -> int:
    """Bytes an unprivileged writer may still use on C{path}'s filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _read_up_to(src: IO[bytes], size: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < size:
        data = src.read(size - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _is_tar_header(block: bytes) -> bool:
    """Whether C{block} starts a tar archive (or is its zero end block)."""
    if len(block) < tarfile.BLOCKSIZE:
        return False
    if block[: tarfile.BLOCKSIZE] == tarfile.NUL * tarfile.BLOCKSIZE:
        return True
    try:
        tarfile.TarInfo.frombuf(block[: tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def receive(
    src: IO[bytes],
    target: Path,
    *,
    space: FreeSpace = free_space,
    reserve: int = RESERVE,
    kind: str = "any",
) -> Context:
    """
    Blocking: read the body C{src} into the new directory C{target}.

    @param kind: What C{src} may be: C{"any"} (a tar, compressed or not, or
        a Dockerfile's text), C{"archive"} (a tar only: a remote context
        its server calls one) or C{"dockerfile"} (the text alone: a remote
        context served as C{text/plain}).
    @raise InvalidParameter: For a body that is neither a tar nor a text.
    @raise ContextError: When the disk is (nearly) full, or the client went
        away before the end of the body.
    """
    target.mkdir(mode=0o700)
    context = Context(target)
    head = _read_up_to(src, tarfile.BLOCKSIZE)
    stream: IO[bytes] = layers._Prefixed(head, src)  # type: ignore[assignment]
    compression = layers.sniff(head)
    try:
        with context.archive.open("xb", buffering=_CHUNK) as out:
            if kind == "dockerfile":
                _bare_dockerfile(stream, out, context)
                return context
            if compression != "none":
                stream = layers.decompressed(stream)
            elif kind == "archive" and not _is_tar_header(head):
                # Go's tar reader, as dockerd's FromArchive reports it.
                if len(head) < tarfile.BLOCKSIZE:
                    raise InvalidParameter("unexpected EOF")
                raise InvalidParameter("archive/tar: invalid tar header")
            elif head and not _is_tar_header(head):
                _bare_dockerfile(stream, out, context)
                return context
            _Indexer(context, out, space, reserve).run(stream)
    except DockerError:
        raise
    except OSError as e:
        if e.errno in {errno.ENOSPC, errno.EDQUOT}:
            raise ContextError("no space left on device") from None
        if e.errno is None:
            # BodyPipe: the client went away.
            raise ContextError(f"failed to read the build context: {e}") from None
        raise SystemError_(
            f"failed to unpack the build context: {e.strerror}"
        ) from None
    except (tarfile.TarError, EOFError) as e:
        raise InvalidParameter(f"failed to read the build context: {e}") from None
    except layers.BAD_STREAM_ERRORS as e:
        raise InvalidParameter(f"failed to read the build context: {e}") from None
    return context


def _bare_dockerfile(stream: IO[bytes], out: IO[bytes], context: Context) -> None:
    data = _read_up_to(stream, _MAX_BARE_DOCKERFILE + 1)
    if len(data) > _MAX_BARE_DOCKERFILE or b"\0" in data:
        raise InvalidParameter("failed to read the build context: not a tar archive")
    out.write(data)
    context.entries["Dockerfile"] = Entry(
        "file",
        0o644,
        "sha256:" + hashlib.sha256(data).hexdigest(),
        len(data),
        0,
        context.received,
    )


def clean_name(name: str) -> str | None:
    """A member's path, relative and normal, or C{None} to skip it."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


class _Tee:
    """
    Reads C{src} in large pieces (few waits on an upload's pipe), writing
    each to C{out} as it comes, and serves the tar reader's small reads
    from it; C{position} counts what was served.
    """

    def __init__(
        self, src: IO[bytes], out: IO[bytes], wrote: Callable[[int], None]
    ) -> None:
        self._src = src
        self._out = out
        self._wrote = wrote
        self._piece = memoryview(b"")
        self._at = 0
        #: Bytes served so far: where the next read starts in C{out}.
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        if self._at >= len(self._piece):
            piece = self._src.read(_CHUNK)
            if not piece:
                return b""
            self._out.write(piece)
            self._wrote(len(piece))
            self._piece, self._at = memoryview(piece), 0
        end = len(self._piece) if size < 0 else self._at + size
        # A view, not a copy: the data of a member is only hashed.
        data = self._piece[self._at : end]
        self._at += len(data)
        self.position += len(data)
        return data  # type: ignore[return-value]

    def readable(self) -> bool:
        return True


class _Indexer:
    """Keeps one context stream and indexes it; see the module's docstring."""

    def __init__(
        self, context: Context, out: IO[bytes], space: FreeSpace, reserve: int
    ) -> None:
        self._context = context
        self._out = out
        self._space = space
        self._reserve = reserve
        self._written = 0
        self._next_check = 0

    def run(self, stream: IO[bytes]) -> None:
        self._check_space(0)
        tee = _Tee(stream, self._out, self._check_space)
        members = layers.iter_tar(cast("IO[bytes]", tee))
        while True:
            try:
                member, data = next(members)
            except StopIteration:
                break
            except EOFError:
                # The docker CLI's "-f -" context ends right after its
                # last member's data, without padding or end blocks;
                # Go's reader takes it, so does this one (a member cut
                # inside its data still fails, in _regular).
                break
            name = clean_name(member.name)
            if name is not None and self._parents(name):
                self._add(name, member, data, tee.position)

    def _check_space(self, more: int) -> None:
        self._written += more
        if self._written < self._next_check:
            return
        self._next_check = self._written + _CHECK_EVERY
        if self._space(self._context.root) < self._reserve:
            raise ContextError("no space left on device")

    def _parents(self, name: str) -> bool:
        """
        Whether every parent of C{name} is a directory of the context (those
        no member named yet become ones); C{False} when one is a symlink or
        a file (the member is then skipped: nothing goes through a link).
        """
        entries = self._context.entries
        parts = name.split("/")[:-1]
        missing = []
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            entry = entries.get(parent)
            if entry is None:
                missing.append(parent)
            elif entry.kind != "dir":
                return False
        for parent in missing:
            entries[parent] = Entry("dir", 0o755, mtime=self._context.received)
        return True

    def _clear(self, name: str, *, keep_dir: bool) -> None:
        """Make room for a new member named C{name} (the last one wins)."""
        entries = self._context.entries
        old = entries.get(name)
        if old is None or (old.kind == "dir" and keep_dir):
            return
        del entries[name]
        if old.kind == "dir":
            prefix = name + "/"
            for inner in [n for n in entries if n.startswith(prefix)]:
                del entries[inner]

    def _add(
        self, name: str, member: tarfile.TarInfo, data: IO[bytes] | None, offset: int
    ) -> None:
        entries = self._context.entries
        mode = member.mode & 0o7777
        uid, gid = member.uid, member.gid
        if member.isdir():
            self._clear(name, keep_dir=True)
            entries[name] = Entry("dir", mode, mtime=member.mtime, uid=uid, gid=gid)
        elif member.isreg() and data is not None:
            digest = hashlib.sha256()
            size = 0
            while chunk := data.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
            self._clear(name, keep_dir=False)
            entries[name] = Entry(
                "file",
                mode,
                "sha256:" + digest.hexdigest(),
                size,
                offset,
                member.mtime,
                uid,
                gid,
            )
        elif member.issym():
            self._clear(name, keep_dir=False)
            entries[name] = Entry(
                "symlink", 0o777, member.linkname, mtime=member.mtime, uid=uid, gid=gid
            )
        elif member.islnk():
            source = entries.get(clean_name(member.linkname) or "")
            if source is None or source.kind != "file":
                return
            self._clear(name, keep_dir=False)
            entries[name] = source


# --- the Dockerfile and .dockerignore -------------------------------------


def read_dockerfile(context: Context, name: str) -> tuple[str, bytes]:
    """
    The Dockerfile C{name} (a path in the context, C{Dockerfile} by
    default, then C{dockerfile} as dockerd falls back to) and its bytes.

    @raise ContextError: C{Cannot locate specified Dockerfile: <name>}.
    """
    wanted = name or "Dockerfile"
    candidates = [wanted]
    if wanted == "Dockerfile":
        candidates.append("dockerfile")
    for candidate in candidates:
        path = context.resolve(candidate)
        entry = context.entries.get(path) if path else None
        if entry is not None and entry.kind == "file":
            return candidate, context.read(entry)
    raise ContextError(f"Cannot locate specified Dockerfile: {wanted}")


def apply_dockerignore(context: Context, dockerfile: str) -> None:
    """
    Leave out of the context what its C{.dockerignore} names (see
    L{dockerignore}); the Dockerfile and C{.dockerignore} themselves go
    only when it names them (they were read before). Only the index
    changes: what it no longer names is never read.
    """
    entries = context.entries
    ignore = entries.get(".dockerignore")
    if ignore is None or ignore.kind != "file":
        return
    text = context.read(ignore).decode(errors="replace")
    matcher = dockerignore.Matcher(dockerignore.read(text))
    if matcher.empty:
        return
    keep = {".dockerignore", clean_name(dockerfile) or "Dockerfile"}
    doomed = [
        name for name in sorted(entries) if name not in keep and matcher.excluded(name)
    ]
    for name in reversed(doomed):
        if name not in entries:
            continue
        if entries[name].kind != "dir":
            del entries[name]
            continue
        prefix = name + "/"
        inner = [n for n in entries if n.startswith(prefix)]
        if not matcher.has_exceptions:
            for n in inner:
                del entries[n]
            del entries[name]
        elif not inner:
            del entries[name]
        # Otherwise excluded itself, but it holds files taken back in.
    for name in keep:
        if name in entries and matcher.excluded(name):
            del entries[name]
