"""
C{fd://} for real: Debian's C{systemd-socket-activate} binds a unix socket
and a loopback TCP port, starts the daemon on the first connection with
C{LISTEN_FDS}, and the daemon serves both; C{READY=1} reaches the
C{NOTIFY_SOCKET} the test made; without passed sockets C{fd://} is a usage
error naming systemd.
"""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.harness import ROOT, TWISTD, unix_get

ACTIVATE = shutil.which("systemd-socket-activate")
DOCKER = shutil.which("docker")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SocketActivationTests(SynchronousTestCase):
    if ACTIVATE is None:
        skip = "systemd-socket-activate is not installed (Debian package systemd)"

    def setUp(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="dockserve-sa-"))
        self.addCleanup(shutil.rmtree, str(self.directory), True)
        self.socket_path = str(self.directory / "d.sock")
        self.port = free_port()
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(self.notify.close)
        notify_path = str(self.directory / "notify")
        self.notify.bind(notify_path)
        self.notify.settimeout(30)
        self.log = (self.directory / "daemon.log").open("wb")
        self.addCleanup(self.log.close)
        self.process = subprocess.Popen(
            [ACTIVATE or "", "-l", self.socket_path, "-l", f"127.0.0.1:{self.port}",
             "-E", f"NOTIFY_SOCKET={notify_path}", "-E", f"PYTHONPATH={ROOT}",
             TWISTD, "-n", "--pidfile=", "dockserve", "-H", "fd://",
             "--data-root", str(self.directory / "data"),
             "--exec-root", str(self.directory / "exec")],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=str(self.directory),
        )  # fmt: skip
        self.addCleanup(self.stop)
        deadline = time.monotonic() + 10
        while not Path(self.socket_path).exists():
            self.assertLess(time.monotonic(), deadline, "socket never bound")
            time.sleep(0.02)

    def stop(self) -> None:
        # systemd-socket-activate execs the daemon in its own process.
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def test_serves_passed_sockets(self) -> None:
        """
        The first connection starts the daemon; it answers on the unix socket
        and on the TCP port systemd bound, and tells systemd READY=1.
        """
        status, body = unix_get(self.socket_path, "/_ping", timeout=30)
        self.assertEqual((status, body), (200, b"OK"))
        self.assertEqual(self.notify.recv(100), b"READY=1")
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as tcp:
            tcp.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := tcp.recv(4096):
                reply += chunk
        self.assertTrue(reply.startswith(b"HTTP/1.1 200"), reply)
        if DOCKER is not None:
            done = subprocess.run(
                [DOCKER, "-H", f"tcp://127.0.0.1:{self.port}", "version",
                 "--format", "{{.Server.APIVersion}}"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            self.assertEqual((done.returncode, done.stdout), (0, "1.50\n"), done.stderr)


class NoSocketsTests(SynchronousTestCase):
    def test_fd_without_systemd(self) -> None:
        """Outside socket activation, fd:// exits 2 with a line naming systemd."""
        directory = tempfile.mkdtemp(prefix="dockserve-sa-")
        self.addCleanup(shutil.rmtree, directory, True)
        done = subprocess.run(
            [TWISTD, "-n", "--pidfile=", "dockserve", "-H", "fd://",
             "--data-root", f"{directory}/data", "--exec-root", f"{directory}/exec"],
            capture_output=True, text=True, timeout=60, check=False, cwd=directory,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                 "HOME": directory},
        )  # fmt: skip
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("systemd", done.stderr)
        self.assertNotIn("Traceback", done.stderr)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
