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
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from dockserve.server import unixsocket
from dockserve.server.unixsocket import (
    SocketGroup,
    SocketInUse,
    UNIXSocketEndpoint,
    bind,
    publish,
    remove_stale,
    resolve_group,
)
from tests.tempdirs import temp_dir


class _Dir(TestCase):
    def setUp(self) -> None:
        self.directory = temp_dir(self)
        self.path = str(self.directory / "d.sock")


class BindTests(_Dir):
    def test_never_wider_than_0660(self) -> None:
        """
        Before publish() the socket is bound inside a 0700 directory and
        nothing is at the final path; after it the file is 0660 with the
        group, at the final path.
        """
        bound = bind(self.path)
        self.addCleanup(bound.socket.close)
        self.assertFalse(os.path.lexists(self.path))
        private = Path(bound.private).stat()
        self.assertEqual(stat.S_IMODE(private.st_mode), 0o700)
        gid = 4321  # not ours: the file must be given to it
        publish(bound, self.path, SocketGroup(gid))
        info = Path(self.path).lstat()
        self.assertTrue(stat.S_ISSOCK(info.st_mode))
        self.assertEqual(stat.S_IMODE(info.st_mode), 0o660)
        self.assertEqual(info.st_gid, gid)

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
