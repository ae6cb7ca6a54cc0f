"""
Tests for L{dockserve.daemon.volumes.service}: a volume held by a
container that is already removed (its release on its way).
"""

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.volumes.service import VolumeService
from dockserve.errors import Conflict


class HeldAfterRemovalTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.users: dict[str, list[str]] = {}
        self.events: list[tuple[str, str, dict[str, str]]] = []
        self.commands: list[list[str]] = []
        self.service = VolumeService(
            Path(self.mktemp()),
            users=lambda name: self.users.get(name, []),
            publish=self.publish,
            run=self.run_command,
        )
        self.service.restore()

    def publish(self, type_: str, action: str, actor: str, attrs: Any) -> None:
        del type_
        self.events.append((action, actor, dict(attrs)))

    def run_command(self, argv: list[str]) -> Deferred[tuple[int, bytes]]:
        self.commands.append(argv)
        return succeed((0, b""))

    def test_plain_volume_free(self) -> None:
        """
        docker run --rm -v vv:/d; docker volume rm vv: the removed container
        no longer uses it though its release has not come; the unmount is
        told before the destroy, and the late release changes nothing.
        """
        self.service.create("vv")
        self.users["vv"] = ["c1"]
        self.successResultOf(self.service.acquire("vv", "c1", "/d"))
        self.assertRaises(Conflict, self.service.remove, "vv")
        self.users["vv"] = []
        self.successResultOf(self.service.remove("vv"))
        self.assertEqual(
            [(action, attrs.get("container")) for action, _, attrs in self.events],
            [("create", None), ("mount", "c1"), ("unmount", "c1"), ("destroy", None)],
        )
        self.successResultOf(self.service.release("vv", "c1"))
        self.assertEqual(len(self.events), 4)

    def test_mounted_device_waits(self) -> None:
        """A volume whose device is still mounted stays in use until released."""
        self.service.create(
            "tt", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
        )
        self.successResultOf(self.service.acquire("tt", "c1", "/d"))
        error = self.assertRaises(Conflict, self.service.remove, "tt")
        self.assertEqual(error.message, "remove tt: volume is in use - [c1]")
        self.successResultOf(self.service.release("tt", "c1"))
        self.successResultOf(self.service.remove("tt"))
        self.assertEqual(self.commands[-1][0], "umount")

    def test_prune(self) -> None:
        """Prune takes a plain volume a removed container still held."""
        self.service.create("vv")
        self.successResultOf(self.service.acquire("vv", "gone", "/d"))
        pruned = self.successResultOf(self.service.prune({}, anonymous_only=False))
        self.assertEqual(pruned["VolumesDeleted"], ["vv"])
