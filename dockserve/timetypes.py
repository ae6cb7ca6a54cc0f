# -*- test-case-name: tests.test_timetypes -*-
"""
Times as Docker's API writes them, read one way everywhere: the C{since}
and C{until} of logs, events and prune filters, and the RFC 3339 times of
inspect.

A filter's C{until=10m} and a C{docker events --since 2026-12-06T10:00}
are both moby's C{timetypes.GetTimestamp} (L{get_timestamp}): a Go
duration before now, a Unix timestamp, or an RFC 3339 time or date. The
query parameters C{since}/C{until} of C{/events} and C{/containers/{id}/logs}
are what the CLI made of those already, C{seconds[.nanoseconds]}
(L{parse_timestamp}).
"""

from __future__ import annotations

import datetime as dt
import re

from dockserve.errors import InvalidParameter

#: Go's C{time.ParseDuration} units, in seconds.
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
          "m": 60.0, "h": 3600.0}  # fmt: skip
_DURATION = re.compile(r"[-+]?((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+")
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")

#: The zero time Docker shows for "never".
ZERO_TIME = "0001-01-01T00:00:00Z"


def parse_duration(text: str) -> float:
    """
    A Go duration (C{1h30m}, C{90s}, C{1.5h}, C{-2m}, C{0}) in seconds.

    @raise ValueError: For anything else (C{10}, C{1d}, C{h}).
    """
    if text in {"0", "+0", "-0"}:
        return 0.0
    if not _DURATION.fullmatch(text):
        raise ValueError(f"time: invalid duration {text!r}")
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    return -seconds if text.startswith("-") else seconds


def _fail(value: str) -> InvalidParameter:
    return InvalidParameter(f'failed to parse value as time or duration: "{value}"')


def get_timestamp(value: str, now: float) -> float:
    """
    Moby's C{GetTimestamp} as Unix seconds: a Go duration before C{now}
    (but not C{0}), an RFC 3339 time (C{2026-12-06T10:00:00Z}, with or
    without seconds, fraction or zone; no zone is UTC, the daemon's), a
    date (C{2026-12-06}), or Unix seconds (C{1765000000.5}).

    @raise InvalidParameter: dockerd's C{failed to parse value as time or
        duration: "..."}.
    """
    if value != "0":
        try:
            return now - parse_duration(value)
        except ValueError:
            pass
    if "-" in value[1:] or "T" in value:
        return _rfc3339_or_date(value)
    try:
        return parse_timestamp(value)
    except InvalidParameter:
        raise _fail(value) from None


def _rfc3339_or_date(value: str) -> float:
    text = value.replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    date, sep, clock = text.partition("T")
    if sep:
        zone = ""
        match = re.search(r"[+-]\d\d:\d\d$", clock)
        if match:
            clock, zone = clock[: match.start()], match.group()
        if clock.count(":") == 0:
            clock += ":00"
        whole, dot, fraction = clock.partition(".")
        if dot:
            # Go writes nanoseconds; Python reads at most microseconds.
            clock = f"{whole}.{fraction[:6]}"
        text = f"{date}T{clock}{zone}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _fail(value) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def parse_timestamp(value: str) -> float:
    """
    C{seconds[.nanoseconds]} (moby's C{ParseTimestamps}), what the CLI
    sends as C{since}/C{until}; C{""} is 0.

    @raise InvalidParameter: For anything else.
    """
    if not value:
        return 0.0
    seconds, dot, fraction = value.partition(".")
    if not seconds.lstrip("-").isdigit() or (dot and not fraction.isdigit()):
        raise _fail(value)
    return float(f"{seconds}.{fraction[:9]}" if dot else seconds)


def rfc3339(ns: int) -> str:
    """Unix nanoseconds as Docker writes times (C{...T10:00:00.123456789Z})."""
    if ns <= 0:
        return ZERO_TIME
    seconds, nanos = divmod(ns, 1_000_000_000)
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"
