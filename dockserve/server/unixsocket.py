# -*- test-case-name: tests.server.test_unixsocket -*-
"""
The daemon's unix socket file: root access to this machine, so handled with care.

Whoever can connect to the socket can run a privileged container, so the
file must never be connectable with a mode wider than C{0660}, nor by a
group other than C{-G}'s, not even for an instant.  L{UNIXSocketEndpoint}
binds at the final path; the socket is C{0600} when it starts listening
(before that, a connection is refused whatever the file's mode), and only
then gets its group and its mode.  A stale file from a crashed run is
removed; a socket another live daemon answers on is left alone.
"""

import contextlib
import errno
import grp
import os
import socket
import stat

from attrs import frozen

from twisted.internet import tcp, unix
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorUNIX,
    IStreamServerEndpoint,
)
from twisted.internet.main import CONNECTION_DONE
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

SOCKET_MODE = 0o660
#: The mode the socket listens with before it is given its group.
PRIVATE_MODE = 0o600
DEFAULT_GROUP = "docker"

_log = Logger()

_DONE = Failure(CONNECTION_DONE)  # type: ignore[no-untyped-call]


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


def sweep(path: str) -> None:
    """
    Remove the empty staging directories (C{.NAME.xxxx}) that earlier
    versions, which bound the socket in one, left beside C{path} when they
    crashed.
    """
    parent = os.path.dirname(path) or "."
    prefix = f".{os.path.basename(path)}."
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(parent, name))


def publish(path: str, group: SocketGroup, mode: int) -> None:
    """
    Give the listening socket at C{path} its group, then its mode: until
    then it is C{0600}, so only we can connect.
    """
    if group.gid is not None and (os.geteuid() == 0 or group.gid in os.getgroups()):
        os.chown(path, -1, group.gid)
    os.chmod(path, mode)


class _UNIXSocketPort(unix.Port):
    """
    A listening unix socket that removes its file (and lock file) as soon as
    it is told to stop, not a reactor turn later when its descriptor
    closes: a daemon that exits at once (another listener failed to bind)
    leaves nothing behind.  A socket file another daemon has put at the
    path meanwhile is not ours, and is left alone.
    """

    _published: tuple[str, int] | None = None
    _released = False

    def published(self, path: str) -> None:
        """Remember which file is ours: the one at C{path} now."""
        self._published = (path, os.lstat(path).st_ino)

    def _release(self) -> None:
        """Remove our socket file, if it is still ours, and the lock file."""
        if self._released:
            return
        self._released = True
        if self._published is not None:
            path, inode = self._published
            with contextlib.suppress(FileNotFoundError):
                if os.lstat(path).st_ino == inode:
                    os.unlink(path)
        if self.lockFile is not None:
            self.lockFile.unlock()  # type: ignore[no-untyped-call]

    def loseConnection(self, connDone: Failure = _DONE) -> Deferred[None] | None:
        """Stop listening: the file goes now, the descriptor next turn."""
        self._release()
        return super().loseConnection(connDone)  # type: ignore[no-untyped-call,no-any-return]

    stopListening = loseConnection

    def connectionLost(self, reason: Failure) -> None:
        """Closed: the files are gone already (Twisted's own unlink is not run)."""
        self._release()
        tcp.Port.connectionLost(self, reason)  # type: ignore[no-untyped-call]


@implementer(IStreamServerEndpoint)
class UNIXSocketEndpoint:
    """
    Listen on a unix socket file at its final path, never wider than
    C{0660}: it listens as C{0600} and only then gets its group and mode.

    Binding at the path itself (not in a private directory, then renamed)
    keeps the address clients see as their peer, and the docker CLI
    shows in its errors, the path they dialled.

    @ivar backlog: The listen queue's length.
    @ivar mode: The socket file's final mode (at most C{0660}).
    @ivar lockfile: Hold C{PATH.lock} (with our pid) while listening, as
        Twisted's strports C{lockfile=1}.
    """

    def __init__(
        self,
        reactor: IReactorUNIX,
        path: str,
        group: SocketGroup,
        backlog: int = 128,
        mode: int = SOCKET_MODE,
        *,
        lockfile: bool = False,
    ) -> None:
        if mode & ~SOCKET_MODE:
            msg = f"socket mode {mode:#o} is wider than {SOCKET_MODE:#o}"
            raise ValueError(msg)
        self._reactor = reactor
        self._path = path
        self._group = group
        self.backlog = backlog
        self.mode = mode
        self.lockfile = lockfile

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Make the socket file and serve C{protocolFactory} on it."""
        if self._group.warning:
            _log.warn("{path}: {reason}", path=self._path, reason=self._group.warning)
        try:
            os.makedirs(os.path.dirname(self._path) or ".", mode=0o755, exist_ok=True)
            remove_stale(self._path)
            sweep(self._path)
            port = self._bind(protocolFactory)
        except OSError as e:
            return fail(e)
        try:
            port.published(self._path)
            publish(self._path, self._group, self.mode)
        except OSError as e:
            port.stopListening()
            return fail(e)
        return succeed(port)

    def _bind(self, factory: IProtocolFactory) -> _UNIXSocketPort:
        """
        Bind and listen at the path as C{0600}: Twisted chmods the socket
        to the mode it is given before it listens, and a unix socket that
        does not listen yet refuses every connection.
        """
        port = _UNIXSocketPort(
            self._path.encode(),
            factory,
            self.backlog,
            PRIVATE_MODE,
            self._reactor,
            self.lockfile,
        )
        try:
            port.startListening()  # type: ignore[no-untyped-call]
        except CannotListenError as e:
            if port.lockFile is not None and port.lockFile.locked:
                port.lockFile.unlock()  # type: ignore[no-untyped-call]
            raise _listen_error(self._path, e) from e
        return port


def _listen_error(path: str, error: CannotListenError) -> OSError:
    """The OS error in C{error}, or why the lock file could not be taken."""
    cause = error.socketError
    if isinstance(cause, OSError):
        return cause
    return SocketInUse(
        errno.EADDRINUSE,
        f"cannot take {path}.lock ({cause}): is another daemon running?",
    )
