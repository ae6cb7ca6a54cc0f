"""
Tests for the mount specifications of a create: C{--volumes-from},
C{--mount} options and what the bundle builder is given
(L{dockserve.daemon.containers.mounts}, L{dockserve.daemon.containers.validate}).
"""

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import mounts, validate
from dockserve.errors import InvalidParameter

ROOT = Path("/v")


class PointsTests(SynchronousTestCase):
    def test_copy(self) -> None:
        """Which volumes a first start fills: not nocopy ones, never binds."""
        host_config = {
            "Binds": ["a1:/a", "a2:/b:ro,nocopy", "/h:/c"],
            "Mounts": [
                {"Type": "volume", "Source": "m1", "Target": "/d"},
                {
                    "Type": "volume",
                    "Source": "m2",
                    "Target": "/e",
                    "VolumeOptions": {"NoCopy": True},
                },
                {"Type": "volume", "Target": "/f"},
            ],
        }
        points = mounts.points(host_config, {"/f": "n" * 64, "/g": "o" * 64}, ROOT)
        copied = {p.destination: p.copy for p in points}
        self.assertEqual(
            copied,
            {
                "/f": True,
                "/g": True,
                "/a": True,
                "/b": False,
                "/c": False,
                "/d": True,
                "/e": False,
            },
        )

    def test_anonymous_mount(self) -> None:
        """An anonymous --mount volume has its made name and the mount's options."""
        host_config = {
            "Mounts": [
                {
                    "Type": "volume",
                    "Target": "/f/",
                    "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"}},
                }
            ]
        }
        [point] = mounts.points(host_config, {"/f": "n" * 64}, ROOT)
        self.assertEqual(
            (point.name, point.anonymous, point.mode, point.copy, point.labels),
            ("n" * 64, True, "z", False, {"a": "b"}),
        )

    def test_inherited_first(self) -> None:
        """What --volumes-from brought gives way to the container's own."""
        inherited = [
            mounts.MountPoint("volume", "/x", "/v/i/_data", "i", inherited=True),
            mounts.MountPoint("volume", "/y", "/v/j/_data", "j", inherited=True),
        ]
        points = mounts.points({"Binds": ["k:/y"]}, {}, ROOT, inherited)
        self.assertEqual(
            [(p.destination, p.name) for p in points], [("/x", "i"), ("/y", "k")]
        )

    def test_anonymous_targets(self) -> None:
        """
        Destination-only binds and sourceless --mount volumes always get one;
        an image VOLUME covered by an inherited mount does not.
        """
        config = {"Volumes": {"/img": {}, "/covered": {}, "/m": {}}}
        host_config = {
            "Binds": ["/solo"],
            "Mounts": [{"Type": "volume", "Target": "/m"}],
        }
        inherited = [mounts.MountPoint("volume", "/covered", "s", "x", inherited=True)]
        self.assertEqual(
            mounts.anonymous_targets(config, host_config, inherited),
            ["/solo", "/m", "/img"],
        )


class InheritTests(SynchronousTestCase):
    def test_inherit(self) -> None:
        """Volumes and binds come; modes go; ro wins; tmpfs stays behind."""
        source = [
            mounts.MountPoint(
                "volume",
                "/n",
                "/v/n/_data",
                "n",
                mode="z",
                copy=True,
                labels={"a": "b"},
            ),
            mounts.MountPoint(
                "bind", "/b", "/h", rw=False, mode="ro", propagation="rslave"
            ),
            mounts.MountPoint("tmpfs", "/t", ""),
        ]
        got = mounts.inherit(source, "rw")
        self.assertEqual([p.destination for p in got], ["/n", "/b"])
        self.assertEqual(
            [(p.rw, p.mode, p.copy, p.inherited) for p in got],
            [(True, "", False, True), (False, "", False, True)],
        )
        self.assertEqual(got[1].propagation, "rslave")
        self.assertEqual({p.rw for p in mounts.inherit(source, "ro,z")}, {False})

    def test_round_trip(self) -> None:
        """What is kept on disk reads back the same."""
        got = mounts.inherit(
            [mounts.MountPoint("bind", "/b", "/h", propagation="rshared")], "ro"
        )
        self.assertEqual(mounts.from_json(mounts.to_json(got)), got)


class BundleViewTests(SynchronousTestCase):
    def test_inherited_as_binds(self) -> None:
        """Inherited mounts are binds ahead of the own, those at own places left out."""
        inherited = [
            mounts.MountPoint("volume", "/n", "/v/n/_data", "n", rw=False),
            mounts.MountPoint("bind", "/b", "/h", propagation="rprivate"),
            mounts.MountPoint("volume", "/own", "/v/o/_data", "o"),
        ]
        view = mounts.bundle_view({"Binds": ["mine:/own"]}, {}, inherited)
        self.assertEqual(view["Binds"], ["n:/n:ro", "/h:/b:rw,rprivate", "mine:/own"])

    def test_mounts_rewritten(self) -> None:
        """
        Anonymous --mount volumes go (the anonymous ones are mounted), tmpfs
        mounts become Tmpfs entries, a bind that may make its source a Binds
        entry; the rest stays.
        """
        kept = {"Type": "volume", "Source": "x", "Target": "/x"}
        host_config = {
            "Mounts": [
                kept,
                {"Type": "volume", "Target": "/anon"},
                {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1000}},
                {
                    "Type": "bind",
                    "Source": "/new",
                    "Target": "/n",
                    "ReadOnly": True,
                    "BindOptions": {"CreateMountpoint": True},
                },
            ],
            "Tmpfs": {"/u": "size=1m"},
        }
        view = mounts.bundle_view(host_config, {"/anon": "a" * 64}, [])
        self.assertEqual(view["Mounts"], [kept])
        self.assertEqual(view["Tmpfs"], {"/u": "size=1m", "/t": "size=1000"})
        self.assertEqual(view["Binds"], ["/new:/n:ro,rprivate"])
        self.assertEqual(len(host_config["Mounts"]), 4)

    def test_unchanged(self) -> None:
        """A HostConfig with nothing to say differently is given as it is."""
        host_config = {"Binds": ["a:/a"], "Memory": 1}
        self.assertEqual(mounts.bundle_view(host_config, {}, []), host_config)

    def test_tmpfs_options(self) -> None:
        """dockerd's ConvertTmpfsOptions: ro, octal mode, the largest size suffix."""
        cases = [
            ({}, ""),
            ({"ReadOnly": True}, "ro"),
            ({"TmpfsOptions": {"Mode": 0o700}}, "mode=700"),
            ({"TmpfsOptions": {"SizeBytes": 3 << 30}}, "size=3g"),
            ({"TmpfsOptions": {"SizeBytes": 1536 << 10}}, "size=1536k"),
            ({"TmpfsOptions": {"SizeBytes": 1000}}, "size=1000"),
            ({"TmpfsOptions": {"Options": [["noexec"], ["exec"]]}}, "noexec,exec"),
        ]
        for mount, options in cases:
            self.assertEqual(mounts.tmpfs_options(mount), options, mount)


class ValidateTests(SynchronousTestCase):
    def test_volumes_from(self) -> None:
        """dockerd's ParseVolumesFrom."""
        parse = validate.parse_volumes_from
        self.assertEqual(parse("c"), ("c", "rw"))
        self.assertEqual(parse("c:"), ("c", "rw"))
        self.assertEqual(parse("c:ro,z"), ("c", "ro,z"))
        for spec, message in (
            ("", "volumes-from specification cannot be an empty string"),
            ("c:xx", "invalid mode: xx"),
            ("c:rslave", "invalid mode: rslave"),
            ("c:ro,nocopy", "invalid mode: ro,nocopy"),
            ("c:ro,rw", "invalid mode: ro,rw"),
        ):
            error = self.assertRaises(InvalidParameter, parse, spec)
            self.assertEqual(error.message, message)

    def test_subpath_refused(self) -> None:
        """A volume subpath is refused, not dropped; dockerd's own checks first."""
        mount = {
            "Type": "volume",
            "Source": "v",
            "Target": "/d",
            "VolumeOptions": {"Subpath": "x"},
        }
        error = self.assertRaises(InvalidParameter, validate.check_mount, mount)
        self.assertIn("volume subpaths (--mount volume-subpath)", error.message)
        mount["VolumeOptions"] = {"Subpath": "../x"}
        error = self.assertRaises(InvalidParameter, validate.check_mount, mount)
        self.assertIn(
            "subpath must be a relative path within the volume", error.message
        )

    def test_tmpfs_options(self) -> None:
        """Only exec and noexec, as dockerd's validTmpfsOptions."""
        mount = {
            "Type": "tmpfs",
            "Target": "/t",
            "TmpfsOptions": {"Options": [["exec"], ["noexec"]]},
        }
        validate.check_mount(mount)
        mount["TmpfsOptions"] = {"Options": [["nosuid"]]}
        error = self.assertRaises(InvalidParameter, validate.check_mount, mount)
        self.assertEqual(
            error.message,
            'invalid mount config for type "tmpfs": invalid option: nosuid',
        )
        mount["TmpfsOptions"] = {"Options": [["exec", "1", "2"]]}
        error = self.assertRaises(InvalidParameter, validate.check_mount, mount)
        self.assertIn("invalid option array length", error.message)

    def test_create_mountpoint(self) -> None:
        """A bind that may make its source needs none there."""
        mount = {"Type": "bind", "Source": "/nonexistent/at/all", "Target": "/d"}
        error = self.assertRaises(InvalidParameter, validate.check_mount, mount)
        self.assertIn("bind source path does not exist", error.message)
        mount["BindOptions"] = {"CreateMountpoint": True}
        validate.check_mount(mount)

    def test_duplicate_mount_target(self) -> None:
        """A duplicate --mount is named by its Target as written, as dockerd."""
        host = {
            "Mounts": [
                {"Type": "volume", "Source": "ab", "Target": "/d"},
                {"Type": "volume", "Source": "ac", "Target": "/d/"},
            ]
        }
        error = self.assertRaises(InvalidParameter, validate._mount_points, host)
        self.assertEqual(error.message, "Duplicate mount point: /d/")
