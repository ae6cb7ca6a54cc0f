# -*- test-case-name: tests.daemon.images.test_service -*-
"""
Reading C{docker save} archives and OCI image layouts (blocking; in a thread).

The archive is unpacked member by member into a private work directory
under the store's C{tmp/}, then each image's config and layers move into
the store. Nothing enters the index here: the service does that on the
reactor thread once every blob and layer is durable.

The archive is hostile until proven otherwise: every path its documents
name is looked up inside the work directory only (never a host path, never
through a link), and only regular files it made there are read or moved.
"""

import errno
import hashlib
import json
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from attrs import frozen

from dockserve.daemon.images import layers
from dockserve.daemon.images.store import ImageStore, LayerSource, hex_of
from dockserve.errors import InvalidParameter

_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


@frozen
class LoadedImage:
    """
    An image read from an archive, stored but not yet indexed.

    @ivar id: Its config digest.
    @ivar config: The decoded config.
    @ivar config_size: The config's size.
    @ivar repo_tags: Full C{repo:tag} references it carried.
    """

    id: str
    config: dict[str, Any]
    config_size: int
    repo_tags: tuple[str, ...]


#: What reading a corrupt archive raises: tar's errors and a bad stream's.
_BAD_ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    *layers.BAD_STREAM_ERRORS,
)

#: What making a member's file raises when the archive's own names clash
#: (a member under a file, a file over a directory, a NUL in a name).
_CLASH_ERRORS: tuple[type[BaseException], ...] = (
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    ValueError,
)

#: The most read of a JSON document (manifest.json, index.json) whose size
#: nothing declares; OCI blobs are read to the size their descriptor says.
MAX_JSON = 32 << 20


class _Work:
    """
    The load's private directory under the store's C{tmp/}, holding only
    directories and regular files the archive's members made (its links
    become hard links to files of the archive, or nothing).

    @ivar path: The directory.
    @ivar hashes: Digests and sizes computed while extracting, by file.
    @ivar escapes: The archive's links that lead out of it (not made), by
        their normal name, to their target: named in a message if a
        document names them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hashes: dict[Path, tuple[str, int]] = {}
        self.escapes: dict[str, str] = {}


@frozen
class _Named:
    """
    A path one of the archive's documents names, for finding it and for
    saying which one was wrong.

    @ivar kind: What it should be: C{layer}, C{config}, C{manifest}.
    @ivar name: The path as written.
    @ivar source: The document naming it (C{manifest.json}...).
    @ivar size: The size its descriptor declares, if one does.
    """

    kind: str
    name: str
    source: str
    size: int | None = None

    def error(
        self, reason: str, kind: type[InvalidParameter] = InvalidParameter
    ) -> InvalidParameter:
        """The 400 for this path, C{reason} saying what is wrong."""
        return kind(
            f'failed to load image: invalid {self.kind} path "{self.name}" '
            f"in {self.source}: {reason}"
        )


class _NotInArchive(InvalidParameter):
    """A path a document names that the archive does not hold."""


def _inside(name: str) -> str | None:
    """
    C{name} as a normal path inside the archive, or C{None} when it is
    absolute or climbs out of it with C{..}.
    """
    normal = posixpath.normpath(name)
    if name.startswith("/") or normal == ".." or normal.startswith("../"):
        return None
    return normal


def _extract(src: IO[bytes], work: _Work) -> None:
    """
    Unpack the archive's directories and regular files into C{work}; its
    links become hard links to regular files it holds, made last. Devices,
    FIFOs and links that lead out (or to nothing) are not made.

    @raise InvalidParameter: For a stream that is not a (compressed) tar,
        or members whose names clash.
    """
    # Any compression docker accepts (gzip, xz, bzip2, zstd) around it.
    members = layers.iter_tar(layers.decompressed(src))
    links: list[tuple[str, str, str]] = []
    first = True
    try:
        for member, data in members:
            first = False
            name = _inside(member.name.lstrip("/"))
            if name is None or name == ".":
                continue
            if member.issym():
                # Old docker save archives link layers shared by images.
                target = posixpath.join(posixpath.dirname(name), member.linkname)
                links.append((name, target, member.linkname))
            elif member.islnk():
                links.append((name, member.linkname.lstrip("/"), member.linkname))
            else:
                _extract_one(work, name, member, data)
    except _BAD_ARCHIVE_ERRORS as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise  # the disk, not the archive
        if first:
            raise InvalidParameter(
                f"failed to load image: invalid archive: {e}"
            ) from None
        raise InvalidParameter(f"failed to load image: {e}") from None
    for name, target, written in links:
        _link(work, name, target, written)


def _extract_one(
    work: _Work, name: str, member: tarfile.TarInfo, data: IO[bytes] | None
) -> None:
    """Make one directory or regular file member in C{work}."""
    dest = work.path / name
    try:
        if member.isdir():
            dest.mkdir(parents=True, exist_ok=True)
        elif data is not None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with dest.open("wb") as out:
                work.hashes[dest] = layers.copy_hashing(data, out)
    except _CLASH_ERRORS:
        raise InvalidParameter(
            f"failed to load image: invalid archive: {member.name!r} "
            "clashes with another member"
        ) from None


def _link(work: _Work, name: str, target: str, written: str) -> None:
    """
    Make the archive's link C{name} a hard link to the regular file
    C{target} (relative to the archive) if the archive holds one;
    remember it when it leads out.
    """
    normal = _inside(target)
    if normal is None:
        work.escapes[name] = written
        return
    source = work.path / normal
    dest = work.path / name
    try:
        if not source.is_file() or source.is_symlink() or source == dest:
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        os.link(source, dest)
    except _CLASH_ERRORS:
        raise InvalidParameter(
            f"failed to load image: invalid archive: {name!r} "
            "clashes with another member"
        ) from None
    if source in work.hashes:
        work.hashes[dest] = work.hashes[source]


def _check_inside(work: _Work, named: _Named) -> str:
    """
    The normal path of C{named} inside the archive.

    @raise InvalidParameter: When it is absolute, climbs out, or is one of
        the archive's links that lead out (or when it is no path).
    """
    if not isinstance(named.name, str):
        raise named.error("not a path")
    normal = _inside(named.name)
    if normal is None:
        raise named.error("outside the archive")
    if normal == ".":
        raise named.error("not a file")
    if normal in work.escapes:
        raise named.error(f'outside the archive (a link to "{work.escapes[normal]}")')
    return normal


def _open(work: _Work, named: _Named) -> tuple[int, Path]:
    """
    Open the regular file C{named} names for reading: found inside the
    archive's directory without following any link, checked a regular
    file (never a device or a FIFO: opened non-blocking, then checked),
    of the size its descriptor declares.

    @return: The fd (the caller closes it) and the file's path, which
        is the archive's own file in C{work}.
    @raise InvalidParameter: For anything else, saying what.
    """
    parts = _check_inside(work, named).split("/")
    try:
        fd = _open_nofollow(work.path, parts)
    except (FileNotFoundError, NotADirectoryError):
        raise named.error("not in the archive", _NotInArchive) from None
    except ValueError:  # a NUL in the name
        raise named.error("not a path") from None
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise named.error("a link, not a file") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise named.error("not a regular file")
    if named.size is not None and info.st_size != named.size:
        os.close(fd)
        raise named.error(f"size {info.st_size}, its descriptor says {named.size}")
    return fd, work.path.joinpath(*parts)


def _open_nofollow(root: Path, parts: list[str]) -> int:
    """
    Open C{root}/C{parts} for reading, every component with
    C{O_NOFOLLOW}; C{O_NONBLOCK} so that even a FIFO does not block.
    """
    dir_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            child = os.open(
                part,
                os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                dir_fd=dir_fd,
            )
            os.close(dir_fd)
            dir_fd = child
        return os.open(
            parts[-1],
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
            dir_fd=dir_fd,
        )
    finally:
        os.close(dir_fd)


def _read_json(work: _Work, named: _Named) -> tuple[Any, bytes]:
    """
    The decoded document C{named} names and its bytes, read no further
    than its declared size, or L{MAX_JSON}.
    """
    fd, _ = _open(work, named)
    limit = MAX_JSON if named.size is None else named.size
    with os.fdopen(fd, "rb") as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise named.error(f"larger than {limit} bytes")
    try:
        return json.loads(raw), raw
    except ValueError as e:
        raise InvalidParameter(
            f"failed to load image: invalid {named.name}: {e}"
        ) from None


def _store_layer(
    store: ImageStore,
    work: _Work,
    named: _Named,
    report: Callable[[int, int], None],
) -> str:
    """
    Move (uncompressed: it is already the blob) or decompress one layer
    file of the archive into the store, and unpack it.

    Only a regular file the archive made in the work directory, reached
    without a link (L{_open}), is ever moved.

    @param report: Told C{(done, total)} before and after.
    @return: The layer's diff ID.
    """
    fd, path = _open(work, named)
    with os.fdopen(fd, "rb") as f:
        total = os.fstat(fd).st_size
        report(0, total)
        if layers.sniff(os.pread(fd, 8, 0)) == "none":
            digest, _ = work.hashes.get(path) or _hash(f)
            os.fsync(fd)
            store.commit_blob(path, digest)
        else:
            digest, _ = store.write_blob_stream(f, decompress=True)
    store.ensure_unpacked(digest)
    report(total, total)
    return digest


def _hash(f: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := f.read(layers.CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return "sha256:" + digest.hexdigest(), size


#: A progress callback (called from the loading thread).
Progress = Callable[[dict[str, Any]], None]


def _loading(
    progress: Progress | None, layer_id: str, current: int, total: int
) -> None:
    if progress is not None:
        progress(
            {
                "status": "Loading layer",
                "progressDetail": {"current": current, "total": total},
                "progress": layers.progress_bar(current, total),
                "id": hex_of(layer_id)[:12],
            }
        )


def _store_image(  # noqa: PLR0917 - one image's parts
    store: ImageStore,
    work: _Work,
    config: tuple[dict[str, Any], bytes],
    layer_names: list[_Named],
    repo_tags: list[str],
    progress: Progress | None = None,
) -> LoadedImage:
    """
    Store one image: each layer the store lacks, checked against the
    config's diff IDs, then the config.

    @param config: The decoded config and its bytes.
    """
    decoded, raw = config
    diff_ids = list((decoded.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(layer_names):
        raise InvalidParameter(
            "failed to load image: the config names "
            f"{len(diff_ids)} layers, the manifest {len(layer_names)}"
        )
    seen: dict[str, str] = {}
    for expected, named in zip(diff_ids, layer_names, strict=True):
        hex_of(expected)
        normal = _check_inside(work, named)
        if store.layer_path(expected).is_dir() and store.has_blob(expected):
            continue
        got = seen.get(normal)
        if got is None:

            def report(done: int, total: int, expected: str = expected) -> None:
                _loading(progress, expected, done, total)

            got = seen[normal] = _store_layer(store, work, named, report)
        if got != expected:
            raise InvalidParameter(
                f"failed to load image: layer digest {got} does not match "
                f"the config's diff ID {expected}"
            )
    image_id = store.put_blob(raw)
    from dockserve.daemon.images import reference  # noqa: PLC0415

    full_tags = tuple(reference.parse(t).tagged() for t in repo_tags)
    return LoadedImage(image_id, decoded, len(raw), full_tags)


def platform_matches(want: dict[str, Any] | None, have: dict[str, Any]) -> bool:
    """
    Whether an image or descriptor of platform C{have} (OCI fields C{os},
    C{architecture}, C{variant}) is one of C{want} (any, when C{None}).
    """
    if not want:
        return True
    for key in ("os", "architecture"):
        if want.get(key) and have.get(key) and want[key] != have[key]:
            return False
    return not (
        want.get("variant")
        and have.get("variant")
        and want["variant"] != have["variant"]
    )


def _host_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine
    )


def _blob(kind: str, descriptor: Any, source: str) -> _Named:
    """
    The blob an OCI descriptor names (C{blobs/sha256/<hex>}), of the size
    it declares.

    @raise InvalidParameter: For a descriptor that is no object, or a bad
        digest.
    """
    if not isinstance(descriptor, dict):
        raise InvalidParameter(f"failed to load image: invalid {kind} descriptor")
    size = descriptor.get("size")
    declared = size if type(size) is int and size >= 0 else None
    name = "blobs/sha256/" + hex_of(str(descriptor.get("digest", "")))
    return _Named(kind, name, source, declared)


def _oci_manifests(
    work: _Work,
    descriptor: dict[str, Any],
    names: list[str],
    platform: dict[str, Any] | None = None,
    source: str = "index.json",
) -> list[tuple[dict[str, Any], list[str], str]]:
    """
    The image manifests under an index descriptor, with their names and
    digests: of an index, the first child whose blobs the archive holds,
    among those of C{platform} (this machine's first, when none is asked
    for).
    """
    media_type = descriptor.get("mediaType", "")
    body, _ = _read_json(work, _blob("manifest", descriptor, source))
    if not isinstance(body, dict):
        raise InvalidParameter("failed to load image: invalid manifest")
    media_type = body.get("mediaType", media_type)
    annotations = descriptor.get("annotations") or {}
    here = list(names)
    name = annotations.get("io.containerd.image.name")
    ref_name = annotations.get("org.opencontainers.image.ref.name")
    if name:
        here.append(name)
    elif ref_name and (":" in ref_name or "/" in ref_name):
        here.append(ref_name)
    digest = str(descriptor.get("digest"))
    if media_type in _INDEX_TYPES or "manifests" in body:
        found: list[tuple[dict[str, Any], list[str], str]] = []
        children = list(body.get("manifests", []))
        # This machine's architecture first (a stable sort keeps the rest).
        children.sort(
            key=lambda c: (
                (c.get("platform") or {}).get("architecture")
                not in (None, _host_arch())
            )
        )
        for child in children:
            child_platform = child.get("platform") or {}
            if child_platform.get("os") not in (None, "linux"):
                continue
            if not platform_matches(platform, child_platform):
                continue
            if (child.get("annotations") or {}).get(
                "vnd.docker.reference.type"
            ) == "attestation-manifest":
                continue
            try:
                found.extend(
                    _oci_manifests(work, child, here, platform, f"index {digest}")
                )
            except _NotInArchive:
                continue  # A platform docker save left out.
            if found:
                break
        return found
    return [(body, here, digest)]


def _read_config(work: _Work, named: _Named) -> tuple[dict[str, Any], bytes]:
    """An image config (an object) and its bytes."""
    config, raw = _read_json(work, named)
    if not isinstance(config, dict):
        raise InvalidParameter("failed to load image: invalid config")
    return config, raw


def _load_docker_save(
    store: ImageStore,
    work: _Work,
    platform: dict[str, Any] | None,
    progress: Progress | None,
) -> list[LoadedImage]:
    """The images of a C{docker save} archive (C{manifest.json})."""
    entries, _ = _read_json(work, _Named("manifest", "manifest.json", "the archive"))
    if not isinstance(entries, list):
        raise InvalidParameter("failed to load image: invalid manifest.json")
    loaded: list[LoadedImage] = []
    for entry in entries:
        config = _read_config(work, _Named("config", entry["Config"], "manifest.json"))
        if not platform_matches(platform, config[0]):
            continue
        layer_names = [
            _Named("layer", p, "manifest.json") for p in entry.get("Layers") or []
        ]
        tags = list(entry.get("RepoTags") or [])
        loaded.append(_store_image(store, work, config, layer_names, tags, progress))
    return loaded


def _load_oci(
    store: ImageStore,
    work: _Work,
    platform: dict[str, Any] | None,
    progress: Progress | None,
) -> list[LoadedImage]:
    """The images of an OCI image layout (C{index.json}, C{blobs/})."""
    index, _ = _read_json(work, _Named("index", "index.json", "the archive"))
    if not isinstance(index, dict):
        raise InvalidParameter("failed to load image: invalid index.json")
    loaded: list[LoadedImage] = []
    for descriptor in index.get("manifests", []):
        for manifest, names, digest in _oci_manifests(work, descriptor, [], platform):
            source = f"manifest {digest}"
            config = _read_config(work, _blob("config", manifest["config"], source))
            if not platform_matches(platform, config[0]):
                continue
            layer_names = [
                _blob("layer", layer, source) for layer in manifest.get("layers", [])
            ]
            loaded.append(
                _store_image(store, work, config, layer_names, names, progress)
            )
    return loaded


def load(
    store: ImageStore,
    src: IO[bytes],
    platform: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> list[LoadedImage]:
    """
    Blocking: read a C{docker save} archive or an OCI layout from C{src}
    and store its images (blobs and unpacked layers), not indexing them.

    Every path the archive's documents name (C{manifest.json}'s C{Config}
    and C{Layers}, OCI blobs) is looked up inside the archive's own
    directory: an absolute path, one that climbs out, a link out or to
    anything but a regular file is refused naming it.

    @param platform: Load only the images of this OCI platform (C{os},
        C{architecture}, C{variant}); all when C{None}.
    @param progress: Told (from this thread) of each layer stored, as
        dockerd's C{Loading layer} messages.
    @raise InvalidParameter: For an archive that is neither, that names a
        path outside itself, or that holds no image of C{platform}.
    """
    work = _Work(store.temp_path("load-"))
    work.path.mkdir()
    try:
        _extract(src, work)
        if (work.path / "manifest.json").is_file():
            loaded = _load_docker_save(store, work, platform, progress)
        elif (work.path / "index.json").is_file():
            loaded = _load_oci(store, work, platform, progress)
        else:
            raise InvalidParameter(
                "failed to load image: the archive holds neither manifest.json "
                "nor index.json"
            )
        if platform and not loaded:
            wanted = "/".join(
                platform[k]
                for k in ("os", "architecture", "variant")
                if platform.get(k)
            )
            raise InvalidParameter(
                f"failed to load image: the archive holds no image for "
                f"platform {wanted}"
            )
        layers.syncfs(store.root)
    except (KeyError, TypeError, AttributeError) as e:
        raise InvalidParameter(f"failed to load image: invalid manifest: {e}") from None
    else:
        return loaded
    finally:
        shutil.rmtree(work.path, ignore_errors=True)


__all__ = ["LayerSource", "LoadedImage", "load"]
