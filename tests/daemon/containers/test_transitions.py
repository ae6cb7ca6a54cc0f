"""
Tests for L{dockserve.daemon.containers.transitions} and the events the
container service publishes through it, in dockerd's order and shape.
"""

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers.transitions import attributes
from dockserve.testing.containers import make_service


class EventsTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp())
        root.mkdir()
        self.service, self.runtime, self.clock = make_service(root)
        self.events: list[tuple[str, str, dict[str, str]]] = []

        def publish(type_: str, action: str, actor: str, attrs: Any) -> None:
            self.assertEqual(type_, "container")
            self.events.append((action, actor, dict(attrs)))

        self.service.set_events(publish)

    def actions(self) -> list[str]:
        return [action for action, _, _ in self.events]

    def test_life(self) -> None:
        """create, start, pause, unpause, rename, kill, die, destroy, as dockerd."""
        body = {"Image": "busybox", "Cmd": ["sleep", "9"],
                "Labels": {"com.example/tier": "db"}}  # fmt: skip
        cid = self.service.create("web", body)["Id"]
        self.successResultOf(self.service.start(cid))
        self.successResultOf(self.service.pause(cid))
        self.successResultOf(self.service.unpause(cid))
        self.service.rename(cid, "db")
        self.clock.advance(3)
        self.runtime.deadly = {9}
        self.successResultOf(self.service.kill(cid, "KILL"))
        self.successResultOf(self.service.remove(cid))
        self.assertEqual(
            self.actions(),
            ["create", "start", "pause", "unpause", "rename", "kill", "die",
             "destroy"],
        )  # fmt: skip
        create = self.events[0]
        self.assertEqual(create[1], cid)
        self.assertEqual(create[2], {"com.example/tier": "db", "image": "busybox",
                                     "name": "web"})  # fmt: skip
        self.assertEqual(self.events[4][2]["oldName"], "/web")
        self.assertEqual(self.events[5][2]["signal"], "9")
        self.assertEqual(self.events[6][2]["exitCode"], "137")
        self.assertEqual(self.events[6][2]["execDuration"], "3")
        self.assertEqual(self.events[7][2]["name"], "db")

    def test_stop(self) -> None:
        """docker stop: kill (the stop signal), die, stop."""
        cid = self.service.create("web", {"Image": "busybox", "Cmd": ["sh"]})["Id"]
        self.successResultOf(self.service.start(cid))
        self.runtime.deadly = {15}
        self.successResultOf(self.service.stop(cid, timeout=1))
        self.assertEqual(self.actions()[2:], ["kill", "die", "stop"])
        self.assertEqual(self.events[2][2]["signal"], "15")

    def test_exec(self) -> None:
        """exec_create: CMD, exec_start: CMD (dockerd's trailing space), exec_die."""
        cid = self.service.create("web", {"Image": "busybox", "Cmd": ["sh"]})["Id"]
        self.successResultOf(self.service.start(cid))
        exec_id = self.service.exec_create(cid, {"Cmd": ["true"]})["Id"]
        self.successResultOf(self.service.exec_start(exec_id, None))
        self.runtime.execs[-1].exit(0)
        self.assertEqual(
            self.actions()[2:], ["exec_create: true ", "exec_start: true ", "exec_die"]
        )
        self.assertEqual(self.events[-1][2]["execID"], exec_id)
        self.assertEqual(self.events[-1][2]["exitCode"], "0")

    def test_attributes(self) -> None:
        """Labels first, then image and name (which win over labels so named)."""
        cid = self.service.create(
            "web", {"Image": "busybox", "Cmd": ["sh"], "Labels": {"name": "x"}}
        )["Id"]
        rec = self.service.resolve(cid)
        wanted = {"name": "web", "image": "busybox", "exitCode": "0"}
        self.assertEqual(attributes(rec, exitCode="0"), wanted)
