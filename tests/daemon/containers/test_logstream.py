# -*- test-case-name: tests.daemon.containers.test_logstream -*-
"""Tests for L{dockserve.daemon.containers.logstream}."""

from pathlib import Path

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dockserve.daemon.containers import logstream
from dockserve.daemon.containers.logstream import LogReader, parse_timestamp

LOG = (
    b"2024-01-01T00:00:00.000000000Z stdout F one\n"
    b"2024-01-01T00:00:01.000000000Z stderr F two\n"
    b"2024-01-01T00:00:02.000000000Z stdout P thr\n"
    b"2024-01-01T00:00:02.000000000Z stdout F ee\n"
    b"2024-01-01T00:00:03.000000000Z stdout F four\n"
)


class LogReaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp())
        self.path.write_bytes(LOG)
        self.clock = Clock()
        self.seen: list[tuple[int, bytes]] = []

    def read(self, **options: object) -> LogReader:
        reader = LogReader(
            self.path,
            lambda s, d: self.seen.append((s, d)),
            reactor=self.clock,
            **options,  # type: ignore[arg-type]
        ).start()
        self.clock.advance(0)
        self.clock.advance(0)
        return reader

    def test_all(self) -> None:
        """
        Every entry, partial lines joined, in order, each on its own: one
        frame per line as dockerd sends them (the SDK yields a frame at a
        time, and C{containers.run(stream=True)} saw "three\nfour\n" as
        one line).
        """
        self.successResultOf(self.read().done)
        self.assertEqual(
            self.seen,
            [(1, b"one\n"), (2, b"two\n"), (1, b"three\n"), (1, b"four\n")],
        )

    def test_flush_after_each_read(self) -> None:
        """
        C{on_flush} follows the entries of each read, so the handler can
        send them in one write.
        """
        events: list[object] = []
        reader = LogReader(
            self.path,
            lambda s, d: events.append((s, d)),
            reactor=self.clock,
        )
        reader.on_flush = lambda: events.append("flush")
        reader.start()
        self.clock.advance(0)
        self.successResultOf(reader.done)
        self.assertEqual(
            events,
            [(1, b"one\n"), (2, b"two\n"), (1, b"three\n"), (1, b"four\n"),
             "flush"],
        )  # fmt: skip

    def test_streams_tail_timestamps(self) -> None:
        """Only stdout, the last two, with their timestamps."""
        self.successResultOf(self.read(stderr=False, tail=2, timestamps=True).done)
        self.assertEqual(
            self.seen,
            [
                (1, b"2024-01-01T00:00:02.000000000Z three\n"),
                (1, b"2024-01-01T00:00:03.000000000Z four\n"),
            ],
        )

    def test_since_until(self) -> None:
        """since and until are Unix times, inclusive."""
        start = 1704067200.0
        self.successResultOf(self.read(since=start + 1, until=start + 2).done)
        self.assertEqual(self.seen, [(2, b"two\n"), (1, b"three\n")])

    def test_follow(self) -> None:
        """A follower sees new lines until the container stops."""
        running = [True]
        reader = self.read(tail=0, follow=True, running=lambda: running[0])
        self.assertNoResult(reader.done)
        with self.path.open("ab") as log:
            log.write(b"2024-01-01T00:00:04.000000000Z stdout F five\n")
        self.clock.advance(0.1)
        self.assertEqual(self.seen, [(1, b"five\n")])
        running[0] = False
        self.clock.advance(0.1)
        self.successResultOf(reader.done)

    def test_cancel(self) -> None:
        """
        Cancelling a follower stops it, closes the log file and leaves no
        call behind.
        """
        reader = self.read(follow=True, running=lambda: True)
        self.assertEqual(_open_fds(self.path), 1)
        reader.done.cancel()
        self.failureResultOf(reader.done)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(_open_fds(self.path), 0)

    def test_stop_producing(self) -> None:
        """The connection going away (stopProducing) ends a follower too."""
        reader = self.read(follow=True, running=lambda: True)
        reader.stopProducing()
        self.failureResultOf(reader.done, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(_open_fds(self.path), 0)


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


def _inotify_fds() -> int:
    """How many inotify instances this process has open."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += str(fd.readlink()) == "anon_inode:inotify"
        except OSError:
            continue
    return count


def _stop(reader: LogReader) -> None:
    """Stop C{reader} if a failed test left it following."""
    if not reader.done.called:
        reader.done.cancel()
        reader.done.addErrback(lambda _: None)


class InotifyFollowTests(TestCase):
    """
    With the real reactor a follower is woken by inotify as soon as the log
    is written (not at its next poll), and leaves no watch behind.
    """

    def setUp(self) -> None:
        from twisted.internet import reactor  # noqa: PLC0415

        self.reactor = reactor
        self.path = Path(self.mktemp())
        self.path.write_bytes(LOG)
        # Far beyond the test's patience: only inotify can deliver in time.
        self.patch(logstream, "_POLL", 60.0)

    async def test_woken_by_a_write(self) -> None:
        """
        A line written to a followed log arrives at once, each on its own;
        once cancelled no watch, inotify instance, file or call is left.
        """
        instances = _inotify_fds()
        seen: list[tuple[int, bytes]] = []
        arrived: Deferred[None] = Deferred()

        def output(stream: int, data: bytes) -> None:
            seen.append((stream, data))
            if data == b"six\n" and not arrived.called:
                arrived.callback(None)

        reader = LogReader(
            self.path, output, reactor=self.reactor, tail=0, follow=True,
            running=lambda: True,
        ).start()  # fmt: skip
        self.addCleanup(_stop, reader)
        await deferLater(self.reactor, 0.05, lambda: None)
        self.assertEqual(logstream.watched_logs(self.reactor), [self.path.absolute()])
        with self.path.open("ab") as log:
            log.write(b"2024-01-01T00:00:05.000000000Z stdout F five\n")
            log.write(b"2024-01-01T00:00:06.000000000Z stdout F six\n")
        await arrived.addTimeout(5, self.reactor)
        self.assertEqual(seen, [(1, b"five\n"), (1, b"six\n")])
        reader.done.cancel()
        self.failureResultOf(reader.done, CancelledError)
        self.assertEqual(logstream.watched_logs(self.reactor), [])
        self.assertEqual(_inotify_fds(), instances)
        self.assertEqual(_open_fds(self.path), 0)
        self.assertEqual(
            [c for c in self.reactor.getDelayedCalls() if c.func == reader._step], []
        )

    async def test_deleted_log(self) -> None:
        """
        A followed log deleted (C{docker rm -f}) stays watched while the
        follower holds it open; the follower's end removes the watch and
        the instance, and a later follower gets a new one.
        """
        instances = _inotify_fds()
        reader = LogReader(
            self.path, lambda *_: None, reactor=self.reactor, tail=0,
            follow=True, running=lambda: True,
        ).start()  # fmt: skip
        self.addCleanup(_stop, reader)
        await deferLater(self.reactor, 0.05, lambda: None)
        self.path.unlink()
        await deferLater(self.reactor, 0.05, lambda: None)
        self.assertEqual(logstream.watched_logs(self.reactor), [self.path.absolute()])
        _stop(reader)
        await deferLater(self.reactor, 0.05, lambda: None)
        self.assertEqual(logstream.watched_logs(self.reactor), [])
        self.assertEqual(_inotify_fds(), instances)
        other = Path(self.mktemp())
        other.write_bytes(LOG)
        second = LogReader(
            other, lambda *_: None, reactor=self.reactor, tail=0,
            follow=True, running=lambda: True,
        ).start()  # fmt: skip
        self.addCleanup(_stop, second)
        await deferLater(self.reactor, 0.05, lambda: None)
        self.assertEqual(logstream.watched_logs(self.reactor), [other.absolute()])
        _stop(second)
        self.assertEqual(_inotify_fds(), instances)

    async def test_two_followers(self) -> None:
        """
        Two followers of one file share its watch: the first to go leaves
        the other woken, the last removes the watch.
        """
        seen: list[bytes] = []
        readers = [
            LogReader(
                self.path, lambda _, d: seen.append(d), reactor=self.reactor,
                tail=0, follow=True, running=lambda: True,
            ).start()
            for _ in range(2)
        ]  # fmt: skip
        for reader in readers:
            self.addCleanup(_stop, reader)
        await deferLater(self.reactor, 0.05, lambda: None)
        readers[0].done.cancel()
        self.failureResultOf(readers[0].done, CancelledError)
        self.assertEqual(logstream.watched_logs(self.reactor), [self.path.absolute()])
        with self.path.open("ab") as log:
            log.write(b"2024-01-01T00:00:05.000000000Z stdout F five\n")
        for _ in range(100):
            if seen:
                break
            await deferLater(self.reactor, 0.02, lambda: None)
        self.assertEqual(seen, [b"five\n"])
        readers[1].done.cancel()
        self.failureResultOf(readers[1].done, CancelledError)
        self.assertEqual(logstream.watched_logs(self.reactor), [])


class TimestampTests(SynchronousTestCase):
    def test_conmon_offset(self) -> None:
        """
        conmon's C{+00:00} (or any offset) is read as what it means and
        printed as dockerd prints it: UTC, nine digits, C{Z}.
        """
        when, printed = parse_timestamp(b"2024-01-01T01:00:00.5+01:00")
        self.assertEqual(when, 1704067200.5)
        self.assertEqual(printed, b"2024-01-01T00:00:00.500000000Z")

    def test_timestamps_in_utc(self) -> None:
        """C{-t} prints conmon's local time the way dockerd does."""
        path = Path(self.mktemp())
        path.write_bytes(b"2024-01-01T00:00:00.123456789+00:00 stdout F hi\n")
        seen: list[tuple[int, bytes]] = []
        clock = Clock()
        reader = LogReader(
            path, lambda s, d: seen.append((s, d)), reactor=clock, timestamps=True
        ).start()
        clock.advance(0)
        self.successResultOf(reader.done)
        self.assertEqual(seen, [(1, b"2024-01-01T00:00:00.123456789Z hi\n")])


class UnterminatedTests(SynchronousTestCase):
    def read(self, log: bytes, **options: object) -> list[tuple[int, bytes]]:
        path = Path(self.mktemp())
        path.write_bytes(log)
        clock = Clock()
        seen: list[tuple[int, bytes]] = []
        reader = LogReader(
            path,
            lambda s, d: seen.append((s, d)),
            reactor=clock,
            **options,  # type: ignore[arg-type]
        ).start()
        clock.advance(0)
        clock.advance(0)
        self.successResultOf(reader.done)
        return seen

    def test_last_line_without_newline(self) -> None:
        """A container's last output without a newline is shown, as dockerd does."""
        log = (
            b"2024-01-01T00:00:00.0Z stdout F one\n"
            b"2024-01-01T00:00:01.0Z stdout P two\n"
        )
        self.assertEqual(self.read(log), [(1, b"one\n"), (1, b"two")])
        self.assertEqual(self.read(log, tail=1), [(1, b"two")])

    def test_tail_of_a_big_log(self) -> None:
        """tail reads from the end: the last lines of a log many pieces long."""
        line = b"2024-01-01T00:00:00.0Z stdout F " + b"x" * 100 + b"\n"
        log = line * 5000 + b"2024-01-01T00:00:00.0Z stderr F last\n"
        self.assertEqual(
            self.read(log, tail=2), [(1, b"x" * 100 + b"\n"), (2, b"last\n")]
        )


class PausedReaderTests(SynchronousTestCase):
    def test_paused_reads_no_more(self) -> None:
        """
        A paused reader (the client is behind) reads no more of the file
        than the chunk it had; resumed, it reads on to the end.
        """
        from dockserve.daemon.containers import logstream  # noqa: PLC0415

        self.patch(logstream, "_CHUNK", len(LOG) // 2)
        path = Path(self.mktemp())
        path.write_bytes(LOG * 4)
        clock = Clock()
        seen: list[bytes] = []

        def output(_: int, data: bytes) -> None:
            # As a transport does: the write that fills its buffer pauses.
            seen.append(data)
            if len(seen) == 1:
                reader.pauseProducing()

        reader = LogReader(path, output, reactor=clock)
        reader.start()
        clock.advance(0)
        first = len(seen)
        self.assertTrue(first)
        for _ in range(10):
            clock.advance(1)
        self.assertEqual(len(seen), first)
        self.assertNoResult(reader.done)
        reader.resumeProducing()
        for _ in range(10):
            clock.advance(0)
        self.successResultOf(reader.done)
        self.assertEqual(b"".join(seen), b"one\ntwo\nthree\nfour\n" * 4)
