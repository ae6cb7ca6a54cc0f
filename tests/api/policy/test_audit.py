"""Tests for L{dockserve.api.policy.audit}: the JSON-lines file itself."""

import json
import os
from pathlib import Path

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.policy.audit import AuditLog, timestamp


class AuditLogTests(SynchronousTestCase):
    def test_append(self) -> None:
        """Lines are appended to what is there, one JSON object each, 0600."""
        path = Path(self.mktemp())
        path.write_text('{"before": true}\n')
        path.chmod(0o600)
        log = AuditLog.open(str(path))
        self.addCleanup(log.close)
        log.write({"route": "containers.list", "who": "ålice"})
        self.assertEqual(
            [json.loads(line) for line in path.read_text().splitlines()],
            [{"before": True}, {"route": "containers.list", "who": "ålice"}],
        )

    def test_new_file_private(self) -> None:
        """A new audit log is readable by root alone."""
        path = Path(self.mktemp())
        AuditLog.open(str(path)).close()
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)

    def test_failure_logged_once(self) -> None:
        """A write that fails is logged once, not for every request."""
        read_end, write_end = os.pipe()
        os.close(read_end)
        log = AuditLog(write_end, "/broken")
        self.addCleanup(log.close)
        with capturedLogs() as events:
            log.write({"a": 1})
            log.write({"a": 2})
        self.assertEqual(
            len([e for e in events if "Cannot write the audit log" in e["log_format"]]),
            1,
        )

    def test_timestamp(self) -> None:
        """RFC 3339, UTC, milliseconds."""
        self.assertEqual(timestamp(1_765_000_000.25), "2025-12-06T05:46:40.250Z")
