# -*- test-case-name: tests.daemon.images.test_store -*-
"""
The content-addressed image store on disk.

Layout under the store's root (C{<data-root>/image}):

  - C{blobs/sha256/<hex>}: image configs, manifests, layer tarballs both
    uncompressed (named by their diff ID) and as a registry sent them;
  - C{layers/<hex>}: each layer unpacked once, by diff ID, ready to be an
    overlayfs lower directory;
  - C{layer-sizes/<hex>}: the size of each unpacked layer as dockerd counts
    it, measured once;
  - C{index.json}: the images and the references that name them, small
    and rewritten atomically;
  - C{tmp/}: work in progress, emptied at every start.

An image exists when it is in the index, and it is put there only after its
config, blobs and unpacked layers are durably on disk, so a daemon killed at
any moment shows either no image or a whole one. Blobs and layers no image
needs are collected at the next start.

Methods marked "blocking" do file work and run in a thread; the index is
read and changed on the reactor thread only.
"""

import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any

from attrs import evolve, field, frozen

from dockserve.daemon import store as records
from dockserve.daemon.images import layers
from dockserve.errors import InvalidParameter, NotFound, SystemError_


@frozen
class LayerSource:
    """
    A layer as a registry or an archive carried it: the blob may be in the
    store (then a push uploads it), or only in the registry it came from
    (then a push reuses it there, as dockerd's distribution metadata does).

    @ivar digest: The digest of the (maybe compressed) blob.
    @ivar size: Its size in bytes.
    @ivar media_type: Its media type in a manifest.
    @ivar repository: The full repository it was pulled from, or C{""}.
    """

    digest: str
    size: int
    media_type: str
    repository: str = ""


@frozen
class ImageRecord:
    """
    One image in the index.

    @ivar id: C{sha256:...} of the config.
    @ivar config: The decoded image config.
    @ivar config_size: Its size in bytes.
    @ivar added: When it entered the store (Unix seconds).
    @ivar last_tag_time: When it was last tagged (Unix seconds), or 0.
    @ivar sources: Compressed forms of its layers, by diff ID.
    @ivar manifests: Manifest digests it was pulled or pushed as, by
        repository (full name).
    """

    id: str
    config: dict[str, Any]
    config_size: int
    added: float
    last_tag_time: float = 0.0
    sources: dict[str, LayerSource] = field(factory=dict)
    manifests: dict[str, str] = field(factory=dict)

    @property
    def diff_ids(self) -> list[str]:
        """The layers' diff IDs, base first."""
        rootfs = self.config.get("rootfs") or {}
        return list(rootfs.get("diff_ids") or [])


def hex_of(digest: str) -> str:
    """The hex part of C{sha256:<hex>}, checked."""
    algorithm, _, hexpart = digest.partition(":")
    if (
        algorithm != "sha256"
        or len(hexpart) != 64
        or any(c not in "0123456789abcdef" for c in hexpart)
    ):
        raise InvalidParameter(f"invalid digest: {digest!r}")
    return hexpart


class ImageStore:
    """
    Blobs, unpacked layers and the index under one directory.

    @ivar images: The images by ID.
    @ivar refs: Image IDs by full reference (C{docker.io/library/busybox:latest},
        C{...busybox@sha256:...}).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blob_dir = root / "blobs" / "sha256"
        self.layer_dir = root / "layers"
        self.size_dir = root / "layer-sizes"
        self._disk_sizes: dict[str, int] = {}
        self.tmp_dir = root / "tmp"
        self.index_path = root / "index.json"
        self.images: dict[str, ImageRecord] = {}
        #: Images deleted (rmi -f) while stopped containers used them: gone
        #: for users, kept with their layers for those containers until
        #: none uses them (as dockerd's layer store keeps their layers).
        self.held: dict[str, ImageRecord] = {}
        self.refs: dict[str, str] = {}
        self._busy = 0
        self._busy_lock = threading.Lock()

    # --- start -----------------------------------------------------------

    def restore(self) -> None:
        """
        Blocking: sweep what a crash left, load the index, collect garbage.
        """
        for d in (self.blob_dir, self.layer_dir, self.tmp_dir, self.size_dir):
            d.mkdir(parents=True, exist_ok=True)
        records.sweep_temporaries(self.root)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir()
        for leftover in self.layer_dir.iterdir():
            if leftover.name.endswith(records.TEMP_SUFFIX):
                shutil.rmtree(leftover, ignore_errors=True)
        self.images, self.refs = {}, {}
        if self.index_path.exists():
            self._decode_index(records.read_json(self.index_path))
        self.collect_garbage()
        self._disk_sizes = {}
        for layer in self.layer_dir.iterdir():
            if not layer.name.endswith(records.TEMP_SUFFIX):
                self._disk_sizes[layer.name] = self._read_disk_size(layer)

    def _read_disk_size(self, layer: Path) -> int:
        """Blocking: the recorded disk size of a layer, measured if missing."""
        record = self.size_dir / layer.name
        try:
            return int(record.read_text())
        except (OSError, ValueError):
            size = layers.disk_size(layer)
            records.atomic_write(record, str(size).encode())
            return size

    def _decode_index(self, value: dict[str, Any]) -> None:
        self._decode_images(value.get("images", {}), self.images)
        self._decode_images(value.get("held", {}), self.held)
        self.refs = {
            ref: image_id
            for ref, image_id in value.get("refs", {}).items()
            if image_id in self.images
        }

    def _decode_images(
        self, entries: dict[str, Any], into: dict[str, ImageRecord]
    ) -> None:
        for image_id, entry in entries.items():
            path = self.blob_path(image_id)
            try:
                raw = path.read_bytes()
                config = json.loads(raw)
            except (OSError, ValueError):
                continue
            record = ImageRecord(
                id=image_id,
                config=config,
                config_size=len(raw),
                added=float(entry.get("added", 0)),
                last_tag_time=float(entry.get("last_tag_time", 0)),
                sources={
                    k: LayerSource(
                        v["digest"],
                        int(v["size"]),
                        v["media_type"],
                        v.get("repository", ""),
                    )
                    for k, v in entry.get("sources", {}).items()
                },
                manifests=dict(entry.get("manifests", {})),
            )
            if all(self.layer_path(d).is_dir() for d in record.diff_ids):
                into[image_id] = record

    def _encode_index(self) -> dict[str, Any]:
        return {
            "images": _encode_images(self.images),
            "held": _encode_images(self.held),
            "refs": self.refs,
        }

    def save_index(self) -> None:
        """Write the index durably (small: on the reactor thread is fine)."""
        records.write_json(self.index_path, self._encode_index())

    # --- blobs -----------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Where the blob C{digest} lives."""
        return self.blob_dir / hex_of(digest)

    def has_blob(self, digest: str) -> bool:
        """Whether the blob is stored."""
        return self.blob_path(digest).exists()

    def temp_path(self, hint: str = "") -> Path:
        """A fresh path under C{tmp/}, removed at the next start if left."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.tmp_dir / f"{hint}{uuid.uuid4().hex}"

    def commit_blob(self, temp: Path, digest: str) -> Path:
        """
        Blocking: move the fsync'd file C{temp} (on this filesystem) into
        place as blob C{digest}.

        @raise ValueError: When C{temp} is not a regular file under C{tmp/}
            (a symlink itself, or reached through one out of it): only what
            the daemon wrote there is ever moved or removed, never a path
            an archive or a client named.
        """
        self._check_temporary(temp)
        target = self.blob_path(digest)
        if target.exists():
            temp.unlink(missing_ok=True)
            return target
        temp.replace(target)
        records.fsync_dir(self.blob_dir)
        return target

    def _check_temporary(self, temp: Path) -> None:
        """Refuse (C{ValueError}) anything but a regular file under C{tmp/}."""
        tmp = os.path.realpath(self.tmp_dir)
        parent = os.path.realpath(temp.parent)
        inside = parent == tmp or parent.startswith(tmp + os.sep)
        if not inside or temp.name in {"", ".", ".."} or not temp.is_file():
            raise ValueError(f"not a temporary file of the image store: {temp.name}")
        if temp.is_symlink():
            raise ValueError(f"a symlink, not a temporary file: {temp.name}")

    def put_blob(self, data: bytes) -> str:
        """Blocking: store small C{data}; return its digest."""
        import hashlib  # noqa: PLC0415

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has_blob(digest):
            records.atomic_write(self.blob_path(digest), data, 0o644)
        return digest

    def write_blob_stream(
        self, src: IO[bytes], expected: str | None = None, *, decompress: bool = False
    ) -> tuple[str, int]:
        """
        Blocking: copy C{src} (decompressed first when C{decompress}) into
        the store as a blob.

        @param expected: The digest the content must have.
        @return: C{(digest, size)} of the stored content.
        @raise InvalidParameter: When the content does not match
            C{expected}, or cannot be decompressed.
        """
        temp = self.temp_path("blob-")
        try:
            with temp.open("wb") as out:
                try:
                    reader = layers.decompressed(src) if decompress else src
                    digest, size = layers.copy_hashing(reader, out)
                except layers.BAD_STREAM_ERRORS as e:
                    if isinstance(e, OSError) and e.errno is not None:
                        raise
                    raise InvalidParameter(f"failed to decompress layer: {e}") from None
                layers.fsync_file(out)
            if expected is not None and digest != expected:
                raise InvalidParameter(
                    f"digest mismatch: expected {expected}, got {digest}"
                )
            self.commit_blob(temp, digest)
        finally:
            temp.unlink(missing_ok=True)
        return digest, size

    def blob_size(self, digest: str) -> int:
        """The size of a stored blob."""
        return self.blob_path(digest).stat().st_size

    # --- layers ----------------------------------------------------------

    def layer_path(self, diff_id: str) -> Path:
        """The unpacked directory of layer C{diff_id}."""
        return self.layer_dir / hex_of(diff_id)

    def ensure_unpacked(self, diff_id: str) -> Path:
        """
        Blocking: unpack the stored uncompressed layer C{diff_id} unless it
        already is; safe against a concurrent unpack of the same layer.
        """
        target = self.layer_path(diff_id)
        if target.is_dir():
            return target
        work = (
            self.layer_dir / f".{target.name}.{uuid.uuid4().hex}{records.TEMP_SUFFIX}"
        )
        work.mkdir(mode=0o755)
        try:
            layers.unpack(self.blob_path(diff_id), work)
            size = layers.disk_size(work)
            records.atomic_write(self.size_dir / target.name, str(size).encode())
            self._disk_sizes[target.name] = size
            layers.syncfs(self.layer_dir)
            try:
                work.rename(target)
            except OSError:
                if not target.is_dir():
                    raise
            records.fsync_dir(self.layer_dir)
        except OSError as e:
            raise SystemError_(f"failed to register layer: {_words(e)}") from None
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        return target

    def ingest_layer(self, src: IO[bytes]) -> tuple[str, int]:
        """
        Blocking: store a layer tarball (any compression) uncompressed by
        its diff ID and unpack it.

        @return: C{(diff_id, uncompressed size)}.
        """
        diff_id, size = self.write_blob_stream(src, decompress=True)
        self.ensure_unpacked(diff_id)
        return diff_id, size

    # --- in-flight work and garbage -------------------------------------

    def begin(self) -> None:
        """Mark an ingest in flight: garbage collection waits for it."""
        with self._busy_lock:
            self._busy += 1

    def end(self) -> None:
        """An ingest finished."""
        with self._busy_lock:
            self._busy -= 1

    def referenced(self) -> tuple[set[str], set[str]]:
        """The blob digests and diff IDs the index needs."""
        blobs: set[str] = set()
        diff_ids: set[str] = set()
        for record in [*self.images.values(), *self.held.values()]:
            blobs.add(record.id)
            diff_ids.update(record.diff_ids)
            blobs.update(record.diff_ids)
            blobs.update(s.digest for s in record.sources.values())
            blobs.update(record.manifests.values())
        return blobs, diff_ids

    def collect_garbage(self, keep: tuple[set[str], set[str]] | None = None) -> int:
        """
        Blocking: remove blobs and layers no image needs, unless an ingest
        is in flight.

        Doomed layers are renamed aside under the lock and deleted after
        it, so an ingest starting meanwhile waits for renames only, never
        for a large tree's removal.

        @param keep: L{referenced}, taken on the reactor thread (the index
            changes there); computed here when not given (at start).
        @return: Bytes of blobs reclaimed.
        """
        blobs, diff_ids = keep if keep is not None else self.referenced()
        wanted_blobs = {hex_of(b) for b in blobs}
        wanted_layers = {hex_of(d) for d in diff_ids}
        reclaimed = 0
        doomed: list[Path] = []
        with self._busy_lock:
            if self._busy:
                return 0
            for blob in self.blob_dir.iterdir():
                if blob.name not in wanted_blobs:
                    reclaimed += blob.stat().st_size
                    blob.unlink()
            for record in self.size_dir.iterdir():
                if record.name not in wanted_layers:
                    record.unlink(missing_ok=True)
                    self._disk_sizes.pop(record.name, None)
            for layer in self.layer_dir.iterdir():
                if layer.name in wanted_layers or layer.name.endswith(
                    records.TEMP_SUFFIX
                ):
                    continue
                trash = self.layer_dir / (
                    f".{layer.name}.{uuid.uuid4().hex}{records.TEMP_SUFFIX}"
                )
                layer.rename(trash)
                doomed.append(trash)
        for trash in doomed:
            shutil.rmtree(trash, ignore_errors=True)
        return reclaimed

    # --- index changes (reactor thread) ---------------------------------

    def add_image(
        self,
        image_id: str,
        config: dict[str, Any],
        config_size: int,
        sources: dict[str, LayerSource] | None = None,
    ) -> ImageRecord:
        """Enter an image whose blobs and layers are on disk (not saved yet)."""
        held = self.held.pop(image_id, None)
        if held is not None:
            # Deleted while containers used it; back now, as it was.
            self.images[image_id] = held
        existing = self.images.get(image_id)
        if existing is not None:
            if sources:
                existing = evolve(existing, sources={**existing.sources, **sources})
                self.images[image_id] = existing
            return existing
        record = ImageRecord(
            id=image_id,
            config=config,
            config_size=config_size,
            added=time.time(),
            sources=dict(sources or {}),
        )
        self.images[image_id] = record
        return record

    def set_ref(self, ref: str, image_id: str, *, tagged: bool = True) -> str | None:
        """
        Point C{ref} at C{image_id}; return the image it named before.

        @param tagged: Whether this is a tag or import (dockerd's
            C{LastTagTime} is set); a load or pull leaves it.
        """
        before = self.refs.get(ref)
        self.refs[ref] = image_id
        if tagged:
            record = self.images[image_id]
            self.images[image_id] = evolve(record, last_tag_time=time.time())
        return before

    def refs_of(self, image_id: str) -> list[str]:
        """The full references naming C{image_id}, sorted."""
        return sorted(r for r, i in self.refs.items() if i == image_id)

    def get(self, image_id: str) -> ImageRecord:
        """The record of a full image ID."""
        try:
            return self.images[image_id]
        except KeyError:
            raise NotFound(f"No such image: {image_id}") from None

    def layer_disk_size(self, diff_id: str) -> int:
        """
        The size dockerd shows for a layer: what its unpacked files take
        (L{layers.disk_size}), measured once when it was unpacked.
        """
        return self._disk_sizes.get(hex_of(diff_id), 0)

    def layer_size(self, diff_id: str) -> int:
        """The uncompressed size of a layer (its tarball's)."""
        try:
            return self.blob_size(diff_id)
        except OSError:
            return 0


def _words(e: OSError) -> str:
    """
    What an error says, without host paths: its text, and the file it
    names only when that is relative (a member of the layer).
    """
    text = e.strerror or str(e)
    name = e.filename
    if isinstance(name, str) and name and not name.startswith("/"):
        return f"{text}: {name}"
    return text


def go_time(text: str) -> str:
    """
    An RFC 3339 time as Go's C{RFC3339Nano} writes it: the fraction's
    trailing zeros dropped, and the dot with them when nothing is left.
    """
    head, dot, rest = text.partition(".")
    if not dot:
        return text
    digits = ""
    for char in rest:
        if not char.isdigit():
            break
        digits += char
    zone = rest[len(digits) :]
    digits = digits.rstrip("0")
    return f"{head}.{digits}{zone}" if digits else f"{head}{zone}"


def now_rfc3339() -> str:
    """The current UTC time in Docker's RFC 3339 nano form."""
    t = time.time_ns()
    seconds, nanos = divmod(t, 1_000_000_000)
    return go_time(
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
    )


def dump_config(config: dict[str, Any]) -> bytes:
    """An image config as bytes, the way its ID is computed from."""
    return json.dumps(config, separators=(",", ":")).encode("utf-8")


def sync_tree(path: Path) -> None:
    """Blocking: make everything written under C{path} durable."""
    layers.syncfs(path)


__all__ = ["ImageRecord", "ImageStore", "LayerSource", "hex_of", "os"]


def _encode_images(images: dict[str, ImageRecord]) -> dict[str, Any]:
    return {
        r.id: {
            "added": r.added,
            "last_tag_time": r.last_tag_time,
            "sources": {
                k: {
                    "digest": s.digest,
                    "size": s.size,
                    "media_type": s.media_type,
                    "repository": s.repository,
                }
                for k, s in r.sources.items()
            },
            "manifests": r.manifests,
        }
        for r in images.values()
    }
