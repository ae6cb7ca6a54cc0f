"""
Tests for L{dockserve.server.activation}: the sockets systemd passes
(C{LISTEN_FDS}/C{LISTEN_PID}) and C{sd_notify} over a real datagram socket.
"""

import fcntl
import os
import socket
from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase

from dockserve.server.activation import (
    AdoptedSocketEndpoint,
    NoActivatedSockets,
    Notifier,
    close_unused,
    passed_at_exec,
    select,
    take_listen_fds,
)
from dockserve.server.tls import server_creator
from tests.server.test_tls import PKI
from tests.tempdirs import temp_dir


class TakeListenFdsTests(SynchronousTestCase):
    def test_ours(self) -> None:
        """Descriptors from 3 up, and the variables are gone for children."""
        environ = {"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}
        self.assertEqual(take_listen_fds(environ, 42), [3, 4])
        self.assertEqual(environ, {})

    def test_other_pid(self) -> None:
        """Sockets meant for another process are not ours (and still removed)."""
        environ = {"LISTEN_PID": "41", "LISTEN_FDS": "2"}
        self.assertEqual(take_listen_fds(environ, 42), [])
        self.assertEqual(environ, {})

    def test_none_or_garbage(self) -> None:
        """No variables, or unparsable ones, mean no sockets."""
        self.assertEqual(take_listen_fds({}, 42), [])
        self.assertEqual(
            take_listen_fds({"LISTEN_PID": "x", "LISTEN_FDS": "1"}, 42), []
        )


class SelectTests(SynchronousTestCase):
    def test_all(self) -> None:
        """C{fd://} serves every socket passed."""
        self.assertEqual(select([3, 4], None), [3, 4])

    def test_one(self) -> None:
        """C{fd://N} serves socket N only."""
        self.assertEqual(select([3, 4], 4), [4])

    def test_none_passed(self) -> None:
        """With nothing passed the error names systemd."""
        with self.assertRaises(NoActivatedSockets) as caught:
            select([], None)
        self.assertIn("systemd", str(caught.exception))

    def test_not_passed(self) -> None:
        """C{fd://N} for a descriptor systemd did not pass is an error."""
        with self.assertRaises(NoActivatedSockets) as caught:
            select([3], 7)
        self.assertIn("7", str(caught.exception))

    def test_close_unused(self) -> None:
        """Sockets passed but not served are closed; served ones stay open."""
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        used, unused = os.dup(b.fileno()), os.dup(b.fileno())
        self.addCleanup(os.close, used)
        b.close()
        close_unused([used, unused], {used})
        os.fstat(used)
        with self.assertRaises(OSError):
            os.fstat(unused)


class UNIXAdoptingReactor(MemoryReactor):
    """A L{MemoryReactor} that also adopts unix sockets (the real one does)."""

    def adoptStreamPort(self, fileno: int, addressFamily: int, factory: Any) -> Any:
        if addressFamily != socket.AF_UNIX:
            return super().adoptStreamPort(fileno, addressFamily, factory)
        self.adoptedPorts.append((fileno, addressFamily, factory))
        return None


class AdoptedSocketEndpointTests(SynchronousTestCase):
    def test_adopts_non_blocking(self) -> None:
        """
        The descriptor is given to the reactor with its family, made
        non-blocking first (systemd passes blocking sockets, and the reactor
        would answer nothing on one), and our copy is closed: the reactor's
        port has its own duplicate.
        """
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        fd = listener.detach()
        keep = os.dup(fd)  # the same open file, to look at after fd is closed
        self.addCleanup(os.close, keep)
        self.assertFalse(fcntl.fcntl(keep, fcntl.F_GETFL) & os.O_NONBLOCK)
        reactor = MemoryReactor()
        factory = Factory.forProtocol(Protocol)
        self.successResultOf(AdoptedSocketEndpoint(reactor, fd).listen(factory))
        [(adopted_fd, family, adopted)] = reactor.adoptedPorts
        self.assertEqual((adopted_fd, family, adopted), (fd, socket.AF_INET, factory))
        self.assertTrue(fcntl.fcntl(keep, fcntl.F_GETFL) & os.O_NONBLOCK)
        with self.assertRaises(OSError):
            os.fstat(fd)

    def adopt_under_tls(self, listener: socket.socket) -> tuple[int, object]:
        listener.listen()
        pki = PKI(temp_dir(self))
        creator = server_creator(pki.settings(verify=False))
        reactor = UNIXAdoptingReactor()
        endpoint = AdoptedSocketEndpoint(reactor, listener.detach(), tls=creator)
        self.successResultOf(endpoint.listen(Factory.forProtocol(Protocol)))
        [(_, family, served)] = reactor.adoptedPorts
        return family, served

    def test_tls_on_tcp(self) -> None:
        """Under --tls a passed TCP socket speaks TLS."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        family, served = self.adopt_under_tls(listener)
        self.assertEqual(family, socket.AF_INET)
        self.assertIsInstance(served, TLSMemoryBIOFactory)

    def test_unix_never_tls(self) -> None:
        """
        Under --tls a passed unix socket stays plain HTTP, as dockerd's (only
        TCP listeners get TLS) and as -H unix:// is.
        """
        directory = str(temp_dir(self))
        self.addCleanup(os.rmdir, directory)
        path = os.path.join(directory, "s")  # noqa: PTH118
        self.addCleanup(os.unlink, path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        family, served = self.adopt_under_tls(listener)
        self.assertEqual(family, socket.AF_UNIX)
        self.assertNotIsInstance(served, TLSMemoryBIOFactory)


class NotifierTests(SynchronousTestCase):
    def receiver(self, address: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(address)
        sock.settimeout(5)
        return sock

    def test_ready_and_stopping(self) -> None:
        """READY=1 and STOPPING=1 reach the socket NOTIFY_SOCKET names."""
        directory = temp_dir(self)
        path = str(directory / "notify")
        sock = self.receiver(path)
        environ = {"NOTIFY_SOCKET": path}
        notifier = Notifier(environ)
        self.assertEqual(environ, {})
        self.assertTrue(notifier.notify("READY=1"))
        self.assertEqual(sock.recv(100), b"READY=1")
        self.assertTrue(notifier.notify("STOPPING=1"))
        self.assertEqual(sock.recv(100), b"STOPPING=1")

    def test_abstract(self) -> None:
        """An address starting with @ is in the abstract namespace."""
        name = f"dockserve-test-{os.getpid()}-{id(self)}"
        sock = self.receiver("\0" + name)
        self.assertTrue(Notifier({"NOTIFY_SOCKET": "@" + name}).notify("READY=1"))
        self.assertEqual(sock.recv(100), b"READY=1")

    def test_unset(self) -> None:
        """Outside systemd nothing is sent."""
        notifier = Notifier({})
        self.assertFalse(notifier.enabled)
        self.assertFalse(notifier.notify("READY=1"))

    def test_gone(self) -> None:
        """A socket that went away is a logged failure, not an exception."""
        notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"})
        self.assertFalse(notifier.notify("READY=1"))
        self.flushLoggedErrors()


class PassedAtExecTests(SynchronousTestCase):
    def proc_file(self, *entries: bytes) -> str:
        path = temp_dir(self) / "environ"
        path.write_bytes(b"\0".join(entries) + b"\0")
        return str(path)

    def test_initial_environment(self) -> None:
        """
        The variables are read from the environment the process started
        with, which Twisted's import cannot remove them from; no
        LISTEN_FDNAMES is needed.
        """
        pid = os.getpid()
        path = self.proc_file(
            b"PATH=/bin", b"LISTEN_PID=%d" % pid, b"LISTEN_FDS=2", b"X=LISTEN_FDS=9"
        )
        self.assertEqual(passed_at_exec(path), [3, 4])

    def test_not_ours(self) -> None:
        """Sockets passed to the process we were exec'd from are not ours."""
        path = self.proc_file(b"LISTEN_PID=1", b"LISTEN_FDS=2")
        self.assertEqual(passed_at_exec(path), [])

    def test_unreadable(self) -> None:
        """Without /proc, nothing was passed."""
        self.assertEqual(passed_at_exec("/nonexistent/environ"), [])
