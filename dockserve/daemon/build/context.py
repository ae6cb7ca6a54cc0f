# -*- test-case-name: tests.daemon.build.test_context -*-
"""
The build context: the tar a client sends with C{POST /build}, written to
disk as it arrives.

The body may be a tar (plain, gzip, bzip2, xz or zstd: sniffed, as
dockerd's C{DecompressStream}) or, for a client that sends a Dockerfile
alone, the Dockerfile's text (it becomes a context holding just that
file). It is unpacked member by member while it is read, never held
whole, into a fresh directory of the daemon's, with the stance of
L{dockserve.daemon.images.layers}: nothing is ever followed through a
symlink. Each parent directory is reached by an fd walk with
C{O_NOFOLLOW} at every step; a member whose path goes through a symlink
(or a file), or that names C{..}, is skipped; a symlink is made as a
symlink and never resolved; hard links only join two regular files of
the context; devices, FIFOs and ownership are dropped (C{COPY} gives
files to root unless C{--chown}). The content of every regular file is
hashed as it is written, so C{COPY}'s cache key costs no second read.

The disk is watched as the context grows: when the free space left goes
under L{RESERVE} (or a write fails with C{ENOSPC}), the receive stops
with dockerd's C{no space left on device} and the caller removes what
was written.

Everything here blocks; it runs in a thread.
"""

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

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
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: A Dockerfile sent alone (not in a tar) is read up to this size.
_MAX_BARE_DOCKERFILE = 16 << 20


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
    """

    kind: str
    mode: int
    digest: str = ""
    size: int = 0


@define
class Context:
    """
    A received context on disk.

    @ivar root: Its directory.
    @ivar entries: What it holds, by C{/}-separated relative path.
    """

    root: Path
    entries: dict[str, Entry] = field(factory=dict)

    def remove(self) -> None:
        """Blocking: delete it."""
        shutil.rmtree(self.root, ignore_errors=True)


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
) -> Context:
    """
    Blocking: read the body C{src} into the new directory C{target}.

    @raise InvalidParameter: For a body that is neither a tar nor a text.
    @raise ContextError: When the disk is (nearly) full, or the client went
        away before the end of the body.
    """
    target.mkdir(mode=0o755)
    context = Context(target)
    head = _read_up_to(src, tarfile.BLOCKSIZE)
    stream: IO[bytes] = layers._Prefixed(head, src)  # type: ignore[assignment]
    kind = layers.sniff(head)
    try:
        if kind != "none":
            stream = layers.decompressed(stream)
        elif head and not _is_tar_header(head):
            _bare_dockerfile(stream, context)
            return context
        _Unpacker(context, space, reserve).run(stream)
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


def _bare_dockerfile(stream: IO[bytes], context: Context) -> None:
    data = _read_up_to(stream, _MAX_BARE_DOCKERFILE + 1)
    if len(data) > _MAX_BARE_DOCKERFILE or b"\0" in data:
        raise InvalidParameter("failed to read the build context: not a tar archive")
    path = context.root / "Dockerfile"
    path.write_bytes(data)
    context.entries["Dockerfile"] = Entry(
        "file", 0o644, "sha256:" + hashlib.sha256(data).hexdigest(), len(data)
    )


def clean_name(name: str) -> str | None:
    """A member's path, relative and normal, or C{None} to skip it."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


class _Unpacker:
    """Unpacks one context stream; see the module's docstring."""

    def __init__(self, context: Context, space: FreeSpace, reserve: int) -> None:
        self._context = context
        self._space = space
        self._reserve = reserve
        self._written = 0
        self._next_check = 0
        self._dirs: list[tuple[str, tarfile.TarInfo]] = []

    def run(self, stream: IO[bytes]) -> None:
        self._check_space(0)
        root_fd = os.open(self._context.root, _DIR_FLAGS)
        try:
            members = layers.iter_tar(stream)
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
                if name is None:
                    continue
                self._add(root_fd, name, member, data)
            # Directory times last: adding their files changed them.
            for name, member in reversed(self._dirs):
                self._dir_attrs(root_fd, name, member)
        finally:
            os.close(root_fd)

    def _check_space(self, more: int) -> None:
        self._written += more
        if self._written < self._next_check:
            return
        self._next_check = self._written + _CHECK_EVERY
        if self._space(self._context.root) < self._reserve:
            raise ContextError("no space left on device")

    def _parent(self, root_fd: int, name: str) -> int | None:
        """
        An fd of C{name}'s parent directory, made along the way where
        missing; C{None} when a step is not a directory (a symlink is never
        followed).
        """
        fd = os.dup(root_fd)
        parts = name.split("/")
        for depth, part in enumerate(parts[:-1], 1):
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                self._context.entries["/".join(parts[:depth])] = Entry("dir", 0o755)
            except OSError as e:
                os.close(fd)
                if e.errno in {errno.ELOOP, errno.ENOTDIR}:
                    return None
                raise
            os.close(fd)
            fd = child
        return fd

    def _clear(self, parent: int, base: str, *, keep_dir: bool) -> None:
        """Make room for a new member named C{base} (the last one wins)."""
        try:
            st = os.stat(base, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            fd = os.open(base, _DIR_FLAGS, dir_fd=parent)
            try:
                _remove_tree_at(fd)
            finally:
                os.close(fd)
            os.rmdir(base, dir_fd=parent)
        else:
            os.unlink(base, dir_fd=parent)

    def _add(
        self, root_fd: int, name: str, member: tarfile.TarInfo, data: IO[bytes] | None
    ) -> None:
        parent = self._parent(root_fd, name)
        if parent is None:
            return
        base = name.rsplit("/", 1)[-1]
        entries = self._context.entries
        try:
            if member.isdir():
                self._clear(parent, base, keep_dir=True)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(base, 0o755, dir_fd=parent)
                self._dirs.append((name, member))
                entries[name] = Entry("dir", member.mode & 0o7777)
            elif member.isreg() and data is not None:
                self._clear(parent, base, keep_dir=False)
                entries[name] = self._regular(parent, base, member, data)
            elif member.issym():
                self._clear(parent, base, keep_dir=False)
                os.symlink(member.linkname, base, dir_fd=parent)
                with contextlib.suppress(OSError):
                    os.utime(
                        base,
                        (member.mtime, member.mtime),
                        dir_fd=parent,
                        follow_symlinks=False,
                    )
                entries[name] = Entry("symlink", 0o777, member.linkname)
            elif member.islnk():
                self._hard_link(root_fd, parent, base, name, member)
        finally:
            os.close(parent)

    def _regular(
        self, parent: int, base: str, member: tarfile.TarInfo, data: IO[bytes]
    ) -> Entry:
        digest = hashlib.sha256()
        size = 0
        fd = os.open(base, _FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            with os.fdopen(fd, "wb", closefd=False) as out:
                while chunk := data.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    self._check_space(len(chunk))
            os.fchmod(fd, member.mode & 0o7777)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)
        return Entry("file", member.mode & 0o7777, "sha256:" + digest.hexdigest(), size)

    def _hard_link(
        self,
        root_fd: int,
        parent: int,
        base: str,
        name: str,
        member: tarfile.TarInfo,
    ) -> None:
        source = clean_name(member.linkname)
        entry = self._context.entries.get(source or "")
        if source is None or entry is None or entry.kind != "file":
            return
        source_parent = self._parent(root_fd, source)
        if source_parent is None:
            return
        try:
            self._clear(parent, base, keep_dir=False)
            os.link(
                source.rsplit("/", 1)[-1],
                base,
                src_dir_fd=source_parent,
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
        finally:
            os.close(source_parent)
        self._context.entries[name] = entry

    def _dir_attrs(self, root_fd: int, name: str, member: tarfile.TarInfo) -> None:
        parent = self._parent(root_fd, name)
        if parent is None:
            return
        base = name.rsplit("/", 1)[-1]
        try:
            fd = os.open(base, _DIR_FLAGS, dir_fd=parent)
        except OSError:
            return
        finally:
            os.close(parent)
        try:
            os.fchmod(fd, member.mode & 0o7777)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)


def _remove_tree_at(fd: int) -> None:
    """Empty the directory open at C{fd}, never following a link."""
    for name in os.listdir(fd):
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            try:
                _remove_tree_at(child)
            finally:
                os.close(child)
            os.rmdir(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)


# --- the Dockerfile and .dockerignore -------------------------------------


def _open_inside(root: Path, relative: str) -> Path | None:
    """
    C{relative} resolved inside C{root} as in a chroot there (symlinks
    followed, but never out of C{root}); C{None} if it leads nowhere.
    """
    parts = [p for p in relative.replace("\\", "/").split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                return None
            link = str(candidate.readlink())
            if link.startswith("/"):
                resolved = []
            parts = [p for p in link.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


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
        path = _open_inside(context.root, candidate)
        if path is not None and path.is_file():
            return candidate, path.read_bytes()
    raise ContextError(f"Cannot locate specified Dockerfile: {wanted}")


def apply_dockerignore(context: Context, dockerfile: str) -> None:
    """
    Leave out of the context what its C{.dockerignore} names (see
    L{dockerignore}); the Dockerfile and C{.dockerignore} themselves go
    only when it names them (they were read before).
    """
    path = context.root / ".dockerignore"
    if path.is_symlink() or not path.is_file():
        return
    matcher = dockerignore.Matcher(dockerignore.read(path.read_text(errors="replace")))
    if matcher.empty:
        return
    keep = {".dockerignore", clean_name(dockerfile) or "Dockerfile"}
    doomed = [
        name
        for name in sorted(context.entries)
        if name not in keep and matcher.excluded(name)
    ]
    for name in reversed(doomed):
        entry = context.entries.pop(name)
        target = context.root / name
        if entry.kind == "dir":
            if not matcher.has_exceptions:
                shutil.rmtree(target, ignore_errors=True)
                for inner in [n for n in context.entries if n.startswith(name + "/")]:
                    del context.entries[inner]
            elif not any(n.startswith(name + "/") for n in context.entries):
                with contextlib.suppress(OSError):
                    target.rmdir()
            else:
                # Excluded itself, but it holds files taken back in.
                context.entries[name] = entry
        else:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
    for name in keep:
        if name in context.entries and matcher.excluded(name):
            del context.entries[name]
            with contextlib.suppress(FileNotFoundError):
                (context.root / name).unlink()
