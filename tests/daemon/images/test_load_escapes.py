"""
Tests for L{dockserve.daemon.images.archive_load} and the store against
hostile C{docker load} archives: every path an archive names is resolved
inside the archive's own directory, and only regular files it created are
read or moved (review finding 1).
"""

import errno
import hashlib
import io
import json
import tarfile
import threading
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.images import layers
from dockserve.daemon.images.service import ImageService
from dockserve.errors import DockerError, InvalidParameter
from dockserve.testing.images import layer_tar, memory_image_service


def _config(layer_blobs: list[bytes]) -> bytes:
    diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in layer_blobs]
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()


def _archive(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A tar of C{files} and symlinks C{links} (name to target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _manifest(config: str, layer_paths: list[str]) -> bytes:
    return json.dumps(
        [{"Config": config, "RepoTags": ["evil:1"], "Layers": layer_paths}]
    ).encode()


class _LoadCase(SynchronousTestCase):
    service: ImageService

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.service = memory_image_service(self.root)
        self.outside = Path(self.mktemp()).absolute()
        self.outside.mkdir()
        self.victim = self.outside / "secret.txt"
        self.victim.write_bytes(b"precious host data")
        # Where "../../victim.txt" from the load's work directory
        # (<root>/tmp/load-<uuid>) lands.
        self.near_victim = self.root / "victim.txt"
        self.near_victim.write_bytes(b"also precious")

    def load_error(self, archive: bytes) -> str:
        """Load C{archive}; it must fail with a 400; return its message."""
        failure = self.failureResultOf(
            self.service.load(io.BytesIO(archive)), InvalidParameter
        )
        message: str = failure.value.message
        self.assertNotIn(str(self.root), message)
        return message

    def assertVictimsUntouched(self) -> None:
        """Both victim files are where they were, with their content."""
        self.assertEqual(self.victim.read_bytes(), b"precious host data")
        self.assertEqual(self.near_victim.read_bytes(), b"also precious")
        self.successResultOf(self.service.prune({"dangling": ["false"]}))
        self.assertEqual(self.victim.read_bytes(), b"precious host data")
        self.assertEqual(self.near_victim.read_bytes(), b"also precious")


class ManifestPathTests(_LoadCase):
    """C{manifest.json}'s paths stay inside the archive."""

    def _with_layer_path(self, path: str, blob: bytes) -> str:
        config = _config([blob])
        return self.load_error(
            _archive(
                {
                    "config.json": config,
                    "manifest.json": _manifest("config.json", [path]),
                }
            )
        )

    def test_absolute_layer_path(self) -> None:
        """An absolute C{Layers} entry is refused; the host file stays."""
        message = self._with_layer_path(str(self.victim), self.victim.read_bytes())
        self.assertIn(
            f'invalid layer path "{self.victim}" in manifest.json: outside the archive',
            message,
        )
        self.assertVictimsUntouched()

    def test_climbing_layer_path(self) -> None:
        """A C{Layers} entry that climbs out with C{..} is refused."""
        message = self._with_layer_path("../../victim.txt", b"also precious")
        self.assertIn(
            'invalid layer path "../../victim.txt" in manifest.json: '
            "outside the archive",
            message,
        )
        self.assertVictimsUntouched()

    def test_device_layer_path(self) -> None:
        """
        C{/dev/zero} is refused at once, never read (it would spin a
        thread for ever).
        """
        result: list[Any] = []

        def load() -> None:
            d = self.service.load(io.BytesIO(self._zero_archive()))
            d.addBoth(result.append)

        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        thread.join(30)
        self.assertFalse(thread.is_alive(), "docker load of /dev/zero never ended")
        [failure] = result
        self.assertIsInstance(failure.value, InvalidParameter)
        self.assertIn('invalid layer path "/dev/zero"', failure.value.message)

    def _zero_archive(self) -> bytes:
        config = _config([b""])
        return _archive(
            {
                "config.json": config,
                "manifest.json": _manifest("config.json", ["/dev/zero"]),
            }
        )

    def test_inner_device_path(self) -> None:
        """A path that walks to a device through the archive is no file of it."""
        message = self._with_layer_path("dev/zero", b"")
        self.assertIn('invalid layer path "dev/zero" in manifest.json', message)

    def test_link_out_of_the_archive(self) -> None:
        """
        A symlink member leading out of the archive is refused by name
        when the manifest names it, relative or absolute.
        """
        for target in ("../../../victim.txt", str(self.victim)):
            config = _config([b"x"])
            message = self.load_error(
                _archive(
                    {
                        "config.json": config,
                        "manifest.json": _manifest("config.json", ["evil/layer.tar"]),
                    },
                    {"evil/layer.tar": target},
                )
            )
            self.assertIn(
                'invalid layer path "evil/layer.tar" in manifest.json: '
                "outside the archive",
                message,
            )
            self.assertVictimsUntouched()

    def test_config_through_a_link(self) -> None:
        """A config that is a link out of the archive is refused by name."""
        self.victim.write_bytes(_config([]))
        message = self.load_error(
            _archive(
                {"manifest.json": _manifest("config.json", [])},
                {"config.json": str(self.victim)},
            )
        )
        self.assertIn(
            'invalid config path "config.json" in manifest.json: outside the archive',
            message,
        )

    def test_absolute_config_path(self) -> None:
        """An absolute or climbing C{Config} is refused by name."""
        self.victim.write_bytes(_config([]))
        for path in (str(self.victim), "../../victim.txt"):
            message = self.load_error(_archive({"manifest.json": _manifest(path, [])}))
            self.assertIn(
                f'invalid config path "{path}" in manifest.json: outside the archive',
                message,
            )

    def test_legacy_links_still_load(self) -> None:
        """A link between the archive's own layers (old docker save) still loads."""
        layer = layer_tar({"a": b"a"})
        config = _config([layer, layer])
        lines = self.successResultOf(
            self.service.load(
                io.BytesIO(
                    _archive(
                        {
                            "config.json": config,
                            "one/layer.tar": layer,
                            "manifest.json": _manifest(
                                "config.json", ["one/layer.tar", "two/layer.tar"]
                            ),
                        },
                        {"two/layer.tar": "../one/layer.tar"},
                    )
                )
            )
        )
        self.assertEqual(lines, ["Loaded image: evil:1"])

    def test_member_clash_is_a_bad_archive(self) -> None:
        """A member under a file of the same archive is a 400, not a 500."""
        message = self.load_error(_archive({"a": b"1", "a/b": b"2"}))
        self.assertIn("failed to load image", message)


class OCIPathTests(_LoadCase):
    """An OCI layout's blobs are regular files of the archive, of their size."""

    def _oci(
        self,
        layer: bytes,
        *,
        layer_size: int | None = None,
        links: dict[str, str] | None = None,
        drop: tuple[str, ...] = (),
    ) -> bytes:
        config = _config([layer])
        blobs: dict[str, bytes] = {}

        def put(data: bytes) -> str:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            blobs[digest] = data
            return digest

        layer_digest = put(layer)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": put(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest,
                        "size": len(layer) if layer_size is None else layer_size,
                    }
                ],
            }
        ).encode()
        index = json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": put(manifest),
                        "size": len(manifest),
                        "annotations": {"io.containerd.image.name": "oci:1"},
                    }
                ],
            }
        ).encode()
        files = {"index.json": index, "oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
        for digest, data in blobs.items():
            name = "blobs/sha256/" + digest[7:]
            if digest not in drop:
                files[name] = data
        self.layer_digest = layer_digest
        return _archive(files, links)

    def test_good_layout_loads(self) -> None:
        """The layout this builds loads, so the failures below are the checks'."""
        archive = self._oci(layer_tar({"a": b"a"}))
        lines = self.successResultOf(self.service.load(io.BytesIO(archive)))
        self.assertEqual(lines, ["Loaded image: oci:1"])

    def test_blob_is_a_link_out(self) -> None:
        """A blob that is a link out of the archive is refused by name."""
        layer = self.victim.read_bytes()
        self._oci(layer)
        name = "blobs/sha256/" + self.layer_digest[7:]
        message = self.load_error(
            self._oci(layer, links={name: str(self.victim)}, drop=(self.layer_digest,))
        )
        self.assertIn(f'invalid layer path "{name}"', message)
        self.assertIn("outside the archive", message)
        self.assertVictimsUntouched()

    def test_layer_size_mismatch(self) -> None:
        """A layer blob larger than its descriptor says is refused."""
        layer = layer_tar({"a": b"a"})
        message = self.load_error(self._oci(layer, layer_size=10))
        self.assertIn(
            f'invalid layer path "blobs/sha256/{self.layer_digest[7:]}"', message
        )
        self.assertIn(f"size {len(layer)}, its descriptor says 10", message)


class CommitBlobTests(_LoadCase):
    """The store moves into place only files under its own C{tmp/}."""

    def test_refuses_outside_tmp(self) -> None:
        """A path outside C{tmp/} is never renamed into the blob store."""
        store = self.service.store
        digest = "sha256:" + hashlib.sha256(b"precious host data").hexdigest()
        for path in (
            self.victim,
            self.near_victim,
            store.tmp_dir / ".." / "victim.txt",
        ):
            self.assertRaises(ValueError, store.commit_blob, path, digest)
        self.assertVictimsUntouched()
        self.assertFalse(store.has_blob(digest))

    def test_refuses_a_symlink(self) -> None:
        """A symlink under C{tmp/} is not moved, nor what it names."""
        store = self.service.store
        link = store.temp_path("blob-")
        link.symlink_to(self.victim)
        digest = "sha256:" + hashlib.sha256(b"precious host data").hexdigest()
        self.assertRaises(ValueError, store.commit_blob, link, digest)
        self.assertFalse(store.has_blob(digest))
        self.assertVictimsUntouched()


class RegisterErrorTests(_LoadCase):
    """Errors from unpacking a layer do not show the data root's path."""

    def _error(self, filename: str) -> str:
        def broken(*_: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device", filename)

        self.patch(layers, "unpack", broken)
        archive = _archive(
            {
                "config.json": _config([layer_tar({})]),
                "l.tar": layer_tar({}),
                "manifest.json": _manifest("config.json", ["l.tar"]),
            }
        )
        failure = self.failureResultOf(
            self.service.load(io.BytesIO(archive)), DockerError
        )
        message: str = failure.value.message
        return message

    def test_no_host_path(self) -> None:
        """An absolute file name is left out of the message."""
        where = self.root / "layers" / "x" / "etc"
        self.assertEqual(
            self._error(str(where)), "failed to register layer: No space left on device"
        )

    def test_member_named(self) -> None:
        """A name relative to the layer (the member's) is kept."""
        self.assertEqual(
            self._error("etc/passwd"),
            "failed to register layer: No space left on device: etc/passwd",
        )
