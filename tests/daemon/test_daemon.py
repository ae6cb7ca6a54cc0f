"""Tests for L{dockserve.daemon.daemon.Daemon}'s stop."""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.daemon import Daemon


class _Containers:
    def __init__(self) -> None:
        self.reaping: Deferred[None] = Deferred()

    def settled(self) -> Deferred[None]:
        return self.reaping


class StopTests(SynchronousTestCase):
    def test_waits_for_reaping(self) -> None:
        """A stopping daemon lets removed containers' leftovers go first."""
        containers = _Containers()
        stopping = Daemon(None, None, containers, Clock()).stop()
        self.assertNoResult(stopping)
        containers.reaping.callback(None)
        self.assertIsNone(self.successResultOf(stopping))

    def test_gives_up(self) -> None:
        """...but not for ever: the next start reaps what is left."""
        clock = Clock()
        stopping = Daemon(None, None, _Containers(), clock).stop()
        clock.advance(4)
        self.assertNoResult(stopping)
        clock.advance(2)
        self.assertIsNone(self.successResultOf(stopping))
