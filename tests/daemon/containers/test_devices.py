# -*- test-case-name: tests.daemon.containers.test_devices -*-
"""
Tests for L{dockserve.daemon.containers.devices}, on device nodes the tests
make with mknod in a temporary directory (root only).
"""

import os
import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import devices
from dockserve.daemon.containers.devices import DeviceError


def _mknod(path: Path, major: int, minor: int, *, block: bool = False) -> None:
    kind = stat.S_IFBLK if block else stat.S_IFCHR
    os.mknod(path, kind | 0o600, os.makedev(major, minor))


class _Nodes(SynchronousTestCase):
    skip = None if os.geteuid() == 0 else "mknod needs root"

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        (self.dir / "sub").mkdir(parents=True)
        _mknod(self.dir / "mynull", 1, 3)
        (self.dir / "mynull").chmod(0o640)
        os.chown(self.dir / "mynull", 12, 34)
        _mknod(self.dir / "sub" / "myzero", 1, 5)
        _mknod(self.dir / "loop", 7, 9, block=True)
        (self.dir / "lnk").symlink_to(self.dir / "mynull")
        (self.dir / "file").write_text("not a device")


class FromPathTests(_Nodes):
    """L{devices.from_path} is moby's C{DevicesFromPath}."""

    def test_node(self) -> None:
        """
        A node is given where asked, with its type, numbers, mode and
        owner, and an allow rule with the permissions asked for.
        """
        found, rules = devices.from_path(str(self.dir / "mynull"), "/dev/x", "rw")
        self.assertEqual(
            found,
            [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3,
              "fileMode": 0o640, "uid": 12, "gid": 34}],
        )  # fmt: skip
        self.assertEqual(
            rules,
            [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
        )

    def test_block(self) -> None:
        """A block device is type b."""
        found, rules = devices.from_path(str(self.dir / "loop"), "/dev/l", "r")
        self.assertEqual((found[0]["type"], found[0]["major"]), ("b", 7))
        self.assertEqual(rules[0]["type"], "b")

    def test_symlink_named_is_followed(self) -> None:
        """A link named on the command line gives the node it names."""
        found, _ = devices.from_path(str(self.dir / "lnk"), "/dev/l", "rwm")
        self.assertEqual(
            (found[0]["path"], found[0]["major"], found[0]["minor"]), ("/dev/l", 1, 3)
        )

    def test_directory(self) -> None:
        """
        A directory gives every node under it, by name, depth first, at the
        same place under the container's path; links in it are not followed,
        files are not devices.
        """
        found, rules = devices.from_path(str(self.dir), "/d", "rwm")
        self.assertEqual(
            [d["path"] for d in found], ["/d/loop", "/d/mynull", "/d/sub/myzero"]
        )
        self.assertEqual(len(rules), 3)

    def test_missing(self) -> None:
        """A path that is not there: dockerd's text."""
        missing = str(self.dir / "nope")
        error = self.assertRaises(
            DeviceError, devices.from_path, missing, "/dev/x", "rwm"
        )
        self.assertEqual(
            error.message,
            "error gathering device information while adding custom device "
            f'"{missing}": no such file or directory',
        )

    def test_not_a_device(self) -> None:
        """A file, or a directory without devices: dockerd's text."""
        for path in (self.dir / "file", self.dir / "empty"):
            with self.subTest(path=path):
                if path.name == "empty":
                    path.mkdir()
                error = self.assertRaises(
                    DeviceError, devices.from_path, str(path), "/dev/x", "rwm"
                )
                self.assertEqual(
                    error.message,
                    "error gathering device information while adding custom "
                    f'device "{path}": not a device node',
                )

    def test_fifo(self) -> None:
        """A FIFO is a device of type p, as runc has it (runc refuses its rule)."""
        os.mkfifo(self.dir / "fifo")
        found, _ = devices.from_path(str(self.dir / "fifo"), "/dev/f", "rwm")
        self.assertEqual(found[0]["type"], "p")


class CgroupRuleTests(SynchronousTestCase):
    """L{devices.cgroup_rule} reads C{--device-cgroup-rule} as dockerd."""

    def test_rules(self) -> None:
        """A type, numbers or C{*} (-1), an access; C{a} is every device."""
        self.assertEqual(
            devices.cgroup_rule("c 10:229 rwm"),
            {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        )
        self.assertEqual(
            devices.cgroup_rule("b 7:* r"),
            {"allow": True, "type": "b", "major": 7, "minor": -1, "access": "r"},
        )
        self.assertEqual(
            devices.cgroup_rule("a"),
            {"allow": True, "type": "a", "major": -1, "minor": -1, "access": "rwm"},
        )

    def test_invalid(self) -> None:
        """Anything else: dockerd's text, the rule as given."""
        for rule in ("c 1:3 xx", "", "c  1:1 rwm", " c 1:1 rwm", "x 1:1 r", "c 1 r"):
            with self.subTest(rule=rule):
                error = self.assertRaises(DeviceError, devices.cgroup_rule, rule)
                self.assertEqual(
                    error.message, f"invalid device cgroup rule format: '{rule}'"
                )


class ResolveTests(_Nodes):
    """L{devices.resolve} is dockerd's C{WithDevices}."""

    def test_unprivileged(self) -> None:
        """
        dockerd's default rules (fuse denied among them), then each device's
        rule, then the cgroup rules, in order.
        """
        found, rules = devices.resolve({
            "Devices": [{"PathOnHost": str(self.dir / "mynull"),
                         "PathInContainer": "/dev/xnull", "CgroupPermissions": "r"}],
            "DeviceCgroupRules": ["b 7:* rm"],
        })  # fmt: skip
        self.assertEqual([d["path"] for d in found], ["/dev/xnull"])
        self.assertEqual(
            rules[: len(devices.DEFAULT_RULES)], list(devices.DEFAULT_RULES)
        )
        self.assertEqual(
            rules[len(devices.DEFAULT_RULES) :],
            [
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
                {"allow": True, "type": "b", "major": 7, "minor": -1, "access": "rm"},
            ],
        )
        self.assertIn(
            {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            rules,
        )

    def test_privileged(self) -> None:
        """
        Privileged: allow-all, the host's devices, a mapped device that lands
        elsewhere; the cgroup rules are not read.
        """
        found, rules = devices.resolve({
            "Privileged": True,
            "Devices": [{"PathOnHost": str(self.dir / "mynull"),
                         "PathInContainer": "/dev/xnull", "CgroupPermissions": "r"}],
            "DeviceCgroupRules": ["not even a rule"],
        })  # fmt: skip
        self.assertEqual(rules, [devices.ALLOW_ALL])
        self.assertEqual(found[-1]["path"], "/dev/xnull")

    def test_bad_rule(self) -> None:
        """A bad cgroup rule fails the start with dockerd's text."""
        error = self.assertRaises(
            DeviceError, devices.resolve, {"DeviceCgroupRules": ["c 1:3 xx"]}
        )
        self.assertEqual(error.message, "invalid device cgroup rule format: 'c 1:3 xx'")


class HostDevicesTests(_Nodes):
    """L{devices.host_devices} is containerd's C{HostDevices}."""

    def test_tree(self) -> None:
        """
        Devices in subdirectories too; the container's own directories and,
        at the top, the nodes runc makes are left out; links are not devices.
        """
        (self.dir / "pts").mkdir()
        _mknod(self.dir / "pts" / "0", 136, 0)
        _mknod(self.dir / "null", 1, 3)
        found = devices.host_devices(self.dir)
        self.assertEqual(
            [d["path"] for d in found],
            [str(self.dir / n) for n in ("loop", "mynull", "sub/myzero")],
        )
