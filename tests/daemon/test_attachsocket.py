"""
Tests for L{dockserve.daemon.attachsocket}: a real SEQPACKET socket, with
conmon's end played by the test and a reactor that only records.
"""

import socket
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.attachsocket import HIGH_WATER, PACKET, AttachSocket
from tests.tempdirs import temp_dir


class _Reactor:
    def __init__(self) -> None:
        self.readers: set[Any] = set()
        self.writers: set[Any] = set()

    def addReader(self, reader: Any) -> None:
        self.readers.add(reader)

    def removeReader(self, reader: Any) -> None:
        self.readers.discard(reader)

    def addWriter(self, writer: Any) -> None:
        self.writers.add(writer)

    def removeWriter(self, writer: Any) -> None:
        self.writers.discard(writer)


class _Producer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")


class AttachSocketTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = temp_dir(self)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(listener.close)
        listener.bind(str(self.base / "attach"))
        listener.listen(1)
        self.reactor = _Reactor()
        self.output: list[tuple[int, bytes]] = []
        self.stdio = AttachSocket.connect(
            self.reactor, self.base, lambda s, d: self.output.append((s, d))
        )
        self.addCleanup(self.stdio.detach)
        self.conmon, _ = listener.accept()
        self.addCleanup(self.conmon.close)
        self.conmon.setblocking(False)

    def drain(self) -> bytes:
        """conmon reads all it can; the reactor says the socket is writable."""
        got = []
        while True:
            try:
                packet = self.conmon.recv(1 << 20)
            except BlockingIOError:
                if not self.reactor.writers:
                    return b"".join(got)
                for writer in list(self.reactor.writers):
                    writer.doWrite()
                continue
            self.assertLessEqual(len(packet), PACKET)
            if not packet:
                return b"".join(got)
            got.append(packet)

    def test_output(self) -> None:
        """Each packet is a stream byte (conmon's 2 and 3) and the data."""
        (reader,) = self.reactor.readers
        self.conmon.send(b"\x02out")
        reader.doRead()
        self.conmon.send(b"\x03err")
        reader.doRead()
        self.assertEqual(self.output, [(1, b"out"), (2, b"err")])
        self.conmon.close()
        reader.doRead()
        self.assertTrue(self.stdio.closed.called)
        self.assertEqual(self.reactor.readers, set())

    def test_stdin_in_packets_conmon_takes(self) -> None:
        """Stdin goes in packets of at most 32 KiB, nothing lost or reordered."""
        data = bytes(range(256)) * 1000
        self.stdio.write_stdin(data)
        self.assertEqual(self.drain(), data)

    def test_never_blocks(self) -> None:
        """
        With conmon not reading, writing returns at once: the rest waits
        for the socket, the client is paused past the high-water mark and
        resumed once it has gone.
        """
        producer = _Producer()
        self.stdio.set_stdin_producer(producer)
        data = b"x" * (4 * HIGH_WATER)
        self.stdio.write_stdin(data)
        self.assertTrue(self.reactor.writers)
        self.assertEqual(producer.calls, ["pause"])
        self.assertEqual(self.drain(), data)
        self.assertEqual(producer.calls, ["pause", "resume"])
        self.assertEqual(self.reactor.writers, set())

    def test_end_of_input_after_the_queue(self) -> None:
        """close_stdin waits for what is queued; then conmon reads end of file."""
        data = b"y" * (2 * HIGH_WATER)
        self.stdio.write_stdin(data)
        self.stdio.close_stdin()
        self.stdio.write_stdin(b"too late")
        self.assertEqual(self.drain(), data)
        self.assertEqual(self.conmon.recv(10), b"")
