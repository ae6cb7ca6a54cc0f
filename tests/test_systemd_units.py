"""
The shipped systemd units (docs/systemd/) are valid for systemd itself, with
ExecStart pointing at this checkout's twistd; they say what the daemon needs
(notify, fd://, containers kept across restarts); and the service's own
command line, given the socket as the socket unit names it, starts a daemon
that answers and tells systemd READY=1.
"""

import configparser
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.tap import default_unix_socket
from tests.integration.harness import ROOT, TWISTD, unix_get

ANALYZE = shutil.which("systemd-analyze")
ACTIVATE = shutil.which("systemd-socket-activate")
UNITS = ROOT / "docs" / "systemd"


def read_unit(name: str) -> configparser.ConfigParser:
    """A unit file's sections and keys (ours repeat no key)."""
    parser = configparser.ConfigParser(
        interpolation=None, strict=True, comment_prefixes=("#", ";")
    )
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


class UnitContentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.service = read_unit("dockserve.service")["Service"]
        self.socket = read_unit("dockserve.socket")["Socket"]

    def test_service(self) -> None:
        """
        Type=notify (the daemon sends READY=1), only the daemon is killed
        on stop (containers live on), and it serves the passed sockets.
        """
        self.assertEqual(self.service["Type"], "notify")
        self.assertEqual(self.service["KillMode"], "process")
        self.assertEqual(self.service["Delegate"], "yes")
        argv = shlex.split(self.service["ExecStart"])
        self.assertEqual(argv[1:5], ["-n", "--pidfile=", "dockserve", "-H"])
        self.assertEqual(argv[5], "fd://")
        # systemctl reload sends SIGHUP: the TLS material is read again.
        self.assertEqual(self.service["ExecReload"], "/bin/kill -HUP $MAINPID")

    def test_socket(self) -> None:
        """The socket is where dockserve listens by default, 0660 root:docker."""
        self.assertEqual(self.socket["ListenStream"], default_unix_socket({}))
        self.assertEqual(
            (self.socket["SocketMode"], self.socket["SocketUser"],
             self.socket["SocketGroup"]),
            ("0660", "root", "docker"),
        )  # fmt: skip


class ExecStartTests(SynchronousTestCase):
    if ACTIVATE is None:
        skip = "systemd-socket-activate is not installed (Debian package systemd)"

    def test_runs(self) -> None:
        """
        ExecStart (this checkout's twistd, temporary roots) under
        systemd-socket-activate with the socket unit's FileDescriptorName:
        the first client is answered and READY=1 reaches NOTIFY_SOCKET.
        """
        directory = Path(tempfile.mkdtemp(prefix="dockserve-units-"))
        self.addCleanup(shutil.rmtree, str(directory), True)
        service = read_unit("dockserve.service")["Service"]
        name = read_unit("dockserve.socket")["Socket"]["FileDescriptorName"]
        argv = [TWISTD, *shlex.split(service["ExecStart"])[1:],
                "--data-root", str(directory / "data"),
                "--exec-root", str(directory / "exec")]  # fmt: skip
        path = str(directory / "d.sock")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(notify.close)
        notify.bind(str(directory / "notify"))
        notify.settimeout(30)
        log = (directory / "log").open("wb")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [ACTIVATE or "", "-l", path, f"--fdname={name}",
             "-E", f"NOTIFY_SOCKET={directory / 'notify'}",
             "-E", f"PYTHONPATH={ROOT}", *argv],
            stdout=log, stderr=subprocess.STDOUT, cwd=str(directory),
        )  # fmt: skip

        def stop() -> None:
            if process.poll() is None:
                process.terminate()
                process.wait(15)

        self.addCleanup(stop)
        deadline = time.monotonic() + 10
        while not Path(path).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        status, body = unix_get(path, "/_ping", timeout=30)
        self.assertEqual((status, body), (200, b"OK"), (directory / "log").read_text())
        self.assertEqual(notify.recv(100), b"READY=1")


class UnitFileTests(SynchronousTestCase):
    if ANALYZE is None:
        skip = "systemd-analyze is not installed (Debian package systemd)"

    def test_verify(self) -> None:
        """systemd-analyze verify finds nothing wrong with either unit."""
        directory = Path(tempfile.mkdtemp(prefix="dockserve-units-"))
        self.addCleanup(shutil.rmtree, str(directory), True)
        for name in ("dockserve.socket", "dockserve.service"):
            text = (UNITS / name).read_text()
            text = text.replace("/opt/dockserve/.venv/bin/twistd", TWISTD)
            (directory / name).write_text(text)
        done = subprocess.run(
            [ANALYZE or "", "verify", "--man=no",
             str(directory / "dockserve.socket"), str(directory / "dockserve.service")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        self.assertEqual((done.returncode, done.stderr), (0, ""))
