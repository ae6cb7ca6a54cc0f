"""Tests for L{dockserve.daemon.containers.mounts}."""

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import mounts
from dockserve.errors import InvalidParameter

ROOT = Path("/v")


class PointsTests(SynchronousTestCase):
    def test_kinds(self) -> None:
        """Binds, named volumes, Mounts and anonymous volumes, as inspect shows them."""
        host_config = {
            "Binds": ["/h:/b:ro", "vol:/data", "/x:/y"],
            "Mounts": [
                {"Type": "volume", "Source": "mv", "Target": "/mv"},
                {"Type": "bind", "Source": "/s", "Target": "/mb", "ReadOnly": True},
                {"Type": "tmpfs", "Target": "/tm"},
            ],
        }
        shown = mounts.view(mounts.points(host_config, {"/anon": "a" * 64}, ROOT))
        by = {m["Destination"]: m for m in shown}
        self.assertEqual(
            by["/b"],
            {"Type": "bind", "Source": "/h", "Destination": "/b", "Mode": "ro",
             "RW": False, "Propagation": "rprivate"},
        )  # fmt: skip
        self.assertEqual(
            by["/data"],
            {"Type": "volume", "Name": "vol", "Source": "/v/vol/_data",
             "Destination": "/data", "Driver": "local", "Mode": "z", "RW": True,
             "Propagation": ""},
        )  # fmt: skip
        self.assertEqual(by["/mv"]["Mode"], "z")
        self.assertEqual(
            (by["/mb"]["RW"], by["/mb"]["Propagation"]), (False, "rprivate")
        )
        self.assertEqual(by["/tm"]["Source"], "")
        self.assertEqual(by["/anon"]["Name"], "a" * 64)
        self.assertEqual(by["/anon"]["Mode"], "")

    def test_later_wins(self) -> None:
        """A --mount of the destination of a -v replaces it, as at start."""
        points = mounts.points(
            {"Binds": ["a1:/d"], "Mounts": [{"Type": "volume", "Source": "a2",
                                             "Target": "/d/"}]},
            {}, ROOT,
        )  # fmt: skip
        self.assertEqual([(p.destination, p.name) for p in points], [("/d", "a2")])

    def test_anonymous_targets(self) -> None:
        """
        Volumes (image's and -v /path) and destination-only binds that no
        bind, mount or tmpfs covers; each once, cleaned.
        """
        config = {"Volumes": {"/a": {}, "/b/": {}, "/c": {}, "//a": {}}}
        host_config = {"Binds": ["x:/b", "/solo"], "Tmpfs": {"/c": ""}}
        self.assertEqual(mounts.anonymous_targets(config, host_config), ["/solo", "/a"])

    def test_covering(self) -> None:
        """The deepest mount a path lies in, by the path as written."""
        points = mounts.points({"Binds": ["v:/data", "w:/data/sub:ro"]}, {}, ROOT)
        self.assertEqual(mounts.covering(points, "/data/x").name, "v")  # type: ignore[union-attr]
        self.assertEqual(mounts.covering(points, "/data/sub/").name, "w")  # type: ignore[union-attr]
        self.assertIsNone(mounts.covering(points, "/database"))
        self.assertIsNone(mounts.covering(points, "/"))


class NameTests(SynchronousTestCase):
    def test_names(self) -> None:
        """dockerd's charset, at least two characters; its message otherwise."""
        for good in ("ab", "a.b-c_d", "0" * 64):
            self.assertEqual(mounts.check_volume_name(good), good)
        for bad in ("../../x", "a/b", "-x", ".x", "", "x y"):
            error = self.assertRaises(InvalidParameter, mounts.check_volume_name, bad)
            self.assertIn("includes invalid characters for a local volume name",
                          error.message)  # fmt: skip
        self.assertRegex(mounts.new_volume_name(), "^[0-9a-f]{64}$")
