# -*- test-case-name: tests.api.test_middleware -*-
"""
What every request goes through, whatever its route: the API-version check,
the standard headers, CORS, the checks (L{Check}: the policy) every routed
request passes before its handler, the one mapping of errors to statuses,
and one log line.

moby spreads this over C{makeHttpHandler} and its middlewares (version,
experimental, CORS) plus C{httpstatus.FromError}; here L{Middleware} wraps
the whole Klein resource (so a 404 or an C{OPTIONS} gets the headers and the
log line too) and L{endpoint} wraps each handler (so the handler convention
of L{dockserve.api.route} holds in one place).
"""

import functools
import json
import re
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol, cast

from attrs import define, field

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from dockserve import API_VERSION, MIN_API_VERSION, __version__
from dockserve.api.route import HIJACKED
from dockserve.errors import (
    Conflict,
    DockerError,
    Forbidden,
    InvalidParameter,
    NotFound,
    NotImplementedByDaemon,
    NotModified,
    Unauthorized,
    Unavailable,
)

_log = Logger()

#: What C{GET /version} and the C{Server} header call this daemon's version.
SERVER_VERSION: Final = __version__

#: The C{Server} header: the Go client and some SDKs look for C{Docker/}.
SERVER_HEADER: Final = f"Docker/{SERVER_VERSION} (linux)".encode()

#: C{--api-cors-header}: what a browser may send and do (the seed's lists).
CORS_HEADERS: Final = b"Origin, X-Requested-With, Content-Type, Accept, X-Registry-Auth"
CORS_METHODS: Final = b"HEAD, GET, POST, DELETE, PUT, OPTIONS"

#: The path prefix dockerd's router accepts: C{/v{version:[0-9.]+}}.
_VERSIONED: Final = re.compile(r"^/v([0-9.]+)(/.*)$")


class TooManyRequests(DockerError):
    """
    A caller over its rate or stream limit (a policy's C{limits}): 429.
    dockerd has no such limits, so no kind in L{dockserve.errors} either.
    """


#: Statuses for each kind of L{DockerError}; anything else is a 500.
_STATUS: Final[tuple[tuple[type[DockerError], int], ...]] = (
    (TooManyRequests, 429),
    (InvalidParameter, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (NotModified, 304),
    (NotImplementedByDaemon, 501),
    (Unavailable, 503),
)


def status_for(error: BaseException) -> int:
    """
    The HTTP status for C{error}: the one place a kind of error becomes a
    status (moby's C{httpstatus.FromError}).

    @return: 400, 401, 403, 404, 409, 304, 501 or 503 for those kinds of
        L{DockerError}; 500 for L{dockserve.errors.SystemError_} and for
        anything that is not a L{DockerError} at all.
    """
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


@functools.lru_cache(maxsize=64)
def version_tuple(version: str) -> tuple[int, ...]:
    """
    C{"1.50"} as C{(1, 50)}, compared as Go's C{versions.Compare} does
    (missing or empty parts count as 0).
    """
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def check_version(version: str) -> None:
    """
    Refuse an API version this daemon does not speak.

    @raise InvalidParameter: With dockerd's "too new" or "too old" message.
    """
    wanted = version_tuple(version)
    if wanted > version_tuple(API_VERSION):
        raise InvalidParameter(
            f"client version {version} is too new. "
            f"Maximum supported API version is {API_VERSION}"
        )
    if wanted < version_tuple(MIN_API_VERSION):
        raise InvalidParameter(
            f"client version {version} is too old. "
            f"Minimum supported API version is {MIN_API_VERSION}, "
            "please upgrade your client to a newer version"
        )


@define
class Call:
    """
    A routed request as the checks see it, before its handler runs.

    @ivar request: The request.
    @ivar handler: The route's handler name (the route table's).
    @ivar arguments: The path's arguments (C{name}, C{exec_id}).
    @ivar shows: Set by a check: which objects the response may show (a
        stream such as C{/events} asks L{visible}); C{None}: all.
    @ivar result_filters: Applied in order to what the handler returns
        (a C{dict}, C{list} or C{bytes}) before it is written.
    @ivar on_finish: Called with the status and seconds once the response
        is done, however it ended (C{101} for a hijacked stream).
    """

    request: Request
    handler: str = "-"
    arguments: dict[str, Any] = field(factory=dict)
    shows: Callable[[Mapping[str, Any]], bool] | None = None
    result_filters: list[Callable[[Any], Any]] = field(factory=list)
    on_finish: list[Callable[[int, float], object]] = field(factory=list)


class Check(Protocol):
    """
    What every routed request passes before its handler (the policy's
    front door): it may refuse by raising a L{DockerError}, or shape the
    request and its response through the L{Call}.
    """

    def __call__(self, call: Call) -> None:
        """Look at C{call}; raise to refuse it."""


@define
class _State:
    """What the middleware remembers about one request."""

    version: str
    started: float
    hijacked: bool = False
    route: str = "-"
    checks: Sequence[Check] = ()
    call: Call | None = None


_STATES: "weakref.WeakKeyDictionary[Request, _State]" = weakref.WeakKeyDictionary()


def api_version(request: Request) -> str:
    """
    The API version the client asked for in the path (C{/v1.41/...}), or
    the current one for a bare path.

    Handlers whose response differs by version ask this.
    """
    state = _STATES.get(request)
    if state is not None:
        return state.version
    match = _VERSIONED.match(request.path.decode("utf-8", "replace"))
    return match.group(1) if match else API_VERSION


def visible(request: Request) -> Callable[[Mapping[str, Any]], bool] | None:
    """
    Which objects a response to C{request} may show, as a check decided
    (L{Call.shows}); C{None} when it may show all. A handler that writes
    its own stream (C{/events}) asks this of each object it writes.
    """
    state = _STATES.get(request)
    return state.call.shows if state is not None and state.call is not None else None


def _sized(request: Request, body: bytes) -> bytes:
    """
    C{body}, with its C{Content-Length} when nothing was written before it,
    as dockerd sends it (rather than a chunked response).
    """
    if not request.startedWriting:
        request.responseHeaders.setRawHeaders(
            b"Content-Length", [str(len(body)).encode("ascii")]
        )
    return body


def _json(request: Request, body: object) -> bytes:
    request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
    return _sized(request, json.dumps(body).encode() + b"\n")


def error_body(request: Request, status: int, message: str) -> bytes:
    """
    Set C{status} and answer C{{"message": message}} with a C{Content-Type}
    of exactly C{application/json} (the Go client reads the message only
    then); a 304 has no body.
    """
    request.setResponseCode(status)
    if status == 304:
        request.responseHeaders.removeHeader(b"Content-Type")
        return _sized(request, b"")
    return _json(request, {"message": message})


def _render_failure(request: Request, failure: Failure) -> bytes | None:
    """
    Turn a handler's failure into a response, or, when the response has
    already begun (a stream), log it and end the stream.
    """
    cancelled = failure.check(CancelledError)  # type: ignore[no-untyped-call]
    if cancelled or getattr(request, "_disconnected", False):
        return None
    error = failure.value
    if isinstance(error, DockerError):
        status, message = status_for(error), error.message
        if status >= 500:
            # A failure the daemon meant to report (the runtime refused, a
            # disk is full): one line, as dockerd logs it; tracebacks are
            # for bugs (below).
            _log.error(
                "Handler for {method} {path} returned error: {error_message}",
                method=request.method.decode("ascii", "replace"),
                path=request.path.decode("utf-8", "replace"),
                error_message=message,
            )
    else:
        # Never a traceback to the user: it goes to the log alone.
        _log.failure(
            "Unhandled error in {method} {path}",
            failure,
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
        )
        # Python's words (and the paths they may carry) stay in the log.
        status, message = 500, "internal error (the daemon's log has the details)"
    if request.startedWriting:
        # The status line is gone; all we can do is end the stream.
        return None
    return error_body(request, status, message)


def endpoint(handler: Callable[..., Any], name: str) -> Callable[..., Any]:
    """
    The Klein endpoint for C{handler}: check the path's API version, call
    the handler, render what it returns by the convention of
    L{dockserve.api.route}, and turn any failure into an error response.

    @param name: The route's name in counters and log lines.
    """

    def call(request: Request, version: str | None = None, **kwargs: Any) -> Any:
        state = _STATES.get(request)
        if state is not None:
            state.route = name
        try:
            if version is not None:
                check_version(version)
            if state is not None and state.call is not None:
                state.call.handler = name
                state.call.arguments = kwargs
                for check in state.checks:
                    check(state.call)
            result = handler(request, **kwargs)
        except Exception:
            return _render_failure(request, Failure())  # type: ignore[no-untyped-call]
        if isinstance(result, Deferred):
            deferred: Deferred[Any] = result
        elif hasattr(result, "__await__") and hasattr(result, "send"):
            deferred = ensureDeferred(result)
        else:
            return _render_result(request, result)
        return deferred.addCallbacks(
            lambda r: _render_result(request, r),
            lambda f: _render_failure(request, f),
        )

    call.__name__ = name
    return call


def _render_result(request: Request, result: object) -> bytes | None:
    state = _STATES.get(request)
    if result is HIJACKED:
        if state is not None:
            state.hijacked = True
        return None
    if state is not None and state.call is not None:
        for transform in state.call.result_filters:
            result = transform(result)
    if isinstance(result, dict | list):
        return _json(request, result)
    if isinstance(result, bytes):
        return _sized(request, result)
    if result is None:
        return None
    message = f"handler returned {type(result).__name__}, not a response"
    raise TypeError(message)


def not_found(request: IRequest, failure: Failure) -> bytes:
    """
    Klein's handler for a path no route matches, or a method a path lacks:
    dockerd answers both with 404 C{page not found}.
    """
    del failure
    return error_body(cast("Request", request), 404, "page not found")


@define
class RequestCounters:
    """
    What C{/debug/vars} reports about the traffic: requests served by route
    and status, and the connections open now.
    """

    served: Counter[tuple[str, int]] = field(factory=Counter)
    in_flight: int = 0
    _channels: "weakref.WeakSet[Any]" = field(factory=weakref.WeakSet)
    #: Called with each finished request, its route, status and seconds,
    #: beside its log line (the metrics: C{--metrics-addr}).
    observers: list[Callable[[Request, str, int, float], object]] = field(factory=list)

    def saw_channel(self, channel: object) -> None:
        """Remember C{channel} (an HTTP connection) while it lives."""
        if channel is not None:
            self._channels.add(channel)

    def open_connections(self) -> int:
        """How many connections that have sent a request are still open."""
        count = 0
        for channel in list(self._channels):
            transport = getattr(channel, "transport", None)
            if transport is not None and not getattr(transport, "disconnected", False):
                count += 1
        return count

    def by_route(self) -> dict[str, dict[str, int]]:
        """C{{route: {status: count}}}, for JSON."""
        result: dict[str, dict[str, int]] = {}
        for (route, status), count in sorted(self.served.items()):
            result.setdefault(route, {})[str(status)] = count
        return result


@implementer(IResource)
class Middleware:
    """
    The resource C{make_resource} returns: the standard headers, CORS and
    a log line for every request, then the router.

    @ivar counters: Requests served, for C{/debug/vars}.
    """

    isLeaf = True

    def __init__(
        self,
        inner: IResource,
        *,
        cors_origin: str | None = None,
        now: Callable[[], float] = time.monotonic,
        counters: RequestCounters | None = None,
    ) -> None:
        """
        @param inner: The router (a leaf Klein resource).
        @param cors_origin: C{--api-cors-header}: the origin browsers may
            call from, or C{None} for no CORS headers.
        @param now: A monotonic clock for the logged duration.
        """
        self._inner = inner
        self._cors = cors_origin.encode() if cors_origin else None
        self._now = now
        self.counters = counters if counters is not None else RequestCounters()
        self._checks: list[Check] = []

    def add_check(self, check: Check) -> None:
        """
        Have every routed request pass C{check} before its handler, after
        those added before it (the policy's front door).
        """
        self._checks.append(check)

    def getChildWithDefault(self, name: bytes, request: Request) -> IResource:
        """A leaf: never asked for children."""
        del name, request
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        """A leaf has no children to add."""
        del path, child
        raise NotImplementedError

    def render(self, request: Request) -> bytes | int:
        """Serve C{request} through the router, headers and log line added."""
        path = request.path.decode("utf-8", "replace")
        match = _VERSIONED.match(path)
        state = _State(
            version=match.group(1) if match else API_VERSION, started=self._now()
        )
        if self._checks:
            state.checks = tuple(self._checks)
            state.call = Call(request)
        _STATES[request] = state
        self.counters.saw_channel(request.channel)
        self.counters.in_flight += 1
        self._headers(request, state.version)
        self._check_user_agent(request)
        request.notifyFinish().addBoth(self._finished, request, state)
        if request.method == b"OPTIONS":
            # A browser's CORS preflight, for any path (the seed's rule).
            state.route = "options"
            request.setResponseCode(200)
            return _sized(request, b"")
        result: bytes | int = self._inner.render(request)  # type: ignore[no-untyped-call]
        return result

    def _headers(self, request: Request, version: str) -> None:
        set_header = request.responseHeaders.setRawHeaders
        known = bool(
            version_tuple(MIN_API_VERSION)
            <= version_tuple(version)
            <= version_tuple(API_VERSION)
        )
        set_header(b"Api-Version", [(version if known else API_VERSION).encode()])
        set_header(b"Docker-Experimental", [b"false"])
        set_header(b"Ostype", [b"linux"])
        set_header(b"Server", [SERVER_HEADER])
        if self._cors is not None:
            set_header(b"Access-Control-Allow-Origin", [self._cors])
            set_header(b"Access-Control-Allow-Headers", [CORS_HEADERS])
            set_header(b"Access-Control-Allow-Methods", [CORS_METHODS])

    def _check_user_agent(self, request: Request) -> None:
        agents = request.requestHeaders.getRawHeaders(b"user-agent") or []
        for agent in agents:
            text = agent.decode("utf-8", "replace")
            if not text.startswith("Docker-Client/"):
                continue
            client = text.split("/", 1)[1].split(" ", 1)[0]
            if client != SERVER_VERSION:
                _log.debug(
                    "Warning: client and server don't have the same version"
                    " (client: {client}, server: {server})",
                    client=client,
                    server=SERVER_VERSION,
                )

    def _finished(self, result: object, request: Request, state: _State) -> None:
        """Write the request's one log line, however it ended."""
        self.counters.in_flight -= 1
        status = request.code
        if state.hijacked:
            upgrade = request.requestHeaders.getRawHeaders(b"upgrade") or []
            status = 101 if any(u.lower() == b"tcp" for u in upgrade) else 200
        self.counters.served[(state.route, status)] += 1
        duration = self._now() - state.started
        for observe in self.counters.observers:
            observe(request, state.route, status, duration)
        call, state.call = state.call, None
        if call is not None:
            # The call holds the request, which keys this state in _STATES:
            # it goes now, or the request would outlive itself.
            for hook in call.on_finish:
                try:
                    hook(status, duration)
                except Exception:
                    _log.failure("A request's finish hook failed")
        peer = request.getClientAddress()  # type: ignore[no-untyped-call]
        host = getattr(peer, "host", None)
        port = getattr(peer, "port", None)
        if host is not None:
            peer_text = f"{host}:{port}"
        else:
            name = getattr(peer, "name", None)
            peer_text = name.decode() if isinstance(name, bytes) else str(name or "-")
        _log.info(
            "{method} {path} {status} {bytes} {duration:.6f}s {peer}",
            method=request.method.decode("ascii", "replace"),
            path=request.uri.decode("utf-8", "replace"),
            status=status,
            bytes=request.sentLength,
            duration=duration,
            peer=peer_text or "-",
            route=state.route,
            disconnected=isinstance(result, Failure),
        )


__all__ = [
    "NOT_DONE_YET",
    "Call",
    "Check",
    "Middleware",
    "RequestCounters",
    "TooManyRequests",
    "api_version",
    "check_version",
    "endpoint",
    "error_body",
    "not_found",
    "status_for",
    "visible",
]
