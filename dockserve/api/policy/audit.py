# -*- test-case-name: tests.api.policy.test_audit -*-
"""
C{--audit-log PATH}: one JSON object per API request, appended as it ends.

Each line says when, who (the principal, its listener, certificate
subject, uid), what (method, route name, path, the objects it named or
made), the verdict and the rule that decided, the status and how long it
took. Never a header's value (C{X-Registry-Auth}), a body (C{Env}), or
a query string: what a secret could be in is left out whole.

The file is opened once, append-only and C{0600}; each line is one
C{write(2)} with C{O_APPEND}, so lines never interleave, and a log
rotation by C{copytruncate} keeps working.
"""

import json
import os
from datetime import UTC, datetime
from typing import Any

from twisted.logger import Logger

_log = Logger()


def timestamp(seconds: float) -> str:
    """Unix C{seconds} as RFC 3339 UTC with milliseconds."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """
    An open audit log.

    @ivar path: Its file.
    """

    def __init__(self, fd: int, path: str) -> None:
        self._fd = fd
        self.path = path
        self._failing = False

    @classmethod
    def open(cls, path: str) -> "AuditLog":
        """
        Open (or create, C{0600}) C{path} for appending.

        @raise OSError: When it cannot be.
        """
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return cls(fd, path)

    def write(self, record: dict[str, Any]) -> None:
        """
        Append C{record} as one line. A write that fails is logged once
        (until one succeeds again); the request it describes goes on.
        """
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        try:
            os.write(self._fd, line.encode("utf-8", "replace") + b"\n")
        except OSError as e:
            if not self._failing:
                self._failing = True
                _log.error(
                    "Cannot write the audit log {path}: {error}",
                    path=self.path,
                    error=e,
                )
            return
        self._failing = False

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
