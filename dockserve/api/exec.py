# -*- test-case-name: tests.api.test_exec -*-
"""
The exec endpoints: C{POST /containers/{id}/exec} makes an instance,
C{POST /exec/{id}/start} runs it (hijacked like attach, or detached),
C{GET /exec/{id}/json} tells how it ended.
"""

from typing import Any

from twisted.internet.defer import DeferredList
from twisted.web.server import Request

from dockserve.api import streams
from dockserve.api.containers import ContainerBackend, connect_stdin
from dockserve.api.params import json_object, query_int
from dockserve.api.route import HIJACKED, Route
from dockserve.errors import DockerError, InvalidParameter


class ExecAPI:
    """The exec handlers."""

    def __init__(self, backend: ContainerBackend) -> None:
        self._backend = backend

    def exec_create(self, request: Request, name: str) -> dict[str, Any]:
        """C{POST /containers/{id}/exec}: 201 with the instance's ID."""
        body = json_object(request, required=True)
        cmd = body.get("Cmd")
        if cmd is not None and not isinstance(cmd, list | str):
            raise InvalidParameter(
                "json: cannot unmarshal into Go struct field ExecOptions.Cmd "
                "of type []string"
            )
        result = self._backend.exec_create(name, body)
        request.setResponseCode(201)
        return result

    async def exec_start(self, request: Request, exec_id: str) -> object:
        """
        C{POST /exec/{id}/start}: C{{"Detach": true}} answers once the
        process runs; otherwise the connection carries its stdio until it
        ends, and its exit code is then in C{GET /exec/{id}/json}.
        """
        body = json_object(request)
        for key in ("Detach", "Tty"):
            value = body.get(key)
            if value is not None and not isinstance(value, bool):
                raise InvalidParameter(
                    "json: cannot unmarshal into Go struct field "
                    f"ExecStartOptions.{key} of type bool"
                )
        described = self._backend.exec_inspect(exec_id)
        if body.get("Detach"):
            await self._backend.exec_start(exec_id, None)
            return b""
        tty = bool(described["ProcessConfig"]["tty"])
        # As dockerd: the start body's Tty, not the exec's, says whether the
        # output is framed (the SDK reads it by what it sent), and raw
        # output has no stderr.
        raw = bool(body.get("Tty"))
        keys = streams.parse_detach_keys(described.get("DetachKeys") or None)
        pending: list[tuple[int, bytes]] = []
        box: list[streams.Hijack] = []

        def on_output(stream: int, data: bytes) -> None:
            if raw and stream == 2:
                return
            if box:
                box[0].write(stream, data)
            else:
                pending.append((stream, data))

        starting = self._backend.exec_start(exec_id, on_output)
        hijacked = streams.hijack(request, tty=raw)
        box.append(hijacked)
        for stream, data in pending:
            hijacked.write(stream, data)
        try:
            instance = await starting
        except DockerError as e:
            hijacked.write(1, e.message.encode() + b"\r\n")
            hijacked.close()
            return HIJACKED
        connect_stdin(hijacked, instance, keys if tty else None)
        hijacked.set_output_source(instance)
        hijacked.lost.addCallback(lambda _: instance.detach())
        ends = [instance.exited]
        closed = getattr(instance, "closed", None)
        if closed is not None:
            ends.append(closed)
        DeferredList(ends, consumeErrors=True).addCallback(lambda _: hijacked.close())
        return HIJACKED

    def exec_inspect(self, request: Request, exec_id: str) -> dict[str, Any]:
        """C{GET /exec/{id}/json}."""
        del request
        return self._backend.exec_inspect(exec_id)

    def exec_resize(self, request: Request, exec_id: str) -> bytes:
        """C{POST /exec/{id}/resize?h=&w=}."""
        height = query_int(request, "h", 0) or 0
        width = query_int(request, "w", 0) or 0
        self._backend.exec_resize(exec_id, height, width)
        return b""


ROUTES: list[Route] = [
    Route("POST", "/containers/<name>/exec", "exec_create"),
    Route("POST", "/exec/<exec_id>/start", "exec_start"),
    Route("POST", "/exec/<exec_id>/resize", "exec_resize"),
    Route("GET", "/exec/<exec_id>/json", "exec_inspect"),
]
