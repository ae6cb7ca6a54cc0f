"""Tests for L{dockserve.daemon.volumes.service}: volumes as dockerd keeps them."""

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.volumes.service import ANONYMOUS_LABEL, VolumeService
from dockserve.errors import Conflict, InvalidParameter, NotFound, SystemError_


class _World:
    """The volumes' surroundings: who uses them, events, commands run."""

    def __init__(self) -> None:
        self.users: dict[str, list[str]] = {}
        self.events: list[tuple[str, str, str, dict[str, str]]] = []
        self.commands: list[list[str]] = []
        self.code = 0

    def publish(self, type_: str, action: str, actor: str, attrs: Any) -> None:
        self.events.append((type_, action, actor, dict(attrs)))

    def run(self, argv: list[str]) -> Deferred[tuple[int, bytes]]:
        self.commands.append(argv)
        return succeed((self.code, b"mount: bad option" if self.code else b""))


class _Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.world = _World()
        self.service = self.make()

    def make(self) -> VolumeService:
        service = VolumeService(
            self.root,
            users=lambda name: self.world.users.get(name, []),
            publish=self.world.publish,
            run=self.world.run,
            now=lambda: 1_765_000_000.0,
        )
        service.restore()
        return service


class CreateTests(_Base):
    def test_create_inspect(self) -> None:
        """A volume as the API shows it, its record on disk, a create event."""
        made = self.service.create("data", labels={"a": "b"})
        self.assertEqual(
            made,
            {"CreatedAt": "2025-12-06T05:46:40Z", "Driver": "local",
             "Labels": {"a": "b"}, "Mountpoint": str(self.root / "data" / "_data"),
             "Name": "data", "Options": None, "Scope": "local"},
        )  # fmt: skip
        self.assertTrue((self.root / "data" / "_data").is_dir())
        self.assertEqual(self.service.inspect("data"), made)
        created = ("volume", "create", "data", {"driver": "local"})
        self.assertEqual(self.world.events, [created])
        # A daemon restart reads it back.
        self.assertEqual(self.make().inspect("data"), made)

    def test_create_existing(self) -> None:
        """Creating a name that exists gives the existing volume, as dockerd."""
        first = self.service.create("data", labels={"a": "b"})
        self.assertEqual(self.service.create("data", labels={"a": "c"}), first)

    def test_random_name(self) -> None:
        self.assertRegex(self.service.create()["Name"], "^[0-9a-f]{64}$")

    def test_bad(self) -> None:
        """dockerd's errors: name, driver, options."""
        error = self.assertRaises(InvalidParameter, self.service.create, "x")
        self.assertIn("volume name is too short", error.message)
        error = self.assertRaises(InvalidParameter, self.service.create, "../x")
        self.assertIn("includes invalid characters for a local volume name",
                      error.message)  # fmt: skip
        error = self.assertRaises(NotFound, self.service.create, "vv", driver="nfsd")
        self.assertEqual(
            error.message,
            'create vv: error looking up volume plugin nfsd: plugin "nfsd" not found',
        )
        error = self.assertRaises(
            InvalidParameter, self.service.create, "vv", driver_opts={"bogus": "1"}
        )
        self.assertEqual(error.message, 'create vv: invalid option: "bogus"')
        error = self.assertRaises(
            InvalidParameter, self.service.create, "vv", driver_opts={"type": "tmpfs"}
        )
        self.assertEqual(error.message, 'create vv: missing required option: "device"')
        self.assertFalse((self.root / "vv").exists())

    def test_old_layout(self) -> None:
        """A bare C{_data} directory of an earlier version is a volume."""
        (self.root / "old" / "_data").mkdir(parents=True)
        self.assertEqual(self.make().inspect("old")["Name"], "old")


class ListRemovePruneTests(_Base):
    def test_list_filters(self) -> None:
        self.service.create("aa", labels={"tier": "db"})
        self.service.create("bb")
        self.world.users["aa"] = ["c1"]

        def names(**filters: list[str]) -> list[str]:
            listed = self.service.list_volumes(filters)["Volumes"]
            return [v["Name"] for v in listed]

        self.assertEqual(names(), ["aa", "bb"])
        self.assertEqual(names(dangling=["true"]), ["bb"])
        self.assertEqual(names(dangling=["0"]), ["aa"])
        self.assertEqual(names(label=["tier=db"]), ["aa"])
        self.assertEqual(names(**{"label!": ["tier"]}), ["bb"])
        self.assertEqual(names(name=["b"]), ["bb"])
        self.assertEqual(names(driver=["local"]), ["aa", "bb"])
        error = self.assertRaises(InvalidParameter, names, dangling=["maybe"])
        self.assertEqual(error.message, "Invalid filter 'dangling=[maybe]'")
        error = self.assertRaises(InvalidParameter, names, colour=["red"])
        self.assertEqual(error.message, "Invalid filter 'colour'")

    def test_remove(self) -> None:
        """Gone with its data; in use is dockerd's 409; unknown a 404 unless forced."""
        self.service.create("data")
        (self.root / "data" / "_data" / "f").write_text("x")
        self.world.users["data"] = ["c1", "c2"]
        error = self.assertRaises(Conflict, self.service.remove, "data")
        self.assertEqual(error.message, "remove data: volume is in use - [c1, c2]")
        self.world.users["data"] = []
        self.successResultOf(self.service.remove("data"))
        self.assertFalse((self.root / "data").exists())
        self.assertEqual(self.world.events[-1][:3], ("volume", "destroy", "data"))
        error = self.assertRaises(NotFound, self.service.remove, "data")
        self.assertEqual(error.message, "get data: no such volume")
        self.successResultOf(self.service.remove("data", force=True))

    def test_prune(self) -> None:
        """
        From API 1.42 only anonymous unused volumes go, unless all=true;
        what they held is reclaimed; a prune event says how much.
        """
        self.service.ensure("a" * 64, anonymous=True)
        (self.root / ("a" * 64) / "_data" / "f").write_bytes(b"12345")
        self.service.create("named")
        self.service.create("used", labels={ANONYMOUS_LABEL: ""})
        self.world.users["used"] = ["c1"]
        pruned = self.successResultOf(self.service.prune({}, anonymous_only=True))
        self.assertEqual(pruned, {"VolumesDeleted": ["a" * 64], "SpaceReclaimed": 5})
        self.assertEqual(self.world.events[-1],
                         ("volume", "prune", "", {"reclaimed": "5"}))  # fmt: skip
        pruned = self.successResultOf(
            self.service.prune({"all": ["true"]}, anonymous_only=True)
        )
        self.assertEqual(pruned["VolumesDeleted"], ["named"])
        self.assertEqual([v["Name"] for v in self.service.list_volumes({})["Volumes"]],
                         ["used"])  # fmt: skip


class MountTests(_Base):
    def test_plain_volume(self) -> None:
        """A plain volume is made at first use; mount and unmount are events only."""
        path = self.successResultOf(self.service.acquire("v1", "c1", "/data"))
        self.assertEqual(path, self.root / "v1" / "_data")
        self.successResultOf(self.service.release("v1", "c1"))
        self.assertEqual(self.world.commands, [])
        actions = [e[1] for e in self.world.events]
        self.assertEqual(actions, ["create", "mount", "unmount"])
        self.assertEqual(
            self.world.events[1][3],
            {"driver": "local", "container": "c1", "destination": "/data",
             "propagation": "", "read/write": "true"},
        )  # fmt: skip

    def test_device_mounted_first_unmounted_last(self) -> None:
        """type/device/o: mount(8) with the first container, umount after the last."""
        self.service.create(
            "tt", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
        )
        target = str(self.root / "tt" / "_data")
        self.successResultOf(self.service.acquire("tt", "c1", "/a"))
        self.successResultOf(self.service.acquire("tt", "c2", "/b"))
        self.assertEqual(
            self.world.commands,
            [["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", target]],
        )
        self.successResultOf(self.service.release("tt", "c1"))
        self.assertEqual(len(self.world.commands), 1)
        error = self.assertRaises(Conflict, self.service.remove, "tt")
        self.assertIn("volume is in use - [c2]", error.message)
        self.successResultOf(self.service.release("tt", "c2"))
        self.assertEqual(self.world.commands[-1], ["umount", target])

    def test_mount_fails(self) -> None:
        self.service.create("tt", driver_opts={"type": "nfs", "device": ":/x"})
        self.world.code = 32
        failure = self.failureResultOf(
            self.service.acquire("tt", "c1", "/a"), SystemError_
        )
        self.assertEqual(failure.value.message, "mount volume tt: mount: bad option")
