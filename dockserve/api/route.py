# -*- test-case-name: tests.api.test_router -*-
"""
One row of the route table, and the convention every handler follows.

A handler is a method of an area object (C{SystemAPI}, C{ImagesAPI}, ...)
called as C{handler(request, **path_arguments)}. It may be C{async def} or
return a L{Deferred}. What it returns becomes the response:

  - a C{dict} or C{list}: JSON, C{Content-Type: application/json};
  - C{bytes}: the body as it is (the handler sets C{Content-Type});
  - C{None}: no body beyond what the handler wrote with C{request.write}
    (streams: the handler writes, then returns when the stream ends).

The status is 200 unless the handler calls C{request.setResponseCode}
(201 for create, 204 for start/stop/delete, as the spec says). A handler
signals failure only by raising a L{dockserve.errors.DockerError}; the
middleware turns it into the status and C{{"message": ...}}. Any other
exception is a 500 whose traceback goes to the log only.

A handler that hijacks the connection (attach, exec start) returns
L{HIJACKED} after taking the transport over, so the middleware writes
nothing more.
"""

from typing import Final

from attrs import frozen


@frozen
class Route:
    """
    A method and path served by an area object's handler.

    @ivar method: The HTTP method, upper case.
    @ivar path: A werkzeug rule without the version prefix, for example
        C{/images/<path:name>/json}; the router serves it bare and under
        C{/v<version>}.
    @ivar handler: The name of the handler method on the area object.
    """

    method: str
    path: str
    handler: str


class _Hijacked:
    """The type of L{HIJACKED}."""

    def __repr__(self) -> str:
        return "HIJACKED"


#: Returned by a handler that has taken the connection over.
HIJACKED: Final = _Hijacked()
