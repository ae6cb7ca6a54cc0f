# -*- test-case-name: tests.test_errors -*-
"""
Docker's kinds of error, with no HTTP in them.

The daemon raises these; L{dockserve.api.middleware} alone turns each kind into
a status code (moby's C{errdefs} and C{httpstatus}). The message is what the
user reads, so it is dockerd's wording wherever a client or a script might
match on it.
"""


class DockerError(Exception):
    """
    A failure the user should see, with its message and no traceback.

    @ivar message: The text of the C{{"message": ...}} body.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(DockerError):
    """A bad value in the request: 400."""


class Forbidden(DockerError):
    """The request is understood but not allowed: 403."""


class NotFound(DockerError):
    """No such object (container, image, exec, route): 404."""


class Conflict(DockerError):
    """The object's state forbids the request (name taken, in use): 409."""


class NotModified(DockerError):
    """Nothing to do (container already started or stopped): 304."""


class Unavailable(DockerError):
    """The daemon or a dependency cannot serve the request now: 503."""


class Unauthorized(DockerError):
    """A registry refused the credentials: 401."""


class NotImplementedByDaemon(DockerError):
    """An endpoint or option this daemon does not support: 501."""


class SystemError_(DockerError):  # noqa: N801 - SystemError is a builtin.
    """An unexpected failure inside the daemon: 500."""
