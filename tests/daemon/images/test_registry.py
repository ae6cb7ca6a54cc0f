"""
Tests for L{dockserve.daemon.images.registry}: pull and push against an
in-memory registry that demands a bearer token, through StubTreq.
"""

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request

from dockserve.daemon.images.registry import Distribution, _go_arch
from dockserve.daemon.images.service import ImageService
from dockserve.errors import InvalidParameter, NotFound
from dockserve.testing.images import (
    SynchronousThreadPool,
    layer_tar,
    memory_image_service,
    save_archive,
)

TOKEN = "tok-123"


class FakeRegistry:
    """Just enough of the Registry v2 API, with bearer auth on every call."""

    app = Klein()

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.uploads: dict[str, bytes] = {}
        self.blob_gets: list[str] = []
        self.corrupt = ""
        self.hold: set[str] = set()
        self.down: set[bytes] = set()
        self.hosts: list[bytes] = []
        self.held: list[tuple[Deferred[bytes], bytes]] = []
        #: When set, blobs belong to repositories (HEAD on another is a
        #: 404) and a cross-repository mount links one, as a real registry.
        self.links: dict[str, set[str]] | None = None

    def _linked(self, repo: str, digest: str) -> bool:
        return self.links is None or digest in self.links.get(repo, set())

    def _link(self, repo: str, digest: str) -> None:
        if self.links is not None:
            self.links.setdefault(repo, set()).add(digest)

    def _authorized(self, request: Request) -> bool:
        if request.getRequestHostname() in self.down:
            # A mirror that does not have the repository.
            request.setResponseCode(404)
            return False
        got = request.requestHeaders.getRawHeaders(b"Authorization") or [b""]
        if got[0] == f"Bearer {TOKEN}".encode():
            return True
        request.setResponseCode(401)
        request.responseHeaders.setRawHeaders(
            b"WWW-Authenticate",
            [
                b'Bearer realm="http://registry.test/token",service="registry.test",scope="x"'
            ],
        )
        return False

    @app.route("/token", methods=["POST"])
    def oauth(self, request: Request) -> bytes:
        form = request.args
        if form.get(b"grant_type") != [b"refresh_token"] or form.get(
            b"refresh_token"
        ) != [b"refresh-me"]:
            request.setResponseCode(401)
            return b"{}"
        return json.dumps({"access_token": TOKEN}).encode()

    @app.route("/token", methods=["GET"])
    def token(self, request: Request) -> bytes:
        expected = b"Basic " + base64.b64encode(b"u:p")
        if (request.requestHeaders.getRawHeaders(b"Authorization") or [b""])[
            0
        ] != expected:
            request.setResponseCode(401)
            return b"{}"
        assert request.args[b"service"] == [b"registry.test"]
        return json.dumps({"token": TOKEN}).encode()

    @app.route("/v2/<path:repo>/manifests/<ref>", methods=["GET", "HEAD", "PUT"])
    def manifest(self, request: Request, repo: str, ref: str) -> bytes:
        self.hosts.append(request.getRequestHostname())
        if not self._authorized(request):
            return b""
        if request.method == b"PUT":
            body = request.content.read()  # type: ignore[union-attr]
            media = (request.requestHeaders.getRawHeaders(b"Content-Type") or [b""])[
                0
            ].decode()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            self.manifests[f"{repo}:{ref}"] = (media, body)
            self.manifests[f"{repo}@{digest}"] = (media, body)
            request.setResponseCode(201)
            return b""
        key = f"{repo}@{ref}" if ref.startswith("sha256:") else f"{repo}:{ref}"
        if key not in self.manifests:
            request.setResponseCode(404)
            return b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}'
        media, body = self.manifests[key]
        request.responseHeaders.setRawHeaders(b"Content-Type", [media.encode()])
        return body

    @app.route("/v2/<path:repo>/tags/list", methods=["GET"])
    def tags(self, request: Request, repo: str) -> bytes:
        """Two pages when there are more than two tags (n=2), as a Link."""
        if not self._authorized(request):
            return b""
        names = sorted(
            k.split(":", 1)[1] for k in self.manifests if k.startswith(f"{repo}:")
        )
        if not names:
            request.setResponseCode(404)
            return b'{"errors":[{"code":"NAME_UNKNOWN"}]}'
        last = request.args.get(b"last", [b""])[0].decode()
        page = [n for n in names if n > last][:2]
        if page and page[-1] != names[-1]:
            request.responseHeaders.setRawHeaders(
                b"Link",
                [f'</v2/{repo}/tags/list?n=2&last={page[-1]}>; rel="next"'.encode()],
            )
        return json.dumps({"name": repo, "tags": page}).encode()

    @app.route("/v2/<path:repo>/blobs/<digest>", methods=["GET", "HEAD"])
    def blob(self, request: Request, repo: str, digest: str) -> bytes:
        if not self._authorized(request):
            return b""
        if digest not in self.blobs or not self._linked(repo, digest):
            request.setResponseCode(404)
            return b""
        data = self.blobs[digest]
        data = data[:-1] + b"X" if digest == self.corrupt else data
        if request.method == b"GET":
            self.blob_gets.append(digest)
            if digest in self.hold:
                # Answer later, so two pulls overlap.
                held: Deferred[bytes] = Deferred()
                self.held.append((held, data))
                return held  # type: ignore[return-value]
        return data

    @app.route("/v2/<path:repo>/blobs/uploads/", methods=["POST"])
    def start_upload(self, request: Request, repo: str) -> bytes:
        if not self._authorized(request):
            return b""
        mount = request.args.get(b"mount", [b""])[0].decode()
        origin = request.args.get(b"from", [b""])[0].decode()
        if mount and mount in self.blobs and self._linked(origin, mount):
            self._link(repo, mount)
            request.setResponseCode(201)
            return b""
        request.setResponseCode(202)
        request.responseHeaders.setRawHeaders(
            b"Location", [f"/v2/{repo}/blobs/uploads/u1".encode()]
        )
        return b""

    @app.route("/v2/<path:repo>/blobs/uploads/<upload>", methods=["PUT"])
    def finish_upload(self, request: Request, repo: str, **_: str) -> bytes:
        if not self._authorized(request):
            return b""
        data = request.content.read()  # type: ignore[union-attr]
        digest = request.args[b"digest"][0].decode()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        self.blobs[digest] = data
        self._link(repo, digest)
        request.setResponseCode(201)
        return b""


def _distribution(service: ImageService, registry: FakeRegistry) -> Distribution:
    dist = Distribution(service)
    dist._http = StubTreq(registry.app.resource())  # type: ignore[assignment]
    dist._base = lambda _: ["http://registry.test"]  # type: ignore[method-assign]
    dist.upload_body = lambda path: path.read_bytes()  # type: ignore[method-assign]
    service._registry = dist
    return dist


def _stub(service: ImageService) -> StubTreq:
    return service._registry._http  # type: ignore[no-any-return]


AUTH = {"username": "u", "password": "p"}


def _ignore(_: dict[str, Any]) -> None:
    """Progress nobody reads."""


class PushPullTests(SynchronousTestCase):
    """An image goes to a registry and comes back the same."""

    def setUp(self) -> None:
        self.registry = FakeRegistry()
        self.source = memory_image_service(Path(self.mktemp()))
        _distribution(self.source, self.registry)
        self.successResultOf(
            self.source.load(
                __import__("io").BytesIO(
                    save_archive(
                        [layer_tar({"a": b"1" * 5000}), layer_tar({"b": b"2" * 5000})],
                        ["registry.test/app:v1"],
                    )
                )
            )
        )
        self.messages: list[dict[str, Any]] = []
        self.successResultOf(
            self.source.push("registry.test/app:v1", None, AUTH, self.messages.append)
        )

    def test_push_reports_digest(self) -> None:
        """Push ends with the aux message the CLI reads, and records the digest."""
        aux = self.messages[-1]["aux"]
        self.assertEqual(aux["Tag"], "v1")
        _media, body = self.registry.manifests["app:v1"]
        self.assertEqual(aux["Digest"], "sha256:" + hashlib.sha256(body).hexdigest())
        self.assertEqual(
            json.loads(body)["config"]["digest"],
            self.source.lookup("registry.test/app:v1").id,
        )
        self.assertEqual(
            self.source.inspect("registry.test/app:v1")["RepoDigests"],
            [f"registry.test/app@{aux['Digest']}"],
        )
        again: list[dict[str, Any]] = []
        self.successResultOf(
            self.source.push("registry.test/app:v1", None, AUTH, again.append)
        )
        self.assertIn("Layer already exists", [m.get("status") for m in again])

    def test_pull_into_empty_store(self) -> None:
        """Pull gives the same image ID, the progress dockerd writes, and the digest."""
        target = memory_image_service(Path(self.mktemp()))
        _distribution(target, self.registry)
        messages: list[dict[str, Any]] = []
        self.successResultOf(
            target.pull("registry.test/app", "v1", AUTH, messages.append)
        )
        statuses = [m.get("status") for m in messages]
        self.assertEqual(messages[0], {"status": "Pulling from app", "id": "v1"})
        self.assertEqual(statuses.count("Pull complete"), 2)
        self.assertIn("Downloading", statuses)
        self.assertEqual(
            statuses[-1], "Status: Downloaded newer image for registry.test/app:v1"
        )
        self.assertEqual(
            target.lookup("registry.test/app:v1").id,
            self.source.lookup("registry.test/app:v1").id,
        )
        layer = Path(target.resolve("registry.test/app:v1").layer_dirs[1])
        self.assertEqual((layer / "b").read_bytes(), b"2" * 5000)

    def test_pull_without_credentials(self) -> None:
        """The token service refuses; the user sees an auth error."""
        target = memory_image_service(Path(self.mktemp()))
        _distribution(target, self.registry)
        failure = self.failureResultOf(
            target.pull("registry.test/app", "v1", None, _ignore)
        )
        self.assertIn("unauthorized", failure.value.message)

    def test_pull_missing_tag(self) -> None:
        """A tag the registry lacks is dockerd's not-found message."""
        target = memory_image_service(Path(self.mktemp()))
        _distribution(target, self.registry)
        failure = self.failureResultOf(
            target.pull("registry.test/app", "nope", AUTH, _ignore), NotFound
        )
        self.assertEqual(
            failure.value.message,
            "manifest for registry.test/app:nope not found: "
            "manifest unknown: manifest unknown",
        )

    def test_corrupt_blob(self) -> None:
        """A blob whose bytes are not its digest is refused, and no image appears."""
        manifest = json.loads(self.registry.manifests["app:v1"][1])
        self.registry.corrupt = manifest["layers"][0]["digest"]
        target = memory_image_service(Path(self.mktemp()))
        _distribution(target, self.registry)
        failure = self.failureResultOf(
            target.pull("registry.test/app", "v1", AUTH, _ignore),
            InvalidParameter,
        )
        self.assertIn("verification failed", failure.value.message)
        self.assertEqual(target.list_images(), [])

    def test_manifest_list(self) -> None:
        """From an index, the entry for linux and this machine's CPU is pulled."""
        media, body = self.registry.manifests["app:v1"]
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        arch, _ = _go_arch()
        other = "s390x" if arch != "s390x" else "amd64"
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {
                        "mediaType": media,
                        "digest": "sha256:" + "0" * 64,
                        "size": 1,
                        "platform": {"os": "linux", "architecture": other},
                    },
                    {
                        "mediaType": media,
                        "digest": digest,
                        "size": len(body),
                        "platform": {"os": "linux", "architecture": arch},
                    },
                ],
            }
        ).encode()
        self.registry.manifests["app:multi"] = (
            "application/vnd.oci.image.index.v1+json",
            index,
        )
        target = memory_image_service(Path(self.mktemp()))
        _distribution(target, self.registry)
        self.successResultOf(
            target.pull("registry.test/app:multi", None, AUTH, _ignore)
        )
        index_digest = "sha256:" + hashlib.sha256(index).hexdigest()
        self.assertEqual(
            target.inspect("registry.test/app:multi")["RepoDigests"],
            [f"registry.test/app@{index_digest}"],
        )

    def test_layers_shared_not_downloaded_twice(self) -> None:
        """
        A second pull of an image that is here fetches no layer and, as
        dockerd, lists none.
        """
        target = memory_image_service(Path(self.mktemp()))
        _distribution(target, self.registry)
        self.successResultOf(target.pull("registry.test/app", "v1", AUTH, _ignore))
        before = len(self.registry.blob_gets)
        messages: list[dict[str, Any]] = []
        self.successResultOf(
            target.pull("registry.test/app", "v1", AUTH, messages.append)
        )
        self.assertEqual(len(self.registry.blob_gets) - before, 1)  # the config only
        self.assertEqual([m["status"] for m in messages].count("Already exists"), 0)
        self.assertEqual(
            messages[-1]["status"],
            "Status: Image is up to date for registry.test/app:v1",
        )

    def test_concurrent_pulls_share_downloads(self) -> None:
        """Two pulls in flight that need the same layer fetch it once."""
        self.source.tag("registry.test/app:v1", "registry.test/app", "v2")
        self.successResultOf(
            self.source.push("registry.test/app:v2", None, AUTH, _ignore)
        )
        manifest = json.loads(self.registry.manifests["app:v1"][1])
        layers = {layer["digest"] for layer in manifest["layers"]}
        self.registry.hold = layers
        target = memory_image_service(Path(self.mktemp()))
        _distribution(target, self.registry)
        first = target.pull("registry.test/app", "v1", AUTH, _ignore)
        second = target.pull("registry.test/app", "v2", AUTH, _ignore)
        self.assertNoResult(first)
        self.assertNoResult(second)
        for held, data in self.registry.held:
            held.callback(data)
        _stub(target).flush()
        self.successResultOf(first)
        self.successResultOf(second)
        fetched = [d for d in self.registry.blob_gets if d in layers]
        self.assertEqual(sorted(fetched), sorted(layers))
        self.assertEqual(
            target.lookup("registry.test/app:v1").id,
            target.lookup("registry.test/app:v2").id,
        )


class MirrorTests(SynchronousTestCase):
    """Docker Hub pulls try each --registry-mirror first."""

    def test_mirror_down_falls_back_to_hub(self) -> None:
        """A mirror without the image is skipped; it comes from the hub."""
        registry = FakeRegistry()
        source = memory_image_service(Path(self.mktemp()))
        _distribution(source, registry)
        self.successResultOf(
            source.load(
                io.BytesIO(save_archive([layer_tar({"a": b"1"})], ["busybox:latest"]))
            )
        )
        source.tag("busybox", "registry.test/library/busybox", "latest")
        self.successResultOf(
            source.push("registry.test/library/busybox", "latest", AUTH, _ignore)
        )
        target = ImageService(
            Path(self.mktemp()),
            Clock(),
            threadpool=SynchronousThreadPool(),  # type: ignore[arg-type]
            registry_mirrors=["http://mirror.test"],
        )
        target.store.restore()
        dist = Distribution(target)
        dist._http = StubTreq(registry.app.resource())  # type: ignore[assignment]
        target._registry = dist
        registry.down.add(b"mirror.test")
        registry.hosts.clear()
        self.successResultOf(target.pull("busybox", None, AUTH, _ignore))
        self.assertEqual(target.lookup("busybox").id, source.lookup("busybox").id)
        self.assertEqual(registry.hosts[0], b"mirror.test")
        self.assertIn(b"registry-1.docker.io", registry.hosts)


class DigestReferenceTests(SynchronousTestCase):
    """A pulled image's digest is a reference like a tag."""

    def test_remove_by_digest_untags_only_it(self) -> None:
        """rmi repo@digest drops that reference; the tag keeps the image."""
        registry = FakeRegistry()
        source = memory_image_service(Path(self.mktemp()))
        _distribution(source, registry)
        self.successResultOf(
            source.load(
                io.BytesIO(
                    save_archive([layer_tar({"a": b"1"})], ["registry.test/d:1"])
                )
            )
        )
        self.successResultOf(source.push("registry.test/d:1", None, AUTH, _ignore))
        target = memory_image_service(Path(self.mktemp()))
        _distribution(target, registry)
        self.successResultOf(target.pull("registry.test/d", "1", AUTH, _ignore))
        [digest_ref] = target.inspect("registry.test/d:1")["RepoDigests"]
        self.assertEqual(
            target.lookup(digest_ref).id, target.lookup("registry.test/d:1").id
        )
        self.assertEqual(
            self.successResultOf(target.remove(digest_ref)), [{"Untagged": digest_ref}]
        )
        self.assertEqual(target.inspect("registry.test/d:1")["RepoDigests"], [])
        result = self.successResultOf(target.remove("registry.test/d:1"))
        self.assertIn({"Deleted": source.lookup("registry.test/d:1").id}, result)


class ReproduciblePushTests(SynchronousTestCase):
    """The same image pushed from two daemons is the same manifest."""

    def test_same_digest_from_two_stores(self) -> None:
        """
        Two stores gzip a layer to the same bytes (no temp file name or
        time in the gzip header), so their pushes give one digest.
        """
        archive = save_archive([layer_tar({"a": b"1" * 5000})], ["registry.test/r:1"])
        digests = []
        for _ in range(2):
            registry = FakeRegistry()
            service = memory_image_service(Path(self.mktemp()))
            _distribution(service, registry)
            self.successResultOf(service.load(io.BytesIO(archive)))
            self.successResultOf(service.push("registry.test/r:1", None, AUTH, _ignore))
            [digest] = service.inspect("registry.test/r:1")["RepoDigests"]
            digests.append(digest)
        self.assertEqual(digests[0], digests[1])


def _publish(registry: FakeRegistry, repo: str, layers: list[bytes]) -> str:
    """
    Put an image in C{repo}:1 as another engine would: its layers gzipped
    differently from dockserve (level 1, a time in the header). Returns the
    manifest digest.
    """
    import gzip  # noqa: PLC0415

    links = registry.links if registry.links is not None else {}
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps(
        {
            "architecture": _go_arch()[1],
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        }
    ).encode()
    descriptors = []
    for layer in layers:
        blob = gzip.compress(layer, compresslevel=1, mtime=12345)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        registry.blobs[digest] = blob
        links.setdefault(repo, set()).add(digest)
        descriptors.append(
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": len(blob),
                "digest": digest,
            }
        )
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    registry.blobs[config_digest] = config
    links.setdefault(repo, set()).add(config_digest)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": len(config),
            "digest": config_digest,
        },
        "layers": descriptors,
    }
    body = json.dumps(manifest, indent=3).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    media = "application/vnd.docker.distribution.manifest.v2+json"
    registry.manifests[f"{repo}:1"] = (media, body)
    registry.manifests[f"{repo}@{digest}"] = (media, body)
    return digest


class LayerReuseTests(SynchronousTestCase):
    """A pulled layer is pushed as the registry has it, as dockerd does."""

    def test_push_after_pull_keeps_the_registry_blobs(self) -> None:
        """
        A layer that already existed here when pulled (so its compressed
        blob was never downloaded) is mounted from the repository it came
        from; the other is uploaded as it was pulled: the new repository
        gets the very manifest another engine pushed.
        """
        registry = FakeRegistry()
        registry.links = {}
        base, top = layer_tar({"base": b"1" * 3000}), layer_tar({"top": b"2" * 3000})
        digest = _publish(registry, "a", [base, top])
        service = memory_image_service(Path(self.mktemp()))
        _distribution(service, registry)
        self.successResultOf(
            service.load(io.BytesIO(save_archive([base], ["local:1"])))
        )
        self.successResultOf(service.pull("registry.test/a", "1", AUTH, _ignore))
        service.tag("registry.test/a:1", "registry.test/b", "1")
        messages: list[dict[str, Any]] = []
        self.successResultOf(
            service.push("registry.test/b:1", None, AUTH, messages.append)
        )
        self.assertIn(
            f"registry.test/b@{digest}",
            service.inspect("registry.test/b:1")["RepoDigests"],
        )
        statuses = [m.get("status") for m in messages]
        self.assertIn("Mounted from a", statuses)
        self.assertIn("Pushed", statuses)

    def test_not_in_the_registry_compressed_here(self) -> None:
        """
        Pushed to a registry that lacks the pulled blob (and cannot mount
        it), the layer is compressed here and uploaded.
        """
        registry = FakeRegistry()
        registry.links = {}
        base = layer_tar({"base": b"1" * 3000})
        _publish(registry, "a", [base])
        service = memory_image_service(Path(self.mktemp()))
        _distribution(service, registry)
        self.successResultOf(
            service.load(io.BytesIO(save_archive([base], ["local:1"])))
        )
        self.successResultOf(service.pull("registry.test/a", "1", AUTH, _ignore))
        other = FakeRegistry()
        other.links = {}
        _distribution(service, other)
        service.tag("registry.test/a:1", "registry.test/c", "1")
        self.successResultOf(service.push("registry.test/c:1", None, AUTH, _ignore))
        [manifest_digest] = [
            k.split("@")[1] for k in other.manifests if k.startswith("c@")
        ]
        _, body = other.manifests[f"c@{manifest_digest}"]
        [layer] = json.loads(body)["layers"]
        self.assertIn(layer["digest"], other.blobs)


class AllTagsTests(SynchronousTestCase):
    """C{docker pull -a}: every tag of the repository."""

    def test_every_tag_one_status(self) -> None:
        """
        Three tags over two pages of the tag list: all pulled, each with its
        own progress, one status for the repository at the end.
        """
        registry = FakeRegistry()
        source = memory_image_service(Path(self.mktemp()))
        _distribution(source, registry)
        for n in range(3):
            archive = save_archive(
                [layer_tar({"n": str(n).encode()})], [f"registry.test/all:t{n}"]
            )
            self.successResultOf(source.load(io.BytesIO(archive)))
            self.successResultOf(
                source.push(f"registry.test/all:t{n}", None, AUTH, _ignore)
            )
        target = memory_image_service(Path(self.mktemp()))
        _distribution(target, registry)
        messages: list[dict[str, Any]] = []
        self.successResultOf(
            target.pull("registry.test/all", None, AUTH, messages.append, all_tags=True)
        )
        self.assertEqual(
            sorted(t for s in target.list_images() for t in s["RepoTags"]),
            ["registry.test/all:t0", "registry.test/all:t1", "registry.test/all:t2"],
        )
        statuses = [m["status"] for m in messages if "Status" in m.get("status", "")]
        self.assertEqual(
            statuses, ["Status: Downloaded newer image for registry.test/all"]
        )
        messages.clear()
        self.successResultOf(
            target.pull("registry.test/all", None, AUTH, messages.append, all_tags=True)
        )
        self.assertEqual(
            messages[-1],
            {"status": "Status: Image is up to date for registry.test/all"},
        )

    def test_without_all_tags_latest(self) -> None:
        """No tag and no C{all_tags}: C{latest}, as before."""
        registry = FakeRegistry()
        target = memory_image_service(Path(self.mktemp()))
        _distribution(target, registry)
        failure = self.failureResultOf(
            target.pull("registry.test/none", None, AUTH, _ignore), NotFound
        )
        self.assertIn("registry.test/none:latest", failure.value.message)


class RegistryEventTests(SynchronousTestCase):
    """Pull and push events name the reference, as dockerd's do."""

    def test_push_pull_events(self) -> None:
        """The actor is the familiar reference, C{name} its repository."""
        registry = FakeRegistry()
        source = memory_image_service(Path(self.mktemp()))
        _distribution(source, registry)
        archive = save_archive(
            [layer_tar({"a": b"1"})], ["registry.test/d:1"], {"Labels": {"l": "v"}}
        )
        self.successResultOf(source.load(io.BytesIO(archive)))
        events: list[dict[str, Any]] = []
        source.set_events(events.append)
        self.successResultOf(source.push("registry.test/d:1", None, AUTH, _ignore))
        target = memory_image_service(Path(self.mktemp()))
        target.set_events(events.append)
        _distribution(target, registry)
        self.successResultOf(target.pull("registry.test/d", "1", AUTH, _ignore))
        self.assertEqual(
            [(e["Action"], e["Actor"]) for e in events],
            [
                (
                    "push",
                    {
                        "ID": "registry.test/d:1",
                        "Attributes": {"l": "v", "name": "registry.test/d"},
                    },
                ),
                (
                    "pull",
                    {
                        "ID": "registry.test/d:1",
                        "Attributes": {"l": "v", "name": "registry.test/d"},
                    },
                ),
            ],
        )


class TokenCredentialTests(SynchronousTestCase):
    """Credentials docker login leaves behind: identity and registry tokens."""

    def setUp(self) -> None:
        self.registry = FakeRegistry()
        self.service = memory_image_service(Path(self.mktemp()))
        _distribution(self.service, self.registry)
        self.successResultOf(
            self.service.load(
                io.BytesIO(
                    save_archive([layer_tar({"a": b"1"})], ["registry.test/t:1"])
                )
            )
        )

    def test_identity_token(self) -> None:
        """An identity token is traded at the realm for an access token."""
        self.successResultOf(
            self.service.push(
                "registry.test/t:1", None, {"identitytoken": "refresh-me"}, _ignore
            )
        )
        self.assertIn("t:1", self.registry.manifests)

    def test_registry_token(self) -> None:
        """A registry token is sent as the bearer token directly."""
        self.successResultOf(
            self.service.push(
                "registry.test/t:1", None, {"registrytoken": TOKEN}, _ignore
            )
        )
        self.assertIn("t:1", self.registry.manifests)


class ImportURLTests(SynchronousTestCase):
    """docker import URL downloads the tarball first."""

    def test_import_from_url(self) -> None:
        """The rootfs at the URL becomes the image; a 404 is a clear error."""
        files = Klein()
        tarball = layer_tar({"etc/issue": b"from the web\n"})

        @files.route("/rootfs.tar")
        def rootfs(request: Request) -> bytes:
            del request
            return tarball

        service = memory_image_service(Path(self.mktemp()))
        dist = Distribution(service)
        dist._http = StubTreq(files.resource())  # type: ignore[assignment]
        service._registry = dist
        image_id = self.successResultOf(
            service.import_url("http://files.test/rootfs.tar", repo="web", tag="1")
        )
        self.assertEqual(service.lookup("web:1").id, image_id)
        self.assertEqual(
            service.history("web:1")[0]["Comment"],
            "Imported from http://files.test/rootfs.tar",
        )
        layer = Path(service.resolve("web:1").layer_dirs[0])
        self.assertEqual((layer / "etc/issue").read_bytes(), b"from the web\n")
        failure = self.failureResultOf(service.import_url("http://files.test/nope"))
        self.assertIn("HTTP 404", failure.value.message)
        self.assertRaises(InvalidParameter, service.import_url, "ftp://x/y")
        self.assertEqual(list((service.store.root / "tmp").iterdir()), [])
