# -*- test-case-name: tests.integration.test_restart_policies -*-
"""
Restart policies through the docker CLI, as dockerd 20.10 showed them side
by side: the events of each restart, RestartCount, C{docker ps}'s
C{Restarting (N) X ago}, what stop, kill, start, restart, pause, top,
attach and rm do to a container waiting for its restart, the back-off,
health started over at each restart, and the policies at a daemon restart.
"""

from __future__ import annotations

import itertools
import json
import re
import time

from tests.integration.test_containers import _DaemonCase

#: Dies at once with 2: after seven deaths the back-off is 6.4 s.
_DIES = "exit 2"


class _Case(_DaemonCase):
    def run_d(self, name: str, *args: str, command: str = _DIES) -> str:
        """C{docker run -d --name name args busybox sh -c command}: its ID."""
        self.cleanup_container(name)
        return self.ok(
            "run", "-d", "--name", name, *args, "busybox", "sh", "-c", command
        ).strip()

    def state(self, name: str) -> str:
        return self.inspect(name, "{{.State.Status}} {{.RestartCount}}")

    def restarting(self, name: str, deaths: int = 7) -> str:
        """
        An always-container that died C{deaths} times and waits for its next
        restart (6.4 s after the seventh death): its ID.
        """
        cid = self.run_d(name, "--restart", "always")

        def waiting() -> bool:
            status, count = self.state(name).split()
            return status == "restarting" and int(count) >= deaths

        self.until(waiting, f"{name} to die {deaths} times", timeout=30)
        return cid

    def events(self, since: str, name: str, template: str = "{{.Action}}") -> list[str]:
        """C{docker events} of C{name} from C{since} to now, one per line."""
        out = self.ok("events", "--since", since, "--until", str(time.time()),
                      "--filter", f"container={name}",
                      "--format", template)  # fmt: skip
        return out.splitlines()


class RestartEventsTests(_Case):
    def test_on_failure_events(self) -> None:
        """
        on-failure:3: each restart is die (exitCode 3) then start, no
        restart event; then it stays exited with RestartCount 3, and its
        log holds every run's output.
        """
        since = str(time.time() - 1)
        self.run_d("flaky", "--restart", "on-failure:3", command="echo try; exit 3")
        self.until(lambda: self.state("flaky") == "exited 3", "three restarts")
        self.assertEqual(
            self.events(
                since, "flaky", '{{.Action}} {{index .Actor.Attributes "exitCode"}}'
            ),
            ["create ", "start "] + ["die 3", "start "] * 3 + ["die 3"],
        )
        self.assertEqual(self.ok("logs", "flaky"), "try\n" * 4)
        self.assertEqual(self.inspect("flaky", "{{.State.ExitCode}}"), "3")

    def test_backoff(self) -> None:
        """
        Between a death and the next start: at least 100 ms, then 200, 400
        and 800 ms (dockerd's back-off doubles from 100 ms).
        """
        since = str(time.time() - 1)
        self.restarting("bo", deaths=5)
        lines = self.events(since, "bo", "{{.Action}} {{.TimeNano}}")
        times = [(a, int(t)) for a, t in (line.split() for line in lines)]
        gaps = [
            (b[1] - a[1]) / 1e9
            for a, b in itertools.pairwise(times)
            if a[0] == "die" and b[0] == "start"
        ]
        self.assertGreaterEqual(len(gaps), 4, lines)
        for gap, least in zip(gaps, (0.1, 0.2, 0.4, 0.8), strict=False):
            self.assertGreaterEqual(gap, least, gaps)


class RestartingTests(_Case):
    def test_while_restarting(self) -> None:
        """
        Waiting for its restart: ps says Restarting (2) ... ago, inspect
        says restarting and running, start changes nothing, pause, top,
        attach and rm refuse with dockerd's words.
        """
        cid = self.restarting("wr")
        status = self.ok("ps", "--filter", "name=wr", "--format", "{{.Status}}")
        self.assertRegex(
            status.strip(), r"^Restarting \(2\) (Less than a second|\d+ seconds?) ago$"
        )
        self.assertEqual(
            self.inspect(
                "wr", "{{.State.Running}} {{.State.Restarting}} {{.State.Pid}}"
            ),
            "true true 0",
        )
        count = self.inspect("wr", "{{.RestartCount}}")
        self.ok("start", "wr")
        self.assertEqual(self.state("wr"), f"restarting {count}")
        waiting = f"Container {cid} is restarting, wait until the container is running"
        self.assertIn(waiting, self.fails("pause", "wr"))
        self.assertIn(waiting, self.fails("top", "wr"))
        self.assertIn(
            "You cannot attach to a restarting container, wait until it is running",
            self.fails("attach", "wr"),
        )
        self.assertIn("container is restarting", self.fails("rm", "wr"))
        self.assertEqual(self.state("wr"), f"restarting {count}")

    def test_stop(self) -> None:
        """
        docker stop of a restarting container: a stop event (no kill: nothing
        runs), exited with its count, and no restart after its back-off.
        """
        self.restarting("st", deaths=4)
        count = self.inspect("st", "{{.RestartCount}}")
        since = str(time.time())
        self.ok("stop", "st")
        self.assertEqual(self.state("st"), f"exited {count}")
        time.sleep(2)  # longer than the 1.6 s restart it was waiting for
        self.assertEqual(self.state("st"), f"exited {count}")
        self.assertEqual(self.events(since, "st"), ["stop"])

    def test_kill(self) -> None:
        """docker kill of a restarting container stops it, with no event."""
        self.restarting("kl", deaths=4)
        count = self.inspect("kl", "{{.RestartCount}}")
        since = str(time.time())
        self.ok("kill", "kl")
        time.sleep(2)
        self.assertEqual(self.state("kl"), f"exited {count}")
        self.assertEqual(self.events(since, "kl"), [])

    def test_restart(self) -> None:
        """
        docker restart of a restarting container: stop, start, restart; the
        count starts over.
        """
        self.restarting("rs", deaths=4)
        since = str(time.time())
        self.ok("restart", "rs")
        actions = self.events(since, "rs")
        self.assertEqual(actions[:2], ["stop", "start"])
        self.assertIn("restart", actions)
        self.assertLess(int(self.inspect("rs", "{{.RestartCount}}")), 4)

    def test_kill_signal_ends_restarts(self) -> None:
        """
        docker kill -s HUP of an always-container whose process exits on
        HUP: it stays exited (any kill cancels restarts without a
        StopSignal, as dockerd); docker start brings the policy back.
        """
        trap = 'trap "exit 5" HUP; echo ready; sleep 300 & wait'
        self.run_d("hup", "--restart", "always", command=trap)
        self.until(lambda: "ready" in self.ok("logs", "hup"), "the trap")
        self.ok("kill", "-s", "HUP", "hup")
        self.until(lambda: self.state("hup") == "exited 0", "the exit")
        time.sleep(1)
        self.assertEqual(self.state("hup"), "exited 0")
        self.assertEqual(self.inspect("hup", "{{.State.ExitCode}}"), "5")


class HealthRestartTests(_Case):
    def test_health_starts_over(self) -> None:
        """
        Each restart starts health over: a second health_status: healthy
        comes after the restart, and the results of the run before stay in
        State.Health.Log, as dockerd keeps them.
        """
        since = str(time.time() - 1)
        self.run_d("hr", "--restart", "on-failure:1", "--health-cmd", "true",
                   "--health-interval", "1s", command="sleep 3; exit 1")  # fmt: skip
        self.until(lambda: self.state("hr") == "exited 1", "the restart", timeout=30)
        actions = [
            a
            for a in self.events(since, "hr")
            if a in {"start", "die"} or "health" in a
        ]
        self.assertEqual(
            actions,
            ["start", "health_status: healthy", "die"] * 2,
        )
        health = json.loads(self.inspect("hr", "{{json .State.Health}}"))
        started = self.inspect("hr", "{{.State.StartedAt}}")
        older = [e for e in health["Log"] if e["Start"] < started]
        self.assertTrue(older, health["Log"])


class DaemonRestartTests(_Case):
    def test_policies_at_daemon_restart(self) -> None:
        """
        Stopped by hand before the daemon restarts: always and on-failure
        (it exited 137) come back, unless-stopped stays stopped, as dockerd.
        One waiting for its restart does not die again: it starts, its
        count from 0.
        """
        for policy in ("always", "unless-stopped", "on-failure"):
            self.run_d(policy, "--restart", policy, command="sleep 300")
        self.ok("stop", "-t", "0", "always", "unless-stopped", "on-failure")
        self.run_d("up", "--restart", "unless-stopped", command="sleep 300")
        self.restarting("back", deaths=6)
        self.daemon.restart()
        since = str(time.time() - 60)  # the new daemon's events only
        for name in ("always", "on-failure", "up"):
            self.until(
                lambda name=name: self.inspect(name, "{{.State.Status}}") == "running",
                f"{name} to run",
            )
        self.assertEqual(self.inspect("unless-stopped", "{{.State.Status}}"), "exited")
        self.until(lambda: self.events(since, "back"), "back to start again")
        self.assertEqual(self.events(since, "back")[0], "start")
        self.assertLess(int(self.inspect("back", "{{.RestartCount}}")), 6)
        self.assertTrue(re.match(r"^\d+$", self.inspect("back", "{{.RestartCount}}")))
