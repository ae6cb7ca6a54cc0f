"""
Tests for L{dockserve.server.unixsocket}: the socket file is reachable only
once it is 0660 and owned by the group, a stale one is replaced, a live one
is not stolen, and a clean stop removes it.
"""

import grp
import os
import socket
import stat
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.address import UNIXAddress
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.lockfile import FilesystemLock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from dockserve.server import unixsocket
from dockserve.server.unixsocket import (
    SocketGroup,
    SocketInUse,
    UNIXSocketEndpoint,
    remove_stale,
    resolve_group,
)
from tests.tempdirs import temp_dir


class _Dir(TestCase):
    def setUp(self) -> None:
        self.directory = temp_dir(self)
        self.path = str(self.directory / "d.sock")


class BindTests(_Dir):
    async def listen(self, **kwargs: object) -> IListeningPort:
        endpoint = UNIXSocketEndpoint(
            reactor,
            self.path,
            kwargs.pop("group", SocketGroup(None)),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )
        port = await endpoint.listen(Factory.forProtocol(Protocol))
        self.addCleanup(port.stopListening)
        return port

    async def test_never_wider_than_0660(self) -> None:
        """
        The socket listens first as 0600 (the owner only: connecting to it
        before it listens is refused), and only then gets its group and
        0660.
        """
        seen: list[os.stat_result] = []
        real = unixsocket.publish

        def publish(path: str, group: SocketGroup, mode: int) -> None:
            seen.append(os.lstat(path))
            real(path, group, mode)

        self.patch(unixsocket, "publish", publish)
        gid = 4321  # not ours: the file must be given to it
        await self.listen(group=SocketGroup(gid))
        [before] = seen
        self.assertTrue(stat.S_ISSOCK(before.st_mode))
        self.assertEqual(stat.S_IMODE(before.st_mode), 0o600)
        self.assertEqual(before.st_gid, os.getgid())
        info = Path(self.path).lstat()
        self.assertEqual(stat.S_IMODE(info.st_mode), 0o660)
        self.assertEqual(info.st_gid, gid)

    async def test_narrower_mode(self) -> None:
        """A mode narrower than 0660 (-H unix:/x:mode=600) is kept."""
        await self.listen(mode=0o600)
        self.assertEqual(stat.S_IMODE(Path(self.path).lstat().st_mode), 0o600)

    async def test_backlog(self) -> None:
        """The backlog asked for is the listen queue's length."""
        port = await self.listen(backlog=7)
        self.assertEqual(port.backlog, 7)  # type: ignore[attr-defined]

    async def test_lockfile(self) -> None:
        """
        lockfile=1 (Twisted's wantPID) holds PATH.lock, naming our pid,
        while listening, and lets it go on stop.
        """
        port = await self.listen(lockfile=True)
        lock = self.path + ".lock"
        self.assertEqual(str(Path(lock).readlink()), str(os.getpid()))
        await port.stopListening()
        self.assertFalse(os.path.lexists(lock))
        self.assertFalse(os.path.lexists(self.path))

    async def test_lock_held_elsewhere(self) -> None:
        """A lock file a live process holds is an error naming it."""
        held = FilesystemLock(self.path + ".lock")
        self.assertTrue(held.lock())
        self.addCleanup(held.unlock)
        with self.assertRaises(SocketInUse) as caught:
            await self.listen(lockfile=True)
        self.assertIn(f"cannot take {self.path}.lock", str(caught.exception))
        self.assertFalse(os.path.lexists(self.path))

    def test_mode_wider_refused(self) -> None:
        """The endpoint itself refuses a mode wider than 0660."""
        with self.assertRaises(ValueError):
            UNIXSocketEndpoint(reactor, self.path, SocketGroup(None), mode=0o666)

    async def test_peer_sees_the_path(self) -> None:
        """
        A client's peer name is the socket's own path, which the docker CLI
        shows in its errors; it showed a private staging path
        (C{@->/tmp/.d.sock.x1y2/s}).
        """
        await self.listen()
        client = socket.socket(socket.AF_UNIX)
        self.addCleanup(client.close)
        client.connect(self.path)
        self.assertEqual(client.getpeername(), self.path)
        self.assertEqual(sorted(p.name for p in self.directory.iterdir()), ["d.sock"])

    def test_stale_removed(self) -> None:
        """A socket file nobody listens on (a crashed run's) is replaced."""
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(self.path)
        stale.close()
        remove_stale(self.path)
        self.assertFalse(os.path.lexists(self.path))

    def test_live_not_stolen(self) -> None:
        """A socket another process listens on is left alone: a clear error."""
        live = socket.socket(socket.AF_UNIX)
        self.addCleanup(live.close)
        live.bind(self.path)
        live.listen()
        with self.assertRaises(SocketInUse) as caught:
            remove_stale(self.path)
        self.assertIn("another live daemon", str(caught.exception))
        self.assertTrue(os.path.lexists(self.path))

    def test_not_a_socket(self) -> None:
        """A regular file at the path is never removed."""
        Path(self.path).write_text("precious")
        with self.assertRaises(OSError):
            remove_stale(self.path)
        self.assertEqual(Path(self.path).read_text(), "precious")


class GroupTests(TestCase):
    def test_missing_default_group(self) -> None:
        """The default group missing is a warning, not an error (as dockerd)."""

        def missing(name: str) -> grp.struct_group:
            raise KeyError(name)

        self.patch(unixsocket.grp, "getgrnam", missing)
        group = resolve_group("docker")
        self.assertIsNone(group.gid)
        self.assertIn("group 'docker' does not exist", group.warning or "")

    async def test_socket_keeps_our_group_with_warning(self) -> None:
        """
        Without the default group the socket is root's (our) group, still
        0660, and the log says why.
        """
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        path = str(temp_dir(self) / "d.sock")
        group = SocketGroup(None, "group 'docker' does not exist")
        port = await UNIXSocketEndpoint(reactor, path, group).listen(
            Factory.forProtocol(Protocol)
        )
        info = Path(path).lstat()
        self.assertEqual(
            (info.st_gid, stat.S_IMODE(info.st_mode)), (os.getgid(), 0o660)
        )
        warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("does not exist", formatEvent(warnings[0]))
        await port.stopListening()

    def test_missing_named_group(self) -> None:
        """A -G group the user named that does not exist is an error."""
        with self.assertRaises(KeyError):
            resolve_group("no-such-group-here")

    def test_numeric(self) -> None:
        """-G takes a group number as well as a name."""
        self.assertEqual(resolve_group("1234").gid, 1234)


class EndpointTests(_Dir):
    async def test_serves_and_removes(self) -> None:
        """A real listen: clients connect; stopListening removes the file."""
        endpoint = UNIXSocketEndpoint(reactor, self.path, SocketGroup(None))
        self.assertTrue(verifyObject(IStreamServerEndpoint, endpoint))
        port = await endpoint.listen(Factory.forProtocol(Protocol))
        self.assertTrue(verifyObject(IListeningPort, port))
        self.assertEqual(port.getHost(), UNIXAddress(self.path))
        self.assertEqual(stat.S_IMODE(Path(self.path).lstat().st_mode), 0o660)
        client = socket.socket(socket.AF_UNIX)
        client.connect(self.path)
        client.close()
        await port.stopListening()
        self.assertFalse(os.path.lexists(self.path))
        self.assertEqual(list(self.directory.iterdir()), [])

    async def test_live_socket_is_an_error(self) -> None:
        """
        Listening where another daemon listens fails with an error saying
        so, and the other daemon keeps its socket.
        """
        live = socket.socket(socket.AF_UNIX)
        self.addCleanup(live.close)
        live.bind(self.path)
        live.listen()
        endpoint = UNIXSocketEndpoint(reactor, self.path, SocketGroup(None))
        with self.assertRaises(SocketInUse) as caught:
            await endpoint.listen(Factory.forProtocol(Protocol))
        self.assertIn(self.path, str(caught.exception))
        client = socket.socket(socket.AF_UNIX)
        self.addCleanup(client.close)
        client.connect(self.path)

    async def test_successor_file_kept(self) -> None:
        """
        If another daemon already replaced our socket file, stopping leaves
        the successor's file in place.
        """
        endpoint = UNIXSocketEndpoint(reactor, self.path, SocketGroup(None))
        port = await endpoint.listen(Factory.forProtocol(Protocol))
        Path(self.path).unlink()
        successor = socket.socket(socket.AF_UNIX)
        self.addCleanup(successor.close)
        successor.bind(self.path)
        await port.stopListening()
        self.assertTrue(os.path.lexists(self.path))
