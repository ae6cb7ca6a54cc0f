# -*- test-case-name: tests.api.test_streams -*-
"""
Tests for L{dockserve.api.streams}: the hijacked attach and exec
connections, byte for byte on a L{StringTransport}.
"""

from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from dockserve.api import streams
from dockserve.api.router import make_resource
from dockserve.api.streams import EscapeFilter, frame, parse_detach_keys
from dockserve.errors import InvalidParameter
from dockserve.testing.backend import MemoryBackend
from dockserve.testing.containers import make_service

_UPGRADE = (
    b"Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
)


class _Socket(StringTransport):
    """A transport with a C{protocol}, like a real socket's."""

    protocol: object = None


class _HijackCase(SynchronousTestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp())
        root.mkdir()
        self.root = root
        self.service, self.runtime, self.clock = make_service(root)
        self.site = Site(make_resource(MemoryBackend(containers=self.service)))
        # No idle timer on the global reactor: connections the tests leave
        # open would leave it unclean for whichever test runs next.
        self.site.timeOut = None

    def connect(self, request: bytes) -> tuple[object, _Socket]:
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        transport = _Socket()
        transport.protocol = protocol
        protocol.makeConnection(transport)  # type: ignore[union-attr]
        protocol.dataReceived(request)  # type: ignore[union-attr]
        return protocol, transport


class AttachTests(_HijackCase):
    def test_upgrade_frames_stdin(self) -> None:
        """
        Attach answers 101 UPGRADED, frames stdout and stderr without a TTY,
        forwards the client's bytes to stdin, and a half-close closes stdin;
        the connection closes when the container's output ends.
        """
        cid = self.service.create(
            "web", {"Image": "busybox", "OpenStdin": True, "StdinOnce": True}
        )["Id"]
        protocol, transport = self.connect(
            b"POST /v1.50/containers/web/attach?stream=1&stdin=1&stdout=1&stderr=1"
            b" HTTP/1.1\r\n" + _UPGRADE
        )
        head = transport.value()
        self.assertTrue(head.startswith(b"HTTP/1.1 101 UPGRADED\r\n"), head)
        self.assertIn(b"Upgrade: tcp\r\n", head)
        # Framed, at API 1.42 and later: named so, as dockerd does.
        self.assertIn(
            b"Content-Type: application/vnd.docker.multiplexed-stream\r\n", head
        )
        transport.clear()
        protocol.dataReceived(b"typed")  # type: ignore[attr-defined]
        self.successResultOf(self.service.start(cid))
        stdio = self.runtime.containers[cid].stdios[0]
        self.assertEqual(stdio.stdin, b"typed")
        self.runtime.output(cid, 1, b"out")
        self.runtime.output(cid, 2, b"err")
        self.assertEqual(transport.value(), frame(1, b"out") + frame(2, b"err"))
        self.assertTrue(IHalfCloseableProtocol.providedBy(transport.protocol))
        transport.protocol.readConnectionLost()  # type: ignore[attr-defined]
        self.assertTrue(stdio.stdin_closed)
        self.assertFalse(transport.disconnecting)
        self.runtime.exit(cid, 0)
        self.assertTrue(transport.disconnecting)

    def test_slow_client(self) -> None:
        """
        Once hijacked, the transport's producer is the stream: when the
        client falls behind the container's output is paused, and resumed
        when it catches up; when the output ends no producer is left
        registered, so the connection closes however far behind it was.
        """
        cid = self.service.create("web", {"Image": "busybox"})["Id"]
        _, transport = self.connect(
            b"POST /containers/web/attach?stream=1&stdout=1 HTTP/1.1\r\n" + _UPGRADE
        )
        self.assertTrue(transport.streaming)
        transport.producer.pauseProducing()  # the client is behind
        self.successResultOf(self.service.start(cid))
        stdio = self.runtime.containers[cid].stdios[0]
        self.assertTrue(stdio.output_paused)
        transport.producer.resumeProducing()
        self.assertFalse(stdio.output_paused)
        transport.producer.pauseProducing()
        self.assertTrue(stdio.output_paused)
        self.runtime.exit(cid, 0)
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(transport.producer)

    def test_no_upgrade(self) -> None:
        """A client that does not upgrade gets 200 and the same stream."""
        cid = self.service.create("web", {"Image": "busybox", "Tty": True})["Id"]
        _, transport = self.connect(
            b"POST /containers/web/attach?stream=1&stdout=1 HTTP/1.1\r\n"
            b"Host: docker\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))
        transport.clear()
        self.successResultOf(self.service.start(cid))
        self.runtime.output(cid, 1, b"raw bytes")
        self.assertEqual(transport.value(), b"raw bytes")

    def test_detach_keys(self) -> None:
        """With a TTY, ctrl-p ctrl-q ends the stream; the container runs on."""
        cid = self.service.create(
            "web", {"Image": "busybox", "Tty": True, "OpenStdin": True}
        )["Id"]
        self.successResultOf(self.service.start(cid))
        protocol, transport = self.connect(
            b"POST /containers/web/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\n"
            + _UPGRADE
        )
        protocol.dataReceived(b"ls\r\x10x\x10\x11")  # type: ignore[attr-defined]
        stdio = self.runtime.containers[cid].stdios[0]
        self.assertEqual(stdio.stdin, b"ls\r\x10x")
        self.assertTrue(stdio.detached)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.service.inspect(cid)["State"]["Status"], "running")


class ExecStreamTests(_HijackCase):
    def test_exec_hijack(self) -> None:
        """
        Exec start hijacks; the output is framed; the connection closes when
        the process exits, and its code is then in the exec's inspect.
        """
        cid = self.service.create("web", {"Image": "busybox"})["Id"]
        self.successResultOf(self.service.start(cid))
        exec_id = self.service.exec_create(
            cid, {"Cmd": ["sh"], "AttachStdin": True, "AttachStdout": True}
        )["Id"]
        body = b'{"Detach": false, "Tty": false}'
        protocol, transport = self.connect(
            b"POST /exec/" + exec_id.encode() + b"/start HTTP/1.1\r\n"
            b"Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 UPGRADED\r\n"))
        transport.clear()
        proc = self.runtime.execs[0]
        protocol.dataReceived(b"echo hi\n")  # type: ignore[attr-defined]
        self.assertEqual(proc.stdin, b"echo hi\n")
        proc.emit(1, b"hi\n")
        self.assertEqual(transport.value(), frame(1, b"hi\n"))
        proc.exit(2)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.service.exec_inspect(exec_id)["ExitCode"], 2)

    def test_flow_control(self) -> None:
        """
        The client's connection is the producer of the process's stdin (so
        a process that reads late holds the client back), and a client
        that falls behind pauses the process's output.
        """
        cid = self.service.create("web", {"Image": "busybox"})["Id"]
        self.successResultOf(self.service.start(cid))
        exec_id = self.service.exec_create(
            cid, {"Cmd": ["cat"], "AttachStdin": True, "AttachStdout": True}
        )["Id"]
        _, transport = self.connect(
            b"POST /exec/" + exec_id.encode() + b"/start HTTP/1.1\r\n" + _UPGRADE
        )
        proc = self.runtime.execs[0]
        assert proc.stdin_producer is not None
        proc.stdin_producer.pauseProducing()  # the process's stdin is full
        self.assertEqual(transport.producerState, "paused")
        proc.stdin_producer.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        transport.producer.pauseProducing()  # the client is behind
        self.assertTrue(proc.output_paused)
        transport.producer.resumeProducing()
        self.assertFalse(proc.output_paused)
        proc.exit(0)
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(transport.producer)


def _chunks(body: bytes) -> list[bytes]:
    """The chunks of a chunked HTTP body (what is complete of it)."""
    chunks = []
    while b"\r\n" in body:
        size_text, _, rest = body.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0 or len(rest) < size + 2:
            break
        chunks.append(rest[:size])
        body = rest[size + 2 :]
    return chunks


def _open_fds(path: Path) -> int:
    """How many of this process's descriptors are open on C{path}."""
    target = str(path.resolve())
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += str(fd.readlink()) == target
        except OSError:
            continue
    return count


class ExecTtyTests(_HijackCase):
    """
    How an exec's output is framed, and named, as dockerd does it: by the
    start body's C{Tty} (the Docker SDK's C{exec_start(tty=...)}), not the
    exec's own, and by API version (moby's C{postContainerExecStart}).
    """

    def start(
        self, exec_tty: bool, body: bytes, version: str = "1.50", upgrade: bool = True
    ) -> tuple[object, _Socket, bytes]:
        if not hasattr(self, "cid"):
            self.cid = self.service.create("web", {"Image": "busybox"})["Id"]
            self.successResultOf(self.service.start(self.cid))
        exec_id = self.service.exec_create(
            self.cid,
            {"Cmd": ["echo", "hello", "out"], "Tty": exec_tty,
             "AttachStdout": True, "AttachStderr": True},
        )["Id"]  # fmt: skip
        protocol, transport = self.connect(
            b"POST /v" + version.encode() + b"/exec/" + exec_id.encode()
            + b"/start HTTP/1.1\r\nHost: docker\r\n"
            + (b"Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else b"")
            + b"Content-Type: application/json\r\n"
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )  # fmt: skip
        head = transport.value()
        transport.clear()
        return protocol, transport, head

    def test_tty_exec_started_without_tty(self) -> None:
        """
        An exec made with a TTY and started with C{"Tty": false} (the SDK's
        C{exec_start} default) is framed: its client reads frames, and took
        "hello ou" for a header ("t\\r\\n" was all it showed).
        """
        _, transport, head = self.start(True, b'{"Detach": false, "Tty": false}')
        self.assertIn(
            b"Content-Type: application/vnd.docker.multiplexed-stream\r\n", head
        )
        self.runtime.execs[-1].emit(1, b"hello out\r\n")
        self.assertEqual(transport.value(), frame(1, b"hello out\r\n"))

    def test_tty_exec_started_with_tty(self) -> None:
        """C{"Tty": true}: raw, named raw."""
        _, transport, head = self.start(True, b'{"Detach": false, "Tty": true}')
        self.assertIn(b"Content-Type: application/vnd.docker.raw-stream\r\n", head)
        self.runtime.execs[0].emit(1, b"hello out\r\n")
        self.assertEqual(transport.value(), b"hello out\r\n")

    def test_no_tty_body(self) -> None:
        """No C{Tty} in the body is Go's false: framed."""
        _, transport, _ = self.start(True, b"{}")
        self.runtime.execs[0].emit(1, b"x")
        self.assertEqual(transport.value(), frame(1, b"x"))

    def test_plain_exec_started_with_tty(self) -> None:
        """
        An exec without a TTY started with C{"Tty": true}: stdout raw, and
        stderr dropped, as dockerd drops it.
        """
        _, transport, _ = self.start(False, b'{"Tty": true}')
        proc = self.runtime.execs[0]
        proc.emit(1, b"out\n")
        proc.emit(2, b"err\n")
        self.assertEqual(transport.value(), b"out\n")

    def test_content_type_by_version(self) -> None:
        """
        Framed output is named multiplexed-stream from API 1.42, raw-stream
        before, and always raw-stream without an upgrade.
        """
        _, _, head = self.start(False, b"{}", version="1.41")
        self.assertIn(b"Content-Type: application/vnd.docker.raw-stream\r\n", head)
        _, _, head = self.start(False, b"{}", version="1.42")
        self.assertIn(
            b"Content-Type: application/vnd.docker.multiplexed-stream\r\n", head
        )
        _, _, head = self.start(False, b"{}", upgrade=False)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.assertIn(b"Content-Type: application/vnd.docker.raw-stream\r\n", head)

    def test_bad_tty(self) -> None:
        """A C{Tty} that is not a boolean is 400, as Go's decoder has it."""
        _, _, head = self.start(True, b'{"Tty": "yes"}')
        self.assertTrue(head.startswith(b"HTTP/1.1 400 "), head)
        self.assertIn(b"ExecStartOptions.Tty of type bool", head)


class LogsFollowTests(_HijackCase):
    """C{GET /containers/{id}/logs?follow=1} as the SDK's stream reads it."""

    def follow(self) -> tuple[object, _Socket, Path]:
        cid = self.service.create("web", {"Image": "busybox"})["Id"]
        self.successResultOf(self.service.start(cid))
        log = self.root / "containers" / cid / "container.log"
        log.write_bytes(b"")
        protocol, transport = self.connect(
            b"GET /v1.50/containers/web/logs?follow=1&stdout=1&stderr=1 HTTP/1.1\r\n"
            b"Host: docker\r\n\r\n"
        )
        self.clock.advance(0)
        head, _, _ = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK"), head)
        return protocol, transport, log

    def test_every_line_its_frame(self) -> None:
        """
        Each line is a frame of its own, as dockerd sends them: the SDK's
        C{containers.run(stream=True)} took two lines for one; the lines
        of one read still go out in one write.
        """
        _, transport, log = self.follow()
        with log.open("ab") as out:
            out.write(
                b"2024-01-01T00:00:00.0Z stdout F hello\n"
                b"2024-01-01T00:00:00.1Z stdout F world\n"
                b"2024-01-01T00:00:00.2Z stderr F oops\n"
            )
        self.clock.advance(0.1)
        body = transport.value().partition(b"\r\n\r\n")[2]
        self.assertEqual(
            _chunks(body)[-1],
            frame(1, b"hello\n") + frame(1, b"world\n") + frame(2, b"oops\n"),
        )

    def test_content_type(self) -> None:
        """Framed logs are named multiplexed-stream from API 1.42, raw before."""
        self.follow()
        for version, named in (
            (b"1.41", streams.RAW_STREAM),
            (b"1.42", streams.MULTIPLEXED_STREAM),
        ):
            _, transport = self.connect(
                b"GET /v" + version + b"/containers/web/logs?stdout=1 HTTP/1.1\r\n"
                b"Host: docker\r\n\r\n"
            )
            self.clock.advance(0)
            self.assertIn(b"Content-Type: " + named + b"\r\n", transport.value())

    def test_client_goes_away(self) -> None:
        """
        A client that closes its stream (the SDK's C{logs.close()}) ends
        the follow: the log is closed and no poll is left.
        """
        protocol, _, log = self.follow()
        self.assertEqual(_open_fds(log), 1)
        self.assertTrue(self.clock.getDelayedCalls())
        protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
        self.assertEqual(_open_fds(log), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class DetachKeyTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """C{ctrl-X} and single characters, comma-separated."""
        self.assertEqual(parse_detach_keys(None), b"\x10\x11")
        self.assertEqual(parse_detach_keys("ctrl-a,x,ctrl-@"), b"\x01x\x00")
        error = self.assertRaises(InvalidParameter, parse_detach_keys, "ctrl-aa")
        self.assertEqual(error.message, "Invalid detach keys (ctrl-aa) provided")

    def test_escape_split(self) -> None:
        """The sequence is found across reads; a false start is passed on."""
        seen: list[bytes] = []
        detached: list[bool] = []
        escape = EscapeFilter(b"\x10\x11", seen.append, lambda: detached.append(True))
        escape.feed(b"a\x10")
        escape.feed(b"b")
        self.assertEqual(b"".join(seen), b"a\x10b")
        escape.feed(b"\x10")
        self.assertEqual(detached, [])
        escape.feed(b"\x11rest")
        self.assertEqual(detached, [True])
        self.assertEqual(b"".join(seen), b"a\x10b")
