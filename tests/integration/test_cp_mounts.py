# -*- test-case-name: tests.integration.test_cp_mounts -*-
"""
C{docker cp} through a container's mounts, anonymous volumes, and inspect's
C{Mounts}, as dockerd 20.10 does them (compared side by side): review
finding 9 and the volume bugs of issue 9.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from tests.integration.test_containers import _DaemonCase


def _one_file(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class CopyThroughMountsTests(_DaemonCase):
    def setUp(self) -> None:
        super().setUp()
        self.host = Path(self.mktemp()).absolute()
        self.host.mkdir()
        (self.host / "cpfile").write_text("content\n")
        self.bound = self.host / "bound"
        self.bound.mkdir()

    def run_with_mounts(self, name: str) -> None:
        self.cleanup_container(name)
        self.ok(
            "run", "-d", "--name", name, "-v", f"{name}-vol:/data",
            "-v", f"{name}-ro:/ro:ro", "-v", f"{self.bound}:/h",
            "--mount", "type=tmpfs,dst=/tm", "busybox", "sleep", "300",
        )  # fmt: skip
        self.addCleanup(self.docker, "volume", "rm", f"{name}-vol", f"{name}-ro")

    def test_running(self) -> None:
        """
        Into a running container's volume, bind and tmpfs: the container
        sees the files; out of them too; /etc/hostname as the container
        has it; a read-only volume refuses with dockerd's words.
        """
        self.run_with_mounts("cpr")
        cpfile = str(self.host / "cpfile")
        for target in ("/data/", "/h/", "/tm/"):
            self.ok("cp", cpfile, f"cpr:{target}")
            self.assertEqual(
                self.ok("exec", "cpr", "cat", f"{target}cpfile"), "content\n"
            )
        self.assertEqual((self.bound / "cpfile").read_text(), "content\n")
        self.ok("exec", "cpr", "sh", "-c", "echo inside > /data/inside")
        out = self.docker("cp", "cpr:/data/inside", "-").stdout
        with tarfile.open(fileobj=io.BytesIO(out)) as tar:
            member = tar.extractfile("inside")
            assert member is not None
            self.assertEqual(member.read(), b"inside\n")
        out = self.docker("cp", "cpr:/etc/hostname", "-").stdout
        with tarfile.open(fileobj=io.BytesIO(out)) as tar:
            member = tar.extractfile("hostname")
            assert member is not None
            cid = self.inspect("cpr", "{{.Id}}")
            self.assertEqual(member.read(), cid[:12].encode() + b"\n")
        self.assertIn(
            "mounted volume is marked read-only", self.fails("cp", cpfile, "cpr:/ro/")
        )

    def test_whole_root(self) -> None:
        """
        C{docker cp c:/ -} of a running container has its volumes' files and
        /proc and /sys as empty directories, as dockerd's does.
        """
        self.run_with_mounts("cpw")
        self.ok("exec", "cpw", "sh", "-c", "echo v > /data/v")
        out = self.docker("cp", "cpw:/", "-", timeout=60).stdout
        with tarfile.open(fileobj=io.BytesIO(out)) as tar:
            names = [n.lstrip("/") for n in tar.getnames()]
        self.assertIn("data/v", names)
        self.assertIn("proc", [n.rstrip("/") for n in names])
        self.assertEqual([n for n in names if n.startswith(("proc/", "sys/"))], [])

    def test_stopped(self) -> None:
        """
        A stopped container's volumes and binds are there for a copy, both
        ways, and nothing stays mounted after.
        """
        self.run_with_mounts("cps")
        self.ok("exec", "cps", "sh", "-c", "echo v > /data/v")
        self.ok("stop", "-t", "0", "cps")
        self.ok("cp", str(self.host / "cpfile"), "cps:/h/x2")
        self.assertEqual((self.bound / "x2").read_text(), "content\n")
        out = self.docker("cp", "cps:/data/v", "-").stdout
        with tarfile.open(fileobj=io.BytesIO(out)) as tar:
            member = tar.extractfile("v")
            assert member is not None
            self.assertEqual(member.read(), b"v\n")
        mounts = Path("/proc/self/mountinfo").read_text()
        self.assertNotIn(self.daemon.data_root + "/containers", mounts)

    def test_read_only_rootfs_volume(self) -> None:
        """--read-only: into a volume yes, into the root no (dockerd's texts)."""
        self.cleanup_container("ro1")
        self.ok("create", "--name", "ro1", "--read-only", "-v", "ro1v:/data",
                "busybox", "true")  # fmt: skip
        self.addCleanup(self.docker, "volume", "rm", "ro1v")
        cpfile = str(self.host / "cpfile")
        self.ok("cp", cpfile, "ro1:/data/z")
        self.assertIn(
            "container rootfs is marked read-only", self.fails("cp", cpfile, "ro1:/z")
        )


class AnonymousVolumeTests(_DaemonCase):
    def test_run_v_path(self) -> None:
        """
        C{docker run -v /data} where the image has no /data: the container
        writes there (it failed before), and inspect shows a volume with a
        64-hex name; C{rm -v} removes it.
        """
        self.cleanup_container("anon")
        result = self.docker("run", "--name", "anon", "-v", "/data", "busybox",
                             "sh", "-c", "echo x > /data/f && cat /data/f")  # fmt: skip
        self.assertEqual((result.returncode, result.stdout), (0, b"x\n"), result.stderr)
        [mount] = json.loads(self.inspect("anon", "{{json .Mounts}}"))
        self.assertEqual(mount["Type"], "volume")
        self.assertRegex(mount["Name"], "^[0-9a-f]{64}$")
        self.assertEqual(mount["Destination"], "/data")
        self.assertEqual((mount["Driver"], mount["RW"]), ("local", True))
        source = Path(mount["Source"])
        self.assertEqual((source / "f").read_text(), "x\n")
        self.ok("rm", "-v", "anon")
        self.until(lambda: not source.exists(), "the anonymous volume to go")

    def test_sdk_put_archive_before_start(self) -> None:
        """
        The SDK's create(volumes=['/vol1']) then put_archive('/vol1') before
        the start (404 before): the file is in the volume the process reads.
        """
        client = self.sdk()
        container = client.containers.create(
            "busybox", ["cat", "/vol1/test"], volumes=["/vol1"]
        )
        self.addCleanup(container.remove, force=True, v=True)
        self.assertTrue(container.put_archive("/vol1", _one_file("test", b"hello")))
        container.start()
        self.assertEqual(container.wait()["StatusCode"], 0)
        self.assertEqual(container.logs(), b"hello")

    def test_mounts_as_dockerd(self) -> None:
        """Binds get Propagation rprivate, named volumes their Name and Mode z."""
        host = Path(self.mktemp()).absolute()
        host.mkdir()
        self.cleanup_container("mm")
        self.ok("create", "--name", "mm", "-v", "mmvol:/data", "-v", f"{host}:/h:ro",
                "busybox", "true")  # fmt: skip
        self.addCleanup(self.docker, "volume", "rm", "mmvol")
        mounts = {m["Destination"]: m for m in json.loads(
            self.inspect("mm", "{{json .Mounts}}"))}  # fmt: skip
        self.assertEqual(
            mounts["/h"],
            {"Type": "bind", "Source": str(host), "Destination": "/h", "Mode": "ro",
             "RW": False, "Propagation": "rprivate"},
        )  # fmt: skip
        self.assertEqual(mounts["/data"]["Name"], "mmvol")
        self.assertEqual(mounts["/data"]["Mode"], "z")
        self.assertEqual(mounts["/data"]["Driver"], "local")
        self.assertTrue(mounts["/data"]["Source"].endswith("/volumes/mmvol/_data"))
