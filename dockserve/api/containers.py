# -*- test-case-name: tests.api.test_containers -*-
"""
The C{/containers} endpoints: create, inspect, list, the life cycle, logs,
attach, and what one can look at inside a container.

Every handler checks its parameters and the container before it answers,
so an error is a plain status with dockerd's message; only then does a
stream (wait, logs, attach, stats) begin.
"""

import contextlib
import json
from collections.abc import Callable
from typing import IO, Any, Protocol

from twisted.internet.defer import Deferred
from twisted.web.server import Request

from dockserve.api import streams
from dockserve.api.commit import CommitBackend
from dockserve.api.params import (
    check_path,
    json_body,
    json_kind,
    json_object,
    query,
    query_bool,
    query_filters,
    query_int,
    query_path,
)
from dockserve.api.route import HIJACKED, Route
from dockserve.api.threadstream import stream_from_thread
from dockserve.errors import DockerError, InvalidParameter

#: C{(stream, data)}: stream 1 is stdout, 2 stderr.
Output = Callable[[int, bytes], None]


class Sink(Protocol):
    """Where a tar stream goes: written from a worker thread."""

    def write(self, data: bytes) -> int:
        """Write all of C{data}; blocks while the client is slow."""


class AttachedStdio(Protocol):
    """A client's attach to a container (what C{attach} returns)."""

    tty: bool
    closed: Deferred[None]

    def write_stdin(self, data: bytes) -> None:
        """The client's bytes."""

    def close_stdin(self) -> None:
        """The client half-closed."""

    def set_stdin_producer(self, producer: streams.PushProducer) -> None:
        """Pause the client's connection while the process's stdin is full."""

    def pause_output(self) -> None:
        """The client reads slowly: hold the output back."""

    def resume_output(self) -> None:
        """The client caught up."""

    def detach(self) -> None:
        """The client went away; the process goes on."""


class ExecHandle(Protocol):
    """A started exec instance (what C{exec_start} fires with)."""

    exited: Deferred[int]

    def write_stdin(self, data: bytes) -> None:
        """The client's bytes."""

    def close_stdin(self) -> None:
        """The client half-closed."""

    def set_stdin_producer(self, producer: streams.PushProducer) -> None:
        """Pause the client's connection while the process's stdin is full."""

    def pause_output(self) -> None:
        """The client reads slowly: hold the output back."""

    def resume_output(self) -> None:
        """The client caught up."""

    def detach(self) -> None:
        """The client went away; the process goes on."""


class LogStream(Protocol):
    """
    A C{docker logs} in progress: paused while the client is behind, so
    that the daemon never holds more than a little of a long log.
    """

    done: Deferred[None]

    #: Called after a read's entries went to C{on_output}: time to write.
    on_flush: Callable[[], None]

    def pauseProducing(self) -> None:
        """Read no more for now."""

    def resumeProducing(self) -> None:
        """Read on."""

    def stopProducing(self) -> None:
        """The connection is gone."""


class ContainerBackend(CommitBackend, Protocol):
    """What the /containers, /exec and /networks handlers ask of the daemon."""

    def create(self, name: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """C{{"Id": ..., "Warnings": [...]}}; the record is on disk."""

    def inspect(self, reference: str, *, size: bool = False) -> dict[str, Any]:
        """C{GET /containers/{id}/json}."""

    def list_containers(
        self,
        *,
        all: bool = False,  # noqa: A002 - the API's own parameter name.
        limit: int | None = None,
        size: bool = False,
        filters: dict[str, list[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """C{GET /containers/json}."""

    def start(self, reference: str) -> Deferred[None]:
        """Start; L{dockserve.errors.NotModified} when running."""

    def stop(
        self, reference: str, signal: str | None = None, timeout: int | None = None
    ) -> Deferred[None]:
        """Stop signal, then SIGKILL after C{timeout} seconds."""

    def restart(
        self, reference: str, signal: str | None = None, timeout: int | None = None
    ) -> Deferred[None]:
        """Stop if running, then start."""

    def kill(self, reference: str, signal: str | None = None) -> Deferred[None]:
        """Send a signal."""

    def wait(self, reference: str, condition: str | None) -> Deferred[dict[str, Any]]:
        """Raises at once for bad input; fires with the wait response body."""

    def remove(
        self, reference: str, *, force: bool = False, volumes: bool = False
    ) -> Deferred[None]:
        """C{DELETE /containers/{id}}."""

    def remove_link(self, reference: str) -> None:
        """C{DELETE /containers/{parent/alias}?link=1}: a legacy link goes."""

    def pause(self, reference: str) -> Deferred[None]:
        """Freeze."""

    def unpause(self, reference: str) -> Deferred[None]:
        """Thaw."""

    def rename(self, reference: str, new_name: str | None) -> None:
        """Rename."""

    def update(self, reference: str, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Resources and restart policy; live on a running container."""

    def prune(self, filters: dict[str, list[str]]) -> Deferred[dict[str, Any]]:
        """Remove stopped containers."""

    def attach(
        self,
        reference: str,
        on_output: Output,
        *,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        stream: bool,
        logs: bool = False,
    ) -> AttachedStdio:
        """Connect to the container's stdio, now or at its next start."""

    def resize(self, reference: str, height: int, width: int) -> None:
        """The container's TTY size."""

    def logs(
        self,
        reference: str,
        on_output: Output,
        *,
        stdout: bool,
        stderr: bool,
        since: float,
        until: float,
        tail: int | None,
        timestamps: bool,
        follow: bool,
    ) -> tuple[bool, "LogStream"]:
        """C{(tty, stream)}: entries go to C{on_output} until C{stream.done}."""

    def top(self, reference: str, ps_args: str | None) -> Deferred[dict[str, Any]]:
        """C{GET /containers/{id}/top}."""

    def stats(self, reference: str) -> Deferred[dict[str, Any]]:
        """One sample of C{GET /containers/{id}/stats}."""

    def changes(self, reference: str) -> Deferred[list[dict[str, Any]]]:
        """C{GET /containers/{id}/changes}."""

    def export(self, reference: str, out: Sink) -> Deferred[None]:
        """Write the tar of the container's filesystem to C{out}."""

    def archive_stat(self, reference: str, path: str) -> Deferred[dict[str, Any]]:
        """The C{X-Docker-Container-Path-Stat} of C{path}."""

    def archive_get(
        self, reference: str, path: str, out: Sink
    ) -> Deferred[dict[str, Any]]:
        """Write the tar of C{path} to C{out}; fires with its stat."""

    def archive_put(
        self,
        reference: str,
        path: str,
        source: IO[bytes],
        *,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Deferred[None]:
        """Extract the tar C{source} into C{path}."""

    def exec_create(self, reference: str, body: dict[str, Any]) -> dict[str, Any]:
        """C{POST /containers/{id}/exec}."""

    def exec_start(self, exec_id: str, on_output: Output | None) -> Deferred[Any]:
        """Run an exec instance; fires with an L{ExecHandle}."""

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        """C{GET /exec/{id}/json}."""

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        """The exec's TTY size."""

    async def connect(
        self, network: str, container: str, config: dict[str, Any] | None
    ) -> None:
        """C{POST /networks/{id}/connect}."""

    async def disconnect(self, network: str, container: str, force: bool) -> None:
        """C{POST /networks/{id}/disconnect}."""


def _json(request: Request, value: Any) -> bytes:
    request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
    return json.dumps(value).encode()


def _no_content(request: Request) -> bytes:
    request.setResponseCode(204)
    return b""


def _timestamp(request: Request, name: str) -> float:
    """C{since}/C{until}: Unix seconds, possibly fractional."""
    value = query(request, name)
    if not value:
        return 0.0
    try:
        return float(value)
    except ValueError:
        raise InvalidParameter(
            f'invalid value for "{name}": failed to parse value as time or '
            f"duration: {value!r}".replace("'", '"')
        ) from None


def _size(request: Request) -> tuple[int, int]:
    height = query_int(request, "h", 0) or 0
    width = query_int(request, "w", 0) or 0
    if height < 0 or width < 0:
        raise InvalidParameter("invalid resize size")
    return height, width


class ContainersAPI:
    """The /containers handlers."""

    def __init__(self, backend: ContainerBackend, reactor: Any = None) -> None:
        self._backend = backend
        self._reactor = reactor

    def _get_reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor  # noqa: PLC0415

            self._reactor = reactor
        return self._reactor

    # --- create, inspect, list -------------------------------------------

    def container_create(self, request: Request) -> bytes:
        """C{POST /containers/create?name=}: 201 with the ID."""
        body = json_body(request)
        if body is None:
            raise InvalidParameter(
                "config cannot be empty in order to create a container"
            )
        if not isinstance(body, dict):
            raise InvalidParameter(
                f"json: cannot unmarshal {json_kind(body)} into Go value of type "
                "container.CreateRequest"
            )
        result = self._backend.create(query(request, "name"), body)
        request.setResponseCode(201)
        return _json(request, result)

    def container_inspect(self, request: Request, name: str) -> dict[str, Any]:
        """C{GET /containers/{id}/json}."""
        return self._backend.inspect(name, size=query_bool(request, "size"))

    def container_list_containers(self, request: Request) -> list[dict[str, Any]]:
        """C{GET /containers/json}."""
        return self._backend.list_containers(
            all=query_bool(request, "all"),
            limit=query_int(request, "limit"),
            size=query_bool(request, "size"),
            filters=query_filters(request),
        )

    # --- life cycle ---------------------------------------------------------

    async def container_start(self, request: Request, name: str) -> bytes:
        """C{POST /containers/{id}/start}: 204 (304 when already running)."""
        if json_body(request) not in (None, {}):
            raise InvalidParameter(
                "starting container with non-empty request body was deprecated "
                "since API v1.22 and removed in v1.24"
            )
        streams.parse_detach_keys(query(request, "detachKeys"))
        await self._backend.start(name)
        return _no_content(request)

    def _stop_args(self, request: Request) -> tuple[str | None, int | None]:
        return query(request, "signal") or None, query_int(request, "t")

    async def container_stop(self, request: Request, name: str) -> bytes:
        """C{POST /containers/{id}/stop?signal=&t=}."""
        signal, timeout = self._stop_args(request)
        await self._backend.stop(name, signal, timeout)
        return _no_content(request)

    async def container_restart(self, request: Request, name: str) -> bytes:
        """C{POST /containers/{id}/restart?signal=&t=}."""
        signal, timeout = self._stop_args(request)
        await self._backend.restart(name, signal, timeout)
        return _no_content(request)

    async def container_kill(self, request: Request, name: str) -> bytes:
        """C{POST /containers/{id}/kill?signal=}."""
        await self._backend.kill(name, query(request, "signal") or None)
        return _no_content(request)

    async def container_pause(self, request: Request, name: str) -> bytes:
        """C{POST /containers/{id}/pause}."""
        await self._backend.pause(name)
        return _no_content(request)

    async def container_unpause(self, request: Request, name: str) -> bytes:
        """C{POST /containers/{id}/unpause}."""
        await self._backend.unpause(name)
        return _no_content(request)

    def container_rename(self, request: Request, name: str) -> bytes:
        """C{POST /containers/{id}/rename?name=}."""
        self._backend.rename(name, query(request, "name"))
        return _no_content(request)

    async def container_update(self, request: Request, name: str) -> bytes:
        """C{POST /containers/{id}/update}."""
        return _json(request, await self._backend.update(name, json_object(request)))

    async def container_remove(self, request: Request, name: str) -> bytes:
        """C{DELETE /containers/{id}?force=&v=&link=}."""
        if query_bool(request, "link"):
            self._backend.remove_link(name)
            return _no_content(request)
        await self._backend.remove(
            name, force=query_bool(request, "force"), volumes=query_bool(request, "v")
        )
        return _no_content(request)

    async def container_prune(self, request: Request) -> bytes:
        """C{POST /containers/prune}."""
        return _json(request, await self._backend.prune(query_filters(request)))

    async def container_wait(self, request: Request, name: str) -> bytes:
        """
        C{POST /containers/{id}/wait?condition=}: the status line and
        headers go out at once (clients wait for them before starting the
        container), the body when the condition is met.
        """
        waiting = self._backend.wait(name, query(request, "condition"))
        request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
        request.write(b"")  # type: ignore[no-untyped-call]
        try:
            result = await waiting
        except DockerError as e:
            result = {"StatusCode": -1, "Error": {"Message": e.message}}
        return json.dumps(result).encode() + b"\n"

    def container_resize(self, request: Request, name: str) -> bytes:
        """C{POST /containers/{id}/resize?h=&w=}."""
        height, width = _size(request)
        self._backend.resize(name, height, width)
        request.setResponseCode(200)
        return b""

    # --- streams ---------------------------------------------------------------

    def container_attach(self, request: Request, name: str) -> object:
        """
        C{POST /containers/{id}/attach}: the hijacked stream of the
        container's stdio.
        """
        keys = streams.parse_detach_keys(query(request, "detachKeys"))
        pending: list[tuple[int, bytes]] = []
        box: list[streams.Hijack] = []

        def on_output(stream: int, data: bytes) -> None:
            if box:
                box[0].write(stream, data)
            else:
                pending.append((stream, data))

        attachment = self._backend.attach(
            name,
            on_output,
            stdin=query_bool(request, "stdin"),
            stdout=query_bool(request, "stdout"),
            stderr=query_bool(request, "stderr"),
            stream=query_bool(request, "stream"),
            logs=query_bool(request, "logs"),
        )
        hijacked = streams.hijack(request, tty=attachment.tty)
        box.append(hijacked)
        for stream, data in pending:
            hijacked.write(stream, data)
        _connect_stdin(hijacked, attachment, keys if attachment.tty else None)
        hijacked.set_output_source(attachment)
        attachment.closed.addBoth(lambda _: hijacked.close())
        hijacked.lost.addCallback(lambda _: attachment.detach())
        return HIJACKED

    async def container_logs(self, request: Request, name: str) -> bytes | None:
        """C{GET /containers/{id}/logs}: frames without a TTY, raw with one."""
        stdout = query_bool(request, "stdout")
        stderr = query_bool(request, "stderr")
        if not (stdout or stderr):
            raise InvalidParameter(
                "Bad parameters: you must choose at least one stream"
            )
        tail_text = query(request, "tail")
        tail: int | None = None
        if tail_text and tail_text != "all":
            try:
                tail = int(tail_text)
            except ValueError:
                tail = None
            if tail is not None and tail < 0:
                tail = None
        box: list[bool] = []
        # One frame per entry, as dockerd sends them (the SDK yields one
        # frame at a time), but one write per read of the log.
        pending: list[bytes] = []

        def on_output(stream: int, data: bytes) -> None:
            pending.append(data if box[0] else streams.frame(stream, data))

        def flush() -> None:
            if pending:
                data = b"".join(pending)
                pending.clear()
                request.write(data)  # type: ignore[no-untyped-call]

        tty, stream = self._backend.logs(
            name,
            on_output,
            stdout=stdout,
            stderr=stderr,
            since=_timestamp(request, "since"),
            until=_timestamp(request, "until"),
            tail=tail,
            timestamps=query_bool(request, "timestamps"),
            follow=query_bool(request, "follow"),
        )
        box.append(tty)
        stream.on_flush = flush
        request.responseHeaders.setRawHeaders(
            b"Content-Type", [streams.content_type(request, tty=tty)]
        )
        request.write(b"")  # type: ignore[no-untyped-call]
        done = stream.done
        # The client going away ends a follow: the reader closes the log.
        request.notifyFinish().addErrback(lambda _: done.cancel())
        request.registerProducer(stream, True)  # type: ignore[no-untyped-call]
        # The client went away, or the log ended: either way, done.
        with contextlib.suppress(Exception):
            await done
        if request.channel is not None:  # else the connection is gone
            flush()
            request.unregisterProducer()  # type: ignore[no-untyped-call]
        return None

    # --- looking inside --------------------------------------------------------

    async def container_top(self, request: Request, name: str) -> bytes:
        """C{GET /containers/{id}/top?ps_args=}."""
        return _json(request, await self._backend.top(name, query(request, "ps_args")))

    async def container_stats(self, request: Request, name: str) -> bytes | None:
        """C{GET /containers/{id}/stats?stream=&one-shot=}."""
        stream = query_bool(request, "stream", default=True)
        first = await self._backend.stats(name)
        from twisted.internet.task import deferLater  # noqa: PLC0415

        if not stream:
            used = first.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage")
            if used and not query_bool(request, "one-shot"):
                # As dockerd: the answer is the second sample, a second after
                # the first, so its precpu_stats give a CPU percentage.
                await deferLater(self._get_reactor(), 1.0, lambda: None)
                first = await self._backend.stats(name)
            return _json(request, first)
        request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
        finished: list[bool] = []
        request.notifyFinish().addBoth(lambda _: finished.append(True))
        sample = first
        while not finished:
            request.write(json.dumps(sample).encode() + b"\n")  # type: ignore[no-untyped-call]
            await deferLater(self._get_reactor(), 1.0, lambda: None)
            if finished:
                break
            try:
                sample = await self._backend.stats(name)
            except DockerError:
                break
        return None

    async def container_changes(self, request: Request, name: str) -> bytes:
        """C{GET /containers/{id}/changes}."""
        return _json(request, await self._backend.changes(name))

    async def container_export(self, request: Request, name: str) -> bytes | None:
        """C{GET /containers/{id}/export}: the tar, streamed from a thread."""
        self._backend.inspect(name)
        request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/x-tar"])
        await stream_from_thread(
            request,
            self._get_reactor(),
            lambda writer: self._backend.export(name, writer),
        )
        return None

    def _archive_path(self, request: Request) -> str:
        path = query_path(request, "path")
        if not path:
            raise InvalidParameter("path is required")
        return path

    async def container_archive_head(self, request: Request, name: str) -> bytes:
        """C{HEAD /containers/{id}/archive?path=}: just the stat header."""
        stat = await self._backend.archive_stat(name, self._archive_path(request))
        _set_stat(request, stat)
        return b""

    async def container_archive_get(self, request: Request, name: str) -> bytes | None:
        """C{GET /containers/{id}/archive?path=}: the tar of the path."""
        path = self._archive_path(request)
        stat = await self._backend.archive_stat(name, path)
        _set_stat(request, stat)
        request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/x-tar"])
        await stream_from_thread(
            request,
            self._get_reactor(),
            lambda writer: self._backend.archive_get(name, path, writer),
        )
        return None

    async def container_archive_put(self, request: Request, name: str) -> bytes:
        """C{PUT /containers/{id}/archive?path=}: extract the body's tar."""
        path = self._archive_path(request)
        content = request.content
        if content is None:
            raise InvalidParameter("request body is required")
        await self._backend.archive_put(
            name,
            path,
            content,
            no_overwrite_dir_non_dir=query_bool(request, "noOverwriteDirNonDir"),
            copy_uid_gid=query_bool(request, "copyUIDGID"),
        )
        return b""

    async def container_copy(self, request: Request, name: str) -> bytes | None:
        """C{POST /containers/{id}/copy} (the seed's): the tar of C{Resource}."""
        body = json_object(request)
        resource = body.get("Resource")
        if not isinstance(resource, str) or not resource:
            raise InvalidParameter("Path cannot be empty")
        check_path(resource)
        await self._backend.archive_stat(name, resource)
        request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/x-tar"])
        await stream_from_thread(
            request,
            self._get_reactor(),
            lambda writer: self._backend.archive_get(name, resource, writer),
        )
        return None


def _set_stat(request: Request, stat: dict[str, Any]) -> None:
    import base64  # noqa: PLC0415

    encoded = base64.b64encode(json.dumps(stat).encode())
    request.responseHeaders.setRawHeaders(b"X-Docker-Container-Path-Stat", [encoded])


def _connect_stdin(hijacked: streams.Hijack, target: Any, keys: bytes | None) -> None:
    """
    The client's bytes to C{target}'s stdin, through the detach-key filter
    when there is a TTY; detaching ends the stream, not the process.
    """

    def detach() -> None:
        target.detach()
        hijacked.close()

    if keys is not None:
        escape = streams.EscapeFilter(keys, target.write_stdin, detach)
        hijacked.on_stdin = escape.feed
    else:
        hijacked.on_stdin = target.write_stdin
    hijacked.on_stdin_closed = target.close_stdin
    # A process that reads its stdin slower than the client sends it holds
    # the client back, instead of the daemon holding the bytes.
    target.set_stdin_producer(hijacked)


def connect_stdin(hijacked: streams.Hijack, target: Any, keys: bytes | None) -> None:
    """L{_connect_stdin}, shared with the exec handlers."""
    _connect_stdin(hijacked, target, keys)


ROUTES: list[Route] = [
    Route("GET", "/containers/json", "container_list_containers"),
    Route("POST", "/containers/create", "container_create"),
    Route("POST", "/containers/prune", "container_prune"),
    Route("GET", "/containers/<name>/json", "container_inspect"),
    Route("GET", "/containers/<name>/top", "container_top"),
    Route("GET", "/containers/<name>/logs", "container_logs"),
    Route("GET", "/containers/<name>/changes", "container_changes"),
    Route("GET", "/containers/<name>/export", "container_export"),
    Route("GET", "/containers/<name>/stats", "container_stats"),
    Route("POST", "/containers/<name>/resize", "container_resize"),
    Route("POST", "/containers/<name>/start", "container_start"),
    Route("POST", "/containers/<name>/stop", "container_stop"),
    Route("POST", "/containers/<name>/restart", "container_restart"),
    Route("POST", "/containers/<name>/kill", "container_kill"),
    Route("POST", "/containers/<name>/update", "container_update"),
    Route("POST", "/containers/<name>/rename", "container_rename"),
    Route("POST", "/containers/<name>/pause", "container_pause"),
    Route("POST", "/containers/<name>/unpause", "container_unpause"),
    Route("POST", "/containers/<name>/attach", "container_attach"),
    Route("POST", "/containers/<name>/wait", "container_wait"),
    Route("POST", "/containers/<name>/copy", "container_copy"),
    Route("HEAD", "/containers/<name>/archive", "container_archive_head"),
    Route("GET", "/containers/<name>/archive", "container_archive_get"),
    Route("PUT", "/containers/<name>/archive", "container_archive_put"),
    # A link's name has a slash (docker rm --link parent/alias).
    Route("DELETE", "/containers/<path:name>", "container_remove"),
]
