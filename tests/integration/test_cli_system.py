# -*- test-case-name: tests.integration.test_cli_system -*-
"""
The real docker CLI and the Docker SDK for Python against a running dockserve:
C{docker version}, C{docker info}, version negotiation, the debug endpoints
and the JSON request log.

A daemon (C{twistd -n dockserve}) per test serves, on a unix socket
and on a loopback TCP port, with C{--debug --log-format json}.
"""

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

#: The repository root, which twistd needs on its path to find the plugin.
ROOT = Path(__file__).resolve().parents[2]
TWISTD = Path(sys.executable).parent / "twistd"
DOCKER = shutil.which("docker")
#: How long any one CLI call may take before the test fails (not hangs).
TIMEOUT = 10


def free_port() -> int:
    """A loopback TCP port nobody listens on now (bound at port 0, closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RunningDaemon:
    """A C{twistd -n dockserve} subprocess on a unix socket and a TCP port."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="dockserve-cli-system-"))
        self.socket_path = self.directory / "d.sock"
        self.port = free_port()
        self.data_root = self.directory / "data"
        self.log_path = self.directory / "daemon.log"
        self.unix_host = f"unix://{self.socket_path}"
        self.tcp_host = f"tcp://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(TWISTD),
                    "-n",
                    "--pidfile=",
                    "dockserve",
                    "-H",
                    self.unix_host,
                    "-H",
                    self.tcp_host,
                    "--data-root",
                    str(self.data_root),
                    "--exec-root",
                    str(self.directory / "exec"),
                    "--debug",
                    "--log-format",
                    "json",
                ],
                cwd=str(self.directory),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until C{/_ping} answers over TCP."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.get("/_ping")[0] == 200:
                    return
            time.sleep(0.1)
        log = self.log_path.read_text(errors="replace")
        message = f"dockserve did not answer /_ping in {timeout}s:\n{log}"
        raise AssertionError(message)

    def get(self, path: str) -> tuple[int, bytes]:
        """C{GET path} over TCP."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL) and remove its files."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def docker(host: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI against C{host}, with no user config in the way."""
    assert DOCKER is not None
    with tempfile.TemporaryDirectory() as config:
        env = dict(os.environ, DOCKER_HOST=host, DOCKER_CONFIG=config)
        env.pop("DOCKER_CONTEXT", None)
        return subprocess.run(
            [DOCKER, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )


class CLISystemTests(SynchronousTestCase):
    """C{docker version}, C{docker info} and the SDK against dockserve."""

    if DOCKER is None:
        skip = "the docker CLI is not installed"
    elif not TWISTD.exists():
        skip = f"{TWISTD} is missing: run make setup"

    def setUp(self) -> None:
        self.daemon = RunningDaemon()
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_ready()

    def version(self, host: str) -> dict[str, Any]:
        done = docker(host, "version", "--format", "{{json .}}")
        self.assertEqual((done.returncode, done.stderr), (0, ""))
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def test_version_tcp(self) -> None:
        """C{docker version} over TCP: our engine at API 1.50, no error."""
        server = self.version(self.daemon.tcp_host)["Server"]
        self.assertEqual(server["ApiVersion"], "1.50")
        self.assertEqual(server["MinAPIVersion"], "1.24")
        self.assertEqual(server["Components"][0]["Name"], "Engine")
        self.assertEqual(server["Os"], "linux")

    def test_version_unix(self) -> None:
        """C{docker version} over the unix socket."""
        server = self.version(self.daemon.unix_host)["Server"]
        self.assertEqual(server["ApiVersion"], "1.50")

    def test_version_text(self) -> None:
        """The plain C{docker version} table prints, server part included."""
        done = docker(self.daemon.tcp_host, "version")
        self.assertEqual((done.returncode, done.stderr), (0, ""))
        self.assertIn("Server: dockserve", done.stdout)
        self.assertIn("API version:      1.50 (minimum version 1.24)", done.stdout)

    def test_info(self) -> None:
        """C{docker info} prints this machine's facts with no server error."""
        done = docker(self.daemon.tcp_host, "info", "--format", "{{json .}}")
        self.assertEqual(done.returncode, 0, done.stderr)
        info = json.loads(done.stdout)
        self.assertIsNone(info.get("ServerErrors"))
        self.assertEqual(info["DockerRootDir"], str(self.daemon.data_root))
        self.assertEqual(info["NCPU"], len(os.sched_getaffinity(0)))
        self.assertEqual(info["KernelVersion"], os.uname().release)
        self.assertTrue(info["Debug"])
        text = docker(self.daemon.tcp_host, "info")
        self.assertEqual(text.returncode, 0, text.stderr)
        self.assertIn(f"Docker Root Dir: {self.daemon.data_root}", text.stdout)

    def test_sdk_negotiates(self) -> None:
        """The Docker SDK for Python negotiates 1.50 from C{GET /version}."""
        try:
            import docker as sdk  # noqa: PLC0415
        except ImportError:
            self.skipTest("the docker SDK for Python is not installed")
        client = sdk.DockerClient(base_url=self.daemon.tcp_host, version="auto")
        self.addCleanup(client.close)
        self.assertEqual(client.api.api_version, "1.50")
        self.assertTrue(client.ping())
        self.assertEqual(client.version()["ApiVersion"], "1.50")
        self.assertIsInstance(client.info()["Containers"], int)

    def test_bad_version(self) -> None:
        """A too-new API version through a real socket is a 400 JSON error."""
        status, body = self.daemon.get("/v1.99/version")
        self.assertEqual(status, 400)
        self.assertIn("too new", json.loads(body)["message"])

    def test_debug_vars(self) -> None:
        """Under C{--debug}, C{/debug/vars} counts the requests served."""
        self.daemon.get("/_ping")
        status, body = self.daemon.get("/debug/vars")
        self.assertEqual(status, 200)
        found = json.loads(body)
        self.assertGreaterEqual(found["requests"]["ping"]["200"], 1)
        self.assertGreater(found["memstats"]["rss_bytes"], 0)

    def test_json_log_line(self) -> None:
        """With C{--log-format json} each request is one JSON object."""
        self.daemon.get("/_ping?probe=json-log")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for line in self.daemon.log_path.read_text(errors="replace").splitlines():
                if "probe=json-log" not in line:
                    continue
                record = json.loads(line)
                self.assertEqual(
                    (record["method"], record["status"], record["path"]),
                    ("GET", 200, "/_ping?probe=json-log"),
                )
                self.assertIn("duration", record)
                self.assertIn("peer", record)
                return
            time.sleep(0.1)
        self.fail("no JSON log line for the request")
