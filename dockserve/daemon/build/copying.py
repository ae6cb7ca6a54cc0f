# -*- test-case-name: tests.daemon.build.test_copying -*-
"""
C{COPY} and C{ADD}: the files of a step's layer, written into a fresh
upper directory that the commit step turns into the layer.

Sources come from the context or, with C{--from}, from a stage's or an
image's layers: the context through a L{ContextView} (its files read from
the tar it came as, by offset: only what a step copies is ever written
out), an image through a L{RootView}; in both a symlink is followed only
inside its own tree, never on the host. The rules are the classic
builder's:

  - a relative destination is under the C{WORKDIR};
  - a file goes to C{dest} itself, or into it when C{dest} ends in C{/}
    or is a directory of the image; a directory's contents go into C{dest};
  - several sources (or a wildcard matching several) need a C{dest}
    ending in C{/};
  - wildcards (C{*}, C{?}, C{[...]}) match paths of the context as Go's
    C{filepath.Match};
  - C{ADD} of a local tar archive (plain, gzip, bzip2, xz) unpacks it into
    C{dest}, its members keeping the owners, modes and times the archive
    gives them (C{--chown} and C{--chmod} do not apply, as in dockerd's
    C{UntarPath}); C{ADD <url>} never unpacks: the download is one file,
    mode 0600;
  - files belong to root unless C{--chown} (names looked up in the image's
    C{/etc/passwd} and C{/etc/group}); C{--chmod} sets their modes;
    modes and times are kept otherwise;
  - the destination's existing directories keep their owner and mode
    (they are written to the layer as the image has them), and a symlink
    on the way to C{dest} is followed inside the image, as in a container.

The cache key of the step is the sources' content digest
(C{file:<hex>}, C{dir:<hex>}, C{multi:<hex>}), as dockerd writes it into
the step's command C{#(nop) COPY file:<hex> in /dest }: touching a
file's time does not break the cache, changing a byte does.

Everything here blocks; it runs in a thread.
"""

import contextlib
import fnmatch
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path
from typing import IO, cast

from attrs import define, field, frozen

from dockserve.daemon.build.context import Context, Slice, receive
from dockserve.daemon.build.contextview import ContextView
from dockserve.daemon.build.rootview import Found, RootView, Tree
from dockserve.daemon.images import layers
from dockserve.errors import InvalidParameter

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WILDCARDS = frozenset("*?[")


class CopyError(InvalidParameter):
    """A COPY or ADD cannot be done (the stream's error, dockerd's text)."""


@frozen
class Owner:
    """C{--chown}'s user and group, as numbers."""

    uid: int = 0
    gid: int = 0


@define
class Request:
    """
    One C{COPY}/C{ADD} after expansion.

    @ivar keyword: C{COPY} or C{ADD}.
    @ivar sources: The source paths as written (expanded).
    @ivar dest: The destination as written (expanded).
    @ivar workdir: The stage's C{WORKDIR}.
    @ivar inline: Here-documents as sources: C{(name, content)}.
    @ivar owner: C{--chown}, resolved.
    @ivar chmod: C{--chmod}'s mode, or C{None}.
    @ivar from_image: The sources come from an image, not the context.
    """

    keyword: str
    sources: list[str]
    dest: str
    workdir: str = "/"
    inline: list[tuple[str, str]] = field(factory=list)
    owner: Owner = field(factory=Owner)
    chmod: int | None = None
    from_image: bool = False


@frozen
class Item:
    """
    A resolved source: a path of its tree, and the name it was asked by.

    @ivar archive: C{ADD} may unpack it (not a download).
    @ivar digest: Its cache key when it is known already (a download's).
    """

    found: Found
    name: str
    archive: bool = True
    digest: str = ""


def parse_chmod(text: str) -> int:
    """C{--chmod}'s octal mode."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise CopyError(f"invalid chmod parameter: {text!r}") from None
    if mode < 0 or mode > 0o7777:
        raise CopyError(f"invalid chmod parameter: {text!r}")
    return mode


def resolve_owner(text: str, image: RootView) -> Owner:
    """
    C{--chown=user[:group]} as numbers: numbers as they are, names from
    the image's C{/etc/passwd} and C{/etc/group}.
    """
    user, _, group = text.partition(":")
    passwd = _table(image.read_text("/etc/passwd"))
    groups = _table(image.read_text("/etc/group"))
    if user.isdigit():
        uid = int(user)
        primary = None
    else:
        row = passwd.get(user)
        if row is None:
            raise CopyError(
                f"unable to convert uid/gid chown string to host mapping: can't "
                f"find uid for user {user}: no such user: {user}"
            )
        uid, primary = int(row[1]), int(row[2])
    if not group:
        if user.isdigit():
            return Owner(uid, uid)
        gid_row = groups.get(user)
        return Owner(uid, int(gid_row[1]) if gid_row else (primary or 0))
    if group.isdigit():
        return Owner(uid, int(group))
    gid_row = groups.get(group)
    if gid_row is None:
        raise CopyError(
            f"unable to convert uid/gid chown string to host mapping: can't "
            f"find gid for group {group}: no such group: {group}"
        )
    return Owner(uid, int(gid_row[1]))


def _table(text: str) -> dict[str, list[str]]:
    """C{name -> [x, id, ...]} of C{/etc/passwd} or C{/etc/group} rows."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            rows.setdefault(parts[0], [parts[1], parts[2], *parts[3:]])
    return rows


def downloaded(
    path: Path, name: str, last_modified: float | None, content: str
) -> Item:
    """
    Blocking: C{ADD <url>}'s downloaded file at C{path} as a source named
    C{name}, as dockerd leaves it: mode 0600, its time the server's
    C{Last-Modified} (else the epoch), never unpacked; its cache key from
    its name, mode and C{content} digest (the time apart, as dockerd's
    tarsum), written bare as dockerd's history shows it.
    """
    os.chmod(path, 0o600)  # noqa: PTH101 - a path the build made
    seconds = last_modified if last_modified is not None and last_modified > 0 else 0
    os.utime(path, (seconds, seconds))
    st = os.lstat(path)
    digest = hashlib.sha256(f"{name}\0{0o600:o}\0{content}".encode()).hexdigest()
    return Item(Found("/" + name, path, st), name, archive=False, digest=digest)


def _has_wildcard(path: str) -> bool:
    return any(c in _WILDCARDS for c in path)


def resolve_sources(
    request: Request,
    tree: Tree,
    *,
    context: bool,
    downloaded: dict[int, Item] | None = None,
) -> list[Item]:
    """
    The items C{request}'s sources name in C{tree} (wildcards matched).

    @param downloaded: The items of C{ADD <url>}'s sources, by their place
        among the sources.

    @raise CopyError: With dockerd's message for a source outside the
        context, a missing source, or no match at all.
    """
    items: list[Item] = []
    for index, source in enumerate(request.sources):
        if downloaded and index in downloaded:
            items.append(downloaded[index])
            continue
        clean = posixpath.normpath(source.lstrip("/") or ".")
        if context and (clean == ".." or clean.startswith("../")):
            raise CopyError(
                f"{request.keyword} failed: forbidden path outside the build "
                f"context: {source} ()"
            )
        if _has_wildcard(clean):
            matched = _wildcard(tree, clean)
            items.extend(matched)
            continue
        found = tree.lookup(clean)
        if found is None:
            if context:
                raise CopyError(
                    f"{request.keyword} failed: file not found in build context or "
                    f"excluded by .dockerignore: stat {source}: file does not exist"
                )
            raise CopyError(
                f"{request.keyword} failed: stat {source}: file does not exist"
            )
        items.append(Item(found, posixpath.basename(clean)))
    if not items and not request.inline:
        raise CopyError(f"{request.keyword} failed: no source files were specified")
    return items


def _wildcard(tree: Tree, pattern: str) -> list[Item]:
    """The paths of C{tree} that C{pattern} matches, element by element."""
    parts = pattern.split("/")
    found: list[tuple[str, Found]] = []
    root = tree.lookup("/")
    if root is None:
        return []
    level: list[tuple[str, Found]] = [("", root)]
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        nxt: list[tuple[str, Found]] = []
        for prefix, node in level:
            if not node.is_dir:
                continue
            for name, child in sorted(tree.listdir(node).items()):
                if _has_wildcard(part):
                    if not fnmatch.fnmatchcase(name, part):
                        continue
                elif name != part:
                    continue
                path = f"{prefix}/{name}" if prefix else name
                if child.is_symlink and not last:
                    resolved = tree.lookup(path)
                    if resolved is None:
                        continue
                    nxt.append((path, resolved))
                    continue
                nxt.append((path, child))
        level = nxt
    for path, node in level:
        resolved = tree.lookup(path) if node.is_symlink else node
        if resolved is not None:
            found.append((path, resolved))
    return [Item(node, posixpath.basename(path)) for path, node in found]


# --- the cache key --------------------------------------------------------


def checksum(
    items: list[Item],
    tree: Tree,
    inline: list[tuple[str, str]],
    context: Context | None,
) -> str:
    """
    The sources' digest as the step's command shows it: C{file:<hex>} for
    one file, C{dir:<hex>} for one directory, C{multi:<hex>} for more.
    """
    parts: list[str] = []
    for item in items:
        if item.digest:
            parts.append(item.digest)
            continue
        kind = "dir" if item.found.is_dir else "file"
        parts.append(f"{kind}:{_digest(item.found, tree, context)}")
    for name, content in inline:
        text = hashlib.sha256(f"{name}\0{content}".encode()).hexdigest()
        parts.append(f"file:{text}")
    if len(parts) == 1:
        return parts[0]
    return "multi:" + hashlib.sha256(",".join(parts).encode()).hexdigest()


def _digest(found: Found, tree: Tree, context: Context | None) -> str:
    h = hashlib.sha256()
    _feed(h, found, tree, context, "")
    return h.hexdigest()


def _feed(
    h: "hashlib._Hash",
    found: Found,
    tree: Tree,
    context: Context | None,
    relative: str,
) -> None:
    mode = stat.S_IMODE(found.st.st_mode)
    if found.is_dir:
        h.update(f"d {relative} {mode:o}\n".encode())
        for name, child in sorted(tree.listdir(found).items()):
            _feed(h, child, tree, context, f"{relative}/{name}")
        return
    if found.is_symlink:
        h.update(f"l {relative} {found.readlink()}\n".encode())
        return
    entry = None
    if context is not None:
        entry = context.entries.get(found.path.lstrip("/"))
    content = entry.digest if entry is not None and entry.kind == "file" else ""
    if not content:
        digest = hashlib.sha256()
        with _open_data(found) as data:
            while chunk := data.read(layers.CHUNK):
                digest.update(chunk)
        content = "sha256:" + digest.hexdigest()
    h.update(f"f {relative} {mode:o} {content}\n".encode())


# --- writing the layer ----------------------------------------------------


def destination(request: Request) -> str:
    """C{dest} made absolute under the WORKDIR, its trailing slash kept."""
    dest = request.dest
    slash = dest.endswith(("/", "/.")) or dest in {".", ""}
    if not dest.startswith("/"):
        dest = posixpath.join(request.workdir or "/", dest)
    dest = posixpath.normpath(dest)
    if slash and not dest.endswith("/"):
        dest += "/"
    return dest


class Writer:
    """
    Writes a step's files into its upper directory, never following a
    link there (it holds only what this writer made).
    """

    def __init__(
        self,
        upper: Path,
        image: RootView,
        owner: Owner,
        chmod: int | None,
        *,
        keep_owners: bool = False,
    ) -> None:
        self._upper = upper
        self._image = image
        self._owner = owner
        self._chmod = chmod
        #: Files keep the owners their source has (an unpacked archive's).
        self._keep_owners = keep_owners

    def image_dir(self, path: str) -> str | None:
        """
        Where C{path} is in the image when it is a directory there (symlinks
        followed inside the image); C{None} otherwise.
        """
        found = self._image.lookup(path)
        if found is not None and found.is_dir:
            return found.path
        return None

    def resolve_parent(self, path: str) -> str:
        """C{path} with its parent resolved in the image (symlinks followed)."""
        parent, base = posixpath.split(path.rstrip("/") or "/")
        if not base:
            return "/"
        resolved = self._image.lookup(parent)
        if resolved is not None and resolved.is_dir:
            parent = resolved.path
        return posixpath.join(parent, base)

    def _open_dir(self, path: str, *, mine: bool) -> int:
        """
        An fd of C{path} in the upper directory, made along the way: a
        directory the image has gets the image's owner, mode and time;
        a new one root's (the C{--chown} owner when C{mine}) and 0755.
        """
        fd = os.open(self._upper, _DIR_FLAGS)
        walked = ""
        for part in [p for p in path.split("/") if p]:
            walked += "/" + part
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                child = self._new_dir(fd, part, walked, mine=mine)
            except OSError:
                os.unlink(part, dir_fd=fd)
                child = self._new_dir(fd, part, walked, mine=mine)
            os.close(fd)
            fd = child
        return fd

    def _new_dir(self, parent: int, name: str, path: str, *, mine: bool) -> int:
        os.mkdir(name, 0o755, dir_fd=parent)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        existing = self._image.lookup(path, follow=False)
        if existing is not None and existing.is_dir:
            st = existing.st
            os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif mine:
            os.fchown(fd, self._owner.uid, self._owner.gid)
        return fd

    def _clear(self, parent: int, name: str, *, keep_dir: bool) -> bool:
        """Remove what the upper has at C{name}; whether a directory stays."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(self._path_of(parent, name))
            return False
        os.unlink(name, dir_fd=parent)
        return False

    @staticmethod
    def _path_of(parent: int, name: str) -> str:
        return os.path.join(f"/proc/self/fd/{parent}", name)  # noqa: PTH118

    def _mode(self, st: os.stat_result) -> int:
        return self._chmod if self._chmod is not None else stat.S_IMODE(st.st_mode)

    def copy(self, tree: Tree, found: Found, target: str) -> None:
        """Copy C{found} (and, for a directory, all it holds) to C{target}."""
        parent_path, name = posixpath.split(target.rstrip("/"))
        if not name:
            # The root itself: only what it holds.
            if found.is_dir:
                self._copy_children(tree, found, "/")
            return
        parent = self._open_dir(parent_path, mine=True)
        try:
            self._copy_at(tree, found, parent, name, target.rstrip("/"))
        finally:
            os.close(parent)

    def _copy_children(self, tree: Tree, found: Found, target: str) -> None:
        fd = self._open_dir(target, mine=True)
        try:
            for child_name, child in sorted(tree.listdir(found).items()):
                path = posixpath.join(target, child_name)
                self._copy_at(tree, child, fd, child_name, path)
        finally:
            os.close(fd)

    def _copy_at(
        self, tree: Tree, found: Found, parent: int, name: str, path: str
    ) -> None:
        st = found.st
        owner = self._owner
        if self._keep_owners:
            owner = Owner(st.st_uid, st.st_gid)
        if found.is_dir:
            kept = self._clear(parent, name, keep_dir=True)
            if not kept:
                os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            try:
                for child_name, child in sorted(tree.listdir(found).items()):
                    self._copy_at(
                        tree, child, fd, child_name, posixpath.join(path, child_name)
                    )
                os.fchown(fd, owner.uid, owner.gid)
                os.fchmod(fd, self._mode(st))
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
            return
        self._clear(parent, name, keep_dir=False)
        if found.is_symlink:
            os.symlink(found.readlink(), name, dir_fd=parent)
            os.chown(name, owner.uid, owner.gid, dir_fd=parent, follow_symlinks=False)
            return
        if not stat.S_ISREG(st.st_mode):
            return
        source = os.open(found.real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fd = os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=parent,
            )
            try:
                _copy_data(source, fd, st.st_size, found.offset)
                os.fchown(fd, owner.uid, owner.gid)
                os.fchmod(fd, self._mode(st))
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
        finally:
            os.close(source)

    def write_file(self, target: str, content: bytes) -> None:
        """A here-document's file (0644, or C{--chmod})."""
        parent_path, name = posixpath.split(target)
        parent = self._open_dir(parent_path, mine=True)
        try:
            self._clear(parent, name, keep_dir=False)
            fd = os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=parent,
            )
            try:
                os.write(fd, content)
                os.fchown(fd, self._owner.uid, self._owner.gid)
                os.fchmod(fd, self._chmod if self._chmod is not None else 0o644)
            finally:
                os.close(fd)
        finally:
            os.close(parent)

    def mkdir(self, path: str) -> None:
        """Make C{path} (C{WORKDIR}): its missing directories, root's, 0755."""
        fd = self._open_dir(path, mine=False)
        os.close(fd)

    def unpack(self, found: Found, target: str) -> bool:
        """
        C{ADD}'s local archive: unpack the tar at C{found} into C{target}
        (a directory); C{False} when it is no tar archive (it is then
        copied as a file, as dockerd does). The archive is read as a
        context is (L{dockserve.daemon.build.context.receive}): its members
        are indexed, and nothing in it leads out of C{target}.
        """
        try:
            with _open_data(found) as raw:
                head = raw.read(512)
        except OSError:
            return False
        if layers.sniff(head) == "none" and not _looks_like_tar(head):
            return False
        scratch = self._upper.parent / (self._upper.name + ".add")
        try:
            with _open_data(found) as raw:
                try:
                    archive = receive(raw, scratch, reserve=0)
                except InvalidParameter:
                    return False
            unpacked = ContextView(archive)
            root = unpacked.lookup("/")
            if root is not None:
                # As dockerd's UntarPath: the archive's owners and modes,
                # whatever --chown and --chmod say.
                writer = Writer(
                    self._upper, self._image, Owner(), None, keep_owners=True
                )
                writer._copy_children(unpacked, root, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return True


def _open_data(found: Found) -> IO[bytes]:
    """A reader of a regular file's data, wherever it starts in C{real}."""
    raw = found.real.open("rb")
    raw.seek(found.offset)
    return cast("IO[bytes]", Slice(raw, found.st.st_size))


def _looks_like_tar(head: bytes) -> bool:
    if len(head) < 512:
        return False
    return head[257:262] == b"ustar" or _valid_v7(head)


def _valid_v7(head: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return head[:512] != b"\0" * 512


def _copy_data(source: int, target: int, size: int, offset: int) -> None:
    """
    Copy C{size} bytes from C{offset} of C{source} to the start of
    C{target}, in the kernel where it can, else through memory.
    """
    left = size
    written = 0
    with contextlib.suppress(OSError):
        while left > 0:
            done = os.copy_file_range(
                source, target, min(left, 1 << 30), offset + written, written
            )
            if done <= 0:
                break
            left -= done
            written += done
    if left > 0:
        os.lseek(target, written, os.SEEK_SET)
        while left > 0:
            chunk = os.pread(source, min(left, 1 << 20), offset + written)
            if not chunk:
                break
            os.write(target, chunk)
            left -= len(chunk)
            written += len(chunk)


def perform(
    request: Request,
    tree: Tree,
    image: RootView,
    upper: Path,
    items: list[Item],
) -> None:
    """
    Blocking: write C{request}'s files into the empty directory C{upper}.

    @param tree: Where the sources are (the context or C{--from}'s image).
    @param image: The image the step builds on (where C{dest} is).
    """
    dest = destination(request)
    many = len(items) + len(request.inline) > 1
    if many and not dest.endswith("/"):
        raise CopyError(
            f"When using {request.keyword} with more than one source file, the "
            "destination must be a directory and end with a /"
        )
    writer = Writer(upper, image, request.owner, request.chmod)
    into_dir = dest.endswith("/") or writer.image_dir(dest) is not None
    base = writer.image_dir(dest) or writer.resolve_parent(dest)
    for item in items:
        if item.found.is_dir:
            # A directory's contents go into dest, which becomes one.
            writer.copy(tree, item.found, base)
            continue
        if (
            request.keyword == "ADD"
            and not request.from_image
            and item.archive
            and writer.unpack(item.found, base)
        ):
            continue
        target = posixpath.join(base, item.name) if into_dir else base
        writer.copy(tree, item.found, target)
    for name, content in request.inline:
        target = posixpath.join(base, name) if into_dir else base
        writer.write_file(target, content.encode())
