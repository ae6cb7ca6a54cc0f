# -*- test-case-name: tests.api.test_images -*-
"""
The C{/images} endpoints: list, inspect, history, tag, remove, prune,
import, load, save, pull, push, search.

Long operations answer with dockerd's JSON message stream (one object per
line); an error after the stream started is an C{errorDetail} message,
before it a plain error status. C{docker save} streams the archive from a
thread with back-pressure, so a large image never sits in memory.
"""

import base64
import binascii
import json
import re
import threading
from collections import deque
from collections.abc import Callable
from typing import IO, Any, Protocol
from urllib.parse import parse_qs

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.web.server import Request

from dockserve.api.params import query, query_all, query_bool, query_filters, query_int
from dockserve.api.route import Route
from dockserve.api.threadstream import stream_from_thread
from dockserve.errors import DockerError, InvalidParameter

#: A callback taking one message of a progress stream.
ProgressCallback = Any


class ImageBackend(Protocol):
    """What the /images handlers ask of the daemon."""

    def list_images(
        self,
        filters: dict[str, list[str]] | None = None,
        *,
        all_images: bool = False,
        digests: bool = False,
    ) -> list[dict[str, Any]]:
        """Image summaries (C{GET /images/json})."""

    def inspect(self, name: str) -> dict[str, Any]:
        """C{GET /images/{name}/json}."""

    def history(self, name: str) -> list[dict[str, Any]]:
        """C{GET /images/{name}/history}."""

    def tag(self, name: str, repo: str, tag: str | None) -> None:
        """C{POST /images/{name}/tag}."""

    def remove(
        self, name: str, *, force: bool = False, noprune: bool = False
    ) -> "Deferred[list[dict[str, str]]]":
        """C{DELETE /images/{name}}."""

    def prune(
        self, filters: dict[str, list[str]] | None = None
    ) -> "Deferred[dict[str, Any]]":
        """C{POST /images/prune}."""

    def import_image(
        self,
        source: IO[bytes],
        *,
        repo: str | None = None,
        tag: str | None = None,
        message: str = "",
        change: list[str] | tuple[str, ...] = (),
        platform: str | None = None,
    ) -> "Deferred[str]":
        """C{POST /images/create?fromSrc=-}: fires with the image ID."""

    def import_url(
        self,
        url: str,
        *,
        repo: str | None = None,
        tag: str | None = None,
        message: str = "",
        change: list[str] | tuple[str, ...] = (),
        platform: str | None = None,
    ) -> "Deferred[str]":
        """C{POST /images/create?fromSrc=URL}: fires with the image ID."""

    def load(
        self,
        source: IO[bytes],
        *,
        quiet: bool = True,
        platform: dict[str, Any] | None = None,
        progress: ProgressCallback = None,
    ) -> "Deferred[list[str]]":
        """C{POST /images/load}: fires with the report lines."""

    def prepare_save(
        self, names: list[str], platform: dict[str, Any] | None = None
    ) -> Any:
        """Resolve what to save; raises NotFound before the stream starts."""

    def save(self, items: Any, out: IO[bytes]) -> "Deferred[None]":
        """Write the archive of C{items} to C{out} (called from a thread)."""

    def pull(
        self,
        image: str,
        tag: str | None,
        auth: dict[str, Any] | None,
        progress: ProgressCallback,
        platform: str | None = None,
        *,
        all_tags: bool = False,
    ) -> "Deferred[None]":
        """C{POST /images/create?fromImage=}."""

    def push(
        self,
        name: str,
        tag: str | None,
        auth: dict[str, Any] | None,
        progress: ProgressCallback,
    ) -> "Deferred[None]":
        """C{POST /images/{name}/push}."""

    def search(
        self, term: str, limit: int | None = None
    ) -> "Deferred[list[dict[str, Any]]]":
        """C{GET /images/search}."""


def _json_bytes(request: Request, value: Any) -> bytes:
    request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
    return json.dumps(value).encode("utf-8")


def registry_auth(request: Request) -> dict[str, Any] | None:
    """
    The C{X-Registry-Auth} header: base64url JSON credentials, or C{None}.

    @raise InvalidParameter: For a header that is not that.
    """
    values = request.requestHeaders.getRawHeaders(b"X-Registry-Auth")
    if not values or not values[0].strip():
        return None
    raw = values[0].strip()
    try:
        decoded = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
        value = json.loads(decoded) if decoded.strip() else {}
    except (binascii.Error, ValueError):
        raise InvalidParameter("invalid X-Registry-Auth header") from None
    if not isinstance(value, dict):
        raise InvalidParameter("invalid X-Registry-Auth header")
    return value


def query_platform(request: Request) -> dict[str, Any] | None:
    """
    The C{platform} parameter of load and save (API 1.48+): a JSON OCI
    platform (C{{"os": "linux", "architecture": "arm64"}}), or
    C{os/arch[/variant]}; C{None} when absent.

    @raise InvalidParameter: For a value that is neither.
    """
    text = query(request, "platform")
    if not text:
        return None
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict) or not all(
            isinstance(v, str) for k, v in value.items() if k != "os.features"
        ):
            raise InvalidParameter(f"invalid platform: {text}")
        return value
    parts = text.split("/")
    if len(parts) > 3 or not all(parts):
        raise InvalidParameter(f"invalid platform: {text}")
    return dict(zip(("os", "architecture", "variant"), parts, strict=False))


class MessageStream:
    """
    dockerd's JSON message stream on a response: the status line goes out
    with the first message, so an error before it is still a plain status.
    """

    def __init__(self, request: Request) -> None:
        self._request = request
        self.started = False

    def __call__(self, message: dict[str, Any]) -> None:
        """Write one message."""
        if not self.started:
            self.started = True
            self._request.responseHeaders.setRawHeaders(
                b"Content-Type", [b"application/json"]
            )
        if self._request.finished or getattr(self._request, "_disconnected", False):
            return
        self._request.write(json.dumps(message).encode("utf-8") + b"\r\n")  # type: ignore[no-untyped-call]

    def fail(self, error: DockerError) -> None:
        """Report C{error} inside the stream."""
        self({"errorDetail": {"message": error.message}, "error": error.message})


#: The upload paths whose body a handler reads as it arrives: C{/images/load},
#: C{/images/create} and C{/build} (its context), bare or under C{/v<version>}.
_UPLOAD_PATH = re.compile(rb"(?:/v[0-9.]+)?/(?:images/(load|create)|build)\Z")


def streamed_upload(method: bytes, uri: bytes) -> bool:
    """
    Whether the request C{method uri} is an image upload that is handed to
    its handler as its body arrives: C{POST /images/load}, and C{POST
    /images/create?fromSrc=-}.
    """
    if method.upper() != b"POST":
        return False
    path, _, query_string = uri.partition(b"?")
    match = _UPLOAD_PATH.match(path)
    if match is None:
        return False
    if match.group(1) in {b"load", None}:
        return True
    return parse_qs(query_string).get(b"fromSrc", [b""])[-1] == b"-"


class BodyPipe:
    """
    A streamed upload's C{request.content}: the reactor writes the body's
    chunks as they arrive, a worker thread reads them as from a file.

    At most about L{HIGH} bytes wait in it: past that the connection stops
    reading (TCP pushes back on the client) until the reader brings it
    under L{LOW}.

    @ivar HIGH: Pause the connection when this many bytes wait.
    @ivar LOW: Resume it when no more than this many wait.
    """

    HIGH = 4 << 20
    LOW = 1 << 20

    def __init__(
        self,
        pause: Callable[[], None],
        resume: Callable[[], None],
        call_from_thread: Callable[..., None],
    ) -> None:
        self._pause = pause
        self._resume = resume
        self._call_from_thread = call_from_thread
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._read = 0
        self._eof = False
        self._lost = False
        self._paused = False
        self._discarding = False
        self._complete: list[Deferred[None]] = []
        # What a waiting reader needs before it can go on (0: nobody waits),
        # so the reader is woken once per read, not once per chunk.
        self._wanted = 0

    # --- the reactor's side ---------------------------------------------

    def write(self, data: bytes) -> None:
        """A chunk of the body arrived."""
        pause = False
        with self._cond:
            if self._discarding or not data:
                return
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered >= self.HIGH and not self._paused:
                self._paused = pause = True
            if self._wanted and (self._buffered >= self._wanted or pause):
                self._cond.notify_all()
        if pause:
            self._pause()

    def end(self) -> None:
        """The whole body arrived."""
        with self._cond:
            self._eof = True
            self._cond.notify_all()
        waiting, self._complete = self._complete, []
        for d in waiting:
            d.callback(None)

    def lost(self) -> None:
        """The client went away before the body ended: reads fail."""
        with self._cond:
            self._lost = True
            self._cond.notify_all()

    def discard(self) -> None:
        """Nobody reads any more: drop what waits and what comes."""
        resume = False
        with self._cond:
            self._discarding = True
            self._chunks.clear()
            self._buffered = 0
            if self._paused:
                self._paused = False
                resume = True
            self._cond.notify_all()
        if resume:
            self._resume()

    @property
    def ended(self) -> bool:
        """Whether the whole body arrived."""
        return self._eof

    def when_ended(self) -> "Deferred[None]":
        """
        Drop the rest of the body; fire (on the reactor thread) once it has
        all arrived, so a response never overtakes its request.
        """
        self.discard()
        if self._eof or self._lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._complete.append(d)
        return d

    # --- the worker's side --------------------------------------------------

    def read(self, size: int = -1) -> bytes:
        """
        Up to C{size} bytes (all that is left for a negative C{size}):
        fewer only at the end of the body, or when C{size} is more than
        the pipe holds (L{HIGH}).

        @raise OSError: When the client went away.
        """
        if size < 0:
            pieces = []
            while piece := self.read(self.LOW):
                pieces.append(piece)
            return b"".join(pieces)
        enough = min(size, self.HIGH)
        resume = False
        with self._cond:
            while True:
                if self._lost and not self._eof:
                    raise OSError("the client went away before the end of the body")
                if self._eof or enough <= self._buffered:
                    break
                if self._discarding:
                    raise OSError("the upload is no longer read")
                self._wanted = enough
                try:
                    self._cond.wait()
                finally:
                    self._wanted = 0
            want = min(size, self._buffered)
            parts: list[bytes] = []
            taken = 0
            while taken < want:
                chunk = self._chunks.popleft()
                if taken + len(chunk) > want:
                    cut = want - taken
                    self._chunks.appendleft(chunk[cut:])
                    chunk = chunk[:cut]
                parts.append(chunk)
                taken += len(chunk)
            self._buffered -= taken
            self._read += taken
            if self._paused and self._buffered <= self.LOW:
                self._paused = False
                resume = True
        if resume:
            self._call_from_thread(self._resume)
        return b"".join(parts)

    def readable(self) -> bool:
        """A pipe is read."""
        return True

    def seekable(self) -> bool:
        """It cannot seek."""
        return False

    def tell(self) -> int:
        """How many bytes were read."""
        return self._read

    def seek(self, offset: int, whence: int = 0) -> int:
        """Only "stay at the start" (Twisted's own C{seek(0)}) is possible."""
        if (offset, whence) != (0, 0) or self._read:
            raise OSError("a streamed upload cannot seek")
        return 0

    def close(self) -> None:
        """The request is done with it."""
        self.discard()


class StreamingRequest(Request):
    """
    A L{Request} that hands image uploads to their handler as soon as the
    headers are in, the body arriving through a L{BodyPipe} in
    C{request.content}, so a large C{docker load} or C{docker import} is
    read once, by the worker thread, with bounded memory, instead of being
    spooled to a temporary file on the reactor thread first. Every other
    request is Twisted's.

    Its response may end before the body does (an early error): the
    connection then reads and drops the rest before the next request.
    """

    _pipe: BodyPipe | None = None
    _started = False
    _cleanup_waits = False

    def gotLength(self, length: int | None) -> None:
        """The headers are in: an upload gets a pipe for its body."""
        channel = self.channel
        command = getattr(channel, "_command", b"")
        uri = getattr(channel, "_path", b"")
        content_type = (self.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
        if (
            length != 0
            and streamed_upload(command, uri)
            and not content_type.startswith(
                (b"multipart/form-data", b"application/x-www-form-urlencoded")
            )
        ):
            from twisted.internet import reactor  # noqa: PLC0415

            producer = IPushProducer(channel.transport, None)
            self._pipe = BodyPipe(
                getattr(producer, "pauseProducing", _nothing),
                getattr(producer, "resumeProducing", _nothing),
                reactor.callFromThread,  # type: ignore[attr-defined]
            )
            self._line = (command, uri, getattr(channel, "_version", b"HTTP/1.1"))
            self.content = self._pipe
            return
        super().gotLength(length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        """A piece of the body: an upload's handler starts with the first."""
        if self._pipe is None:
            super().handleContentChunk(data)  # type: ignore[no-untyped-call]
            return
        self._pipe.write(data)
        if not self._started:
            self._started = True
            super().requestReceived(*self._line)  # type: ignore[no-untyped-call]

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """The whole body is in (for an upload, its handler may be done)."""
        if self._pipe is None:
            super().requestReceived(command, path, version)  # type: ignore[no-untyped-call]
            return
        self._pipe.end()
        if not self._started:
            self._started = True
            super().requestReceived(command, path, version)  # type: ignore[no-untyped-call]
        elif self._cleanup_waits:
            self._cleanup_waits = False
            super()._cleanup()  # type: ignore[no-untyped-call]

    def _cleanup(self) -> None:
        if self._pipe is not None and not self._pipe.ended:
            # The response is out, the body is not all in: the channel
            # must read past it before it parses the next request.
            self._pipe.discard()
            self._cleanup_waits = True
            return
        super()._cleanup()  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Any) -> None:
        """An upload's reader fails: the rest of the body will not come."""
        if self._pipe is not None:
            self._pipe.lost()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]


def _nothing() -> None:
    pass


def body_ended(request: Request) -> "Deferred[None]":
    """
    Fires once the request's whole body has arrived (at once unless it is
    a streamed upload still coming in); the rest of it is dropped.
    """
    content = request.content
    if isinstance(content, BodyPipe):
        return content.when_ended()
    return succeed(None)


class ImagesAPI:
    """The /images handlers."""

    def __init__(self, backend: ImageBackend, reactor: Any = None) -> None:
        self._backend = backend
        self._reactor = reactor

    def _get_reactor(self) -> Any:
        if self._reactor is None:
            # The reactor that runs the request is the global one; tests that
            # need another pass it in.
            from twisted.internet import reactor  # noqa: PLC0415

            self._reactor = reactor
        return self._reactor

    # --- reading ---------------------------------------------------------

    def list_images(self, request: Request) -> list[dict[str, Any]]:
        """C{GET /images/json}."""
        return self._backend.list_images(
            query_filters(request),
            all_images=query_bool(request, "all"),
            digests=query_bool(request, "digests"),
        )

    def inspect_image(self, request: Request, name: str) -> dict[str, Any]:
        """C{GET /images/{name}/json}."""
        del request
        return self._backend.inspect(name)

    def image_history(self, request: Request, name: str) -> list[dict[str, Any]]:
        """C{GET /images/{name}/history}."""
        del request
        return self._backend.history(name)

    # --- changing --------------------------------------------------------

    def tag_image(self, request: Request, name: str) -> bytes:
        """C{POST /images/{name}/tag}: 201, no body."""
        self._backend.tag(name, query(request, "repo") or "", query(request, "tag"))
        request.setResponseCode(201)
        return b""

    def remove_image(self, request: Request, name: str) -> "Deferred[bytes]":
        """C{DELETE /images/{name}}."""
        d = self._backend.remove(
            name,
            force=query_bool(request, "force"),
            noprune=query_bool(request, "noprune"),
        )
        return d.addCallback(lambda result: _json_bytes(request, result))

    def prune_images(self, request: Request) -> "Deferred[bytes]":
        """C{POST /images/prune}."""
        d = self._backend.prune(query_filters(request))
        return d.addCallback(lambda result: _json_bytes(request, result))

    # --- streams in --------------------------------------------------------

    def create_image(self, request: Request) -> "Deferred[bytes | None]":
        """C{POST /images/create}: import (C{fromSrc=-}) or pull (C{fromImage})."""
        return ensureDeferred(self._create(request))

    async def _create(self, request: Request) -> bytes | None:
        from_src = query(request, "fromSrc")
        from_image = query(request, "fromImage")
        platform = query(request, "platform") or None
        if from_src is not None:
            if from_src != "-":
                image_id = await self._backend.import_url(
                    from_src,
                    repo=query(request, "repo") or None,
                    tag=query(request, "tag") or None,
                    message=query(request, "message") or "",
                    change=query_all(request, "changes"),
                    platform=platform,
                )
                MessageStream(request)({"status": image_id})
                return None
            assert request.content is not None  # noqa: S101 - Twisted always sets it
            request.content.seek(0)
            image_id = await self._backend.import_image(
                request.content,
                repo=query(request, "repo") or None,
                tag=query(request, "tag") or None,
                message=query(request, "message") or "",
                change=query_all(request, "changes"),
                platform=platform,
            )
            await body_ended(request)
            stream = MessageStream(request)
            stream({"status": image_id})
            return None
        if not from_image:
            raise InvalidParameter("fromImage or fromSrc is required")
        auth = registry_auth(request)
        stream = MessageStream(request)
        tag = query(request, "tag")
        try:
            await self._backend.pull(
                from_image,
                tag or None,
                auth,
                stream,
                platform,
                # As dockerd: no tag at all (docker pull -a) is every tag.
                all_tags=tag is None,
            )
        except DockerError as e:
            if not stream.started:
                raise
            stream.fail(e)
        return None

    def load_images(self, request: Request) -> "Deferred[bytes | None]":
        """C{POST /images/load}."""
        return ensureDeferred(self._load(request))

    async def _load(self, request: Request) -> bytes | None:
        assert request.content is not None  # noqa: S101 - Twisted always sets it
        request.content.seek(0)
        quiet = query_bool(request, "quiet", default=True)
        platform = query_platform(request)
        stream = MessageStream(request)
        try:
            lines = await self._backend.load(
                request.content, quiet=quiet, platform=platform, progress=stream
            )
        except DockerError as e:
            # As dockerd: a load's failure is the stream's last message,
            # under a 200.
            await body_ended(request)
            stream.fail(e)
            return None
        await body_ended(request)
        for line in lines:
            stream({"stream": line + "\n"})
        if not lines:
            stream({"stream": ""})
        return None

    # --- streams out -------------------------------------------------------

    def save_image(self, request: Request, name: str) -> "Deferred[bytes | None]":
        """C{GET /images/{name}/get}."""
        return self._save(request, [name])

    def save_images(self, request: Request) -> "Deferred[bytes | None]":
        """C{GET /images/get?names=a&names=b}."""
        return self._save(request, query_all(request, "names"))

    def _save(self, request: Request, names: list[str]) -> "Deferred[bytes | None]":
        if not names:
            raise InvalidParameter("no images to save: give at least one name")
        items = self._backend.prepare_save(names, query_platform(request))
        request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/x-tar"])
        return ensureDeferred(
            stream_from_thread(
                request,
                self._get_reactor(),
                lambda writer: self._backend.save(items, writer),  # type: ignore[arg-type]
            )
        )

    def push_image(self, request: Request, name: str) -> "Deferred[bytes | None]":
        """C{POST /images/{name}/push}."""
        return ensureDeferred(self._push(request, name))

    async def _push(self, request: Request, name: str) -> bytes | None:
        auth = registry_auth(request)
        stream = MessageStream(request)
        try:
            await self._backend.push(name, query(request, "tag") or None, auth, stream)
        except DockerError as e:
            if not stream.started:
                raise
            stream.fail(e)
        return None

    def search_images(self, request: Request) -> "Deferred[bytes]":
        """C{GET /images/search}."""
        term = query(request, "term")
        if not term:
            raise InvalidParameter("term is required")
        d = self._backend.search(term, query_int(request, "limit"))
        return d.addCallback(lambda result: _json_bytes(request, result))


ROUTES: list[Route] = [
    Route("GET", "/images/json", "list_images"),
    Route("POST", "/images/create", "create_image"),
    Route("POST", "/images/load", "load_images"),
    Route("GET", "/images/get", "save_images"),
    Route("GET", "/images/search", "search_images"),
    Route("POST", "/images/prune", "prune_images"),
    Route("GET", "/images/<path:name>/json", "inspect_image"),
    Route("GET", "/images/<path:name>/history", "image_history"),
    Route("GET", "/images/<path:name>/get", "save_image"),
    Route("POST", "/images/<path:name>/tag", "tag_image"),
    Route("POST", "/images/<path:name>/push", "push_image"),
    Route("DELETE", "/images/<path:name>", "remove_image"),
]
