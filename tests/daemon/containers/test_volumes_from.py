"""
Tests for the container service's volumes beyond the named ones:
C{--volumes-from}, C{--mount type=volume} with its options, and the
copy-up of the image's content at a container's first start
(L{dockserve.daemon.containers.service}, L{dockserve.daemon.containers.mountsetup}).
"""

import json
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.volumes.service import ANONYMOUS_LABEL, VolumeService
from dockserve.errors import Conflict, InvalidParameter, NotFound
from dockserve.testing.containers import make_service


class _Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()
        self.make()

    def make(self) -> None:
        self.service, self.runtime, self.clock = make_service(self.root)
        self.volumes = VolumeService(
            self.root / "volumes", users=self.service.volume_users
        )
        self.volumes.restore()
        self.service.set_volumes(self.volumes)

    def create(self, name: str, **host_config: Any) -> str:
        body = {"Image": "busybox", "Cmd": ["true"], "HostConfig": host_config}
        return str(self.service.create(name, body)["Id"])

    def mounts(self, name: str) -> dict[str, dict[str, Any]]:
        return {m["Destination"]: m for m in self.service.inspect(name)["Mounts"]}

    def bundle_host_config(self, name: str) -> dict[str, Any]:
        """What the bundle builder was given for C{name}'s last bundle."""
        c = self.service._get(name)
        seen: list[Any] = []
        inner = self.service._bundles._inner  # type: ignore[attr-defined]
        original = inner.prepare

        def spy(directory: Path, record: Any, *args: Any) -> Any:
            seen.append(record.host_config)
            return original(directory, record, *args)

        inner.prepare = spy
        try:
            self.successResultOf(
                self.service._bundles.prepare(c.directory, c.record, None)
            )
        finally:
            inner.prepare = original
        return dict(seen[0])


class VolumesFromTests(_Base):
    def source(self) -> str:
        return self.create(
            "src",
            Binds=["named:/n", "/host/dir:/h:ro", "/host/other:/p:rw,rslave"],
            Mounts=[{"Type": "tmpfs", "Target": "/t"}],
        )

    def test_mounts(self) -> None:
        """
        The other container's volumes and binds at the same destinations,
        their own mode as dockerd shows it (none), writable as they were;
        its tmpfs stays its own.
        """
        self.source()
        self.create("dst", VolumesFrom=["src"])
        shown = self.mounts("dst")
        self.assertEqual(sorted(shown), ["/h", "/n", "/p"])
        self.assertEqual(
            shown["/n"],
            {
                "Type": "volume",
                "Name": "named",
                "Source": str(self.root / "volumes" / "named" / "_data"),
                "Destination": "/n",
                "Driver": "local",
                "Mode": "",
                "RW": True,
                "Propagation": "",
            },
        )
        self.assertEqual(
            (shown["/h"]["RW"], shown["/h"]["Mode"], shown["/p"]["Propagation"]),
            (False, "", "rslave"),
        )
        self.assertEqual(
            self.service.inspect("dst")["HostConfig"]["VolumesFrom"], ["src"]
        )
        self.assertIsNone(self.service.inspect("dst")["HostConfig"]["Binds"])

    def test_read_only(self) -> None:
        """C{:ro} makes every inherited mount read-only; C{:rw} keeps theirs."""
        self.source()
        self.create("ro", VolumesFrom=["src:ro"])
        self.create("rw", VolumesFrom=["src:rw"])
        self.assertEqual({m["RW"] for m in self.mounts("ro").values()}, {False})
        self.assertEqual(self.mounts("rw")["/h"]["RW"], False)
        self.assertEqual(self.mounts("rw")["/n"]["RW"], True)

    def test_own_mounts_win(self) -> None:
        """The container's own bind at an inherited destination replaces it."""
        self.source()
        self.create("dst", VolumesFrom=["src"], Binds=["/mine:/n"])
        self.assertEqual(self.mounts("dst")["/n"]["Source"], "/mine")
        binds = self.bundle_host_config("dst")["Binds"]
        self.assertEqual(
            binds, ["/host/dir:/h:ro,rprivate", "/host/other:/p:rw,rslave", "/mine:/n"]
        )

    def test_in_use_by_both(self) -> None:
        """A volume is in use by the container that brought it and the other."""
        src = self.source()
        dst = self.create("dst", VolumesFrom=["src"])
        error = self.assertRaises(Conflict, self.volumes.remove, "named")
        self.assertEqual(
            error.message, f"remove named: volume is in use - [{src}, {dst}]"
        )
        self.successResultOf(self.service.remove("src"))
        error = self.assertRaises(Conflict, self.volumes.remove, "named")
        self.assertEqual(error.message, f"remove named: volume is in use - [{dst}]")

    def test_kept_after_the_other_goes(self) -> None:
        """The mounts stay with the container, across a daemon restart too."""
        self.source()
        self.create("dst", VolumesFrom=["src"])
        self.successResultOf(self.service.remove("src"))
        self.make()
        self.successResultOf(self.service.restore())
        self.assertEqual(sorted(self.mounts("dst")), ["/h", "/n", "/p"])

    def test_anonymous_volume_stays(self) -> None:
        """rm -v of the first container keeps the anonymous volume the other uses."""
        self.create("src", Binds=["/scratch"])
        [anonymous] = [m["Name"] for m in self.mounts("src").values()]
        self.create("dst", VolumesFrom=["src"])
        self.successResultOf(self.service.remove("src", volumes=True))
        self.successResultOf(self.service.settled())
        self.assertEqual(self.volumes.inspect(anonymous)["Name"], anonymous)

    def test_image_volume_not_doubled(self) -> None:
        """An image VOLUME an inherited mount covers gets no volume of its own."""
        self.create("src", Binds=["named:/data"])
        body = {
            "Image": "busybox",
            "Cmd": ["true"],
            "Volumes": {"/data": {}},
            "HostConfig": {"VolumesFrom": ["src"]},
        }
        self.service.create("dst", body)
        self.assertEqual(self.mounts("dst")["/data"]["Name"], "named")
        self.assertEqual(sorted(self.volumes.names()), ["named"])

    def test_unknown_container(self) -> None:
        """dockerd's 400 and text: a 404 would have the CLI pull the image."""
        error = self.assertRaises(
            InvalidParameter, self.create, "dst", VolumesFrom=["nosuch:ro"]
        )
        self.assertEqual(error.message, "No such container: nosuch")
        error = self.assertRaises(
            InvalidParameter, self.create, "dst", VolumesFrom=[":ro"]
        )
        self.assertEqual(error.message, 'invalid name or ID supplied: ""')
        self.assertRaises(NotFound, self.service.inspect, "dst")

    def test_bad_mode(self) -> None:
        """Propagation and copy modes are not for volumes-from, as dockerd says."""
        self.source()
        for spec, mode in (
            ("src:rshared", "rshared"),
            ("src:nocopy", "nocopy"),
            ("src:rw:ro", "rw:ro"),
            ("src:ro,rw", "ro,rw"),
        ):
            error = self.assertRaises(
                InvalidParameter, self.create, "dst", VolumesFrom=[spec]
            )
            self.assertEqual(error.message, f"invalid mode: {mode}")
        self.create("dst", VolumesFrom=["src:ro,z"])


class MountOptionTests(_Base):
    def test_anonymous_mount(self) -> None:
        """C{--mount type=volume,dst=/x}: an anonymous volume, Mode z, labelled."""
        self.create("cc", Mounts=[{"Type": "volume", "Target": "/x"}])
        shown = self.mounts("cc")["/x"]
        self.assertEqual((shown["Mode"], shown["RW"]), ("z", True))
        self.assertIn(ANONYMOUS_LABEL, self.volumes.inspect(shown["Name"])["Labels"])
        self.assertEqual(
            self.service.inspect("cc")["HostConfig"]["Mounts"],
            [{"Type": "volume", "Target": "/x"}],
        )
        view = self.bundle_host_config("cc")
        self.assertEqual(view["Mounts"], [])

    def test_options_and_labels(self) -> None:
        """volume-opt and volume-label make the missing volume with them."""
        mount = {
            "Type": "volume",
            "Source": "opted",
            "Target": "/d",
            "VolumeOptions": {
                "Labels": {"a": "b"},
                "DriverConfig": {
                    "Name": "local",
                    "Options": {"type": "tmpfs", "device": "tmpfs"},
                },
            },
        }
        self.create("cc", Mounts=[mount])
        made = self.volumes.inspect("opted")
        self.assertEqual(made["Labels"], {"a": "b"})
        self.assertEqual(made["Options"], {"type": "tmpfs", "device": "tmpfs"})

    def test_bad_option(self) -> None:
        """A bad driver option is the local driver's 400."""
        mount = {
            "Type": "volume",
            "Source": "opted",
            "Target": "/d",
            "VolumeOptions": {"DriverConfig": {"Options": {"bogus": "1"}}},
        }
        error = self.assertRaises(InvalidParameter, self.create, "cc", Mounts=[mount])
        self.assertEqual(error.message, 'create opted: invalid option: "bogus"')

    def test_other_driver(self) -> None:
        """Another driver, by --mount or --volume-driver: dockerd's 404."""
        mount = {
            "Type": "volume",
            "Source": "vv",
            "Target": "/d",
            "VolumeOptions": {"DriverConfig": {"Name": "nfsx"}},
        }
        error = self.assertRaises(NotFound, self.create, "cc", Mounts=[mount])
        self.assertEqual(
            error.message,
            'create vv: error looking up volume plugin nfsx: plugin "nfsx" not found',
        )
        error = self.assertRaises(
            NotFound, self.create, "cc", VolumeDriver="nfsx", Binds=["ww:/d"]
        )
        self.assertIn('plugin "nfsx" not found', error.message)
        self.create("cc", VolumeDriver="nfsx", Binds=["/host:/d"])

    def test_tmpfs_options(self) -> None:
        """A read-only --mount tmpfs reaches the bundle read-only, sized as dockerd."""
        mount = {
            "Type": "tmpfs",
            "Target": "/t",
            "ReadOnly": True,
            "TmpfsOptions": {
                "SizeBytes": 64 << 20,
                "Mode": 0o1777,
                "Options": [["exec"]],
            },
        }
        self.create("cc", Mounts=[mount])
        view = self.bundle_host_config("cc")
        self.assertEqual(view["Tmpfs"], {"/t": "ro,mode=1777,size=64m,exec"})
        self.assertEqual(self.mounts("cc")["/t"]["RW"], False)

    def test_bind_propagation(self) -> None:
        """Inspect shows the propagation a bind asked for."""
        self.create(
            "cc",
            Binds=["/a:/a:ro,rshared"],
            Mounts=[
                {
                    "Type": "bind",
                    "Source": "/",
                    "Target": "/b",
                    "BindOptions": {"Propagation": "slave"},
                }
            ],
        )
        shown = self.mounts("cc")
        self.assertEqual(shown["/a"]["Propagation"], "rshared")
        self.assertEqual(shown["/b"]["Propagation"], "slave")


class CopyUpTests(_Base):
    def image_files(self, cid: str) -> Path:
        data = self.service._get(cid).directory / "rootfs" / "data"
        data.mkdir(parents=True)
        (data / "from-image").write_text("image\n")
        return data

    def volume_files(self, name: str) -> list[str]:
        return sorted(
            p.name for p in (self.root / "volumes" / name / "_data").iterdir()
        )

    def test_first_start(self) -> None:
        """The first start fills the empty volume; later ones leave it be."""
        cid = self.create("cc", Binds=["vol:/data"])
        self.image_files(cid)
        self.successResultOf(self.service.start(cid))
        self.assertEqual(self.volume_files("vol"), ["from-image"])
        self.runtime.exit(cid, 0)
        (self.root / "volumes" / "vol" / "_data" / "from-image").unlink()
        self.successResultOf(self.service.start(cid))
        self.assertEqual(self.volume_files("vol"), [])

    def test_not_empty(self) -> None:
        """A volume with data in it is not touched."""
        self.volumes.create("vol")
        (self.root / "volumes" / "vol" / "_data" / "mine").write_text("x")
        cid = self.create("cc", Binds=["vol:/data"])
        self.image_files(cid)
        self.successResultOf(self.service.start(cid))
        self.assertEqual(self.volume_files("vol"), ["mine"])

    def test_nocopy(self) -> None:
        """nocopy, volume-nocopy and volumes-from never fill a volume."""
        cids = [
            self.create("aa", Binds=["v1:/data:nocopy"]),
            self.create(
                "bb",
                Mounts=[
                    {
                        "Type": "volume",
                        "Source": "v2",
                        "Target": "/data",
                        "VolumeOptions": {"NoCopy": True},
                    }
                ],
            ),
        ]
        self.create("ss", Binds=["v3:/data"])
        cids.append(self.create("dd", VolumesFrom=["ss"]))
        for cid in cids:
            self.image_files(cid)
            self.successResultOf(self.service.start(cid))
        for name in ("v1", "v2", "v3"):
            self.assertEqual(self.volume_files(name), [])

    def test_anonymous(self) -> None:
        """An anonymous volume (image VOLUME, -v /path, --mount) is filled too."""
        cid = self.create("cc", Mounts=[{"Type": "volume", "Target": "/data"}])
        self.image_files(cid)
        self.successResultOf(self.service.start(cid))
        name = self.mounts("cc")["/data"]["Name"]
        self.assertEqual(self.volume_files(name), ["from-image"])

    def test_binds_never(self) -> None:
        """A bind's host directory is the host's: never filled."""
        host = self.root / "host"
        host.mkdir()
        cid = self.create("cc", Binds=[f"{host}:/data"])
        self.image_files(cid)
        self.successResultOf(self.service.start(cid))
        self.assertEqual(list(host.iterdir()), [])

    def test_data_container_never_started(self) -> None:
        """
        A container created and never started still fills its volume, when
        another container is about to use it (--volumes-from), from its
        own image, as dockerd filled it at that create.
        """
        store = self.create("store", Binds=["/data"])
        self.image_files(store)
        user = self.create("user", VolumesFrom=["store"])
        (self.service._get(user).directory / "rootfs" / "data").mkdir(parents=True)
        self.successResultOf(self.service.start(user))
        name = self.mounts("store")["/data"]["Name"]
        self.assertEqual(self.volume_files(name), ["from-image"])

    def test_earliest_create_fills(self) -> None:
        """Of two never-started containers naming a fresh volume, the first fills it."""
        first = self.create("first", Binds=["vol:/data"])
        (self.image_files(first) / "first").write_text("")
        second = self.create("second", Binds=["vol:/data"])
        (self.image_files(second) / "second").write_text("")
        self.successResultOf(self.service.start(second))
        self.assertEqual(self.volume_files("vol"), ["first", "from-image"])

    def test_file_in_the_way(self) -> None:
        """A file where the volume goes fails the start with dockerd's words."""
        cid = self.create("cc", Binds=["vol:/etc/passwd"])
        etc = self.service._get(cid).directory / "rootfs" / "etc"
        etc.mkdir(parents=True)
        (etc / "passwd").write_text("root\n")
        failure = self.failureResultOf(self.service.start(cid))
        self.assertIn("source /etc/passwd is not directory", str(failure.value))


class BundleFileTests(_Base):
    def test_kept_on_disk(self) -> None:
        """The inherited mounts are written beside the record at create."""
        self.create("src", Binds=["named:/n"])
        cid = self.create("dst", VolumesFrom=["src"])
        kept = json.loads(
            (self.root / "containers" / cid / "volumes-from.json").read_text()
        )
        self.assertEqual(
            [(m["Name"], m["Destination"], m["RW"]) for m in kept["Mounts"]],
            [("named", "/n", True)],
        )
