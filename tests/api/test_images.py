"""Tests for L{dockserve.api.images}: the /images handlers over a real store."""

import base64
import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import maybeDeferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyRequest

from dockserve.api.images import ROUTES, ImagesAPI, registry_auth
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
            (code, json.loads(body)), (404, {"message": "No such image: nope"})
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

    def test_remove_and_prune(self) -> None:
        """DELETE answers Untagged/Deleted; prune its report."""
        image_id = self.load()
        _, body, _ = self.call("DELETE", "/images/busybox")
        self.assertEqual(
            json.loads(body), [{"Untagged": "busybox:latest"}, {"Deleted": image_id}]
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


class _ImmediateReactor:
    """Runs "from a thread" calls at once, on the calling thread."""

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class _Sink:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)


class ResponseWriterTests(SynchronousTestCase):
    """The save stream waits for a slow client and stops for a gone one."""

    def _writer(self) -> tuple[Any, _Sink]:
        from dockserve.api.images import _ResponseWriter  # noqa: PLC0415

        sink = _Sink()
        return _ResponseWriter(sink, _ImmediateReactor()), sink  # type: ignore[arg-type]

    def _in_thread(self, f: Any) -> Any:
        import threading  # noqa: PLC0415

        outcome: list[Any] = []

        def run() -> None:
            try:
                f()
            except Exception as e:
                outcome.append(e)
            else:
                outcome.append(None)

        thread = threading.Thread(target=run)
        thread.start()
        return thread, outcome

    def test_paused_client_holds_the_worker(self) -> None:
        """While paused the worker writes nothing more; resumed, it finishes."""
        writer, sink = self._writer()
        writer.pauseProducing()
        thread, outcome = self._in_thread(lambda: writer.write(b"x" * (3 << 20)))
        thread.join(0.3)
        self.assertTrue(thread.is_alive())
        self.assertEqual(sink.chunks, [])
        writer.resumeProducing()
        thread.join(5)
        self.assertEqual(outcome, [None])
        self.assertEqual(sum(map(len, sink.chunks)), 3 << 20)

    def test_gone_client_stops_the_worker(self) -> None:
        """stopProducing makes the worker's next write fail."""
        writer, _ = self._writer()
        writer.pauseProducing()
        thread, outcome = self._in_thread(lambda: writer.write(b"x" * (2 << 20)))
        writer.stopProducing()
        thread.join(5)
        self.assertIsInstance(outcome[0], OSError)
