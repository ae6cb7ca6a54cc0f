"""Tests for L{dockserve.daemon.containers.health}: dockerd's probe rules."""

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers.health import Health, Monitor, Settings

S = 1_000_000_000


class _Proc:
    def __init__(self, output: bytes = b"") -> None:
        self.exited: Deferred[int] = Deferred()
        self.pid = 0
        self._output = output

    def output(self) -> bytes:
        return self._output


class SettingsTests(SynchronousTestCase):
    def test_defaults_and_kinds(self) -> None:
        settings = Settings.of({"Healthcheck": {"Test": ["CMD-SHELL", "test -f /ok"]}})
        assert settings is not None
        self.assertEqual((settings.interval, settings.timeout, settings.retries,
                          settings.start_period, settings.start_interval),
                         (30.0, 30.0, 3, 0.0, 5.0))  # fmt: skip
        self.assertEqual(settings.command(["/bin/sh", "-c"]),
                         ["/bin/sh", "-c", "test -f /ok"])  # fmt: skip
        check = {"Test": ["CMD", "true", "x"], "Interval": 2 * S, "Retries": 5}
        cmd = Settings.of({"Healthcheck": check})
        assert cmd is not None
        self.assertEqual((cmd.command(["sh", "-c"]), cmd.interval, cmd.retries),
                         (["true", "x"], 2.0, 5))  # fmt: skip
        for none in ({}, {"Healthcheck": {"Test": ["NONE"]}},
                     {"Healthcheck": {"Test": []}}):  # fmt: skip
            self.assertIsNone(Settings.of(none))


class MonitorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.procs: list[_Proc] = []
        self.changes: list[tuple[str, bool]] = []

    def monitor(self, **settings: Any) -> Monitor:
        def run() -> Deferred[Any]:
            proc = _Proc(b"out")
            self.procs.append(proc)
            return succeed(proc)

        monitor = Monitor(
            self.clock, Settings(["CMD", "x"], **settings),
            started_at=self.clock.seconds(), run=run,
            changed=lambda h, c: self.changes.append((h.status, c)),
        )  # fmt: skip
        monitor.start()
        return monitor

    def probe(self, code: int, after: float) -> None:
        self.clock.advance(after)
        self.procs[-1].exited.callback(code)

    def test_healthy_then_unhealthy(self) -> None:
        """0 is healthy; retries failures in a row are unhealthy; 5 results kept."""
        monitor = self.monitor(interval=1, retries=2)
        self.probe(0, 1)
        self.assertEqual(self.changes, [("healthy", True)])
        self.probe(1, 1)
        self.assertEqual(monitor.health.failing_streak, 1)
        self.probe(1, 1)
        self.assertEqual(self.changes[-1], ("unhealthy", True))
        for _ in range(4):
            self.probe(0, 1)
        self.assertEqual(monitor.health.status, "healthy")
        self.assertEqual(len(monitor.health.log), 5)
        self.assertEqual(monitor.health.log[-1]["ExitCode"], 0)
        self.assertEqual(monitor.health.log[-1]["Output"], "out")

    def test_start_period(self) -> None:
        """Failures in the start period do not count; probes every start interval."""
        monitor = self.monitor(interval=10, start_period=5, start_interval=1, retries=1)
        self.probe(1, 1)
        self.assertEqual((monitor.health.status, monitor.health.failing_streak),
                         ("starting", 0))  # fmt: skip
        self.probe(1, 1)
        self.clock.advance(5)
        self.probe(1, 0)
        self.assertEqual(monitor.health.status, "unhealthy")

    def test_timeout(self) -> None:
        """A probe past its timeout is -1 with dockerd's message."""
        monitor = self.monitor(interval=1, timeout=2)
        self.clock.advance(1)
        self.clock.advance(2)
        self.procs[-1].exited.callback(137)
        entry = monitor.health.log[-1]
        self.assertEqual(entry["ExitCode"], -1)
        self.assertEqual(entry["Output"], "Health check exceeded timeout (2s): out")

    def test_stop(self) -> None:
        monitor = self.monitor(interval=1)
        monitor.stop()
        self.clock.advance(5)
        self.assertEqual(self.procs, [])

    def test_view_round_trip(self) -> None:
        health = Health("healthy", 0, [{"ExitCode": 0}])
        self.assertEqual(Health.from_view(health.view()), health)
