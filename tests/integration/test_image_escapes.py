"""
Hostile images against a real daemon, through the docker CLI and the raw
API: a C{docker load} archive naming host files, a layer that plays with
symlinks or whiteouts, a sparse bomb, a prune filter dockerd refuses
(review findings 1, 2, 3, 11, 12).
"""

import http.client
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import tempfile
import urllib.parse
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.integration.harness import RunningDaemon, start_daemon

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _post(daemon: RunningDaemon, url: str, body: bytes = b"") -> tuple[int, bytes]:
    connection = _UnixHTTP(daemon.socket_path)
    try:
        connection.request("POST", url, body, {"Content-Type": "application/x-tar"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, None if data is None else io.BytesIO(data))
    return buf.getvalue()


def _entry(
    name: str, kind: bytes = tarfile.REGTYPE, linkname: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def _load_archive(layer_path: str) -> bytes:
    """A docker save archive whose manifest names C{layer_path} as its layer."""
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]},
        }
    ).encode()
    manifest = json.dumps(
        [{"Config": "config.json", "RepoTags": ["evil:1"], "Layers": [layer_path]}]
    ).encode()
    return _tar(
        (tarfile.TarInfo("config.json"), config),
        (tarfile.TarInfo("manifest.json"), manifest),
    )


class ImageEscapeTests(SynchronousTestCase):
    """What the review's repros did to a host, tried again at a real daemon."""

    def setUp(self) -> None:
        if not Path(DOCKER).exists():
            raise SkipTest("no docker CLI at /usr/local/bin/docker")
        self.daemon = start_daemon(self)
        self.work = Path(tempfile.mkdtemp(prefix="dockserve-escape-"))
        self.addCleanup(shutil.rmtree, self.work, True)

    def docker(
        self, *args: str, input_bytes: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the docker CLI at the daemon; the caller checks the outcome."""
        return subprocess.run(
            [DOCKER, *args],
            env={**self.daemon.env, "DOCKER_API_VERSION": "1.50"},
            input=input_bytes,
            capture_output=True,
            timeout=60,
            check=False,
        )

    def test_load_names_a_host_file(self) -> None:
        """
        C{docker load} of an archive whose C{Layers} names a host file is a
        400 naming it, and the file stays where it was, also after a prune.
        """
        victim = self.work / "secret.txt"
        victim.write_bytes(b"precious host data")
        archive = self.work / "evil.tar"
        archive.write_bytes(_load_archive(str(victim)))
        result = self.docker("load", "-i", str(archive))
        self.assertNotEqual(result.returncode, 0)
        expected = (
            f'invalid layer path "{victim}" in manifest.json: outside the archive'
        )
        self.assertIn(expected, result.stderr.decode())
        # As dockerd: the failure is the stream's last message, under a 200.
        status, body = _post(self.daemon, "/v1.50/images/load", archive.read_bytes())
        last = json.loads(body.splitlines()[-1])
        self.assertEqual(status, 200)
        self.assertIn(expected, last["errorDetail"]["message"])
        self.assertEqual(self.docker("image", "prune", "-af").returncode, 0)
        self.assertEqual(victim.read_bytes(), b"precious host data")

    def test_load_names_dev_zero(self) -> None:
        """C{/dev/zero} as a layer is refused at once, never read."""
        archive = self.work / "zero.tar"
        archive.write_bytes(_load_archive("/dev/zero"))
        result = self.docker("load", "-i", str(archive))
        self.assertNotEqual(result.returncode, 0)
        self.assertIn('invalid layer path "/dev/zero"', result.stderr.decode())

    def test_import_symlink_then_directory(self) -> None:
        """
        C{docker import} of a layer with a symlink to a host directory and
        then a directory of the same name leaves the host directory's mode
        and time as they were.
        """
        victim = self.work / "victim"
        victim.mkdir()
        victim.chmod(0o750)
        os.utime(victim, (1_000_000_000, 1_000_000_000))
        before = victim.stat()
        directory = _entry("x", tarfile.DIRTYPE)
        directory.mode = 0o6777
        directory.mtime = 0
        layer = _tar(
            (_entry("x", tarfile.SYMTYPE, str(victim)), None), (directory, None)
        )
        result = self.docker("import", "-", "chmodtest:1", input_bytes=layer)
        self.assertEqual(result.returncode, 0, result.stderr)
        after = victim.stat()
        self.assertEqual(oct(after.st_mode), oct(before.st_mode))
        self.assertEqual(after.st_mtime_ns, before.st_mtime_ns)

    def test_import_dot_dot_whiteout(self) -> None:
        """
        A top-level C{.wh...} is refused with a 400, and the layers of the
        images already there stay.
        """
        good = _tar((_entry("keep"), b"kept"))
        self.assertEqual(
            self.docker("import", "-", "keep:1", input_bytes=good).returncode, 0
        )
        layers_dir = Path(self.daemon.data_root) / "image" / "layers"
        before = sorted(p.name for p in layers_dir.iterdir())
        result = self.docker(
            "import", "-", "wh:1", input_bytes=_tar((_entry(".wh..."), b""))
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("invalid whiteout name: .wh...", result.stderr.decode())
        self.assertEqual(sorted(p.name for p in layers_dir.iterdir()), before)
        [kept] = before
        self.assertEqual((layers_dir / kept / "keep").read_bytes(), b"kept")

    def test_import_sparse(self) -> None:
        """A 10 kB tar of a 4 GiB sparse file does not allocate 4 GiB."""
        if shutil.which("tar") is None:
            raise SkipTest("no GNU tar to write a sparse archive")
        source = self.work / "src"
        source.mkdir()
        with (source / "sp").open("wb") as f:
            f.truncate(4 << 30)
        archive = self.work / "sp.tar"
        subprocess.run(
            ["tar", "-C", str(source), "--sparse", "-cf", str(archive), "sp"],
            check=True,
        )
        result = self.docker("import", str(archive), "sparse:1")
        self.assertEqual(result.returncode, 0, result.stderr)
        [unpacked] = (Path(self.daemon.data_root) / "image" / "layers").glob("*/sp")
        info = unpacked.stat()
        self.assertEqual(info.st_size, 4 << 30)
        self.assertLess(info.st_blocks * 512, 1 << 20)

    def test_prune_bad_dangling(self) -> None:
        """C{dangling=maybe} is a 400 with dockerd's words; nothing goes."""
        self.assertEqual(
            self.docker(
                "import", "-", "unused:1", input_bytes=_tar((_entry("f"), b"x"))
            ).returncode,
            0,
        )
        filters = urllib.parse.quote(json.dumps({"dangling": ["maybe"]}))
        status, body = _post(self.daemon, f"/v1.50/images/prune?filters={filters}")
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["message"], "invalid filter 'dangling=maybe'")
        listed = self.docker("images", "-q", "unused:1")
        self.assertTrue(listed.stdout.strip())
        self.assertTrue(stat.S_ISDIR(os.stat(self.daemon.data_root).st_mode))  # noqa: PTH116
