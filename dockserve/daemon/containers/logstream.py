# -*- test-case-name: tests.daemon.containers.test_logstream -*-
"""
C{docker logs} from conmon's k8s-file log, as a stream that can follow.

Each line of the file is C{TIMESTAMP STREAM TAG CONTENT}: an RFC 3339 time
with nanoseconds, C{stdout} or C{stderr}, C{F} for a full line or C{P} for
a partial one (conmon splits long lines and the last unterminated one),
then the bytes. The reader joins partials, applies C{since}, C{until} and
C{tail}, prefixes timestamps when asked, and with C{follow} keeps reading
in small steps on the reactor until the container stops and the file has
no more to give. It reads in bounded chunks, so a large log neither blocks
the reactor for long nor sits in memory.

Each entry is given on its own, as dockerd sends one frame per log
message (the Docker SDK yields a frame at a time); C{on_flush} follows the
entries of each read, so the wire can still take them in one write. A
follower is woken by inotify when the file is written (one instance per
reactor, one watch per file, gone with the last follower) and polls as
well, to see the container stop and where inotify cannot be had.
"""

import calendar
import contextlib
import functools
import os
import re
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorFDSet, IReactorTime

_STAMP = re.compile(
    rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)$"
)

#: How much of the file one reactor turn reads.
_CHUNK = 1 << 20

#: How often a follower looks for new lines.
_POLL = 0.1

_STREAMS = {b"stdout": 1, b"stderr": 2}


def parse_timestamp(raw: bytes) -> tuple[float, bytes]:
    """
    A log line's time as seconds since the epoch, and as dockerd prints it
    with C{docker logs -t}: UTC, nine fraction digits, C{Z} (conmon writes
    the host's offset, C{+00:00} here). An unreadable one is C{(0, raw)}.
    """
    match = _STAMP.match(raw)
    if match is None:
        return 0.0, raw
    whole, fraction, zone = match.groups()
    seconds, stamp = _second(whole, zone)
    nanos = int((fraction or b"0").ljust(9, b"0"))
    return seconds + nanos / 1e9, b"%s.%09dZ" % (stamp, nanos)


@functools.lru_cache(maxsize=256)
def _second(whole: bytes, zone: bytes) -> tuple[int, bytes]:
    """
    One whole second of a log's times, in epoch seconds and printed in UTC;
    cached, since a busy log repeats the same second thousands of times.
    """
    seconds = calendar.timegm(time.strptime(whole.decode(), "%Y-%m-%dT%H:%M:%S"))
    if zone != b"Z":
        sign = -1 if zone[:1] == b"-" else 1
        digits = zone[1:].replace(b":", b"")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode()


def parse_line(line: bytes) -> tuple[bytes, int, bool, bytes] | None:
    """
    C{(timestamp, stream, full, content)} of one k8s-file line (without its
    newline), or C{None} for a line that is not in the format.
    """
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in _STREAMS:
        return None
    content = parts[3] if len(parts) == 4 else b""
    return parts[0], _STREAMS[parts[1]], parts[2] != b"P", content


def _key(path: Path) -> bytes:
    """A watched file as Twisted's inotify names it: absolute, in bytes."""
    from twisted.python.filepath import FilePath  # noqa: PLC0415

    return FilePath(os.fsencode(path)).path


class _Wakeups:
    """
    The inotify watches of one reactor's log followers.

    Twisted's C{INotify} keeps one watch, with one list of callbacks, per
    path: the followers of a file share it here, and the last to go
    removes it; the instance (a descriptor) is closed when no watch is
    left. When a watched file is deleted Twisted closes the whole
    instance: the followers it had poll from then on.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._notifier: Any = None
        self._waiting: dict[bytes, list[Callable[[], None]]] = {}

    def paths(self) -> list[Path]:
        """The files watched now."""
        return [Path(os.fsdecode(key)) for key in self._waiting]

    def add(self, path: Path, wake: Callable[[], None]) -> bool:
        """Call C{wake} whenever C{path} is written; C{False} if it cannot."""
        key = _key(path)
        if key not in self._waiting:
            if not self._watch(key):
                return False
            self._waiting[key] = []
        self._waiting[key].append(wake)
        return True

    def remove(self, path: Path, wake: Callable[[], None]) -> None:
        """C{wake} is no longer called; the last one of a file ends its watch."""
        key = _key(path)
        waiting = self._waiting.get(key, [])
        if wake in waiting:
            waiting.remove(wake)
        if waiting or key not in self._waiting:
            return
        del self._waiting[key]
        if self._notifier is not None:
            from twisted.python.filepath import FilePath  # noqa: PLC0415

            with contextlib.suppress(Exception):
                self._notifier.ignore(FilePath(key))
        if not self._waiting:
            self._close()

    def _watch(self, key: bytes) -> bool:
        from twisted.python.filepath import FilePath  # noqa: PLC0415

        try:
            from twisted.internet import inotify  # noqa: PLC0415

            if self._notifier is None:
                if not IReactorFDSet.providedBy(self._reactor):
                    return False
                self._notifier = inotify.INotify(self._reactor)  # type: ignore[no-untyped-call]
                self._notifier.startReading()
            self._notifier.watch(
                FilePath(key), mask=inotify.IN_MODIFY, callbacks=[self._event]
            )
        except Exception:  # no inotify here: poll instead
            if not self._waiting:
                self._close()
            return False
        return True

    def _close(self) -> None:
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.loseConnection()

    def _event(self, _watch: object, path: Any, mask: int) -> None:
        from twisted.internet import inotify  # noqa: PLC0415

        if mask & inotify.IN_DELETE_SELF:
            # Twisted closes the instance: every watch of it is gone.
            self._notifier = None
            self._waiting = {}
            return
        for wake in list(self._waiting.get(path.asBytesMode().path, [])):
            wake()


_WAKEUPS: "weakref.WeakKeyDictionary[Any, _Wakeups]" = weakref.WeakKeyDictionary()


def _wakeups(reactor: Any) -> _Wakeups:
    """The watches of C{reactor}'s followers."""
    wakeups = _WAKEUPS.get(reactor)
    if wakeups is None:
        wakeups = _WAKEUPS[reactor] = _Wakeups(reactor)
    return wakeups


def watched_logs(reactor: Any) -> list[Path]:
    """The log files C{reactor}'s followers watch now (for tests and debugging)."""
    wakeups = _WAKEUPS.get(reactor)
    return wakeups.paths() if wakeups is not None else []


class LogReader:
    """
    One C{docker logs} request over one log file.

    @ivar done: Fires when the stream ends; cancel it to stop following.
    @ivar on_flush: Called after the entries of each read have been given
        to C{on_output}: a caller that frames them can write them at once.
    """

    def __init__(
        self,
        path: Path,
        on_output: Callable[[int, bytes], None],
        *,
        reactor: IReactorTime,
        stdout: bool = True,
        stderr: bool = True,
        since: float = 0.0,
        until: float = 0.0,
        tail: int | None = None,
        timestamps: bool = False,
        follow: bool = False,
        running: Callable[[], bool] = lambda: False,
    ) -> None:
        self._path = path
        self._on_output = on_output
        self._reactor = reactor
        self._streams = ({1} if stdout else set()) | ({2} if stderr else set())
        self._since = since
        self._until = until
        self._tail = tail
        self._timestamps = timestamps
        self._follow = follow
        self._running = running
        self._file: IO[bytes] | None = None
        self._rest = b""
        self._partial: dict[int, tuple[bytes, bytes]] = {}
        self._out: list[tuple[int, bytes]] = []
        self._call: IDelayedCall | None = None
        self._finished = False
        self._paused = False
        self._watching = False
        self.on_flush: Callable[[], None] = lambda: None
        self.done: Deferred[None] = Deferred(self._cancel)

    def start(self) -> "LogReader":
        """
        Begin on the next reactor turn (so the caller can send its headers
        first): with C{tail}, the last lines, then as without.
        """
        self._call = self._reactor.callLater(0, self._begin)
        return self

    def pauseProducing(self) -> None:
        """
        The client is behind: read no more of the file until
        L{resumeProducing} (a chunk is 1 MiB; the daemon holds about one).
        """
        self._paused = True

    def resumeProducing(self) -> None:
        """The client caught up: read on."""
        if not self._paused:
            return
        self._paused = False
        if not self._finished and self._call is None:
            self._call = self._reactor.callLater(0, self._step)

    def stopProducing(self) -> None:
        """The connection is gone: stop following (L{done} fails, cancelled)."""
        if not self.done.called:
            self.done.cancel()

    def _begin(self) -> None:
        self._call = None
        try:
            self._file = self._path.open("rb")
        except FileNotFoundError:
            self._file = None
        if self._tail is not None and self._file is not None:
            self._emit_tail()
        self._step()

    def _cancel(self, _: object) -> None:
        self._finished = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._close()

    def _close(self) -> None:
        if self._watching:
            self._watching = False
            _wakeups(self._reactor).remove(self._path, self._wake)
        if self._file is not None:
            self._file.close()
            self._file = None

    def _watch(self) -> None:
        """Be woken when the file is written (once it is open)."""
        if not self._watching and self._file is not None:
            self._watching = _wakeups(self._reactor).add(self._path, self._wake)

    def _wake(self) -> None:
        """The file was written: read it now, not at the next poll."""
        if self._finished or self._paused:
            return
        if self._call is not None and self._call.active():
            self._call.reset(0)
        else:
            self._call = self._reactor.callLater(0, self._step)

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._close()
        self.done.callback(None)

    def _entry(self, timestamp: bytes, stream: int, content: bytes) -> None:
        if stream not in self._streams:
            return
        if self._since or self._until or self._timestamps:
            when, printed = parse_timestamp(timestamp)
            if self._since and when < self._since:
                return
            if self._until and when > self._until:
                return
            if self._timestamps:
                content = printed + b" " + content
        self._out.append((stream, content))

    def _flush_out(self) -> None:
        out, self._out = self._out, []
        for stream, content in out:
            self._on_output(stream, content)
        if out:
            self.on_flush()

    def _flush_partials(self) -> list[tuple[bytes, int, bytes]]:
        """
        The unterminated last line of each stream, as an entry of its own:
        the container ended without a newline, and dockerd shows it so.
        """
        partial, self._partial = self._partial, {}
        return [
            (stamp, stream, content) for stream, (stamp, content) in partial.items()
        ]

    def _lines(self, data: bytes) -> list[tuple[bytes, int, bytes]]:
        """Whole entries in C{data} (plus what was left over), partials joined."""
        data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()
        entries = []
        for line in lines:
            parsed = parse_line(line)
            if parsed is None:
                continue
            timestamp, stream, full, content = parsed
            if not full:
                held = self._partial.get(stream, (timestamp, b""))[1]
                self._partial[stream] = (timestamp, held + content)
                continue
            content = self._partial.pop(stream, (b"", b""))[1] + content + b"\n"
            entries.append((timestamp, stream, content))
        return entries

    def _emit_tail(self) -> None:
        """
        The last C{tail} entries, read from the end of the file backwards
        (a bigger piece each time) rather than through the whole log; the
        file is left at its end for what follows.
        """
        if self._file is None:
            return
        want = max(self._tail or 0, 0)
        size = self._file.seek(0, 2)
        ended = not (self._follow and self._running())
        block = 1 << 16
        start = size
        entries: list[tuple[bytes, int, bytes]] = []
        while want and start > 0:
            start = max(0, start - block)
            self._file.seek(start)
            data = self._file.read(size - start)
            if start > 0:
                # The first line may be cut: begin after it.
                data = data[data.find(b"\n") + 1 :]
            self._rest = b""
            self._partial = {}
            entries = self._lines(data)
            if ended:
                entries += self._flush_partials()
            entries = [e for e in entries if e[1] in self._streams]
            # One more than wanted: the first may be the end of a split line.
            if len(entries) > want:
                break
            block *= 4
        self._file.seek(size)
        for timestamp, stream, content in entries[-want:] if want else []:
            self._entry(timestamp, stream, content)
        self._flush_out()

    def _step(self) -> None:
        self._call = None
        if self._finished or self._paused:
            return
        if self._file is None:
            try:
                self._file = self._path.open("rb")
            except FileNotFoundError:
                self._file = None
        data = self._file.read(_CHUNK) if self._file is not None else b""
        if data:
            for timestamp, stream, content in self._lines(data):
                self._entry(timestamp, stream, content)
            self._flush_out()
            self._call = self._reactor.callLater(0, self._step)
            return
        if self._follow and self._running():
            self._watch()
            self._call = self._reactor.callLater(_POLL, self._step)
            return
        for timestamp, stream, content in self._flush_partials():
            self._entry(timestamp, stream, content)
        self._flush_out()
        self._finish()
