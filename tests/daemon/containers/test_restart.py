# -*- test-case-name: tests.daemon.containers.test_restart -*-
"""
Tests for L{dockserve.daemon.containers.restart} and the restart paths of
the container service, each as dockerd 20.10 behaved side by side.
"""

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import restart
from dockserve.daemon.containers.service import ContainerService
from dockserve.errors import Conflict, NotModified
from dockserve.testing.containers import make_service


class PolicyTests(SynchronousTestCase):
    def test_should_restart(self) -> None:
        """
        moby's decision: always whatever happened, unless-stopped unless
        stopped by hand, on-failure after a failure with retries left.
        """
        always = restart.RestartPolicy("always")
        unless = restart.RestartPolicy("unless-stopped")
        on_failure = restart.RestartPolicy("on-failure", 3)
        self.assertTrue(always.should_restart(0, 9, True))
        self.assertTrue(unless.should_restart(0, 9, False))
        self.assertFalse(unless.should_restart(1, 0, True))
        self.assertTrue(on_failure.should_restart(2, 2, True))
        self.assertFalse(on_failure.should_restart(2, 3, False))
        self.assertFalse(on_failure.should_restart(0, 0, False))
        self.assertTrue(
            restart.RestartPolicy("on-failure").should_restart(1, 99, False)
        )

    def test_at_boot(self) -> None:
        """The daemon's start asks the same question."""
        for name in ("always", "unless-stopped", "on-failure", "no"):
            policy = restart.RestartPolicy(name)
            for stopped in (False, True):
                self.assertEqual(
                    policy.restarts_at_boot(137, 0, stopped),
                    policy.should_restart(137, 0, stopped),
                )

    def test_cancel_and_reset(self) -> None:
        """A cancel holds until the next start resets the manager."""
        backoff = restart.Backoff()
        backoff.next_delay(0)
        backoff.next_delay(0)
        backoff.cancel()
        self.assertTrue(backoff.canceled)
        backoff.reset()
        self.assertFalse(backoff.canceled)
        self.assertEqual(backoff.next_delay(0), 0.1)

    def test_kill_cancels(self) -> None:
        """
        SIGKILL always cancels; another signal when there is no StopSignal,
        or when it is the StopSignal.
        """
        self.assertTrue(restart.kill_cancels(9, 15))
        self.assertTrue(restart.kill_cancels(1, None))
        self.assertTrue(restart.kill_cancels(3, 3))
        self.assertFalse(restart.kill_cancels(1, 3))


class _Case(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.root.mkdir()
        self.service, self.runtime, self.clock = make_service(self.root)
        self.events: list[str] = []
        self.service.set_events(
            lambda _t, action, _a, _attrs: self.events.append(action)
        )

    def started(self, policy: str, name: str = "web", **config: object) -> str:
        name_, _, count = policy.partition(":")
        host = {"RestartPolicy": {"Name": name_, "MaximumRetryCount": int(count or 0)}}
        request = {"Image": "busybox", "Cmd": ["true"], "HostConfig": host, **config}
        cid = str(self.service.create(name, request)["Id"])
        self.successResultOf(self.service.start(cid))
        return cid

    def state(self, cid: str, service: ContainerService | None = None) -> str:
        info = (service or self.service).inspect(cid)
        state = info["State"]
        return f"{state['Status']} {state['Running']} {info['RestartCount']}"

    def restarting(self, cid: str, deaths: int) -> None:
        """Let it die C{deaths} times, left waiting for its next restart."""
        for n in range(deaths):
            self.runtime.exit(cid, 2)
            if n < deaths - 1:
                self.clock.advance(60)
        self.assertEqual(self.state(cid), f"restarting True {deaths}")


class RestartingTests(_Case):
    def test_events_and_count(self) -> None:
        """
        Each restart is die then start, as dockerd's; RestartCount counts
        them and inspect calls a restarting container running.
        """
        cid = self.started("always")
        self.restarting(cid, 3)
        self.clock.advance(60)
        self.assertEqual(self.state(cid), "running True 3")
        self.assertEqual(
            self.events,
            ["create", "start", "die", "start", "die", "start", "die", "start"],
        )

    def test_backoff(self) -> None:
        """100 ms, then 200 ms and 400 ms; ten seconds of running reset it."""
        cid = self.started("always")
        for delay in (0.1, 0.2, 0.4):
            self.runtime.exit(cid, 1)
            self.clock.advance(delay - 0.01)
            self.assertEqual(self.state(cid).split()[0], "restarting")
            self.clock.advance(0.01)
            self.assertEqual(self.state(cid).split()[0], "running")
        self.clock.advance(10)
        self.runtime.exit(cid, 1)
        self.clock.advance(0.1)
        self.assertEqual(self.state(cid).split()[0], "running")

    def test_stop(self) -> None:
        """docker stop of a restarting container: a stop event, exited, no restart."""
        cid = self.started("always")
        self.restarting(cid, 2)
        del self.events[:]
        self.successResultOf(self.service.stop(cid))
        self.clock.advance(60)
        self.assertEqual(self.state(cid), "exited False 2")
        self.assertEqual(self.events, ["stop"])

    def test_kill(self) -> None:
        """docker kill of a restarting container stops it, silently."""
        cid = self.started("always")
        self.restarting(cid, 2)
        del self.events[:]
        self.successResultOf(self.service.kill(cid, "SIGHUP"))
        self.clock.advance(60)
        self.assertEqual(self.state(cid), "exited False 2")
        self.assertEqual(self.events, [])

    def test_start(self) -> None:
        """docker start of a restarting container changes nothing (304)."""
        cid = self.started("always")
        self.restarting(cid, 2)
        self.assertRaises(NotModified, self.service.start, cid)
        self.assertEqual(self.state(cid), "restarting True 2")

    def test_restart(self) -> None:
        """docker restart: stop (its event), start, restart; the count starts over."""
        cid = self.started("always")
        self.restarting(cid, 2)
        del self.events[:]
        self.successResultOf(self.service.restart(cid))
        self.assertEqual(self.events, ["stop", "start", "restart"])
        self.assertEqual(self.state(cid), "running True 0")

    def test_pause(self) -> None:
        """Pausing a restarting container is dockerd's 409."""
        cid = self.started("always")
        self.restarting(cid, 1)
        error = self.assertRaises(Conflict, self.service.pause, cid)
        self.assertEqual(
            error.message,
            f"Container {cid} is restarting, wait until the container is running",
        )


class KillTests(_Case):
    def test_kill_signal_stops_restarts(self) -> None:
        """
        Without a StopSignal, any docker kill cancels the restarts: the
        process that then exits stays exited (dockerd: kill -s HUP).
        """
        cid = self.started("always")
        self.runtime.deadly = {9}
        self.successResultOf(self.service.kill(cid, "SIGHUP"))
        self.runtime.exit(cid, 5)
        self.clock.advance(60)
        self.assertEqual(self.state(cid), "exited False 0")

    def test_other_than_stop_signal(self) -> None:
        """
        With a StopSignal, another signal does not cancel: always restarts,
        unless-stopped (now stopped by hand) does not.
        """
        always = self.started("always", "aa", StopSignal="SIGUSR1")
        unless = self.started("unless-stopped", "uu", StopSignal="SIGUSR1")
        self.runtime.deadly = {9}
        for cid in (always, unless):
            self.successResultOf(self.service.kill(cid, "SIGHUP"))
            self.runtime.exit(cid, 5)
        self.clock.advance(1)
        self.assertEqual(self.state(always), "running True 1")
        self.assertEqual(self.state(unless), "exited False 0")

    def test_rm_force(self) -> None:
        """A forced removal of an always-container does not restart it first."""
        cid = self.started("always")
        self.successResultOf(self.service.remove(cid, force=True))
        self.clock.advance(60)
        self.assertNotIn("start", self.events[2:])
        self.assertEqual(self.events[-1], "destroy")


class HealthTests(_Case):
    def test_reset_on_restart(self) -> None:
        """
        Each restart starts health over (starting, no failing streak), and
        the last results stay, as dockerd keeps them.
        """
        check = {"Test": ["CMD", "true"], "Interval": 1_000_000_000, "Retries": 1}
        cid = self.started("always", Healthcheck=check)
        self.clock.advance(1)
        self.runtime.execs[-1].exit(0)
        health = self.service.inspect(cid)["State"]["Health"]
        self.assertEqual((health["Status"], len(health["Log"])), ("healthy", 1))
        self.runtime.exit(cid, 1)
        self.clock.advance(0.1)
        health = self.service.inspect(cid)["State"]["Health"]
        self.assertEqual(
            (health["Status"], health["FailingStreak"], len(health["Log"])),
            ("starting", 0, 1),
        )


class BootTests(_Case):
    def restarted(self) -> ContainerService:
        again, _, _ = make_service(self.root, runtime=self.runtime, clock=self.clock)
        events: list[str] = self.events
        again.set_events(lambda _t, action, _a, _attrs: events.append(action))
        self.successResultOf(again.restore())
        return again

    def test_restarting_at_boot(self) -> None:
        """
        A container waiting for its restart when the daemon stopped does
        not die a second time; it is started again with its count at 0,
        as dockerd's boot start.
        """
        cid = self.started("always")
        self.restarting(cid, 3)
        del self.events[:]
        again = self.restarted()
        self.clock.advance(1)
        self.assertNotIn("die", self.events)
        self.assertIn("start", self.events)
        self.assertEqual(self.state(cid, again), "running True 0")

    def test_policies_at_boot(self) -> None:
        """
        Stopped by hand: always and on-failure (it exited non-zero) come
        back at the next daemon start, unless-stopped does not.
        """
        cids = {
            policy: self.started(policy, policy.replace("-", ""))
            for policy in ("always", "unless-stopped", "on-failure")
        }
        for cid in cids.values():
            self.successResultOf(self.service.stop(cid, timeout=0))
        again = self.restarted()
        self.clock.advance(1)
        self.assertEqual(
            {p: self.state(cid, again).split()[0] for p, cid in cids.items()},
            {"always": "running", "unless-stopped": "exited", "on-failure": "running"},
        )
