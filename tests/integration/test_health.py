# -*- test-case-name: tests.integration.test_health -*-
"""
Healthchecks through the docker CLI, as dockerd 20.10 shows them: ps's
status suffix, State.Health, the health filter, the events.
"""

from __future__ import annotations

import json
import time

from tests.integration.test_containers import _DaemonCase


class HealthTests(_DaemonCase):
    def status(self, name: str) -> str:
        return self.ok("ps", "-a", "--filter", f"name={name}", "--format",
                       "{{.Status}}").strip()  # fmt: skip

    def test_starting_healthy_unhealthy(self) -> None:
        """
        (health: starting), then (healthy) once the check passes, then
        (unhealthy) after retries failures; events say each change; the
        container keeps running.
        """
        start = str(time.time() - 1)
        self.cleanup_container("hc")
        self.ok("run", "-d", "--name", "hc", "--health-cmd", "test -f /tmp/ok",
                "--health-interval", "1s", "--health-retries", "2", "busybox",
                "sh", "-c", "sleep 2; touch /tmp/ok; sleep 300")  # fmt: skip
        self.assertIn("(health: starting)", self.status("hc"))
        self.until(lambda: "(healthy)" in self.status("hc"), "healthy", timeout=15)
        self.assertEqual(self.ok("ps", "-q", "--filter", "health=healthy"),
                         self.ok("ps", "-q", "--filter", "name=hc"))  # fmt: skip
        self.ok("exec", "hc", "rm", "/tmp/ok")
        self.until(lambda: "(unhealthy)" in self.status("hc"), "unhealthy", timeout=15)
        health = json.loads(self.inspect("hc", "{{json .State.Health}}"))
        self.assertEqual(health["Status"], "unhealthy")
        self.assertGreaterEqual(health["FailingStreak"], 2)
        self.assertLessEqual(len(health["Log"]), 5)
        self.assertEqual(self.inspect("hc", "{{.State.Status}}"), "running")
        out = self.ok("events", "--since", start, "--until", str(time.time()),
                      "--filter", "event=health_status",
                      "--format", "{{.Action}}")  # fmt: skip
        wanted = ["health_status: healthy", "health_status: unhealthy"]
        self.assertEqual(out.splitlines()[:2], wanted)
        # Each probe is an exec, as dockerd's: create, start, die.
        probes = self.ok("events", "--since", start, "--until", str(time.time()),
                         "--filter", "container=hc", "--filter", "event=exec_die",
                         "--filter", "event=exec_create", "--filter",
                         "event=exec_start", "--format",
                         "{{.Action}}|{{.Actor.Attributes.exitCode}}")  # fmt: skip
        first = [line.split("|") for line in probes.splitlines()[:3]]
        self.assertEqual(
            [action for action, _ in first],
            ["exec_create: /bin/sh -c test -f /tmp/ok",
             "exec_start: /bin/sh -c test -f /tmp/ok", "exec_die"],
        )  # fmt: skip
        self.assertIn(first[2][1], {"0", "1"})

    def test_timeout(self) -> None:
        """A check past --health-timeout: exit -1, dockerd's message."""
        self.cleanup_container("slow")
        self.ok("run", "-d", "--name", "slow", "--health-cmd", "sleep 5",
                "--health-interval", "1s", "--health-timeout", "1s", "busybox",
                "sleep", "300")  # fmt: skip

        def logged() -> list[dict[str, object]]:
            health = json.loads(self.inspect("slow", "{{json .State.Health}}"))
            return list(health["Log"])

        log = self.until(logged, "a probe result", timeout=15)
        self.assertEqual(log[0]["ExitCode"], -1)
        self.assertEqual(log[0]["Output"], "Health check exceeded timeout (1s)")

    def test_no_healthcheck(self) -> None:
        """Without a check: no State.Health, health=none filter."""
        self.cleanup_container("plain")
        self.ok("run", "-d", "--name", "plain", "busybox", "sleep", "300")
        self.assertEqual(self.inspect("plain", "{{json .State.Health}}"), "null")
        self.assertIn(
            self.inspect("plain", "{{.Id}}")[:12],
            self.ok("ps", "-q", "--filter", "health=none"),
        )
