# -*- test-case-name: tests.server.test_activation -*-
"""
systemd's side of start-up: sockets it passed us (C{fd://}) and C{sd_notify}.

With socket activation systemd binds the sockets and starts us with
C{LISTEN_FDS}/C{LISTEN_PID}; with C{Type=notify} it waits for C{READY=1} on
C{$NOTIFY_SOCKET}.  Both are read from an C{environ} argument so tests need
not touch the real environment.
"""

import contextlib
import os
import socket
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorSocket,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from zope.interface import implementer

from dockserve.server.limits import ConnectionLimit, limited
from dockserve.server.tls import tls_factory

if TYPE_CHECKING:
    from twisted.internet.protocol import ServerFactory

#: The first descriptor systemd passes (after stdin, stdout, stderr).
SD_LISTEN_FDS_START = 3

_log = Logger()

#: Socket families that speak TLS under C{--tls}; unix sockets never do.
_NETWORK_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class NoActivatedSockets(ValueError):
    """C{fd://} was asked for but systemd passed no (matching) sockets."""


def take_listen_fds(environ: MutableMapping[str, str], pid: int) -> list[int]:
    """
    The descriptors systemd passed this process, removing the variables.

    The variables are deleted so that containers and other children we
    start do not believe the sockets are theirs (C{sd_listen_fds(1)}).

    @param environ: The process environment (or a test's dict).
    @param pid: Our process id; C{LISTEN_PID} must name it.
    @return: The descriptors, from 3 upwards; empty when none were passed.
    """
    listen_pid = environ.pop("LISTEN_PID", None)
    listen_fds = environ.pop("LISTEN_FDS", None)
    environ.pop("LISTEN_FDNAMES", None)
    if listen_pid is None or listen_fds is None:
        return []
    try:
        if int(listen_pid) != pid:
            return []
        count = int(listen_fds)
    except ValueError:
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + max(count, 0)))


def select(fds: list[int], wanted: int | None) -> list[int]:
    """
    The descriptors C{fd://} (C{wanted} is C{None}) or C{fd://N} serves.

    @raise NoActivatedSockets: With a message naming systemd when none were
        passed, or when C{N} is not among them.
    """
    if not fds:
        raise NoActivatedSockets(
            "no sockets found via socket activation: make sure the service"
            " was started by systemd (a .socket unit) or systemd-socket-activate"
        )
    if wanted is None:
        return fds
    if wanted not in fds:
        raise NoActivatedSockets(
            f"fd://{wanted}: systemd passed descriptors"
            f" {', '.join(map(str, fds))}, not {wanted}"
        )
    return [wanted]


def close_unused(fds: list[int], used: set[int]) -> None:
    """Close what systemd passed that no C{-H fd://} serves, as dockerd does."""
    for fd in fds:
        if fd not in used:
            with contextlib.suppress(OSError):
                os.close(fd)


@implementer(IStreamServerEndpoint)
class AdoptedSocketEndpoint:
    """
    Serve a listening socket we were given by descriptor number.

    Unlike Twisted's C{systemd:} endpoint this takes any descriptor, so
    C{fd://N} means descriptor C{N} exactly as in dockerd.

    @param tls: Under C{--tls}, what makes each connection's TLS state.  It
        is used only when the socket is TCP (C{AF_INET}/C{AF_INET6}): a unix
        socket systemd passed stays plain HTTP, as in dockerd (go-systemd's
        C{TLSListeners} wraps TCP listeners only) and as C{-H unix://} is.
    @param limit: The most connections the listener holds at once.
    """

    def __init__(
        self,
        reactor: IReactorSocket,
        fd: int,
        tls: IOpenSSLServerConnectionCreator | None = None,
        *,
        limit: ConnectionLimit | None = None,
    ) -> None:
        self._reactor = reactor
        self._fd = fd
        self._tls = tls
        self._limit = limit

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Adopt the descriptor (a duplicate of it) and close the original."""
        try:
            probe = socket.socket(fileno=os.dup(self._fd))
            try:
                address_family = probe.family
                # The reactor adopts only non-blocking sockets; systemd
                # passes blocking ones.
                probe.setblocking(False)
            finally:
                probe.close()
            factory = protocolFactory
            if self._tls is not None and address_family in _NETWORK_FAMILIES:
                factory = tls_factory(self._tls, protocolFactory)
            if self._limit is not None:
                # Counted at the socket, below TLS: a refused connection
                # costs no handshake.
                factory = limited(factory, self._limit)
            port = self._reactor.adoptStreamPort(
                self._fd, address_family, cast("ServerFactory[Any]", factory)
            )
        except Exception as e:
            return fail(e)
        os.close(self._fd)
        return succeed(port)


class Notifier:
    """
    C{sd_notify}: tell the service manager we are ready or stopping.

    Nothing is sent when C{NOTIFY_SOCKET} is unset, so the daemon runs the
    same outside systemd.  A socket path starting with C{@} is in the
    abstract namespace.
    """

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        # Read once and removed, so that children (conmon) do not notify
        # systemd in our name.
        self._address = environ.pop("NOTIFY_SOCKET", None) or None

    @property
    def enabled(self) -> bool:
        """Whether a service manager is listening."""
        return self._address is not None

    def notify(self, state: str) -> bool:
        """
        Send C{state} (C{READY=1}, C{STOPPING=1}...).

        @return: Whether it was sent; failures are logged, not raised,
            because a daemon must not die for want of a status message.
        """
        if self._address is None:
            return False
        address = self._address
        if address.startswith("@"):
            address = "\0" + address[1:]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError as e:
            _log.warn(
                "sd_notify {state} to {address} failed: {error}",
                state=state,
                address=self._address,
                error=e,
            )
            return False
        finally:
            sock.close()
        return True

    def reloading(self, monotonic_ns: Callable[[], int] | None = None) -> bool:
        """
        Send C{RELOADING=1} with C{MONOTONIC_USEC}, before a reload; send
        C{READY=1} when it is done.

        systemd 253 and later want the time (its C{CLOCK_MONOTONIC}) with
        C{RELOADING=1}, so that a C{systemctl reload} waits for this reload
        and not for an older one; earlier versions ignore it.

        @param monotonic_ns: C{CLOCK_MONOTONIC} in nanoseconds (tests).
        """
        now = (
            monotonic_ns()
            if monotonic_ns is not None
            else time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        )
        return self.notify(f"RELOADING=1\nMONOTONIC_USEC={now // 1000}")


def passed_at_exec(proc_environ: str = "/proc/self/environ") -> list[int]:
    """
    The descriptors systemd passed, read from the environment this process
    was started with.

    Importing L{twisted.internet.endpoints} (which twistd does before any
    option is parsed) reads C{LISTEN_FDS} for the C{systemd:} endpoint and
    deletes the variables from C{os.environ}; and it keeps nothing when
    C{LISTEN_FDNAMES} is absent, as it is under C{systemd-socket-activate}
    without C{--fdname}.  The kernel's copy of the initial environment is
    not changed by that, so the variables are read from there.
    """
    try:
        raw = Path(proc_environ).read_bytes()
    except OSError:
        return []
    initial: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name in (b"LISTEN_PID", b"LISTEN_FDS"):
            initial[name.decode()] = value.decode(errors="replace")
    return take_listen_fds(initial, os.getpid())
