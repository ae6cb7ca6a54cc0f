"""Tests for L{dockserve.daemon.images.service.ImageService}."""

import gzip
import hashlib
import io
import json
import queue
import tarfile
import threading
from pathlib import Path
from typing import IO, Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.images.service import ImageService, _go_arch
from dockserve.daemon.images.store import go_time
from dockserve.daemon.store import TEMP_SUFFIX
from dockserve.errors import Conflict, InvalidParameter, NotFound
from dockserve.testing.images import (
    layer_tar,
    memory_image_service,
    oci_archive,
    save_archive,
)


class _Users:
    def __init__(
        self,
        users: dict[str, list[tuple[str, bool]]],
        reaping: Deferred[None] | None = None,
    ) -> None:
        self.users = users
        self.reaping = reaping

    def containers_using(self, image_id: str) -> list[tuple[str, bool]]:
        return self.users.get(image_id, [])

    def settled(self) -> Deferred[None]:
        return self.reaping if self.reaping is not None else succeed(None)


class ServiceTestsMixin:
    service: ImageService
    root: Path

    def setUp(self) -> None:
        self.root = Path(self.mktemp())  # type: ignore[attr-defined]
        self.service = memory_image_service(self.root)

    def load(self, archive: bytes) -> list[str]:
        return self.successResultOf(self.service.load(io.BytesIO(archive)))  # type: ignore[attr-defined, no-any-return]

    def busybox(self, tag: str = "busybox:latest", content: bytes = b"hello") -> str:
        self.load(save_archive([layer_tar({"a.txt": content})], [tag]))
        return self.service.lookup(tag).id


class LoadTests(ServiceTestsMixin, SynchronousTestCase):
    """C{docker load} of classic and OCI archives."""

    def test_load_reports_and_lists(self) -> None:
        """Loading reports each tag and the image lists with it."""
        lines = self.load(
            save_archive(
                [layer_tar({"a": b"1"}), layer_tar({"b": b"2"})],
                ["busybox:latest", "x/y:1"],
            )
        )
        self.assertEqual(lines, ["Loaded image: busybox:latest", "Loaded image: x/y:1"])
        [summary] = self.service.list_images()
        self.assertEqual(sorted(summary["RepoTags"]), ["busybox:latest", "x/y:1"])
        # As dockerd counts it: the files' sizes, not the tarballs'.
        self.assertEqual(summary["Size"], 2)
        self.assertEqual(summary["Containers"], -1)

    def test_disk_usage_shared_layers(self) -> None:
        """
        system df: a layer two images have is counted once in LayersSize
        and is each image's SharedSize.
        """
        base = layer_tar({"base": b"12345"})
        self.load(save_archive([base, layer_tar({"a": b"1"})], ["one:x"]))
        self.load(save_archive([base, layer_tar({"b": b"22"})], ["two:x"]))
        layers_size, summaries = self.service.disk_usage()
        self.assertEqual(layers_size, 5 + 1 + 2)
        shared = {tuple(s["RepoTags"]): (s["Size"], s["SharedSize"]) for s in summaries}
        self.assertEqual(shared, {("one:x",): (6, 5), ("two:x",): (7, 5)})

    def test_image_id_is_config_digest(self) -> None:
        """The ID is the sha256 of the config, as Docker computes it."""
        archive = save_archive([layer_tar({"a": b"1"})], ["a:b"])
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            config = tar.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
        self.load(archive)
        self.assertEqual(
            self.service.lookup("a:b").id,
            "sha256:" + hashlib.sha256(config).hexdigest(),
        )

    def test_retag_reports_rename(self) -> None:
        """Loading a tag that named another image says the old one lost it."""
        old = self.busybox(content=b"old")
        lines = self.load(
            save_archive([layer_tar({"a.txt": b"new"})], ["busybox:latest"])
        )
        self.assertEqual(
            lines[0],
            "The image busybox:latest already exists, renaming the old one "
            f"with ID {old} to empty string",
        )
        self.assertEqual(self.service.inspect(old)["RepoTags"], [])

    def test_bad_archive(self) -> None:
        """Garbage is a 400, not a crash, and leaves nothing behind."""
        failure = self.failureResultOf(
            self.service.load(io.BytesIO(b"not a tar" * 100)), InvalidParameter
        )
        self.assertIn("failed to load image", failure.value.message)
        self.assertEqual(list((self.root / "tmp").iterdir()), [])

    def test_bad_compression(self) -> None:
        """Compressed garbage, or a cut compressed stream, is a 400 too."""
        archive = save_archive([layer_tar({"a": b"1"})], ["x:1"])
        for data in (
            b"\x1f\x8bjunkjunkjunk",
            gzip.compress(archive)[:-50],
            b"\xfd7zXZ\x00" + b"junk" * 10,
            b"\x28\xb5\x2f\xfd" + b"junk" * 10,
        ):
            failure = self.failureResultOf(
                self.service.load(io.BytesIO(data)), InvalidParameter
            )
            self.assertIn("failed to load image", failure.value.message)
        self.successResultOf(self.service.load(io.BytesIO(gzip.compress(archive))))

    def test_layer_mismatch(self) -> None:
        """A layer whose content is not the config's diff ID is refused."""
        archive = save_archive([layer_tar({"a": b"1"})], ["a:b"])
        buf = io.BytesIO()
        with (
            tarfile.open(fileobj=io.BytesIO(archive)) as src,
            tarfile.open(fileobj=buf, mode="w") as dst,
        ):
            for member in src:
                data = src.extractfile(member).read()  # type: ignore[union-attr]
                if member.name.endswith("layer.tar"):
                    data = layer_tar({"a": b"2"})
                    member.size = len(data)
                dst.addfile(member, io.BytesIO(data))
        self.failureResultOf(
            self.service.load(io.BytesIO(buf.getvalue())), InvalidParameter
        )
        self.assertEqual(self.service.list_images(), [])

    def test_save_load_round_trip(self) -> None:
        """A saved archive loads elsewhere as the same ID and re-saves identically."""
        image_id = self.busybox()
        out = io.BytesIO()
        self.successResultOf(
            self.service.save(self.service.prepare_save(["busybox"]), out)
        )
        with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
            names = tar.getnames()
        self.assertIn("index.json", names)
        self.assertIn("manifest.json", names)
        self.assertIn("oci-layout", names)
        other = memory_image_service(Path(self.mktemp()))
        lines = self.successResultOf(other.load(io.BytesIO(out.getvalue())))
        self.assertEqual(lines, ["Loaded image: busybox:latest"])
        self.assertEqual(other.lookup("busybox").id, image_id)
        again = io.BytesIO()
        self.successResultOf(other.save(other.prepare_save(["busybox"]), again))
        self.assertEqual(again.getvalue(), out.getvalue())

    def test_oci_layout_without_manifest_json(self) -> None:
        """An OCI layout (index.json only) loads with its annotated name."""
        self.busybox("registry.example/app:2")
        out = io.BytesIO()
        self.successResultOf(
            self.service.save(
                self.service.prepare_save(["registry.example/app:2"]), out
            )
        )
        buf = io.BytesIO()
        with (
            tarfile.open(fileobj=io.BytesIO(out.getvalue())) as src,
            tarfile.open(fileobj=buf, mode="w") as dst,
        ):
            for member in src:
                if member.name in ("manifest.json", "repositories"):
                    continue
                dst.addfile(
                    member, src.extractfile(member) if member.isfile() else None
                )
        other = memory_image_service(Path(self.mktemp()))
        self.assertEqual(
            self.successResultOf(other.load(io.BytesIO(buf.getvalue()))),
            ["Loaded image: registry.example/app:2"],
        )

    def test_multi_platform_index_this_machine_first(self) -> None:
        """
        Of a multi-platform OCI archive, the image for this machine's
        architecture loads; C{platform} picks another.
        """
        host = _go_arch()
        other = "riscv64" if host != "riscv64" else "s390x"
        archive = oci_archive(
            {other: [layer_tar({"o": b"1"})], host: [layer_tar({"h": b"2"})]},
            "multi:1",
        )
        self.assertEqual(
            self.successResultOf(self.service.load(io.BytesIO(archive))),
            ["Loaded image: multi:1"],
        )
        self.assertEqual(self.service.inspect("multi:1")["Architecture"], host)
        again = memory_image_service(Path(self.mktemp()))
        self.successResultOf(
            again.load(
                io.BytesIO(archive),
                platform={"os": "linux", "architecture": other},
            )
        )
        self.assertEqual(again.inspect("multi:1")["Architecture"], other)

    def test_platform_missing_from_archive(self) -> None:
        """
        A platform the index lists without its blobs, or does not list, is
        a clear error; without C{platform} the one present loads.
        """
        archive = oci_archive(
            {"amd64": [layer_tar({"a": b"1"})], "arm64": None}, "partial:1"
        )
        for platform in (
            {"os": "linux", "architecture": "arm64"},
            {"os": "linux", "architecture": "ppc64le"},
        ):
            failure = self.failureResultOf(
                self.service.load(io.BytesIO(archive), platform=platform),
                InvalidParameter,
            )
            self.assertEqual(
                failure.value.message,
                "failed to load image: the archive holds no image for platform "
                f"linux/{platform['architecture']}",
            )
        self.successResultOf(self.service.load(io.BytesIO(archive)))
        self.assertEqual(self.service.inspect("partial:1")["Architecture"], "amd64")

    def test_platform_of_a_docker_save_archive(self) -> None:
        """A classic archive loads for its own platform, not for another."""
        archive = save_archive([layer_tar({"a": b"1"})], ["classic:1"])
        self.failureResultOf(
            self.service.load(
                io.BytesIO(archive), platform={"os": "linux", "architecture": "arm64"}
            ),
            InvalidParameter,
        )
        self.successResultOf(
            self.service.load(
                io.BytesIO(archive), platform={"os": "linux", "architecture": "amd64"}
            )
        )
        self.assertEqual(self.service.inspect("classic:1")["Architecture"], "amd64")

    def test_save_platform(self) -> None:
        """Saving for another platform than the image's is dockerd's 404."""
        self.busybox()
        e = self.assertRaises(
            NotFound,
            self.service.prepare_save,
            ["busybox"],
            {"os": "linux", "architecture": "arm64"},
        )
        self.assertEqual(
            e.message,
            "image with reference busybox was found but its platform "
            "(linux/amd64) does not match the specified platform (linux/arm64)",
        )
        [item] = self.service.prepare_save(
            ["busybox"], {"os": "linux", "architecture": "amd64"}
        )
        self.assertEqual(item.tags, ("docker.io/library/busybox:latest",))

    def test_save_unknown(self) -> None:
        """Saving an unknown name is a 404 before any byte is written."""
        self.assertRaises(NotFound, self.service.prepare_save, ["nope"])


class ImportTests(ServiceTestsMixin, SynchronousTestCase):
    """C{docker import}."""

    def test_import_with_changes(self) -> None:
        """Changes land in the config; the message in the history."""
        image_id = self.successResultOf(
            self.service.import_image(
                io.BytesIO(gzip.compress(layer_tar({"bin/x": b"x"}))),
                repo="imported",
                tag="v1",
                message="hi",
                change=[
                    'CMD ["sh"]',
                    "ENV A=1 B=2",
                    "WORKDIR /w",
                    "EXPOSE 80",
                    "USER nobody",
                    "LABEL k=v",
                ],
            )
        )
        inspect = self.service.inspect("imported:v1")
        self.assertEqual(inspect["Id"], image_id)
        self.assertEqual(
            inspect["Config"],
            {
                "Cmd": ["sh"],
                "Env": ["A=1", "B=2"],
                "WorkingDir": "/w",
                "ExposedPorts": {"80/tcp": {}},
                "User": "nobody",
                "Labels": {"k": "v"},
            },
        )
        self.assertEqual(inspect["Comment"], "hi")
        self.assertEqual(self.service.history(image_id)[0]["Comment"], "hi")
        resolved = self.service.resolve("imported:v1")
        self.assertEqual((Path(resolved.layer_dirs[0]) / "bin/x").read_bytes(), b"x")

    def test_bad_compression(self) -> None:
        """A rootfs in corrupt gzip, xz or zstd is a 400, not a crash."""
        for head in (
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff",
            b"\xfd7zXZ\x00",
            b"\x28\xb5\x2f\xfd",
        ):
            failure = self.failureResultOf(
                self.service.import_image(io.BytesIO(head + b"\x55\xaa" * 300)),
                InvalidParameter,
            )
            self.assertIn("failed to decompress layer", failure.value.message)

    def test_bad_change(self) -> None:
        """An instruction import cannot apply is dockerd's 400."""
        e = self.assertRaises(
            InvalidParameter,
            self.service.import_image,
            io.BytesIO(b""),
            change=["RUN true"],
        )
        self.assertEqual(e.message, "run is not a valid change command")


class NameTests(ServiceTestsMixin, SynchronousTestCase):
    """Names resolve as dockerd resolves them."""

    def test_forms(self) -> None:
        """Tag, full name, full ID, short ID and prefix all find the image."""
        image_id = self.busybox()
        for name in (
            "busybox",
            "busybox:latest",
            "docker.io/library/busybox:latest",
            image_id,
            image_id[7:],
            image_id[7:19],
            image_id[:10],
        ):
            self.assertEqual(self.service.resolve(name).id, image_id, name)

    def test_missing(self) -> None:
        """An unknown name is C{No such image: <name>}."""
        e = self.assertRaises(NotFound, self.service.resolve, "nope:1")
        self.assertEqual(e.message, "No such image: nope:1")

    def test_missing_named_as_dockerd_does(self) -> None:
        """
        A name without a tag is reported with C{:latest}, as dockerd does,
        also a short hex one (it could be a repository); a full ID bare.
        """
        for name, shown in (
            ("nope", "nope:latest"),
            ("docker.io/library/nope", "nope:latest"),
            ("0123456789ab", "0123456789ab:latest"),
            ("x/y@sha256:" + "a" * 64, "x/y@sha256:" + "a" * 64),
            ("sha256:" + "b" * 64, "sha256:" + "b" * 64),
        ):
            e = self.assertRaises(NotFound, self.service.inspect, name)
            self.assertEqual(e.message, f"No such image: {shown}")

    def test_invalid_reference(self) -> None:
        """A name that is no reference is a bad parameter, not a missing image."""
        e = self.assertRaises(InvalidParameter, self.service.inspect, "UPPER")
        self.assertIn("invalid reference format", e.message)

    def test_ambiguous_prefix(self) -> None:
        """
        A prefix two IDs share finds neither: as dockerd, it is then taken
        for a name, and there is no such image (404).
        """
        ids = [self.busybox(f"i{n}:x", str(n).encode()) for n in range(40)]
        firsts: dict[str, int] = {}
        for i in ids:
            firsts[i[7]] = firsts.get(i[7], 0) + 1
        shared = next(k for k, v in firsts.items() if v > 1)
        e = self.assertRaises(NotFound, self.service.resolve, shared)
        self.assertEqual(e.message, f"No such image: {shared}:latest")


class TagRemoveTests(ServiceTestsMixin, SynchronousTestCase):
    """C{docker tag} and C{docker rmi}."""

    def test_tag_and_untag(self) -> None:
        """Removing one of two tags only untags."""
        image_id = self.busybox()
        self.service.tag("busybox", "localhost:5000/bb", "x")
        self.assertEqual(
            self.service.inspect(image_id)["RepoTags"],
            ["busybox:latest", "localhost:5000/bb:x"],
        )
        result = self.successResultOf(self.service.remove("busybox"))
        self.assertEqual(result, [{"Untagged": "busybox:latest"}])
        [layer] = self.service.inspect(image_id)["RootFS"]["Layers"]
        result = self.successResultOf(self.service.remove("localhost:5000/bb:x"))
        self.assertEqual(
            result,
            [
                {"Untagged": "localhost:5000/bb:x"},
                {"Deleted": image_id},
                {"Deleted": layer},
            ],
        )
        self.assertEqual(list((self.root / "layers").iterdir()), [])
        self.assertEqual(list((self.root / "blobs/sha256").iterdir()), [])

    def test_layers_deleted_by_chain_id(self) -> None:
        """
        Deleting an image reports, after it, each layer no other image has,
        top first, by chain ID (dockerd's layer names); a shared base stays
        until its last image goes.
        """
        base, top_a, top_b = (
            layer_tar({"base": b"1"}),
            layer_tar({"a": b"22"}),
            layer_tar({"b": b"333"}),
        )
        self.load(save_archive([base, top_a], ["a:1"]))
        self.load(save_archive([base, top_b], ["b:1"]))
        a, b = self.service.lookup("a:1").id, self.service.lookup("b:1").id
        base_id, a_id, b_id = (
            "sha256:" + hashlib.sha256(layer).hexdigest()
            for layer in (base, top_a, top_b)
        )

        def chain(diff_id: str) -> str:
            link = f"{base_id} {diff_id}".encode()
            return "sha256:" + hashlib.sha256(link).hexdigest()

        self.assertEqual(
            self.successResultOf(self.service.remove("a:1")),
            [{"Untagged": "a:1"}, {"Deleted": a}, {"Deleted": chain(a_id)}],
        )
        self.assertEqual(self.service.inspect("b:1")["Size"], 1 + 3)
        self.assertEqual(
            self.successResultOf(self.service.remove("b:1")),
            [
                {"Untagged": "b:1"},
                {"Deleted": b},
                {"Deleted": chain(b_id)},
                {"Deleted": base_id},
            ],
        )

    def test_last_tag_time(self) -> None:
        """As dockerd: a load leaves LastTagTime unset, a tag sets it."""
        image_id = self.busybox()
        self.assertEqual(
            self.service.inspect(image_id)["Metadata"],
            {"LastTagTime": "0001-01-01T00:00:00Z"},
        )
        self.service.tag(image_id, "other", "1")
        self.assertNotEqual(
            self.service.inspect(image_id)["Metadata"]["LastTagTime"],
            "0001-01-01T00:00:00Z",
        )

    def test_tag_digest_refused(self) -> None:
        """A tag cannot be a digest reference."""
        self.busybox()
        self.assertRaises(
            InvalidParameter, self.service.tag, "busybox", "x@sha256:" + "a" * 64, None
        )

    def test_multiple_repositories_need_force(self) -> None:
        """By ID, an image in two repositories needs C{force}."""
        image_id = self.busybox()
        self.service.tag("busybox", "other", "1")
        f = self.failureResultOf(self.service.remove(image_id), Conflict)
        self.assertEqual(
            f.value.message,
            f"conflict: unable to delete {image_id[7:19]} (must be forced) - "
            "image is referenced in multiple repositories",
        )
        result = self.successResultOf(self.service.remove(image_id, force=True))
        self.assertIn({"Deleted": image_id}, result)

    def test_in_use_by_reference(self) -> None:
        """
        By its last name, an image a container uses needs -f (dockerd's
        text); forced, the name goes, and so does the image unless a
        running container uses it (then it stays, untagged).
        """
        image_id = self.busybox()
        for running in (True, False):
            self.service.tag(image_id, "busybox", "latest")
            self.service.set_users(_Users({image_id: [("c" * 64, running)]}))
            f = self.failureResultOf(self.service.remove("busybox"), Conflict)
            self.assertEqual(
                f.value.message,
                'conflict: unable to remove repository reference "busybox" (must '
                f"force) - container cccccccccccc is using its referenced image "
                f"{image_id[7:19]}",
            )
            removed = self.successResultOf(self.service.remove("busybox", force=True))
            deleted = [] if running else [{"Deleted": image_id}]
            self.assertEqual(removed, [{"Untagged": "busybox:latest"}, *deleted])
            self.assertEqual(self.service.resolve(image_id).repo_tags, ())

    def test_in_use(self) -> None:
        """A running container's image cannot go; a stopped one's needs force."""
        image_id = self.busybox()
        self.service.set_users(_Users({image_id: [("c" * 64, True)]}))
        f = self.failureResultOf(self.service.remove(image_id, force=True), Conflict)
        self.assertIn(
            "image is being used by running container cccccccccccc", f.value.message
        )
        self.service.set_users(_Users({image_id: [("d" * 64, False)]}))
        f = self.failureResultOf(self.service.remove(image_id), Conflict)
        self.assertIn(
            "(must be forced) - image is being used by stopped container dddddddddddd",
            f.value.message,
        )
        self.assertEqual(
            self.successResultOf(self.service.remove(image_id, force=True)),
            [{"Untagged": "busybox:latest"}, {"Deleted": image_id}],
        )
        # Forced with a stopped user: deleted as dockerd deletes it (no list
        # or lookup finds it), held with its layers for the container, which
        # still resolves it by its ID; gone once no container uses it.
        self.assertEqual(self.service.list_images(), [])
        self.assertRaises(NotFound, self.service.inspect, image_id)
        self.assertEqual(self.service.resolve(image_id).id, image_id)
        # Held across a restart of the daemon.
        self.service = memory_image_service(self.root)
        self.service.set_users(_Users({image_id: [("d" * 64, False)]}))
        self.assertEqual(self.service.resolve(image_id).id, image_id)
        self.assertEqual(self.service.list_images(), [])
        layers = self.root / "layers"
        before = sorted(p.name for p in layers.iterdir())
        self.assertTrue(before)
        self.service.set_users(_Users({}))
        self.successResultOf(self.service.prune())
        self.assertRaises(NotFound, self.service.resolve, image_id)
        self.assertEqual(sorted(p.name for p in layers.iterdir()), [])

    def test_waits_for_reaping(self) -> None:
        """
        A removed container may still have its root mounted on the image's
        layers for a moment: rmi deletes the layers only once the removed
        containers are reaped.
        """
        image_id = self.busybox()
        reaping: Deferred[None] = Deferred()
        self.service.set_users(_Users({}, reaping))
        layers = self.root / "layers"
        before = sorted(layers.iterdir())
        self.assertTrue(before)
        removing = self.service.remove(image_id)
        self.assertNoResult(removing)
        self.assertEqual(sorted(layers.iterdir()), before)
        reaping.callback(None)
        self.assertIn({"Deleted": image_id}, self.successResultOf(removing))
        self.assertEqual(list(layers.iterdir()), [])

    def test_prune_dangling(self) -> None:
        """Prune removes untagged images only, by default."""
        keep = self.busybox()
        gone = self.busybox("t:1", b"other")
        self.successResultOf(self.service.remove("t:1"))
        self.load(save_archive([layer_tar({"a.txt": b"other"})], ["t:1"]))
        self.service.store.refs.clear()
        self.service.tag(keep, "busybox", "latest")
        [layer] = self.service.inspect(gone)["RootFS"]["Layers"]
        result = self.successResultOf(self.service.prune())
        self.assertEqual(
            result["ImagesDeleted"], [{"Deleted": gone}, {"Deleted": layer}]
        )
        self.assertEqual(result["SpaceReclaimed"], len(b"other"))
        self.assertEqual([s["Id"] for s in self.service.list_images()], [keep])


class ListTests(ServiceTestsMixin, SynchronousTestCase):
    """C{GET /images/json} filters."""

    def test_filters(self) -> None:
        """dangling, label and reference filter as dockerd does."""
        a = self.busybox("app/one:1", b"a")
        self.load(
            save_archive(
                [layer_tar({"b": b"b"})], ["app/two:2"], {"Labels": {"x": "y"}}
            )
        )
        b = self.service.lookup("app/two:2").id
        ids = lambda f: sorted(s["Id"] for s in self.service.list_images(f))  # noqa: E731
        self.assertEqual(ids({"label": ["x=y"]}), [b])
        self.assertEqual(ids({"label": ["x"]}), [b])
        self.assertEqual(ids({"reference": ["app/one"]}), [a])
        self.assertEqual(ids({"reference": ["app/*"]}), sorted([a, b]))
        self.assertEqual(ids({"dangling": ["true"]}), [])
        self.assertRaises(InvalidParameter, self.service.list_images, {"bogus": ["1"]})

    def test_until(self) -> None:
        """
        C{until} keeps images created before a time or a duration ago; a
        value that is neither is refused, by list and by prune alike.
        """
        old = self.busybox("old:1")  # created 2024-01-01
        ids = lambda f: [s["Id"] for s in self.service.list_images(f)]  # noqa: E731
        self.assertEqual(ids({"until": ["2024-06-01T00:00:00Z"]}), [old])
        self.assertEqual(ids({"until": ["2023-06-01T00:00:00Z"]}), [])
        self.assertEqual(ids({"until": ["1704067201"]}), [old])
        self.assertEqual(ids({"until": ["1h"]}), [old])
        for call in (self.service.list_images, self.service.prune):
            e = self.assertRaises(InvalidParameter, call, {"until": ["soon"]})
            self.assertEqual(e.message, "invalid filter 'until=soon'")
        self.assertEqual(ids({}), [old])

    def test_reference_filter_shows_matching_names(self) -> None:
        """
        With a reference filter an image lists only its names that match
        (C{docker images imp} shows no other repository's tags).
        """
        image_id = self.busybox("imp:3")
        self.service.tag(image_id, "other", "3")
        self.service.tag(image_id, "imp", "4")
        [summary] = self.service.list_images({"reference": ["imp"]})
        self.assertEqual(summary["RepoTags"], ["imp:3", "imp:4"])
        [summary] = self.service.list_images({"reference": ["*:3"]})
        self.assertEqual(summary["RepoTags"], ["imp:3", "other:3"])
        [summary] = self.service.list_images()
        self.assertEqual(summary["RepoTags"], ["imp:3", "imp:4", "other:3"])


class RestoreTests(ServiceTestsMixin, SynchronousTestCase):
    """What a crash leaves is swept at the next start."""

    def test_leftovers_swept(self) -> None:
        """Temp files, half-unpacked layers and unindexed blobs go; images stay."""
        image_id = self.busybox()
        (self.root / "tmp" / "load-123").mkdir()
        (self.root / "layers" / f".abc{TEMP_SUFFIX}").mkdir()
        (self.root / f".index.json.1{TEMP_SUFFIX}").write_bytes(b"{")
        orphan = self.root / "blobs/sha256" / ("e" * 64)
        orphan.write_bytes(b"x")
        again = memory_image_service(self.root)
        self.assertEqual([s["Id"] for s in again.list_images()], [image_id])
        self.assertEqual(list((self.root / "tmp").iterdir()), [])
        self.assertFalse(orphan.exists())
        self.assertFalse((self.root / f".index.json.1{TEMP_SUFFIX}").exists())
        self.assertEqual(len(list((self.root / "layers").iterdir())), 1)

    def test_sizes_survive_and_are_remeasured(self) -> None:
        """
        A layer's size is the same after a restart, also when its record
        was lost; a removed image's record goes with its layer.
        """
        image_id = self.busybox(content=b"12345")
        self.assertEqual(self.service.inspect(image_id)["Size"], 5)
        again = memory_image_service(self.root)
        self.assertEqual(again.inspect(image_id)["Size"], 5)
        for record in (self.root / "layer-sizes").iterdir():
            record.unlink()
        again = memory_image_service(self.root)
        self.assertEqual(again.inspect(image_id)["Size"], 5)
        self.assertEqual(len(list((self.root / "layer-sizes").iterdir())), 1)
        self.successResultOf(again.remove(image_id))
        self.assertEqual(list((self.root / "layer-sizes").iterdir()), [])

    def test_count(self) -> None:
        """count() is what /info reports."""
        self.busybox()
        self.assertEqual(self.service.count(), 1)


class LegacyArchiveTests(ServiceTestsMixin, SynchronousTestCase):
    """Archives from older dockerd link a layer two images share."""

    def test_symlinked_layer(self) -> None:
        """A layer.tar that is a symlink to another image's layer loads."""
        layer = layer_tar({"shared": b"s"})
        one = save_archive([layer], ["one:1"])
        buf = io.BytesIO()
        with (
            tarfile.open(fileobj=io.BytesIO(one)) as src,
            tarfile.open(fileobj=buf, mode="w") as dst,
        ):
            manifest: list[dict[str, object]] = []
            for member in src:
                data = src.extractfile(member).read()  # type: ignore[union-attr]
                if member.name == "manifest.json":
                    manifest = json.loads(data)
                    continue
                dst.addfile(member, io.BytesIO(data))
            [entry] = manifest
            layer_path = entry["Layers"][0]  # type: ignore[index]
            link = tarfile.TarInfo("other/layer.tar")
            link.type = tarfile.SYMTYPE
            link.linkname = f"../{layer_path}"
            dst.addfile(link)
            second = {**entry, "RepoTags": ["two:2"], "Layers": ["other/layer.tar"]}
            data = json.dumps([second, entry]).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
        lines = self.load(buf.getvalue())
        self.assertEqual(lines, ["Loaded image: two:2", "Loaded image: one:1"])
        self.assertEqual(
            self.service.lookup("two:2").id, self.service.lookup("one:1").id
        )


class CompressedArchiveTests(ServiceTestsMixin, SynchronousTestCase):
    """docker load takes a compressed archive as dockerd does."""

    def test_zstd_and_gzip(self) -> None:
        """A zstd or gzip compressed save archive loads."""
        import zstandard  # noqa: PLC0415

        archive = save_archive([layer_tar({"z": b"z"})], ["z:1"])
        self.assertEqual(
            self.load(zstandard.ZstdCompressor().compress(archive)),
            ["Loaded image: z:1"],
        )
        self.assertEqual(self.load(gzip.compress(archive)), ["Loaded image: z:1"])


class EventTests(ServiceTestsMixin, SynchronousTestCase):
    """Image events, as dockerd logs them, for the event bus."""

    def setUp(self) -> None:
        super().setUp()
        self.events: list[dict[str, object]] = []
        self.service.set_events(self.events.append)

    def actions(self) -> list[tuple[object, ...]]:
        seen = [
            (e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"])  # type: ignore[index]
            for e in self.events
        ]
        self.events.clear()
        return seen

    def test_shape(self) -> None:
        """Every event is an API EventMessage of type image, local scope."""
        self.busybox()
        [event] = self.events
        self.assertEqual(event["Type"], "image")
        self.assertEqual(event["scope"], "local")
        self.assertEqual(event["time"], event["timeNano"] // 1_000_000_000)  # type: ignore[operator]

    def test_load_tag_untag_delete_prune(self) -> None:
        """Load, tag, rmi (untag then delete, with labels while it exists), prune."""
        self.load(
            save_archive(
                [layer_tar({"a": b"1"})], ["busybox:latest"], {"Labels": {"l": "v"}}
            )
        )
        image_id = self.service.lookup("busybox").id
        self.assertEqual(
            self.actions(), [("load", image_id, {"l": "v", "name": image_id})]
        )
        self.service.tag("busybox", "other", "2")
        self.assertEqual(
            self.actions(), [("tag", image_id, {"l": "v", "name": "other:2"})]
        )
        self.successResultOf(self.service.remove(image_id, force=True))
        self.assertEqual(
            self.actions(),
            [
                ("untag", image_id, {"l": "v", "name": image_id}),
                ("untag", image_id, {"l": "v", "name": image_id}),
                ("delete", image_id, {"name": image_id}),
            ],
        )
        self.successResultOf(self.service.prune())
        self.assertEqual(self.actions(), [("prune", "", {"reclaimed": "0"})])

    def test_import_and_save(self) -> None:
        """An import is logged by the new ID; a save by each image saved."""
        image_id = self.successResultOf(
            self.service.import_image(io.BytesIO(layer_tar({"a": b"1"})), repo="imp")
        )
        self.assertEqual(self.actions(), [("import", image_id, {"name": image_id})])
        self.successResultOf(
            self.service.save(self.service.prepare_save(["imp"]), io.BytesIO())
        )
        self.assertEqual(self.actions(), [("save", image_id, {"name": image_id})])

    def test_failures_are_not_events(self) -> None:
        """A refused removal logs nothing."""
        image_id = self.busybox()
        self.service.tag(image_id, "other", "1")
        self.events.clear()
        self.failureResultOf(self.service.remove(image_id), Conflict)
        self.assertEqual(self.events, [])


class TimeFormatTests(SynchronousTestCase):
    """Times shown as dockerd shows them (Go's RFC3339Nano)."""

    def test_go_time(self) -> None:
        """Trailing zeros of the fraction go, the zone stays."""
        for given, shown in (
            ("2026-11-29T00:31:36.059745550Z", "2026-11-29T00:31:36.05974555Z"),
            ("2024-01-01T00:00:00.000000000Z", "2024-01-01T00:00:00Z"),
            ("2024-01-01T00:00:00.5+02:00", "2024-01-01T00:00:00.5+02:00"),
            ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
        ):
            self.assertEqual(go_time(given), shown)

    def test_inspect_created(self) -> None:
        """An image's config time is shown in that form; an import writes it so."""
        service = memory_image_service(Path(self.mktemp()))
        archive = save_archive(
            [layer_tar({"a": b"1"})], ["t:1"], created="2024-01-01T00:00:00.120000000Z"
        )
        self.successResultOf(service.load(io.BytesIO(archive)))
        self.assertEqual(service.inspect("t:1")["Created"], "2024-01-01T00:00:00.12Z")
        image_id = self.successResultOf(
            service.import_image(io.BytesIO(layer_tar({"a": b"1"})))
        )
        created = service.inspect(image_id)["Created"]
        self.assertEqual(created, go_time(created))
        self.assertEqual(service.store.get(image_id).config["created"], created)


class _ThreadReactor:
    """Just callFromThread: the calls are queued for the test to run."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[Any, tuple[Any, ...]]] = queue.Queue()

    def callFromThread(self, f: Any, *args: Any) -> None:
        self.calls.put((f, args))


class _Unseekable(io.BytesIO):
    def seekable(self) -> bool:
        return False


class ReaderThreadTests(SynchronousTestCase):
    """An upload still arriving is read in a thread of its own, not the pool's."""

    def run_reader(self, source: IO[bytes]) -> tuple[Any, str]:
        reactor = _ThreadReactor()
        pool = ThreadPool(minthreads=0, maxthreads=1)
        service = ImageService(Path(self.mktemp()), reactor, threadpool=pool)
        threads: list[str] = []

        def read(src: IO[bytes]) -> bytes:
            threads.append(threading.current_thread().name)
            return src.read()

        pool.start()
        self.addCleanup(pool.stop)
        d = service.in_reader_thread(source, read, source)
        f, args = reactor.calls.get(timeout=10)
        f(*args)
        return self.successResultOf(d), threads[0]

    def test_upload_gets_its_own_thread(self) -> None:
        """An unseekable source: a thread of its own, the result via the reactor."""
        result, thread = self.run_reader(_Unseekable(b"body"))
        self.assertEqual((result, thread), (b"body", "dockserve-upload"))

    def test_file_uses_the_pool(self) -> None:
        """A file (seekable) is read in the pool as all other file work."""
        result, thread = self.run_reader(io.BytesIO(b"file"))
        self.assertEqual(result, b"file")
        self.assertNotEqual(thread, "dockserve-upload")

    def test_failure(self) -> None:
        """An error in the reader fails the Deferred."""
        reactor = _ThreadReactor()
        service = ImageService(Path(self.mktemp()), reactor, threadpool=ThreadPool())

        def fail(_: object) -> None:
            raise InvalidParameter("bad")

        d = service.in_reader_thread(_Unseekable(b""), fail, None)
        f, args = reactor.calls.get(timeout=10)
        f(*args)
        self.failureResultOf(d, InvalidParameter)
