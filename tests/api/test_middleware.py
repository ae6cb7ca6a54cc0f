# -*- test-case-name: tests.api.test_middleware -*-
"""Tests for L{dockserve.api.middleware}: what every response shares."""

import json
from collections.abc import Callable
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound

from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import IResource
from twisted.web.server import Request

from dockserve import errors
from dockserve.api.middleware import (
    Middleware,
    api_version,
    endpoint,
    not_found,
    status_for,
)
from dockserve.api.route import HIJACKED
from tests.api.test_router import fetch, system_resource


def wrap(
    handler: Callable[..., Any],
    *,
    cors_origin: str | None = None,
    now: Callable[[], float] | None = None,
) -> Middleware:
    """The middleware around one handler served at C{/h}, bare and versioned."""
    app = Klein()
    app.route("/h", methods=["GET", "POST", "DELETE"], endpoint="h")(
        endpoint(handler, "h")
    )
    app.route("/v<version>/h", methods=["GET", "POST", "DELETE"], endpoint="hv")(
        endpoint(handler, "h")
    )
    app.handle_errors(NotFound, MethodNotAllowed)(not_found)
    if now is None:
        return Middleware(app.resource(), cors_origin=cors_origin)
    return Middleware(app.resource(), cors_origin=cors_origin, now=now)


def raising(error: BaseException) -> Callable[[Request], Any]:
    """A handler that raises C{error}."""

    def handler(request: Request) -> Any:
        del request
        raise error

    return handler


class StatusTests(SynchronousTestCase):
    """The one mapping from error kinds to statuses."""

    def test_kinds(self) -> None:
        """Each kind of L{errors.DockerError} has dockerd's status."""
        cases = [
            (errors.InvalidParameter, 400),
            (errors.Unauthorized, 401),
            (errors.Forbidden, 403),
            (errors.NotFound, 404),
            (errors.Conflict, 409),
            (errors.NotModified, 304),
            (errors.NotImplementedByDaemon, 501),
            (errors.Unavailable, 503),
            (errors.SystemError_, 500),
            (errors.DockerError, 500),
        ]
        self.assertEqual([(k, status_for(k("x"))) for k, _ in cases], cases)

    def test_other(self) -> None:
        """An exception that is no Docker error is a 500."""
        self.assertEqual(status_for(KeyError("x")), 500)


class ErrorResponseTests(SynchronousTestCase):
    """A handler's failure becomes the status and C{{"message": ...}}."""

    def test_docker_error(self) -> None:
        """A raised L{errors.Conflict} is a 409 JSON error."""
        resource = wrap(raising(errors.Conflict("name is taken")))
        code, headers, body = fetch(self, resource, "GET", "/h")
        self.assertEqual(code, 409)
        self.assertEqual(headers[b"Content-Type"], [b"application/json"])
        self.assertEqual(json.loads(body), {"message": "name is taken"})

    def test_deferred_failure(self) -> None:
        """A Deferred that fails with a Docker error is the same."""
        resource = wrap(lambda _: fail(errors.NotFound("No such image: x")))
        code, _, body = fetch(self, resource, "GET", "/h")
        self.assertEqual(
            (code, json.loads(body)), (404, {"message": "No such image: x"})
        )

    def test_async_handler(self) -> None:
        """An C{async def} handler's result and errors are rendered."""

        async def handler(request: Request) -> dict[str, int]:
            del request
            return {"n": await succeed(1)}

        code, _, body = fetch(self, wrap(handler), "GET", "/h")
        self.assertEqual((code, json.loads(body)), (200, {"n": 1}))

    def test_not_modified(self) -> None:
        """A 304 has no body."""
        code, headers, body = fetch(
            self, wrap(raising(errors.NotModified("already started"))), "POST", "/h"
        )
        self.assertEqual((code, body), (304, b""))
        self.assertNotIn(b"Content-Type", headers)

    def test_unexpected(self) -> None:
        """
        Any other exception is a 500 with a message; the traceback and
        Python's text go to the log, never to the client.
        """
        with capturedLogs() as events:
            code, headers, body = fetch(
                self, wrap(raising(ZeroDivisionError("boom"))), "GET", "/h"
            )
        self.assertEqual(code, 500)
        self.assertEqual(headers[b"Content-Type"], [b"application/json"])
        message = json.loads(body)["message"]
        self.assertEqual(message, "internal error (the daemon's log has the details)")
        failures = [e for e in events if e.get("log_failure") is not None]
        self.assertEqual(len(failures), 1)
        self.assertIsInstance(failures[0]["log_failure"].value, ZeroDivisionError)
        self.flushLoggedErrors(ZeroDivisionError)

    def test_reported_server_error(self) -> None:
        """
        A 500 the daemon meant to report (a L{SystemError_}: the runtime
        refused) is logged as one line, as dockerd logs it, no traceback.
        """
        with capturedLogs() as events:
            code, _, body = fetch(
                self, wrap(raising(errors.SystemError_("runc said no"))), "POST", "/h"
            )
        self.assertEqual((code, json.loads(body)), (500, {"message": "runc said no"}))
        self.assertFalse([e for e in events if e.get("log_failure") is not None])
        lines = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.error]
        self.assertEqual(lines, ["Handler for POST /h returned error: runc said no"])

    def test_error_after_stream_began(self) -> None:
        """
        A stream that fails after writing keeps its status and just ends:
        the client has the beginning, the log has the error.
        """

        def handler(request: Request) -> Deferred[None]:
            request.write(b"partial")
            return fail(RuntimeError("mid-stream"))

        with capturedLogs():
            code, _, body = fetch(self, wrap(handler), "GET", "/h")
        self.assertEqual((code, body), (200, b"partial"))
        self.flushLoggedErrors(RuntimeError)

    def test_bad_return(self) -> None:
        """A handler returning something the convention lacks is a 500."""
        with capturedLogs():
            code, _, _ = fetch(self, wrap(lambda _: 42), "GET", "/h")
        self.assertEqual(code, 500)
        self.flushLoggedErrors(TypeError)


class HeaderTests(SynchronousTestCase):
    """The standard headers, on every response."""

    def assert_standard(
        self, headers: dict[bytes, list[bytes]], version: bytes
    ) -> None:
        self.assertEqual(headers[b"Api-Version"], [version])
        self.assertEqual(headers[b"Docker-Experimental"], [b"false"])
        self.assertEqual(headers[b"Ostype"], [b"linux"])
        self.assertEqual(headers[b"Server"], [b"Docker/0.1.0 (linux)"])

    def test_success(self) -> None:
        """A 200 has them, C{Api-Version} the current version."""
        _, headers, _ = fetch(self, wrap(lambda _: {}), "GET", "/h")
        self.assert_standard(headers, b"1.50")

    def test_requested_version(self) -> None:
        """Under C{/v1.41}, C{Api-Version} says 1.41 and handlers see it."""
        seen: list[str] = []

        def handler(request: Request) -> dict[str, str]:
            seen.append(api_version(request))
            return {}

        _, headers, _ = fetch(self, wrap(handler), "GET", "/v1.41/h")
        self.assert_standard(headers, b"1.41")
        self.assertEqual(seen, ["1.41"])

    def test_bare_version(self) -> None:
        """A bare path is the current version, to handlers too."""
        seen: list[str] = []
        fetch(
            self,
            wrap(lambda request: seen.append(api_version(request)) or {}),
            "GET",
            "/h",
        )
        self.assertEqual(seen, ["1.50"])

    def test_errors_and_404(self) -> None:
        """Errors and unknown paths carry them too."""
        resource = wrap(raising(errors.InvalidParameter("bad")))
        self.assert_standard(fetch(self, resource, "GET", "/h")[1], b"1.50")
        self.assert_standard(fetch(self, resource, "GET", "/nope")[1], b"1.50")

    def test_content_length(self) -> None:
        """A whole body goes with its C{Content-Length}, not chunked."""
        stub = StubTreq(wrap(lambda _: b"abc"))
        response = self.successResultOf(stub.get("http://localhost/h"))
        self.assertEqual(response.length, 3)


class CORSTests(SynchronousTestCase):
    """C{--api-cors-header}."""

    def test_headers(self) -> None:
        """Every response names the origin, headers and methods allowed."""
        resource = wrap(lambda _: {}, cors_origin="https://ui.example")
        for method, path in (("GET", "/h"), ("GET", "/nope")):
            _, headers, _ = fetch(self, resource, method, path)
            self.assertEqual(
                headers[b"Access-Control-Allow-Origin"], [b"https://ui.example"]
            )
            self.assertIn(
                b"X-Registry-Auth", headers[b"Access-Control-Allow-Headers"][0]
            )
            self.assertIn(b"DELETE", headers[b"Access-Control-Allow-Methods"][0])

    def test_preflight(self) -> None:
        """
        A browser's preflight for a DELETE, or a POST with a JSON body, is
        a 200 that allows it; the handler is not called.
        """
        called: list[bool] = []
        resource = wrap(
            lambda _: called.append(True) or {}, cors_origin="https://ui.example"
        )
        for method, wanted in (("DELETE", b"DELETE"), ("POST", b"POST")):
            code, headers, body = fetch(
                self,
                resource,
                "OPTIONS",
                "/v1.50/h",
                headers={
                    "Origin": "https://ui.example",
                    "Access-Control-Request-Method": method,
                    "Access-Control-Request-Headers": "content-type",
                },
            )
            self.assertEqual((code, body), (200, b""))
            self.assertIn(wanted, headers[b"Access-Control-Allow-Methods"][0])
            self.assertIn(b"Content-Type", headers[b"Access-Control-Allow-Headers"][0])
        self.assertEqual(called, [])

    def test_off(self) -> None:
        """Without the option there are no CORS headers, but OPTIONS is 200."""
        code, headers, _ = fetch(self, wrap(lambda _: {}), "OPTIONS", "/any/path")
        self.assertEqual(code, 200)
        self.assertNotIn(b"Access-Control-Allow-Origin", headers)


class LogTests(SynchronousTestCase):
    """One structured log line per request."""

    def request_lines(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in events if "duration" in e and "peer" in e]

    def test_fields(self) -> None:
        """Method, path, status, bytes, duration and peer are fields."""
        clock = iter([10.0, 10.25])
        resource = wrap(lambda _: b"12345", now=lambda: next(clock))
        with capturedLogs() as events:
            fetch(self, resource, "GET", "/v1.50/h?x=1")
        [line] = self.request_lines(events)
        self.assertEqual(
            {k: line[k] for k in ("method", "path", "status", "bytes", "duration")},
            {
                "method": "GET",
                "path": "/v1.50/h?x=1",
                "status": 200,
                "bytes": 5,
                "duration": 0.25,
            },
        )
        self.assertEqual(line["log_level"], LogLevel.info)
        self.assertIsInstance(line["peer"], str)

    def test_once_for_errors_and_404(self) -> None:
        """An error and a 404 are logged once each, with their status."""
        resource = wrap(raising(errors.NotFound("gone")))
        with capturedLogs() as events:
            fetch(self, resource, "GET", "/h")
            fetch(self, resource, "GET", "/nope")
        self.assertEqual([e["status"] for e in self.request_lines(events)], [404, 404])

    def test_hijacked(self) -> None:
        """
        A hijacked request (attach) is logged once, when its connection
        ends, with the 101 it answered.
        """
        requests: list[Request] = []

        def handler(request: Request) -> object:
            requests.append(request)
            request.write = lambda _: None  # type: ignore[method-assign]
            request.finish = lambda: None  # type: ignore[method-assign]
            return HIJACKED

        resource = wrap(handler)
        with capturedLogs() as events:
            stub_d = fetch_pending(resource, "/h", {"Upgrade": "tcp"})
            self.assertEqual(self.request_lines(events), [])
            requests[0].connectionLost(Failure(ConnectionDone()))
        [line] = self.request_lines(events)
        self.assertEqual(line["status"], 101)
        del stub_d

    def test_user_agent(self) -> None:
        """A different C{Docker-Client} version is a debug line."""
        with capturedLogs() as events:
            fetch(
                self,
                wrap(lambda _: {}),
                "GET",
                "/h",
                headers={"User-Agent": "Docker-Client/28.2.2 (linux)"},
            )
            fetch(
                self,
                wrap(lambda _: {}),
                "GET",
                "/h",
                headers={"User-Agent": "Docker-Client/0.1.0 (linux)"},
            )
        debug = [e for e in events if e.get("log_level") == LogLevel.debug]
        self.assertEqual([e["client"] for e in debug], ["28.2.2"])


def fetch_pending(resource: IResource, path: str, headers: dict[str, str]) -> object:
    """Start a request that will not finish (a hijack), returning its Deferred."""
    return StubTreq(resource).get("http://localhost" + path, headers=headers)


class RouterMiddlewareTests(SynchronousTestCase):
    """The middleware is in place for the real route table."""

    def test_ping_logged(self) -> None:
        """A ping through L{make_resource} is logged as route C{ping}."""
        with capturedLogs() as events:
            code, _, _ = fetch(self, system_resource(), "HEAD", "/_ping")
        self.assertEqual(code, 200)
        self.assertEqual([e["route"] for e in events if "route" in e], ["ping"])
