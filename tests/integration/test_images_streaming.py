"""
Image uploads read as they arrive (L{dockserve.api.images.StreamingRequest},
the site's request factory): a real daemon driven over its unix socket with
raw HTTP, so the test controls when the body ends.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.integration.harness import RunningDaemon, start_daemon
from tests.integration.images import (
    busybox_rootfs_tar,
    busybox_save_archive,
    have_busybox,
)
from tests.integration.test_images import DOCKER


def _start(test_case: SynchronousTestCase) -> RunningDaemon:
    if not have_busybox():
        raise SkipTest("no /bin/busybox (apt-get install busybox-static)")
    return start_daemon(test_case)


class _Client:
    """One HTTP/1.1 connection to the daemon's socket, spoken by hand."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def start_upload(self, target: str) -> None:
        self.sock.sendall(
            f"POST {target} HTTP/1.1\r\nHost: d\r\n"
            "Content-Type: application/x-tar\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )

    def chunk(self, data: bytes) -> None:
        self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def end(self) -> None:
        self.sock.sendall(b"0\r\n\r\n")

    def response(self) -> tuple[int, bytes]:
        """Read one response: its status and (de-chunked) body."""
        head = self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in lines[1:])
        }
        if "content-length" in headers:
            return status, self._exactly(int(headers["content-length"]))
        body = b""
        while True:
            size = int(self._until(b"\r\n"), 16)
            data = self._exactly(size + 2)[:-2]
            if not size:
                return status, body
            body += data

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed; got {self.buffer!r}")
        self.buffer += data

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        found, _, self.buffer = self.buffer.partition(marker)
        return found

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        found, self.buffer = self.buffer[:n], self.buffer[n:]
        return found


class StreamedUploadTests(SynchronousTestCase):
    """What a client sees of uploads read as they arrive."""

    def setUp(self) -> None:
        self.daemon = _start(self)
        self.tmp = Path(tempfile.mkdtemp(prefix="dockserve-stream-t-"))
        self.addCleanup(shutil.rmtree, str(self.tmp), True)
        self.client = _Client(self.daemon.socket_path)
        self.addCleanup(self.client.close)

    def docker(self, *args: str) -> str:
        result = subprocess.run(
            [DOCKER, *args],
            env={**self.daemon.env, "DOCKER_API_VERSION": "1.50"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {result.stderr}")
        return result.stdout

    def test_refused_before_the_body_ends(self) -> None:
        """
        An import with a bad change is refused while its body is still
        coming; the rest of the body is read past and the connection serves
        the next request.
        """
        self.client.start_upload("/v1.50/images/create?fromSrc=-&changes=BOGUS%20x")
        self.client.chunk(b"x" * (1 << 20))
        status, body = self.client.response()
        self.assertEqual(
            (status, json.loads(body)),
            (400, {"message": "bogus is not a valid change command"}),
        )
        for _ in range(8):
            self.client.chunk(b"y" * (1 << 20))
        self.client.end()
        self.client.sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
        self.assertEqual(self.client.response(), (200, b"OK"))

    def test_load_in_pieces(self) -> None:
        """
        An archive sent in small pieces, the sender waiting between some,
        loads whole: the same image as the CLI loads, and it runs.
        """
        archive = busybox_save_archive(
            self.tmp / "a.tar", "pieces:1", {"marker": b"streamed\n"}
        ).read_bytes()
        self.client.start_upload("/v1.50/images/load?quiet=1")
        for offset in range(0, len(archive), 65536 + 7):
            self.client.chunk(archive[offset : offset + 65536 + 7])
        self.client.end()
        status, body = self.client.response()
        self.assertEqual(
            (status, json.loads(body)),
            (200, {"stream": "Loaded image: pieces:1\n"}),
        )
        self.assertEqual(
            self.docker("run", "--rm", "pieces:1", "cat", "/marker"), "streamed\n"
        )

    def test_cli_import_and_load(self) -> None:
        """docker import (plain and from stdin) and docker load work as ever."""
        rootfs = busybox_rootfs_tar(self.tmp / "r.tar", {"m": b"imported\n"})
        image_id = self.docker("import", str(rootfs), "imp:1").strip()
        with rootfs.open("rb") as stdin:
            again = subprocess.run(
                [DOCKER, "import", "-", "imp:2"],
                env=self.daemon.env,
                stdin=stdin,
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            ).stdout.strip()
        self.assertTrue(image_id.startswith("sha256:"), image_id)
        self.assertTrue(again.startswith("sha256:"), again)
        self.assertEqual(self.docker("run", "--rm", "imp:2", "cat", "/m"), "imported\n")
        archive = busybox_save_archive(self.tmp / "l.tar", "loaded:1")
        self.assertIn("Loaded image: loaded:1", self.docker("load", "-i", str(archive)))

    def test_client_gone_mid_load(self) -> None:
        """
        A client that goes away half-way leaves no image, and the daemon
        serves the next load.
        """
        archive = busybox_save_archive(self.tmp / "a.tar", "gone:1").read_bytes()
        self.client.start_upload("/v1.50/images/load?quiet=1")
        self.client.chunk(archive[: len(archive) // 2])
        self.client.close()
        self.assertNotIn("gone:1", self.docker("images", "--format", "{{.Repository}}"))
        archive_path = self.tmp / "again.tar"
        archive_path.write_bytes(archive)
        self.assertIn(
            "Loaded image: gone:1", self.docker("load", "-i", str(archive_path))
        )

    def test_killed_mid_load(self) -> None:
        """
        SIGKILL while a streamed load is half read: after a restart no image
        shows, nothing is left in the store's temporary area, and the same
        archive loads.
        """
        archive = busybox_save_archive(self.tmp / "a.tar", "killed:1")
        data = archive.read_bytes()
        self.client.start_upload("/v1.50/images/load?quiet=1")
        self.client.chunk(data[: len(data) // 2])
        self.daemon.kill()
        self.daemon.start()
        self.assertEqual(self.docker("images", "-q"), "")
        tmp = Path(self.daemon.data_root) / "image" / "tmp"
        self.assertEqual(list(tmp.iterdir()), [])
        self.assertIn("Loaded image: killed:1", self.docker("load", "-i", str(archive)))
