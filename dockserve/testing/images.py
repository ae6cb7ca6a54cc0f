# -*- test-case-name: tests.daemon.images.test_service -*-
"""
Test helpers for the image area: a synchronous thread pool, an
L{ImageService} on a temporary directory, and small images built in memory.

The "fake" image store is the real one run synchronously on a temporary
directory, so API tests exercise exactly what the daemon serves.
"""

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from dockserve.daemon.images.service import ImageService


class SynchronousThreadPool:
    """
    A thread pool that runs work at once on the calling thread, for unit
    tests (buildbot's C{NonThreadPool}). L{ImageService.in_thread} sees
    C{synchronous} and skips the reactor round trip.
    """

    synchronous = True

    def callInThreadWithCallback(
        self,
        on_result: Callable[[bool, Any], None],
        f: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Run C{f} now and report to C{on_result}."""
        try:
            result = f(*args, **kwargs)
        except BaseException as e:
            on_result(False, e)
        else:
            on_result(True, result)


def memory_image_service(root: Path) -> ImageService:
    """An L{ImageService} under C{root} whose file work runs synchronously."""
    service = ImageService(root, Clock(), threadpool=SynchronousThreadPool())  # type: ignore[arg-type]
    service.store.restore()
    return service


def layer_tar(
    files: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None
) -> bytes:
    """An uncompressed layer tarball holding C{files} (path to content)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return out.getvalue()


def save_archive(
    layers: list[bytes],
    repo_tags: list[str],
    config: dict[str, Any] | None = None,
    created: str = "2024-01-01T00:00:00Z",
) -> bytes:
    """A C{docker save} archive of one image made of C{layers}."""
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": config or {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
            for i in range(len(layers))
        ],
    }
    raw = json.dumps(image_config).encode()
    config_hex = hashlib.sha256(raw).hexdigest()
    manifest = [
        {
            "Config": f"{config_hex}.json",
            "RepoTags": repo_tags,
            "Layers": [f"{d[7:]}/layer.tar" for d in diff_ids],
        }
    ]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        entries = [
            (f"{config_hex}.json", raw),
            ("manifest.json", json.dumps(manifest).encode()),
        ]
        entries += [
            (f"{d[7:]}/layer.tar", layer)
            for d, layer in zip(diff_ids, layers, strict=True)
        ]
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _image_config(layers: list[bytes], architecture: str) -> bytes:
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    return json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()


def oci_archive(platforms: dict[str, list[bytes] | None], name: str) -> bytes:
    """
    An OCI image layout (index.json, blobs) of a multi-platform image named
    C{name}: one manifest per architecture in C{platforms}, its layers
    given, or C{None} for a platform the index lists but whose blobs the
    archive lacks (as C{docker save} writes a partly pulled image).
    """
    blobs: dict[str, bytes] = {}
    descriptors = []

    def put(data: bytes, keep: bool = True) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if keep:
            blobs[digest] = data
        return digest

    for arch, layers in platforms.items():
        present = layers is not None
        content = layers if layers is not None else [layer_tar({arch: b"x"})]
        config = _image_config(content, arch)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": put(config, present),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": put(layer, present),
                        "size": len(layer),
                    }
                    for layer in content
                ],
            }
        ).encode()
        descriptors.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": put(manifest, present),
                "size": len(manifest),
                "platform": {"os": "linux", "architecture": arch},
            }
        )
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": descriptors,
        }
    ).encode()
    top = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": put(index),
                "size": len(index),
                "annotations": {"io.containerd.image.name": name},
            }
        ],
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        entries = [
            ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
            ("index.json", json.dumps(top).encode()),
        ]
        entries += [(f"blobs/sha256/{d[7:]}", data) for d, data in blobs.items()]
        for entry_name, data in entries:
            info = tarfile.TarInfo(entry_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
