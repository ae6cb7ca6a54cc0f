# -*- test-case-name: tests.server.test_logfmt -*-
"""
C{--log-level} and C{--log-format}: Twisted log events as text lines or JSON.

C{--log-format json} writes one object per line with C{time}, C{level},
C{namespace}, C{msg} and the event's own structured fields (a request
line's C{method}, C{path}, C{status}, C{bytes}, C{duration}, C{peer}), so
a log shipper needs no parsing.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
    formatEvent,
)
from zope.interface import implementer

#: C{--log-level} values, as dockerd names them.
LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "fatal": LogLevel.critical,
}

FORMATS = ("text", "json")

_LEVEL_NAMES = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warning",
    LogLevel.error: "error",
    LogLevel.critical: "fatal",
}


def _time(event: dict[str, Any]) -> str:
    when = event.get("log_time")
    if not isinstance(when, int | float):
        return ""
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="microseconds")


def _message(event: dict[str, Any]) -> str:
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            text += "\n" + failure.getTraceback()
        except Exception:
            text += f"\n{failure!r}"
    return text


def render_text(event: dict[str, Any]) -> str:
    """
    One line (plus a traceback when the event carries a failure):
    C{TIME LEVEL [NAMESPACE] MESSAGE}.
    """
    level = _LEVEL_NAMES.get(event.get("log_level", LogLevel.info), "info")
    namespace = event.get("log_namespace", "-")
    return f"{_time(event)} {level} [{namespace}] {_message(event)}\n"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def render_json(event: dict[str, Any]) -> str:
    """
    One JSON object and a newline: C{time}, C{level}, C{namespace}, C{msg},
    and the event's own fields that JSON can carry.
    """
    record: dict[str, Any] = {
        "time": _time(event),
        "level": _LEVEL_NAMES.get(event.get("log_level", LogLevel.info), "info"),
        "namespace": event.get("log_namespace", "-"),
        "msg": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["error"] = failure.getErrorMessage()
            record["traceback"] = failure.getTraceback()
        except Exception:
            record["error"] = repr(failure)
    for key, value in event.items():
        if (
            key.startswith(("log_", "_"))
            or key in record
            or key
            in {
                "format",
                "message",
                "system",
                "isError",
                "time",
            }
        ):
            continue
        record[key] = value if _jsonable(value) else repr(value)
    return json.dumps(record) + "\n"


@implementer(ILogObserver)
class StreamObserver:
    """Write each event, rendered, to a text stream and flush it."""

    def __init__(
        self, stream: IO[str], render: Callable[[dict[str, Any]], str]
    ) -> None:
        self._stream = stream
        self._render = render

    def __call__(self, event: dict[str, Any]) -> None:
        """Write one event as one line; never raise into the logging system."""
        try:
            self._stream.write(self._render(event))
            self._stream.flush()
        except Exception:
            # A log line we cannot write must not take a request down.
            return


def observer(stream: IO[str], *, level: str, fmt: str) -> ILogObserver:
    """
    The observer for C{--log-level} and C{--log-format}.

    @param stream: Where lines go (the daemon's real stderr).
    @param level: A key of L{LEVELS}.
    @param fmt: C{text} or C{json}.
    """
    render = render_json if fmt == "json" else render_text
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])
    return FilteringLogObserver(StreamObserver(stream, render), [predicate])


def install(
    publisher: LogPublisher, stream: IO[str], *, level: str, fmt: str
) -> ILogObserver:
    """Add the observer for these options to C{publisher}; return it."""
    installed = observer(stream, level=level, fmt=fmt)
    publisher.addObserver(installed)
    return installed


@implementer(ILogObserver)
class _Discard:
    """Swallows events: stands in for twistd's own log file observer."""

    def __call__(self, event: dict[str, Any]) -> None:
        del event


def discard() -> ILogObserver:
    """
    An observer that writes nothing, for twistd's C{logger} option: our
    observer already writes every line, twistd's would write them twice.
    """
    return _Discard()
