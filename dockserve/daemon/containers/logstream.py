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
"""

import calendar
import functools
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

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


class LogReader:
    """
    One C{docker logs} request over one log file.

    @ivar done: Fires when the stream ends; cancel it to stop following.
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
        self._out: list[tuple[int, list[bytes]]] = []
        self._call: IDelayedCall | None = None
        self._finished = False
        self._paused = False
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
        """The connection is gone: the handler cancels L{done}."""

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
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

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
        if self._out and self._out[-1][0] == stream:
            # One write (one frame) for a run of lines of the same stream,
            # joined once at the flush (adding bytes here was quadratic).
            self._out[-1][1].append(content)
        else:
            self._out.append((stream, [content]))

    def _flush_out(self) -> None:
        out, self._out = self._out, []
        for stream, pieces in out:
            self._on_output(stream, b"".join(pieces))

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
            self._call = self._reactor.callLater(_POLL, self._step)
            return
        for timestamp, stream, content in self._flush_partials():
            self._entry(timestamp, stream, content)
        self._flush_out()
        self._finish()
