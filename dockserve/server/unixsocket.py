# -*- test-case-name: tests.server.test_unixsocket -*-
"""
The daemon's unix socket file: root access to this machine, so handled with care.

Whoever can connect to the socket can run a privileged container, so the
file must never be connectable with a mode wider than C{0660}, not even for
the instant between C{bind} and C{chmod}.  L{UNIXSocketEndpoint} binds in a
fresh C{0700} directory beside the final path, sets mode and group there,
and only then renames the socket into place.  A stale file from a crashed
run is removed; a socket another live daemon answers on is left alone.
"""

import contextlib
import errno
import grp
import os
import socket
import stat
import tempfile
from typing import TYPE_CHECKING, Any, cast

from attrs import frozen

from twisted.internet.address import UNIXAddress
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorSocket,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.internet.protocol import ServerFactory

SOCKET_MODE = 0o660
DEFAULT_GROUP = "docker"

_log = Logger()


class SocketInUse(OSError):
    """Another live process answers on the socket path; we do not steal it."""


@frozen
class SocketGroup:
    """
    The group that owns the socket file.

    @ivar gid: The group id to chown to, or C{None} to leave the file's
        group as created (our own).
    @ivar warning: Why C{gid} is not the group that was asked for, if it is
        not; logged when the socket is made.
    """

    gid: int | None
    warning: str | None = None


def resolve_group(name: str) -> SocketGroup:
    """
    Find the group for C{-G}.

    As dockerd does, a missing default group (C{docker}) is only a warning
    and the socket keeps root's group; a missing group the user named is an
    error.

    @param name: A group name or number.
    @return: The group to use.
    @raise KeyError: If C{name} is not the default and no such group exists.
    """
    if name.isdigit():
        return SocketGroup(int(name))
    try:
        return SocketGroup(grp.getgrnam(name).gr_gid)
    except KeyError:
        if name != DEFAULT_GROUP:
            raise
        return SocketGroup(
            None,
            f"group {name!r} does not exist: the socket keeps group"
            f" {_group_name(os.getgid())!r}; create group {name!r} to let its"
            " members use the daemon",
        )


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def remove_stale(path: str) -> None:
    """
    Make way for a new socket at C{path}.

    @raise SocketInUse: If a live process accepts connections there.
    @raise OSError: If C{path} exists but is not a socket (we remove only
        what we could have left behind).
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(
            errno.EEXIST, f"{path} exists and is not a socket; not removing it"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        pass
    except OSError as e:
        if e.errno not in {errno.ECONNREFUSED, errno.ENOENT}:
            # Busy backlog (EAGAIN) or a timeout: somebody is there.
            raise SocketInUse(
                errno.EADDRINUSE,
                f"{path} is in use by another process ({e.strerror});"
                " is another daemon running?",
            ) from e
    else:
        raise SocketInUse(
            errno.EADDRINUSE,
            f"{path} is in use by another live daemon; stop it first or choose"
            " another -H unix:// path",
        )
    finally:
        probe.close()
    _log.info("Removing stale socket {path}", path=path)
    os.unlink(path)


@frozen
class BoundSocket:
    """
    A listening socket made by L{bind}.

    @ivar socket: The listening socket.
    @ivar staged: Where it was bound, inside C{private}; the reactor's port
        knows it by this name (C{getsockname}) and unlinks that name when
        it stops, so L{_UNIXSocketPort} moves the file back there first.
    @ivar private: The empty C{0700} directory it was bound in.
    """

    socket: socket.socket
    staged: str
    private: str


def sweep(path: str) -> None:
    """Remove empty staging directories a crashed run left beside C{path}."""
    parent = os.path.dirname(path) or "."
    prefix = _private_prefix(path)
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(parent, name))


def _private_prefix(path: str) -> str:
    return f".{os.path.basename(path)}."


def bind(path: str, backlog: int = 128) -> BoundSocket:
    """
    A listening unix socket, bound inside a private C{0700} directory beside
    C{path}, where nobody else can reach it yet.

    @raise SocketInUse: If another daemon is listening at C{path}.
    @raise OSError: If the socket cannot be made.
    """
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, mode=0o755, exist_ok=True)
    remove_stale(path)
    sweep(path)
    private = tempfile.mkdtemp(prefix=_private_prefix(path), dir=parent)
    staged = os.path.join(private, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(staged)
        sock.listen(backlog)
        # The reactor adopts only non-blocking sockets.
        sock.setblocking(False)
    except BaseException:
        sock.close()
        if os.path.lexists(staged):
            os.unlink(staged)
        os.rmdir(private)
        raise
    return BoundSocket(sock, staged, private)


def publish(bound: BoundSocket, path: str, group: SocketGroup) -> None:
    """
    Give the socket its final mode and group, then move it to C{path}.

    Only after this is it reachable, and only with mode C{0660}.
    """
    os.chmod(bound.staged, SOCKET_MODE)
    if group.gid is not None and (os.geteuid() == 0 or group.gid in os.getgroups()):
        os.chown(bound.staged, -1, group.gid)
    os.rename(bound.staged, path)


@implementer(IListeningPort)
class _UNIXSocketPort:
    """A listening port that removes its socket file when it stops."""

    def __init__(self, port: IListeningPort, path: str, bound: BoundSocket) -> None:
        self._port = port
        self._path = path
        self._bound = bound
        self._inode = os.lstat(path).st_ino

    def startListening(self) -> None:
        """The adopted port listens already; pass the call on."""
        self._port.startListening()

    def stopListening(self) -> Deferred[None] | None:
        """Stop, removing the socket file only if it is still ours."""
        staged = self._bound.staged
        try:
            ours = os.lstat(self._path).st_ino == self._inode
        except FileNotFoundError:
            ours = False
        if ours:
            # Back to the name the reactor's port unlinks when it closes.
            os.rename(self._path, staged)
        else:
            # A successor replaced the file: leave it, give the port
            # something to unlink.
            with open(staged, "w"):
                pass
        stopped: Deferred[object] = maybeDeferred(self._port.stopListening)
        stopped.addBoth(self._cleanup)
        return stopped.addCallback(lambda _: None)

    def _cleanup(self, result: object) -> object:
        try:
            if os.path.lexists(self._bound.staged):
                os.unlink(self._bound.staged)
            os.rmdir(self._bound.private)
        except OSError as e:
            _log.warn(
                "Cannot clean up {path}: {error}", path=self._bound.private, error=e
            )
        return result

    def getHost(self) -> UNIXAddress:
        """The socket file's path."""
        return UNIXAddress(self._path)


@implementer(IStreamServerEndpoint)
class UNIXSocketEndpoint:
    """
    Listen on a unix socket file made by L{bind} and L{publish}, served by
    the reactor through C{adoptStreamPort}.
    """

    def __init__(
        self,
        reactor: IReactorSocket,
        path: str,
        group: SocketGroup,
        backlog: int = 128,
    ) -> None:
        self._reactor = reactor
        self._path = path
        self._group = group
        self._backlog = backlog

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Bind the socket file and serve C{protocolFactory} on it."""
        if self._group.warning:
            _log.warn("{path}: {reason}", path=self._path, reason=self._group.warning)
        try:
            bound = bind(self._path, self._backlog)
        except OSError as e:
            return fail(e)
        try:
            # The reactor's port chmods its socket to 0666, but the socket
            # is still in the private directory: publish() narrows it first.
            port = self._reactor.adoptStreamPort(
                bound.socket.fileno(),
                socket.AF_UNIX,
                cast("ServerFactory[Any]", protocolFactory),
            )
            publish(bound, self._path, self._group)
        except BaseException as e:
            for name in (bound.staged, self._path):
                if os.path.lexists(name):
                    os.unlink(name)
            os.rmdir(bound.private)
            return fail(e)
        finally:
            # adoptStreamPort works on a duplicate of the descriptor.
            bound.socket.close()
        return succeed(_UNIXSocketPort(port, self._path, bound))
