# -*- test-case-name: tests.integration.test_listeners -*-
"""
A real daemon for integration tests: C{twistd -n dockserve} on a temp socket.

C{start_daemon(self)} starts it with temporary C{--data-root} and
C{--exec-root}, waits until C{/_ping} answers, and registers a cleanup that
stops it (SIGTERM, then SIGKILL) and removes its files.
"""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

#: The repository root: twistd finds the dropin under ROOT/twisted/plugins.
ROOT = Path(__file__).resolve().parents[2]
TWISTD = str(Path(sys.executable).parent / "twistd")
START_TIMEOUT = 20.0


class _UNIXConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 5.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def unix_get(path: str, url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """C{GET url} over the unix socket at C{path}: status and body."""
    connection = _UNIXConnection(path, timeout)
    try:
        connection.request("GET", url)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def unix_request(
    path: str,
    method: str,
    url: str,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """C{method url} with a JSON C{body} over the unix socket at C{path}."""
    connection = _UNIXConnection(path, timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, url, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class RunningDaemon:
    """
    A C{twistd -n dockserve} subprocess.

    @ivar socket_path: Its unix socket.
    @ivar docker_host: C{unix://socket_path}, for C{DOCKER_HOST}.
    @ivar env: C{os.environ} plus C{DOCKER_HOST}.
    @ivar data_root: Its C{--data-root}.
    @ivar exec_root: Its C{--exec-root}.
    @ivar log_path: Its stdout and stderr.
    """

    def __init__(
        self,
        directory: Path,
        extra_args: Sequence[str],
        lab: "NetworkLab | None" = None,
    ) -> None:
        self.directory = directory
        self.socket_path = str(directory / "d.sock")
        self.docker_host = f"unix://{self.socket_path}"
        self.env = {**os.environ, "DOCKER_HOST": self.docker_host}
        self.data_root = str(directory / "data")
        self.exec_root = str(directory / "exec")
        self.log_path = str(directory / "daemon.log")
        self.extra_args = tuple(extra_args)
        #: The network namespace it runs in (None: the machine's, with
        #: --bridge none, so that it changes nothing of the machine's
        #: network).
        self.lab = lab
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        assert self.process is not None
        return self.process.pid

    def argv(self) -> list[str]:
        """The command line that starts it."""
        inside = (
            ["nsenter", f"--net=/run/netns/{self.lab.host}", "--"]
            if self.lab is not None
            else []
        )
        bridge = [] if self.lab is not None else ["--bridge", "none"]
        return [
            *inside,
            TWISTD,
            "-n",
            "--pidfile=",
            "dockserve",
            "-H",
            self.docker_host,
            "--data-root",
            self.data_root,
            "--exec-root",
            self.exec_root,
            *bridge,
            *self.extra_args,
        ]

    def start(self, *, wait: bool = True) -> None:
        """Start it; with C{wait}, return once C{/_ping} answers."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with Path(self.log_path).open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(), stdout=log, stderr=log, env=env, cwd=str(self.directory)
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until C{/_ping} answers 200, or fail with the daemon's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"dockserve exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                status, _ = unix_get(self.socket_path, "/_ping", timeout=2.0)
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200:
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"dockserve did not answer /_ping in {timeout}s:\n{self.log()}"
        )

    def log(self) -> str:
        """Everything the daemon wrote so far."""
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after C{timeout}; the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, leaving its socket file and state behind."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """Stop it cleanly and start it again on the same roots."""
        self.stop()
        self.start()


class NetworkLab:
    """
    Network namespaces a test makes for itself, so that networking is
    tested without touching the machine's own: C{host}, where the daemon
    runs (its bridges, rules and published ports), and C{world} behind a
    veth (198.51.100.1, TEST-NET-2), standing for everything outside;
    C{host}'s uplink is 198.51.100.2 and its default route goes there.
    Both are deleted when the test ends.
    """

    HOST_IP = "198.51.100.2"
    WORLD_IP = "198.51.100.1"

    def __init__(self, test_case: SynchronousTestCase) -> None:
        tag = os.urandom(4).hex()
        self.host = f"dsh-{tag}"
        self.world = f"dsw-{tag}"
        for name in (self.host, self.world):
            _ip("netns", "add", name)
            test_case.addCleanup(_ip, "netns", "del", name, check=False)
            _ip("-n", name, "link", "set", "lo", "up")
        _ip("link", "add", "up0", "netns", self.host, "type", "veth",
            "peer", "name", "w0", "netns", self.world)  # fmt: skip
        _ip("-n", self.host, "addr", "add", f"{self.HOST_IP}/24", "dev", "up0")
        _ip("-n", self.world, "addr", "add", f"{self.WORLD_IP}/24", "dev", "w0")
        _ip("-n", self.host, "link", "set", "up0", "up")
        _ip("-n", self.world, "link", "set", "w0", "up")
        _ip("-n", self.host, "route", "add", "default", "via", self.WORLD_IP)

    def run(
        self, argv: Sequence[str], *, where: str = "host", timeout: float = 30
    ) -> subprocess.CompletedProcess[bytes]:
        """Run C{argv} in the host (or world) namespace."""
        name = self.host if where == "host" else self.world
        return subprocess.run(
            ["ip", "netns", "exec", name, *argv],
            capture_output=True, timeout=timeout, check=False,
        )  # fmt: skip

    def spawn(self, argv: Sequence[str], *, where: str = "world") -> Any:
        """Start C{argv} in a namespace, in the background: its Popen."""
        name = self.host if where == "host" else self.world
        return subprocess.Popen(
            ["ip", "netns", "exec", name, *argv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip


def unmount_under(directory: Path) -> None:
    """
    Detach whatever is still mounted under C{directory}, deepest first: a
    daemon stopped while a removed container's root was being reaped
    leaves it to the next start, which a test's daemon never has, and
    rmtree cannot remove a mount point.
    """
    prefix = str(directory) + "/"
    with Path("/proc/self/mounts").open() as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _ip(*args: str, check: bool = True) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.decode()}")


def start_daemon(
    test_case: SynchronousTestCase,
    extra_args: Sequence[str] = (),
    lab: NetworkLab | None = None,
) -> RunningDaemon:
    """
    Start a daemon for C{test_case}, ready to answer; stopped and cleaned up
    when the test ends.

    @param extra_args: More options after C{dockserve}.
    @param lab: Run it in this lab's C{host} namespace, with the default
        bridge; without one it runs in the machine's namespace with
        C{--bridge none}, so it changes nothing of the machine's network.
    """
    directory = Path(tempfile.mkdtemp(prefix="dockserve-it-"))
    daemon = RunningDaemon(directory, extra_args, lab)
    test_case.addCleanup(shutil.rmtree, str(directory), True)
    test_case.addCleanup(unmount_under, directory)
    test_case.addCleanup(daemon.stop)
    daemon.start()
    return daemon
