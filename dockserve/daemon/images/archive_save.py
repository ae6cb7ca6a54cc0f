# -*- test-case-name: tests.daemon.images.test_service -*-
"""
Writing C{docker save} archives (blocking; in a thread).

The archive is what current dockerd writes: an OCI image layout
(C{oci-layout}, C{index.json}, C{blobs/sha256/...}) that also carries the
classic C{manifest.json} and C{repositories}, so both old and new loaders
read it. Layers go in uncompressed, by diff ID. Entries have fixed times
and a fixed order, so saving the same images twice gives the same bytes.
"""

import io
import json
import tarfile
from typing import IO, Any

from attrs import frozen

from dockserve.daemon.images import reference
from dockserve.daemon.images.store import ImageRecord, ImageStore, hex_of

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


@frozen
class SaveItem:
    """
    One image to save and the full C{repo:tag} references to save it as.
    """

    record: ImageRecord
    tags: tuple[str, ...]


def oci_manifest(store: ImageStore, record: ImageRecord) -> bytes:
    """The OCI manifest of an image with uncompressed layers."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": record.id,
            "size": record.config_size,
        },
        "layers": [
            {"mediaType": OCI_LAYER, "digest": d, "size": store.layer_size(d)}
            for d in record.diff_ids
        ],
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


class _Writer:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.written: set[str] = set()

    def directory(self, name: str) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        self.tar.addfile(info)

    def data(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        self.tar.addfile(info, io.BytesIO(data))

    def blob_file(self, store: ImageStore, digest: str) -> None:
        name = "blobs/sha256/" + hex_of(digest)
        if name in self.written:
            return
        self.written.add(name)
        path = store.blob_path(digest)
        info = tarfile.TarInfo(name)
        info.size = path.stat().st_size
        info.mode = 0o644
        with path.open("rb") as f:
            self.tar.addfile(info, f)

    def blob_data(self, data: bytes) -> str:
        import hashlib  # noqa: PLC0415

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        name = "blobs/sha256/" + hex_of(digest)
        if name not in self.written:
            self.written.add(name)
            self.data(name, data)
        return digest


def save(store: ImageStore, items: list[SaveItem], out: IO[bytes]) -> None:
    """
    Blocking: write the archive of C{items} to C{out} as a tar stream.
    """
    with tarfile.open(
        fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 16
    ) as tar:
        w = _Writer(tar)
        w.directory("blobs")
        w.directory("blobs/sha256")
        index_entries: list[dict[str, Any]] = []
        classic: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        for item in items:
            record = item.record
            for diff_id in record.diff_ids:
                w.blob_file(store, diff_id)
            w.blob_file(store, record.id)
            manifest = oci_manifest(store, record)
            manifest_digest = w.blob_data(manifest)
            descriptor: dict[str, Any] = {
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest),
            }
            familiar_tags = []
            for tag in item.tags:
                ref = reference.parse(tag)
                familiar_tags.append(ref.familiar())
                index_entries.append(
                    {
                        **descriptor,
                        "annotations": {
                            "io.containerd.image.name": ref.tagged(),
                            "org.opencontainers.image.ref.name": ref.tag or "latest",
                        },
                    }
                )
                repositories.setdefault(ref.familiar_repository, {})[
                    ref.tag or "latest"
                ] = hex_of(record.id)
            if not item.tags:
                index_entries.append(descriptor)
            classic.append(
                {
                    "Config": "blobs/sha256/" + hex_of(record.id),
                    "RepoTags": familiar_tags or None,
                    "Layers": ["blobs/sha256/" + hex_of(d) for d in record.diff_ids],
                }
            )
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": index_entries,
        }
        w.data("index.json", json.dumps(index, separators=(",", ":")).encode())
        w.data("manifest.json", json.dumps(classic, separators=(",", ":")).encode())
        w.data("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        if repositories:
            w.data(
                "repositories", json.dumps(repositories, separators=(",", ":")).encode()
            )
