# -*- test-case-name: tests.daemon.network.test_commands -*-
"""Tests for L{dockserve.daemon.network.commands}."""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.network import commands


class _Process:
    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)
        self.protocol.processEnded(Failure(ProcessTerminated(signal=9)))


class _Reactor(Clock):
    """A clock that spawns processes that run until told otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.processes: list[_Process] = []

    def spawnProcess(self, protocol: Any, *_a: Any, **_k: Any) -> _Process:
        process = _Process(protocol)
        self.processes.append(process)
        return process


class RunTests(SynchronousTestCase):
    def test_finishes(self) -> None:
        """Output and exit code are collected; no timer is left behind."""
        reactor = _Reactor()
        done = commands.run(reactor, ["/usr/sbin/nft", "-f", "-"], b"x")
        protocol = reactor.processes[0].protocol
        protocol.childDataReceived(1, b"out")
        protocol.childDataReceived(2, b"err")
        protocol.processEnded(Failure(ProcessDone(0)))
        result = self.successResultOf(done)
        self.assertEqual((result.code, result.out, result.err), (0, b"out", b"err"))
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_hung_command_is_killed(self) -> None:
        """A tool still running at its deadline is killed and says so."""
        reactor = _Reactor()
        done = commands.run(reactor, ["/usr/lib/cni/bridge"], timeout=5)
        reactor.advance(4.9)
        self.assertNoResult(done)
        reactor.advance(0.1)
        self.assertEqual(reactor.processes[0].signals, ["KILL"])
        result = self.successResultOf(done)
        self.assertEqual(result.code, 137)
        self.assertEqual(
            result.err, b"bridge did not finish within 5 seconds and was killed\n"
        )
