# -*- test-case-name: tests.integration.test_volumes_copyup -*-
"""
Volumes as containers fill and share them, against a real daemon with the
docker CLI and the Docker SDK, as dockerd 20.10 answers (compared side by
side): the image's content copied into an empty volume at the first
start, C{--volumes-from}, and C{--mount} with its options.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from tests.integration.images import write_rootfs
from tests.integration.test_containers import _DaemonCase

_MTIME = 1_700_000_000


def _image_tar(outside: str) -> bytes:
    """
    Busybox with C{/data}: owners, modes, a link, a hard link, an xattr,
    an empty directory; C{/via} a link to it, C{/escape} a link to the
    host's C{outside} and C{/etc/passwd} a file.
    """
    base = io.BytesIO()
    write_rootfs(base)
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(base.getvalue())) as src,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for member in src.getmembers():
            tar.addfile(member, src.extractfile(member) if member.isfile() else None)

        def add(name: str, kind: bytes = tarfile.DIRTYPE, **what: Any) -> None:
            info = tarfile.TarInfo(name)
            data = what.get("data", b"")
            info.type, info.mtime = kind, _MTIME
            info.mode = what.get("mode", 0o755)
            info.uid = info.gid = what.get("owner", 0)
            info.linkname = what.get("link", "")
            info.pax_headers = what.get("pax", {})
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("data", mode=0o750, owner=1000)
        xattr = {"SCHILY.xattr.user.k": "v"}
        add("data/a", tarfile.REGTYPE, mode=0o640, owner=1, data=b"alpha\n", pax=xattr)
        add("data/sub", mode=0o700, owner=2)
        add("data/sub/b", tarfile.REGTYPE, mode=0o600, owner=2, data=b"beta\n")
        add("data/link", tarfile.SYMTYPE, mode=0o777, link="a")
        add("data/hard", tarfile.LNKTYPE, mode=0o640, owner=1, link="data/a")
        add("data/empty", mode=0o1777)
        add("via", tarfile.SYMTYPE, mode=0o777, link="/data")
        add("escape", tarfile.SYMTYPE, mode=0o777, link=outside)
    return out.getvalue()


class _VolumeCase(_DaemonCase):
    def setUp(self) -> None:
        super().setUp()
        self.outside = Path(tempfile.mkdtemp(prefix="copyup-outside-"))
        self.addCleanup(_rmtree, self.outside)
        (self.outside / "host-secret").write_text("host\n")
        tar = _image_tar(str(self.outside))
        self.ok(
            "import",
            "-c",
            'CMD ["sh"]',
            "-c",
            "ENV PATH=/bin",
            "-c",
            "VOLUME /data",
            "-",
            "withdata",
            stdin=tar,
        )
        self.ok(
            "import",
            "-c",
            'CMD ["sh"]',
            "-c",
            "ENV PATH=/bin",
            "-",
            "plaindata",
            stdin=tar,
        )

    def mountpoint(self, volume: str) -> Path:
        return Path(
            self.ok("volume", "inspect", "-f", "{{.Mountpoint}}", volume).strip()
        )

    def run_rm(self, *args: str) -> str:
        return self.ok("run", "--rm", *args)


class CopyUpTests(_VolumeCase):
    def test_named_volume(self) -> None:
        """
        docker run -v fresh:/data: the image's /data in the volume, owners,
        modes, links, hard links and xattrs kept; the volume's own directory
        is the image directory's (1000, 0750).
        """
        listing = self.run_rm("-v", "fresh:/data", "plaindata", "ls", "-ln", "/data")
        self.addCleanup(self.docker, "volume", "rm", "fresh")
        rows = {}
        for line in listing.splitlines()[1:]:
            fields = line.split()
            rows[fields[-3] if "->" in fields else fields[-1]] = fields
        self.assertEqual(rows["a"][:4], ["-rw-r-----", "2", "1", "1"])
        self.assertEqual(rows["hard"][:4], ["-rw-r-----", "2", "1", "1"])
        self.assertEqual(rows["a"][-4:-1], ["Nov", "14", "2023"])
        self.assertEqual(rows["sub"][0], "drwx------")
        self.assertEqual(rows["empty"][0], "drwxrwxrwt")
        self.assertEqual(rows["link"][0][0] + rows["link"][-1], "la")
        data = self.mountpoint("fresh")
        self.assertEqual((data / "sub" / "b").read_text(), "beta\n")
        self.assertEqual((data / "a").stat().st_ino, (data / "hard").stat().st_ino)
        self.assertEqual(os.getxattr(data / "a", "user.k"), b"v")
        info = data.stat()
        self.assertEqual(
            (info.st_uid, info.st_gid, info.st_mode & 0o7777), (1000, 1000, 0o750)
        )

    def test_image_volume(self) -> None:
        """An image VOLUME's anonymous volume starts with the image's files."""
        self.assertEqual(self.run_rm("withdata", "cat", "/data/sub/b"), "beta\n")
        self.assertEqual(
            self.run_rm(
                "--mount", "type=volume,dst=/data", "plaindata", "cat", "/data/a"
            ),
            "alpha\n",
        )

    def test_nocopy(self) -> None:
        """nocopy and volume-nocopy leave the volume empty."""
        for args in (
            ["-v", "nc1:/data:nocopy"],
            ["--mount", "type=volume,src=nc2,dst=/data,volume-nocopy"],
        ):
            self.assertEqual(self.run_rm(*args, "plaindata", "ls", "-A", "/data"), "")
        self.ok("volume", "rm", "nc1", "nc2")

    def test_not_empty_and_first_start_only(self) -> None:
        """
        A volume with anything in it is not touched; a container that
        empties its volume does not get it filled again at its next start.
        """
        self.ok("volume", "create", "used")
        (self.mountpoint("used") / "mine").write_text("x")
        self.assertEqual(
            self.run_rm("-v", "used:/data", "plaindata", "ls", "/data"), "mine\n"
        )
        self.cleanup_container("once")
        self.ok(
            "run",
            "--name",
            "once",
            "-v",
            "emptied:/data",
            "plaindata",
            "sh",
            "-c",
            "rm -rf /data/* /data/.[!.]*; ls -A /data",
        )
        self.ok("start", "-a", "once")
        self.assertEqual(list(self.mountpoint("emptied").iterdir()), [])

    def test_links_stay_in_the_image(self) -> None:
        """
        The mount point is resolved inside the image: /via (-> /data) gets
        the image's /data; /escape (-> a host directory) gets nothing of the
        host's, and nothing the host has is touched.
        """
        self.assertEqual(
            self.run_rm("-v", "viav:/via", "plaindata", "cat", "/data/a"), "alpha\n"
        )
        self.assertEqual(
            sorted(p.name for p in self.mountpoint("viav").iterdir()),
            ["a", "empty", "hard", "link", "sub"],
        )
        self.run_rm("-v", "escv:/escape", "plaindata", "true")
        self.assertEqual(list(self.mountpoint("escv").iterdir()), [])
        self.assertEqual([p.name for p in self.outside.iterdir()], ["host-secret"])

    def test_file_in_the_way(self) -> None:
        """A file where the volume goes: dockerd's words, without the daemon's paths."""
        error = self.fails("run", "--rm", "-v", "fv:/etc/passwd", "plaindata", "true")
        self.assertIn("source /etc/passwd is not directory", error)
        self.assertNotIn(self.daemon.data_root, error)


class VolumesFromTests(_VolumeCase):
    def test_cli(self) -> None:
        """
        --volumes-from: the other's volumes and binds at their places,
        :ro makes them read-only, a volume is in use by both, and the
        mounts stay when the other container goes (and across a restart).
        """
        host = Path(tempfile.mkdtemp(prefix="vf-bind-"))
        self.addCleanup(_rmtree, host)
        self.cleanup_container("src")
        self.cleanup_container("dst")
        self.ok(
            "run",
            "--name",
            "src",
            "-v",
            "shared:/n",
            "-v",
            "/anon",
            "-v",
            f"{host}:/h",
            "busybox",
            "sh",
            "-c",
            "echo n > /n/f; echo a > /anon/f; echo h > /h/f",
        )
        self.assertEqual(
            self.run_rm(
                "--volumes-from", "src", "busybox", "cat", "/n/f", "/anon/f", "/h/f"
            ),
            "n\na\nh\n",
        )
        denied = self.docker(
            "run", "--rm", "--volumes-from", "src:ro", "busybox", "touch", "/n/g"
        )
        self.assertIn(b"Read-only file system", denied.stderr)
        dst = self.ok(
            "create",
            "--name",
            "dst",
            "--volumes-from",
            "src:ro",
            "busybox",
            "cat",
            "/n/f",
        ).strip()
        src = self.inspect("src", "{{.Id}}")
        self.assertIn(
            f"volume is in use - [{src}, {dst}]", self.fails("volume", "rm", "shared")
        )
        self.assertEqual(
            self.inspect("dst", "{{json .HostConfig.VolumesFrom}}"), '["src:ro"]'
        )
        self.ok("rm", "-v", "src")
        self.daemon.restart()
        self.assertEqual(self.ok("start", "-a", "dst"), "n\n")
        mounts = json.loads(self.inspect("dst", "{{json .Mounts}}"))
        self.assertEqual(
            sorted((m["Destination"], m["Type"], m["RW"], m["Mode"]) for m in mounts),
            [
                ("/anon", "volume", False, ""),
                ("/h", "bind", False, ""),
                ("/n", "volume", False, ""),
            ],
        )
        self.assertIn(
            f"volume is in use - [{dst}]", self.fails("volume", "rm", "shared")
        )

    def test_data_container(self) -> None:
        """
        The data-container pattern: created, never started, its image's
        files are what --volumes-from gives, as with dockerd (which fills
        the volume at that create).
        """
        self.cleanup_container("store")
        self.ok("create", "--name", "store", "-v", "/data", "plaindata", "true")
        self.assertEqual(
            self.run_rm("--volumes-from", "store:ro", "busybox", "cat", "/data/sub/b"),
            "beta\n",
        )

    def test_unknown(self) -> None:
        """An unknown container: dockerd's text, no attempt to pull the image."""
        error = self.fails("create", "--volumes-from", "nosuch", "busybox", "true")
        self.assertIn("No such container: nosuch", error)
        self.assertNotIn("Unable to find image", error)
        self.assertIn(
            "invalid mode: rshared",
            self.fails("create", "--volumes-from", "x:rshared", "busybox"),
        )

    def test_sdk(self) -> None:
        """The SDK's volumes_from, and its APIError for an unknown container."""
        import docker  # noqa: PLC0415

        client = self.sdk()
        src = client.containers.create("busybox", "true", volumes=["sdkvol:/v"])
        self.addCleanup(src.remove, v=True, force=True)
        out = client.containers.run(
            "busybox",
            ["sh", "-c", "echo hi > /v/f && cat /v/f"],
            volumes_from=[src.id],
            remove=True,
        )
        self.assertEqual(out, b"hi\n")
        with self.assertRaises(docker.errors.APIError) as caught:
            client.api.create_container(
                "busybox",
                "true",
                host_config=client.api.create_host_config(volumes_from=["nosuch"]),
            )
        self.assertEqual(caught.exception.status_code, 400)
        self.assertIn("No such container: nosuch", str(caught.exception))


class MountOptionTests(_VolumeCase):
    def test_tmpfs(self) -> None:
        """--mount type=tmpfs with size, mode and readonly, as dockerd mounts it."""
        spec = "type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=0700,readonly"
        line = self.run_rm("--mount", spec, "busybox", "grep", " /t ", "/proc/mounts")
        options = line.split()[3].split(",")
        for wanted in ("ro", "nosuid", "nodev", "noexec", "size=1024k", "mode=700"):
            self.assertIn(wanted, options)

    def test_volume_options(self) -> None:
        """volume-opt and volume-label make the volume; another driver is a 404."""
        spec = (
            "type=volume,src=optv,dst=/d,volume-label=a=b,"
            "volume-opt=type=tmpfs,volume-opt=device=tmpfs"
        )
        self.run_rm("--mount", spec, "busybox", "true")
        [made] = json.loads(self.ok("volume", "inspect", "optv"))
        self.assertEqual(made["Labels"], {"a": "b"})
        self.assertEqual(made["Options"], {"type": "tmpfs", "device": "tmpfs"})
        self.assertIn(
            'invalid option: "bogus"',
            self.fails(
                "create",
                "--mount",
                "type=volume,src=badv,dst=/d,volume-opt=bogus=1",
                "busybox",
            ),
        )

    def test_sdk_mounts(self) -> None:
        """The SDK's Mount types: anonymous volume, driver config, read-only tmpfs."""
        import docker  # noqa: PLC0415
        from docker.types import DriverConfig, Mount  # noqa: PLC0415

        client = self.sdk()
        out = client.containers.run(
            "plaindata",
            ["sh", "-c", "cat /data/a; grep ' /t ' /proc/mounts"],
            mounts=[
                Mount("/data", None, type="volume"),
                Mount("/t", None, type="tmpfs", read_only=True, tmpfs_size=1 << 20),
            ],
            remove=True,
        )
        self.assertTrue(out.startswith(b"alpha\ntmpfs /t tmpfs ro,"), out)
        mount = Mount("/d", "plugv", type="volume", driver_config=DriverConfig("nfsx"))
        with self.assertRaises(docker.errors.NotFound) as caught:
            client.api.create_container(
                "busybox",
                "true",
                host_config=client.api.create_host_config(mounts=[mount]),
            )
        self.assertIn('plugin "nfsx" not found', str(caught.exception))

    def test_bind_nonrecursive(self) -> None:
        """
        bind-nonrecursive leaves out the mounts under the source (an
        empty directory where one was); a bind takes them along otherwise.
        """
        import subprocess  # noqa: PLC0415

        host = Path(tempfile.mkdtemp(prefix="vf-rec-"))
        self.addCleanup(_rmtree, host)
        (host / "sub").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(host / "sub")], check=True)
        self.addCleanup(
            subprocess.run, ["umount", "-l", str(host / "sub")], check=False
        )
        (host / "sub" / "on-the-submount").write_text("x")
        recursive = f"type=bind,src={host},dst=/b"
        self.assertEqual(
            self.run_rm("--mount", recursive, "busybox", "ls", "/b/sub"),
            "on-the-submount\n",
        )
        flat = recursive + ",bind-nonrecursive"
        self.assertEqual(self.run_rm("--mount", flat, "busybox", "ls", "/b/sub"), "")

    def test_propagation(self) -> None:
        """rshared of a host path on a private mount: dockerd's words at start."""
        host = Path(tempfile.mkdtemp(prefix="vf-prop-"))
        self.addCleanup(_rmtree, host)
        if _shared(host):
            self.skipTest(f"{host} is on a shared mount here")
        error = self.fails("run", "--rm", "-v", f"{host}:/b:rshared", "busybox", "true")
        self.assertIn(f"path {host} is mounted on ", error)
        self.assertIn("but it is not a shared mount", error)


def _shared(path: Path) -> bool:
    from dockserve.daemon.containers.mountsetup import _source_mount  # noqa: PLC0415

    _, tags = _source_mount(
        os.path.realpath(path), Path("/proc/self/mountinfo").read_text()
    )
    return "shared" in tags


def _rmtree(path: Path) -> Any:
    import shutil  # noqa: PLC0415

    shutil.rmtree(path, ignore_errors=True)
