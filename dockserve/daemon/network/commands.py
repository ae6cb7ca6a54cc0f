# -*- test-case-name: tests.daemon.network.test_commands -*-
"""
Running the host's networking tools (C{nft}, C{ip}, C{unshare}, the CNI
plugins) from the reactor: spawned, never waited for on the reactor
thread, their output collected.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from attrs import frozen

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol

if TYPE_CHECKING:
    from collections.abc import Mapping

    from twisted.python.failure import Failure


@frozen
class Result:
    """A finished command: its exit code and what it wrote."""

    code: int
    out: bytes
    err: bytes


class _Collect(ProcessProtocol):
    def __init__(self, stdin: bytes | None) -> None:
        self._stdin = stdin
        self.out = bytearray()
        self.err = bytearray()
        self.done: Deferred[Result] = Deferred()

    def connectionMade(self) -> None:
        transport: Any = self.transport
        if self._stdin:
            transport.write(self._stdin)
        transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        (self.out if childFD == 1 else self.err).extend(data)

    def processEnded(self, reason: Failure) -> None:
        value: Any = reason.value
        code = getattr(value, "exitCode", 0)
        if code is None:
            code = 128 + (getattr(value, "signal", 0) or 0)
        self.done.callback(Result(int(code), bytes(self.out), bytes(self.err)))


#: How long a networking tool may take before it is killed: a CNI plugin
#: or C{nft} that hangs would otherwise hold the lock every start needs.
TIMEOUT = 60.0


def run(
    reactor: Any,
    argv: list[str],
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    *,
    timeout: float = TIMEOUT,
) -> Deferred[Result]:
    """
    Run C{argv} with C{stdin}; fires with its L{Result} (a command that
    cannot be run at all fails with the C{OSError}). One still running
    after C{timeout} seconds is killed (SIGKILL) and fires with code 137
    and a standard error that says so, as any other failure would.
    """
    protocol = _Collect(stdin)
    process = reactor.spawnProcess(
        protocol,
        argv[0],
        argv,
        env=dict(env) if env is not None else dict(os.environ),
        childFDs={0: "w", 1: "r", 2: "r"},
    )

    def expire() -> None:
        protocol.err.extend(
            f"{PurePath(argv[0]).name} did not finish within "
            f"{timeout:g} seconds and was killed\n".encode()
        )
        with contextlib.suppress(ProcessExitedAlready):
            process.signalProcess("KILL")

    deadline = reactor.callLater(timeout, expire)

    def cancel(result: Result) -> Result:
        if deadline.active():
            deadline.cancel()
        return result

    return protocol.done.addCallback(cancel)
