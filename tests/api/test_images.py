"""Tests for L{dockserve.api.images}: the /images handlers over a real store."""

import base64
import gzip
import hashlib
import io
import json
import tarfile
import threading
from pathlib import Path
from typing import Any

from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import maybeDeferred, succeed
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.test.requesthelper import DummyRequest

from dockserve.api.images import (
    ROUTES,
    BodyPipe,
    ImagesAPI,
    StreamingRequest,
    registry_auth,
    streamed_upload,
)
from dockserve.errors import DockerError, InvalidParameter
from dockserve.testing.images import layer_tar, memory_image_service, save_archive


def _resource(api: ImagesAPI) -> Any:
    """The routes under C{/v1.50}, with errors as the middleware will map them."""
    app = Klein()
    for route in ROUTES:
        handler = getattr(api, route.handler)

        def call(request: Request, handler: Any = handler, **kwargs: Any) -> Any:
            def encode(result: Any) -> Any:
                if isinstance(result, dict | list):
                    request.responseHeaders.setRawHeaders(
                        b"Content-Type", [b"application/json"]
                    )
                    return json.dumps(result).encode()
                return result

            def error(failure: Any) -> bytes:
                failure.trap(DockerError)
                codes = {"InvalidParameter": 400, "NotFound": 404, "Conflict": 409}
                request.setResponseCode(codes.get(type(failure.value).__name__, 500))
                return json.dumps({"message": failure.value.message}).encode()

            return maybeDeferred(handler, request, **kwargs).addCallbacks(encode, error)

        app.route(
            "/v1.50" + route.path, methods=[route.method], endpoint=route.handler
        )(call)
    return app.resource()


class ImagesAPITests(SynchronousTestCase):
    """What a client sees from the /images endpoints."""

    def setUp(self) -> None:
        self.service = memory_image_service(Path(self.mktemp()))
        self.stub = StubTreq(_resource(ImagesAPI(self.service)))

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
        response = self.successResultOf(
            self.stub.request(method, "http://localhost/v1.50" + path, **kwargs)
        )
        body = self.successResultOf(response.content())
        return response.code, body, response.headers

    def load(self) -> str:
        code, body, headers = self.call(
            "POST",
            "/images/load",
            data=save_archive([layer_tar({"a": b"1"})], ["busybox:latest"]),
        )
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders("Content-Type"), ["application/json"])
        self.assertEqual(json.loads(body), {"stream": "Loaded image: busybox:latest\n"})
        return self.service.lookup("busybox").id

    def test_list_and_inspect(self) -> None:
        """GET /images/json and /images/{name}/json answer with the spec's fields."""
        image_id = self.load()
        code, body, _ = self.call("GET", "/images/json")
        self.assertEqual(code, 200)
        [summary] = json.loads(body)
        self.assertEqual(
            set(summary),
            {
                "Id",
                "ParentId",
                "RepoTags",
                "RepoDigests",
                "Created",
                "Size",
                "SharedSize",
                "Labels",
                "Containers",
            },
        )
        code, body, _ = self.call("GET", "/images/busybox:latest/json")
        self.assertEqual(json.loads(body)["Id"], image_id)
        code, body, _ = self.call("GET", "/images/nope/json")
        self.assertEqual(
            (code, json.loads(body)), (404, {"message": "No such image: nope:latest"})
        )

    def test_name_with_registry_and_slashes(self) -> None:
        """A name with a port and slashes routes to the right handler."""
        self.load()
        code, _, _ = self.call(
            "POST", "/images/busybox/tag?repo=127.0.0.1:5000/a/b&tag=t"
        )
        self.assertEqual(code, 201)
        code, body, _ = self.call("GET", "/images/127.0.0.1:5000/a/b:t/history")
        self.assertEqual(code, 200)
        self.assertEqual(
            json.loads(body)[0]["Tags"], ["127.0.0.1:5000/a/b:t", "busybox:latest"]
        )

    def test_filters_bad(self) -> None:
        """A bad filter is a 400."""
        code, _, _ = self.call(
            "GET", "/images/json?filters=" + json.dumps({"nope": ["x"]})
        )
        self.assertEqual(code, 400)

    def test_import(self) -> None:
        """POST /images/create?fromSrc=- answers the new ID as a status message."""
        code, body, _ = self.call(
            "POST",
            "/images/create?fromSrc=-&repo=imp&tag=1&changes=CMD%20%5B%22sh%22%5D",
            data=gzip.compress(layer_tar({"x": b"y"})),
        )
        self.assertEqual(code, 200)
        status = json.loads(body)["status"]
        self.assertEqual(status, self.service.lookup("imp:1").id)
        self.assertEqual(self.service.inspect("imp:1")["Config"], {"Cmd": ["sh"]})

    def test_load_platform(self) -> None:
        """
        C{platform} (JSON, as the CLI sends it, or os/arch) selects what
        loads; a platform the archive lacks fails in the stream (as every
        load failure does in dockerd), a bad value is a 400.
        """
        archive = save_archive([layer_tar({"a": b"1"})], ["busybox:latest"])
        arm = json.dumps({"os": "linux", "architecture": "arm64"})
        code, body, _ = self.call(
            "POST", "/images/load", params={"platform": arm}, data=archive
        )
        message = (
            "failed to load image: the archive holds no image for platform linux/arm64"
        )
        self.assertEqual(
            (code, json.loads(body)),
            (200, {"errorDetail": {"message": message}, "error": message}),
        )
        code, body, _ = self.call(
            "POST", "/images/load", params={"platform": "linux/amd64"}, data=archive
        )
        self.assertEqual(code, 200, body)
        for bad in ("{nope", "linux//x", '{"os": 1}'):
            code, body, _ = self.call(
                "POST", "/images/load", params={"platform": bad}, data=archive
            )
            self.assertEqual(
                (code, json.loads(body)), (400, {"message": f"invalid platform: {bad}"})
            )

    def test_load_progress(self) -> None:
        """
        With C{quiet=0} each layer stored is reported as dockerd's
        C{Loading layer} progress, before the C{Loaded image} line; quiet
        by default.
        """
        layer = layer_tar({"a": b"1"})
        short = hashlib.sha256(layer).hexdigest()[:12]
        archive = save_archive([layer], ["busybox:latest"])
        code, body, _ = self.call(
            "POST", "/images/load", params={"quiet": "0"}, data=archive
        )
        messages = [json.loads(line) for line in body.splitlines()]
        self.assertEqual(code, 200)
        self.assertEqual(
            [(m.get("status"), m.get("id"), m.get("progressDetail")) for m in messages],
            [
                ("Loading layer", short, {"current": 0, "total": len(layer)}),
                ("Loading layer", short, {"current": len(layer), "total": len(layer)}),
                (None, None, None),
            ],
        )
        self.assertEqual(messages[-1], {"stream": "Loaded image: busybox:latest\n"})
        self.assertTrue(messages[1]["progress"].startswith("[" + "=" * 50 + "]"))
        self.service.remove("busybox")
        _, body, _ = self.call("POST", "/images/load", data=archive)
        self.assertEqual(json.loads(body), {"stream": "Loaded image: busybox:latest\n"})

    def test_load_failure_in_the_stream(self) -> None:
        """A bad archive is an error message in a 200 stream, as in dockerd."""
        code, body, _ = self.call("POST", "/images/load", data=b"garbage")
        self.assertEqual(code, 200)
        self.assertIn("failed to load image", json.loads(body)["error"])

    def test_remove_and_prune(self) -> None:
        """DELETE answers Untagged/Deleted; prune its report."""
        image_id = self.load()
        [layer] = self.service.inspect(image_id)["RootFS"]["Layers"]
        _, body, _ = self.call("DELETE", "/images/busybox")
        self.assertEqual(
            json.loads(body),
            [
                {"Untagged": "busybox:latest"},
                {"Deleted": image_id},
                {"Deleted": layer},
            ],
        )
        _code, body, _ = self.call("POST", "/images/prune")
        self.assertEqual(json.loads(body), {"ImagesDeleted": None, "SpaceReclaimed": 0})

    def test_save(self) -> None:
        """GET /images/{name}/get streams a tar that loads."""
        self.load()
        code, body, headers = self.call("GET", "/images/busybox/get")
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders("Content-Type"), ["application/x-tar"])
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            names = tar.getnames()
        self.assertIn("manifest.json", names)
        code, body2, _ = self.call("GET", "/images/get?names=busybox")
        self.assertEqual(body2, body)
        code, _, _ = self.call("GET", "/images/nope/get")
        self.assertEqual(code, 404)

    def test_create_needs_source(self) -> None:
        """POST /images/create with neither fromImage nor fromSrc is a 400."""
        code, _body, _ = self.call("POST", "/images/create")
        self.assertEqual(code, 400)


class RegistryAuthTests(SynchronousTestCase):
    """The X-Registry-Auth header."""

    def _request(self, value: bytes | None) -> Request:
        request = DummyRequest([b""])
        if value is not None:
            request.requestHeaders.setRawHeaders(b"X-Registry-Auth", [value])
        return request  # type: ignore[return-value]

    def test_decodes(self) -> None:
        """base64url JSON, padding or not."""
        raw = base64.urlsafe_b64encode(
            json.dumps({"username": "u", "password": "p"}).encode()
        ).rstrip(b"=")
        self.assertEqual(
            registry_auth(self._request(raw)), {"username": "u", "password": "p"}
        )
        self.assertIsNone(registry_auth(self._request(None)))

    def test_garbage(self) -> None:
        """Not base64 JSON: a 400."""
        self.assertRaises(
            InvalidParameter, registry_auth, self._request(b"bm90IGpzb24")
        )


class _PullRecorder:
    """A backend whose pull records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def pull(
        self,
        image: str,
        tag: str | None,
        auth: Any,
        progress: Any,
        platform: str | None = None,
        *,
        all_tags: bool = False,
    ) -> Any:
        del auth, platform
        self.calls.append((image, tag, all_tags))
        progress({"status": "Status: done"})
        return succeed(None)


class PullParametersTests(SynchronousTestCase):
    """What POST /images/create asks a pull for."""

    def test_all_tags_only_without_tag(self) -> None:
        """No tag parameter at all (docker pull -a) is every tag; tag=x is x."""
        backend = _PullRecorder()
        stub = StubTreq(_resource(ImagesAPI(backend)))  # type: ignore[arg-type]
        for query_string in ("fromImage=a/b", "fromImage=a/b&tag=latest"):
            response = self.successResultOf(
                stub.post(f"http://localhost/v1.50/images/create?{query_string}")
            )
            self.successResultOf(response.content())
        self.assertEqual(backend.calls, [("a/b", None, True), ("a/b", "latest", False)])


class StreamedUploadPathTests(SynchronousTestCase):
    """Which requests have their body streamed to the handler."""

    def test_uploads(self) -> None:
        """POST /images/load and /images/create?fromSrc=-, bare or versioned."""
        for uri in (
            b"/images/load",
            b"/v1.50/images/load?quiet=1",
            b"/v1.24/images/create?fromSrc=-&repo=x",
            b"/images/create?tag=1&fromSrc=-",
        ):
            self.assertTrue(streamed_upload(b"POST", uri), uri)

    def test_others(self) -> None:
        """Pulls, URL imports, other paths and methods are Twisted's as usual."""
        for method, uri in (
            (b"POST", b"/images/create?fromImage=busybox"),
            (b"POST", b"/images/create?fromSrc=http://x/y.tar"),
            (b"POST", b"/images/x/load"),
            (b"GET", b"/images/load"),
            (b"POST", b"/containers/create"),
        ):
            self.assertFalse(streamed_upload(method, uri), uri)


class BodyPipeTests(SynchronousTestCase):
    """L{BodyPipe}: the reactor writes, a reader reads, memory stays bounded."""

    def setUp(self) -> None:
        self.events: list[str] = []
        self.pipe = BodyPipe(
            lambda: self.events.append("pause"),
            lambda: self.events.append("resume"),
            lambda f, *a: f(*a),
        )

    def test_reads_across_chunks(self) -> None:
        """Reads of any size cut and join the chunks in order; the end reads short."""
        for chunk in (b"abc", b"defg", b"h"):
            self.pipe.write(chunk)
        self.assertEqual(self.pipe.read(2), b"ab")
        self.assertEqual(self.pipe.read(4), b"cdef")
        self.pipe.end()
        self.assertEqual(self.pipe.read(10), b"gh")
        self.assertEqual(self.pipe.read(10), b"")
        self.assertEqual(self.pipe.tell(), 8)

    def test_read_waits_for_enough(self) -> None:
        """A read waits until its size arrived, or the body ended."""
        self.pipe.write(b"ab")
        results: list[bytes] = []
        thread = threading.Thread(target=lambda: results.append(self.pipe.read(5)))
        thread.start()
        thread.join(0.2)
        self.assertTrue(thread.is_alive())
        self.pipe.write(b"cdefg")
        thread.join(5)
        self.assertEqual(results, [b"abcde"])

    def test_back_pressure(self) -> None:
        """Past HIGH bytes the connection pauses; read down to LOW it resumes."""
        self.pipe.write(b"x" * (BodyPipe.HIGH - 1))
        self.assertEqual(self.events, [])
        self.pipe.write(b"x")
        self.assertEqual(self.events, ["pause"])
        self.pipe.write(b"x" * 10)
        self.assertEqual(self.events, ["pause"])
        self.pipe.read(BodyPipe.HIGH - BodyPipe.LOW - 100)
        self.assertEqual(self.events, ["pause"])
        self.pipe.read(200)
        self.assertEqual(self.events, ["pause", "resume"])

    def test_big_reads_do_not_wait_on_a_paused_pipe(self) -> None:
        """
        A read larger than the pipe holds returns what a paused pipe has;
        reading everything works across pauses.
        """
        self.pipe.write(b"x" * (BodyPipe.HIGH + 10))
        self.assertEqual(len(self.pipe.read(BodyPipe.HIGH * 4)), BodyPipe.HIGH + 10)
        self.pipe.write(b"y" * (BodyPipe.HIGH * 2))
        results: list[bytes] = []
        thread = threading.Thread(target=lambda: results.append(self.pipe.read()))
        thread.start()
        thread.join(0.2)
        self.pipe.write(b"z")
        self.pipe.end()
        thread.join(5)
        self.assertEqual(results, [b"y" * (BodyPipe.HIGH * 2) + b"z"])

    def test_lost(self) -> None:
        """The client gone before the end: the reader's read fails."""
        self.pipe.write(b"abc")
        self.pipe.lost()
        self.assertRaises(OSError, self.pipe.read, 10)

    def test_when_ended_drops_the_rest(self) -> None:
        """when_ended resumes a paused connection, drops data, fires at the end."""
        self.pipe.write(b"x" * BodyPipe.HIGH)
        d = self.pipe.when_ended()
        self.assertEqual(self.events, ["pause", "resume"])
        self.assertNoResult(d)
        self.pipe.write(b"more")
        self.pipe.end()
        self.successResultOf(d)
        self.assertEqual(self.pipe.read(), b"")

    def test_no_seek(self) -> None:
        """seek(0) at the start is allowed (Twisted does it), nothing else."""
        self.assertEqual(self.pipe.seek(0), 0)
        self.assertRaises(OSError, self.pipe.seek, 5)


class _Upload(Resource):
    """Records what the handler saw when it started; answers when told."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render(self, request: Request) -> Any:
        self.requests.append(request)
        if request.method == b"GET":
            return b"got"
        return NOT_DONE_YET


class StreamingRequestTests(SynchronousTestCase):
    """L{StreamingRequest} on a real HTTP channel over a string transport."""

    def setUp(self) -> None:
        self.resource = _Upload()
        site = Site(self.resource)
        site.requestFactory = StreamingRequest
        self.channel = site.buildProtocol(None)
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)
        self.addCleanup(self.channel.connectionLost, None)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def start_upload(self, uri: bytes = b"/v1.50/images/load") -> None:
        self.send(
            b"POST " + uri + b" HTTP/1.1\r\nHost: d\r\n"
            b"Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n"
        )

    def chunk(self, data: bytes) -> None:
        self.send(b"%x\r\n%s\r\n" % (len(data), data))

    def test_handler_starts_before_the_body_ends(self) -> None:
        """The handler runs with the first chunk and reads the body from a pipe."""
        self.start_upload()
        self.chunk(b"first")
        self.assertEqual(len(self.resource.requests), 1)
        request = self.resource.requests[0]
        self.assertEqual(request.args, {})
        self.assertIsInstance(request.content, BodyPipe)
        self.chunk(b"-second")
        assert request.content is not None
        self.assertEqual(request.content.read(12), b"first-second")
        self.send(b"0\r\n\r\n")
        self.assertEqual(request.content.read(), b"")
        self.assertEqual(len(self.resource.requests), 1)
        request.write(b"done")
        request.finish()
        self.assertIn(b"done", self.transport.value())

    def test_large_body_pauses_the_connection(self) -> None:
        """An unread body past the high mark stops reading from the socket."""
        self.start_upload()
        self.chunk(b"x" * BodyPipe.HIGH)
        self.assertEqual(self.transport.producerState, "paused")

    def test_early_answer_then_next_request(self) -> None:
        """
        An answer before the body ended (an error) goes out; the rest of the
        body is dropped and the next request on the connection is served.
        """
        self.start_upload(b"/images/create?fromSrc=-")
        self.chunk(b"x" * BodyPipe.HIGH)
        request = self.resource.requests[0]
        request.setResponseCode(400)
        request.write(b"bad")
        request.finish()
        self.assertIn(b"400", self.transport.value())
        self.assertEqual(self.transport.producerState, "producing")
        self.chunk(b"y" * 1000)
        self.send(b"0\r\n\r\nGET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
        self.assertEqual(len(self.resource.requests), 2)
        self.assertEqual(self.resource.requests[1].path, b"/_ping")
        self.assertTrue(self.transport.value().endswith(b"got"))

    def test_other_requests_are_spooled(self) -> None:
        """A pull's body is Twisted's usual file; the handler runs at its end."""
        self.send(
            b"POST /images/create?fromImage=x HTTP/1.1\r\nHost: d\r\n"
            b"Content-Length: 3\r\n\r\nab"
        )
        self.assertEqual(self.resource.requests, [])
        self.send(b"c")
        request = self.resource.requests[0]
        self.assertNotIsInstance(request.content, BodyPipe)
        assert request.content is not None
        self.assertEqual(request.content.read(), b"abc")

    def test_client_gone(self) -> None:
        """The connection lost mid-body: the handler's read fails."""
        self.start_upload()
        self.chunk(b"abc")
        request = self.resource.requests[0]
        self.channel.connectionLost(None)
        assert request.content is not None
        self.assertRaises(OSError, request.content.read, 10)
