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

    def __init__(self, directory: Path, extra_args: Sequence[str]) -> None:
        self.directory = directory
        self.socket_path = str(directory / "d.sock")
        self.docker_host = f"unix://{self.socket_path}"
        self.env = {**os.environ, "DOCKER_HOST": self.docker_host}
        self.data_root = str(directory / "data")
        self.exec_root = str(directory / "exec")
        self.log_path = str(directory / "daemon.log")
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        assert self.process is not None
        return self.process.pid

    def argv(self) -> list[str]:
        """The command line that starts it."""
        return [
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


def start_daemon(
    test_case: SynchronousTestCase, extra_args: Sequence[str] = ()
) -> RunningDaemon:
    """
    Start a daemon for C{test_case}, ready to answer; stopped and cleaned up
    when the test ends.

    @param extra_args: More options after C{dockserve}.
    """
    directory = Path(tempfile.mkdtemp(prefix="dockserve-it-"))
    daemon = RunningDaemon(directory, extra_args)
    test_case.addCleanup(shutil.rmtree, str(directory), True)
    test_case.addCleanup(daemon.stop)
    daemon.start()
    return daemon
