# -*- test-case-name: tests.api.test_commit -*-
"""
C{POST /commit}: a container becomes an image (C{docker commit}, the
SDK's C{container.commit()}).

The query names the container and what to record (C{repo}, C{tag},
C{comment}, C{author}, C{pause}, C{changes} repeated); the body, when
there is one, is a container C{Config} merged over the container's. The
answer is dockerd's C{201 {"Id": "sha256:..."}}.
"""

import json
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.web.server import Request

from dockserve.api.params import json_body, json_kind, query, query_all
from dockserve.api.route import Route
from dockserve.errors import InvalidParameter

#: What dockerd's C{BoolValue} reads as false; anything else is true.
_FALSE = frozenset({"", "0", "no", "false", "none"})


class CommitBackend(Protocol):
    """What C{POST /commit} asks of the daemon (the container service)."""

    def commit(
        self,
        reference: str,
        *,
        repo: str | None = None,
        tag: str | None = None,
        author: str = "",
        comment: str = "",
        pause: bool = True,
        changes: list[str] | tuple[str, ...] = (),
        config: dict[str, Any] | None = None,
    ) -> Deferred[str]:
        """The new image's ID, once it is on disk."""


def _pause(request: Request) -> bool:
    """
    C{pause} as dockerd's C{BoolValueOrDefault(r, "pause", true)}: true
    when absent; when given, false only for C{0}, C{no}, C{false}, C{none}
    or nothing (any case), true for anything else.
    """
    if b"pause" not in request.args:
        return True
    return (query(request, "pause") or "").strip().lower() not in _FALSE


def _check_json(request: Request, body: bytes) -> None:
    """
    A body must say it is JSON (dockerd's C{CheckForJSON}).

    @raise InvalidParameter: dockerd's C{unsupported Content-Type header}.
    """
    header = request.getHeader("content-type") or ""
    if not header and not body:
        return
    media = header.split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise InvalidParameter(
            f"unsupported Content-Type header ({header}): must be 'application/json'"
        )


class CommitAPI:
    """The C{/commit} handler."""

    def __init__(self, backend: CommitBackend) -> None:
        self._backend = backend

    async def image_commit(self, request: Request) -> bytes:
        """C{POST /commit?container=}: 201 with the new image's ID."""
        content = request.content
        raw = b""
        if content is not None:
            raw = content.read()
            content.seek(0)
        _check_json(request, raw.strip())
        body = json_body(request)
        if body is not None and not isinstance(body, dict):
            raise InvalidParameter(
                f"json: cannot unmarshal {json_kind(body)} into Go value of type "
                "container.CreateRequest"
            )
        image_id = await self._backend.commit(
            query(request, "container") or "",
            repo=query(request, "repo"),
            tag=query(request, "tag"),
            author=query(request, "author") or "",
            comment=query(request, "comment") or "",
            pause=_pause(request),
            changes=query_all(request, "changes"),
            config=body,
        )
        request.setResponseCode(201)
        request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
        return json.dumps({"Id": image_id}).encode()


ROUTES: list[Route] = [
    Route("POST", "/commit", "image_commit"),
]
