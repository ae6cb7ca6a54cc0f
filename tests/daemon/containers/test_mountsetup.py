"""Tests for L{dockserve.daemon.containers.mountsetup}."""

import json
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import mounts, mountsetup
from dockserve.errors import InvalidParameter

#: A host where / is private, /srv shared and /mnt/in a slave of it.
MOUNTINFO = """\
27 1 253:1 / / rw,relatime - ext4 /dev/vda1 rw
40 27 0:40 / /srv rw,relatime shared:5 - ext4 /dev/vdb rw
41 27 0:41 / /mnt/in rw,relatime master:5 - ext4 /dev/vdb rw
42 27 0:42 / /mnt/with\\040space rw,relatime shared:7 - tmpfs tmpfs rw
"""


class PropagationTests(SynchronousTestCase):
    def test_shared(self) -> None:
        """rshared needs a shared mount; dockerd's words otherwise."""
        mountsetup.check_propagation("/srv/data", "rshared", MOUNTINFO)
        mountsetup.check_propagation("/mnt/with space/x", "shared", MOUNTINFO)
        error = self.assertRaises(
            InvalidParameter,
            mountsetup.check_propagation,
            "/home/x",
            "rshared",
            MOUNTINFO,
        )
        self.assertEqual(
            error.message, "path /home/x is mounted on / but it is not a shared mount"
        )
        self.assertRaises(
            InvalidParameter,
            mountsetup.check_propagation,
            "/mnt/in/x",
            "shared",
            MOUNTINFO,
        )

    def test_slave(self) -> None:
        """rslave needs a shared or slave mount."""
        mountsetup.check_propagation("/srv", "rslave", MOUNTINFO)
        mountsetup.check_propagation("/mnt/in/deep", "slave", MOUNTINFO)
        error = self.assertRaises(
            InvalidParameter,
            mountsetup.check_propagation,
            "/mnt/other",
            "rslave",
            MOUNTINFO,
        )
        self.assertEqual(
            error.message,
            "path /mnt/other is mounted on / but it is not a shared or slave mount",
        )

    def test_private_not_checked(self) -> None:
        """A private bind asks nothing of its source (ready() checks no mountinfo)."""
        point = mounts.MountPoint("bind", "/b", "/nowhere", propagation="rprivate")
        self.assertEqual(
            mountsetup.ready(Path("/nonexistent"), [point], first_run=True), []
        )


class ReadyTests(SynchronousTestCase):
    def setUp(self) -> None:
        top = Path(self.mktemp()).absolute()
        self.rootfs = top / "rootfs"
        (self.rootfs / "data").mkdir(parents=True)
        (self.rootfs / "data" / "f").write_text("image\n")
        self.volume = top / "volumes" / "v" / "_data"
        self.volume.mkdir(parents=True)

    def point(self, **changes: object) -> mounts.MountPoint:
        fields: dict[str, object] = {"copy": True, "name": "v"}
        fields.update(changes)
        return mounts.MountPoint(
            "volume",
            "/data",
            str(self.volume),
            **fields,  # type: ignore[arg-type]
        )

    def test_first_run(self) -> None:
        """At the first run a volume that wants it is filled; its destination said."""
        filled = mountsetup.ready(self.rootfs, [self.point()], first_run=True)
        self.assertEqual(filled, ["/data"])
        self.assertEqual((self.volume / "f").read_text(), "image\n")

    def test_later_runs(self) -> None:
        """Later runs fill nothing."""
        self.assertEqual(
            mountsetup.ready(self.rootfs, [self.point()], first_run=False), []
        )
        self.assertEqual(list(self.volume.iterdir()), [])

    def test_nocopy(self) -> None:
        """A volume that does not want it is not filled."""
        point = self.point(copy=False)
        self.assertEqual(mountsetup.ready(self.rootfs, [point], first_run=True), [])
        self.assertEqual(list(self.volume.iterdir()), [])


class NonRecursiveTests(SynchronousTestCase):
    def test_config_rewritten(self) -> None:
        """Only the binds named lose their r: rbind becomes bind."""
        config = Path(self.mktemp())
        spec = {
            "mounts": [
                {
                    "destination": "/b/",
                    "type": "bind",
                    "source": "/x",
                    "options": ["rbind", "rw", "rprivate"],
                },
                {
                    "destination": "/c",
                    "type": "bind",
                    "source": "/y",
                    "options": ["rbind", "ro", "rprivate"],
                },
                {
                    "destination": "/b",
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["nosuid"],
                },
            ]
        }
        config.write_text(json.dumps(spec))
        mountsetup.non_recursive(config, {"/b"})
        options = [m["options"] for m in json.loads(config.read_text())["mounts"]]
        self.assertEqual(
            options,
            [["bind", "rw", "rprivate"], ["rbind", "ro", "rprivate"], ["nosuid"]],
        )

    def test_needed(self) -> None:
        """A thread is asked for only when there is something to do."""
        plain = mounts.MountPoint("bind", "/b", "/x", propagation="rprivate")
        volume = mounts.MountPoint("volume", "/v", "/v/_data", "v", copy=True)
        self.assertFalse(mountsetup.needed([plain, volume], first_run=False))
        self.assertTrue(mountsetup.needed([plain, volume], first_run=True))
        for point in (
            mounts.MountPoint("bind", "/b", "/x", propagation="rslave"),
            mounts.MountPoint("bind", "/b", "/x", recursive=False),
        ):
            self.assertTrue(mountsetup.needed([point], first_run=False))

    def test_points(self) -> None:
        """--mount bind-nonrecursive is kept, through volumes-from too."""
        host_config = {
            "Mounts": [
                {
                    "Type": "bind",
                    "Source": "/x",
                    "Target": "/b",
                    "BindOptions": {"NonRecursive": True},
                }
            ]
        }
        [point] = mounts.points(host_config, {}, Path("/v"))
        self.assertFalse(point.recursive)
        kept = mounts.from_json(mounts.to_json(mounts.inherit([point], "rw")))
        self.assertFalse(kept[0].recursive)


class FillersTests(SynchronousTestCase):
    def test_earliest(self) -> None:
        """Per volume, the earliest-made container that wants it filled."""

        def point(name: str, *, copy: bool = True) -> mounts.MountPoint:
            return mounts.MountPoint(
                "volume", f"/{name}", f"/v/{name}", name, copy=copy
            )

        pending = [
            ("2026-01-02T00:00:00.000000000Z", "late", [point("a"), point("b")]),
            ("2026-01-01T00:00:00.000000000Z", "early", [point("a", copy=False)]),
            ("2026-01-01T00:00:00.000000001Z", "next", [point("a"), point("c")]),
        ]
        found = mountsetup.fillers({"a", "b"}, pending)
        self.assertEqual(
            {name: cid for name, (cid, _) in found.items()}, {"a": "next", "b": "late"}
        )
