# -*- test-case-name: tests.api.test_threadstream -*-
"""Tests for L{dockserve.api.threadstream}: bodies written by a worker thread."""

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.threadstream import ResponseWriter, stream_from_thread
from dockserve.errors import NotFound


class _ImmediateReactor:
    """Runs "from a thread" calls at once, on the calling thread."""

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class _Sink:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)


class ResponseWriterTests(SynchronousTestCase):
    """The worker waits for a slow client and stops for a gone one."""

    def _writer(self) -> tuple[Any, _Sink]:
        sink = _Sink()
        return ResponseWriter(sink, _ImmediateReactor()), sink  # type: ignore[arg-type]

    def _in_thread(self, f: Any) -> Any:
        import threading  # noqa: PLC0415

        outcome: list[Any] = []

        def run() -> None:
            try:
                f()
            except Exception as e:
                outcome.append(e)
            else:
                outcome.append(None)

        thread = threading.Thread(target=run)
        thread.start()
        return thread, outcome

    def test_paused_client_holds_the_worker(self) -> None:
        """While paused the worker writes nothing more; resumed, it finishes."""
        writer, sink = self._writer()
        writer.pauseProducing()
        thread, outcome = self._in_thread(lambda: writer.write(b"x" * (3 << 20)))
        thread.join(0.3)
        self.assertTrue(thread.is_alive())
        self.assertEqual(sink.chunks, [])
        writer.resumeProducing()
        thread.join(5)
        self.assertEqual(outcome, [None])
        self.assertEqual(sum(map(len, sink.chunks)), 3 << 20)

    def test_gone_client_stops_the_worker(self) -> None:
        """stopProducing makes the worker's next write fail."""
        writer, _ = self._writer()
        writer.pauseProducing()
        thread, outcome = self._in_thread(lambda: writer.write(b"x" * (2 << 20)))
        writer.stopProducing()
        thread.join(5)
        self.assertIsInstance(outcome[0], OSError)


class _Transport:
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True


class _Channel:
    def __init__(self) -> None:
        self.transport = _Transport()


class _Request(_Sink):
    """What L{stream_from_thread} uses of a request."""

    def __init__(self) -> None:
        super().__init__()
        self.channel: _Channel | None = _Channel()
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


class StreamFromThreadTests(SynchronousTestCase):
    def test_body(self) -> None:
        """What the worker wrote is sent; no producer is left registered."""
        request = _Request()

        def produce(writer: ResponseWriter) -> "Deferred[None]":
            self.assertIs(request.producer, writer)
            writer.write(b"tar bytes")
            return succeed(None)

        self.successResultOf(
            ensureDeferred(stream_from_thread(request, None, produce))  # type: ignore[arg-type]
        )
        self.assertEqual(request.chunks, [b"tar bytes"])
        self.assertIsNone(request.producer)

    def test_error_before_the_body(self) -> None:
        """A failure before any byte is sent is raised: an error response."""
        request = _Request()
        done = ensureDeferred(
            stream_from_thread(
                request,  # type: ignore[arg-type]
                None,
                lambda _: fail(NotFound("Could not find the file /x in container web")),
            )
        )
        self.failureResultOf(done, NotFound)
        self.assertIsNone(request.producer)
        assert request.channel is not None
        self.assertFalse(request.channel.transport.aborted)

    def test_error_in_the_body(self) -> None:
        """A failure once the body has begun cuts the connection short."""
        request = _Request()

        def produce(writer: ResponseWriter) -> "Deferred[None]":
            writer.write(b"x" * (1 << 20))
            return fail(OSError("read error"))

        self.successResultOf(
            ensureDeferred(stream_from_thread(request, None, produce))  # type: ignore[arg-type]
        )
        assert request.channel is not None
        self.assertTrue(request.channel.transport.aborted)
        self.assertIsNone(request.producer)
