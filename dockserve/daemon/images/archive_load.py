# -*- test-case-name: tests.daemon.images.test_service -*-
"""
Reading C{docker save} archives and OCI image layouts (blocking; in a thread).

The archive is unpacked member by member into a private work directory
under the store's C{tmp/}, then each image's config and layers move into
the store. Nothing enters the index here: the service does that on the
reactor thread once every blob and layer is durable.
"""

import json
import os
import posixpath
import shutil
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


def _extract(src: IO[bytes], work: Path, hashes: dict[Path, tuple[str, int]]) -> None:
    # Any compression docker accepts (gzip, xz, bzip2, zstd) around it.
    members = layers.iter_tar(layers.decompressed(src))
    links: list[tuple[Path, str]] = []
    first = True
    try:
        for member, data in members:
            first = False
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if not parts or ".." in parts:
                continue
            dest = work.joinpath(*parts)
            if member.isdir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            if member.issym():
                # Old docker save archives link layers shared by images.
                target = posixpath.join(posixpath.dirname(member.name), member.linkname)
                links.append((dest, target))
                continue
            if member.islnk():
                links.append((dest, member.linkname))
                continue
            if data is None:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with dest.open("wb") as out:
                hashes[dest] = layers.copy_hashing(data, out)
    except _BAD_ARCHIVE_ERRORS as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise  # the disk, not the archive
        if first:
            raise InvalidParameter(
                f"failed to load image: invalid archive: {e}"
            ) from None
        raise InvalidParameter(f"failed to load image: {e}") from None
    for dest, target in links:
        parts = [p for p in posixpath.normpath(target).split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            continue
        source = work.joinpath(*parts)
        if source.is_file() and not source.is_symlink():
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.unlink(missing_ok=True)
            os.link(source, dest)
            if source in hashes:
                hashes[dest] = hashes[source]


def _read_json(work: Path, name: str) -> Any:
    path = _member(work, name)
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise InvalidParameter(f"failed to load image: invalid {name}: {e}") from None


def _member(work: Path, name: str) -> Path:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidParameter(f"failed to load image: invalid path {name!r}")
    path = work.joinpath(*parts)
    if not path.is_file():
        raise InvalidParameter(f"failed to load image: missing {name}")
    return path


def _store_layer(
    store: ImageStore, path: Path, known: tuple[str, int] | None
) -> tuple[str, int]:
    """
    Move (uncompressed: it is already the blob) or decompress one layer
    file into the store; unpack it.

    @param known: The digest and size the extraction computed, if it did.
    """
    with path.open("rb") as f:
        kind = layers.sniff(f.read(8))
    if kind == "none":
        digest, size = known or layers.hash_file(path)
        with path.open("rb") as f:
            os.fsync(f.fileno())
        store.commit_blob(path, digest)
    else:
        with path.open("rb") as f:
            digest, size = store.write_blob_stream(f, decompress=True)
    store.ensure_unpacked(digest)
    return digest, size


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
    hashes: dict[Path, tuple[str, int]],
    config_path: Path,
    layer_paths: list[Path],
    repo_tags: list[str],
    progress: Progress | None = None,
) -> LoadedImage:
    raw = config_path.read_bytes()
    try:
        config = json.loads(raw)
    except ValueError as e:
        raise InvalidParameter(f"failed to load image: invalid config: {e}") from None
    if not isinstance(config, dict):
        raise InvalidParameter("failed to load image: invalid config")
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(layer_paths):
        raise InvalidParameter(
            "failed to load image: the config names "
            f"{len(diff_ids)} layers, the manifest {len(layer_paths)}"
        )
    seen: dict[Path, str] = {}
    for expected, path in zip(diff_ids, layer_paths, strict=True):
        hex_of(expected)
        if store.layer_path(expected).is_dir() and store.has_blob(expected):
            continue
        if path in seen:
            got = seen[path]
        elif not path.exists():
            raise InvalidParameter(f"failed to load image: missing layer {path.name}")
        else:
            total = path.stat().st_size
            _loading(progress, expected, 0, total)
            got, _ = _store_layer(store, path, hashes.get(path))
            _loading(progress, expected, total, total)
            seen[path] = got
        if got != expected:
            raise InvalidParameter(
                f"failed to load image: layer digest {got} does not match "
                f"the config's diff ID {expected}"
            )
    image_id = store.put_blob(raw)
    from dockserve.daemon.images import reference  # noqa: PLC0415

    full_tags = tuple(reference.parse(t).tagged() for t in repo_tags)
    return LoadedImage(image_id, config, len(raw), full_tags)


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


def _oci_manifests(
    work: Path,
    descriptor: dict[str, Any],
    names: list[str],
    platform: dict[str, Any] | None = None,
) -> list[tuple[dict[str, Any], list[str]]]:
    """
    The image manifests under an index descriptor, with their names: of an
    index, the first child whose blobs the archive holds, among those of
    C{platform} (this machine's first, when none is asked for).
    """
    media_type = descriptor.get("mediaType", "")
    path = _member(work, "blobs/sha256/" + hex_of(descriptor.get("digest", "")))
    body = json.loads(path.read_bytes())
    media_type = body.get("mediaType", media_type)
    annotations = descriptor.get("annotations") or {}
    here = list(names)
    name = annotations.get("io.containerd.image.name")
    ref_name = annotations.get("org.opencontainers.image.ref.name")
    if name:
        here.append(name)
    elif ref_name and (":" in ref_name or "/" in ref_name):
        here.append(ref_name)
    if media_type in _INDEX_TYPES or "manifests" in body:
        found: list[tuple[dict[str, Any], list[str]]] = []
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
                found.extend(_oci_manifests(work, child, here, platform))
            except InvalidParameter:
                continue
            if found:
                break
        return found
    return [(body, here)]


def _config_platform(work: Path, config_name: str) -> dict[str, Any]:
    config = _read_json(work, config_name)
    if not isinstance(config, dict):
        raise InvalidParameter("failed to load image: invalid config")
    return config


def load(
    store: ImageStore,
    src: IO[bytes],
    platform: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> list[LoadedImage]:
    """
    Blocking: read a C{docker save} archive or an OCI layout from C{src}
    and store its images (blobs and unpacked layers), not indexing them.

    @param platform: Load only the images of this OCI platform (C{os},
        C{architecture}, C{variant}); all when C{None}.
    @param progress: Told (from this thread) of each layer stored, as
        dockerd's C{Loading layer} messages.
    @raise InvalidParameter: For an archive that is neither, or that holds
        no image of C{platform}.
    """
    work = store.temp_path("load-")
    work.mkdir()
    try:
        hashes: dict[Path, tuple[str, int]] = {}
        _extract(src, work, hashes)
        loaded: list[LoadedImage] = []
        if (work / "manifest.json").is_file():
            entries = _read_json(work, "manifest.json")
            if not isinstance(entries, list):
                raise InvalidParameter("failed to load image: invalid manifest.json")
            loaded.extend(
                _store_image(
                    store,
                    hashes,
                    _member(work, entry["Config"]),
                    [work / p for p in entry.get("Layers") or []],
                    list(entry.get("RepoTags") or []),
                    progress,
                )
                for entry in entries
                if platform_matches(platform, _config_platform(work, entry["Config"]))
            )
        elif (work / "index.json").is_file():
            index = _read_json(work, "index.json")
            for descriptor in index.get("manifests", []):
                for manifest, names in _oci_manifests(work, descriptor, [], platform):
                    config = manifest.get("config") or {}
                    config_name = "blobs/sha256/" + hex_of(config["digest"])
                    if not platform_matches(
                        platform, _config_platform(work, config_name)
                    ):
                        continue
                    loaded.append(
                        _store_image(
                            store,
                            hashes,
                            _member(work, "blobs/sha256/" + hex_of(config["digest"])),
                            [
                                work / "blobs" / "sha256" / hex_of(layer["digest"])
                                for layer in manifest.get("layers", [])
                            ],
                            names,
                            progress,
                        )
                    )
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
    except (KeyError, TypeError) as e:
        raise InvalidParameter(f"failed to load image: invalid manifest: {e}") from None
    else:
        return loaded
    finally:
        shutil.rmtree(work, ignore_errors=True)


__all__ = ["LayerSource", "LoadedImage", "load"]
