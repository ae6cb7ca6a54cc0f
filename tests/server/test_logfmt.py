"""Tests for L{dockserve.server.logfmt}: --log-level and --log-format."""

import io
import json

from twisted.logger import Logger, LogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from dockserve.server.logfmt import install


class LogFormatTests(SynchronousTestCase):
    def logger(self, *, level: str, fmt: str) -> tuple[Logger, io.StringIO]:
        publisher = LogPublisher()
        stream = io.StringIO()
        install(publisher, stream, level=level, fmt=fmt)
        return Logger(namespace="dockserve.api.middleware", observer=publisher), stream

    def request_line(self, log: Logger) -> None:
        log.info(
            "{method} {path} {status} {bytes} {duration:.6f}s {peer}",
            method="GET", path="/_ping", status=200, bytes=2, duration=0.0012,
            peer="127.0.0.1:40000",
        )  # fmt: skip

    def test_text(self) -> None:
        """One line: time, level, namespace, the rendered message."""
        log, stream = self.logger(level="info", fmt="text")
        self.request_line(log)
        [line] = stream.getvalue().splitlines()
        self.assertRegex(
            line,
            r"^\d{4}-\d\d-\d\dT[\d:.]+\+00:00 info \[dockserve\.api\.middleware\]"
            r" GET /_ping 200 2 0\.001200s 127\.0\.0\.1:40000$",
        )

    def test_json(self) -> None:
        """One JSON object per line, with the request's fields."""
        log, stream = self.logger(level="info", fmt="json")
        self.request_line(log)
        [line] = stream.getvalue().splitlines()
        record = json.loads(line)
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["msg"], "GET /_ping 200 2 0.001200s 127.0.0.1:40000")
        self.assertEqual(
            {k: record[k] for k in ("method", "path", "status", "bytes", "peer")},
            {"method": "GET", "path": "/_ping", "status": 200, "bytes": 2,
             "peer": "127.0.0.1:40000"},
        )  # fmt: skip
        self.assertEqual(record["duration"], 0.0012)
        self.assertEqual(record["namespace"], "dockserve.api.middleware")
        self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT[\d:.]+\+00:00$")

    def test_level_filters(self) -> None:
        """Below --log-level nothing is written; debug shows with debug."""
        log, stream = self.logger(level="warn", fmt="text")
        log.info("quiet")
        log.debug("quieter")
        log.warn("loud")  # noqa: G010 (twisted.logger has warn)
        self.assertEqual(len(stream.getvalue().splitlines()), 1)
        self.assertIn("loud", stream.getvalue())
        log, stream = self.logger(level="debug", fmt="text")
        log.debug("shown")
        self.assertIn("debug", stream.getvalue())

    def test_failure_json(self) -> None:
        """A failure's traceback stays inside the one JSON object."""
        log, stream = self.logger(level="info", fmt="json")
        try:
            raise ValueError("boom")  # noqa: TRY301
        except ValueError:
            log.failure("handler failed", Failure())
        lines = stream.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertIn("boom", lines[0])
        json.loads(lines[0])
