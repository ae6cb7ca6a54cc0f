# -*- test-case-name: tests.integration.test_events -*-
"""
C{docker events} against a real daemon: the container events dockerd 20.10
showed for the same commands, side by side.
"""

from __future__ import annotations

import json

from tests.integration.test_containers import _DaemonCase


class ContainerEventsTests(_DaemonCase):
    def test_docker_events(self) -> None:
        """
        docker events shows a container's life as dockerd 20.10 showed it side
        by side: create, start, pause, unpause, rename (oldName), exec events,
        kill (signal), die (exitCode), stop, destroy.
        """
        import time  # noqa: PLC0415

        start = str(time.time() - 1)
        self.ok("run", "-d", "--name", "evc", "busybox", "sleep", "100")
        self.ok("pause", "evc")
        self.ok("unpause", "evc")
        self.ok("rename", "evc", "evd")
        self.ok("exec", "evd", "true")
        self.ok("stop", "-t", "1", "evd")
        self.ok("rm", "evd")
        out = self.ok("events", "--since", start, "--until", str(time.time() + 1),
                      "--filter", "type=container",
                      "--format", "{{.Action}}|{{json .Actor.Attributes}}")  # fmt: skip
        lines = [line.split("|", 1) for line in out.splitlines()]
        actions = [action for action, _ in lines]
        self.assertEqual(
            actions,
            ["create", "start", "pause", "unpause", "rename", "exec_create: true ",
             "exec_start: true ", "exec_die", "kill", "kill", "die", "stop",
             "destroy"],
        )  # fmt: skip
        attrs = [json.loads(a) for _, a in lines]
        self.assertEqual(attrs[4]["oldName"], "/evc")
        self.assertEqual((attrs[8]["signal"], attrs[9]["signal"]), ("15", "9"))
        self.assertEqual(attrs[10]["exitCode"], "137")
        self.assertEqual(attrs[12]["name"], "evd")
