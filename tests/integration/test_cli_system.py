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
import ssl
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

    def __init__(
        self,
        extra_args: tuple[str, ...] = (),
        directory: Path | None = None,
        client_tls: ssl.SSLContext | None = None,
    ) -> None:
        """
        @param extra_args: More daemon options (C{--tlsverify ...}).
        @param directory: Where its files go; a new temporary one by default.
        @param client_tls: How L{get} reaches a TLS listener.
        """
        self.directory = directory or Path(
            tempfile.mkdtemp(prefix="dockserve-cli-system-")
        )
        self.client_tls = client_tls
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
                    *extra_args,
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
            with contextlib.suppress(OSError, http.client.HTTPException, ssl.SSLError):
                if self.get("/_ping")[0] == 200:
                    return
            time.sleep(0.1)
        log = self.log_path.read_text(errors="replace")
        message = f"dockserve did not answer /_ping (up to {timeout}s):\n{log}"
        raise AssertionError(message)

    def get(self, path: str) -> tuple[int, bytes]:
        """C{GET path} over TCP."""
        connection: http.client.HTTPConnection
        if self.client_tls is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        else:
            connection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=10, context=self.client_tls
            )
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


def docker(
    host: str, *args: str, cert_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """
    Run the docker CLI against C{host}, with no user config in the way;
    with C{cert_path}, as C{DOCKER_TLS_VERIFY=1} with the client
    certificates there.
    """
    assert DOCKER is not None
    with tempfile.TemporaryDirectory() as config:
        env = dict(os.environ, DOCKER_HOST=host, DOCKER_CONFIG=config)
        env.pop("DOCKER_CONTEXT", None)
        env.pop("DOCKER_TLS_VERIFY", None)
        if cert_path is not None:
            env.update(DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(cert_path))
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


OPENSSL = shutil.which("openssl")


def openssl(directory: Path, *args: str) -> None:
    """Run C{openssl args} in C{directory}; fail loudly."""
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=directory, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """
    A CA, a server certificate for 127.0.0.1 and a client certificate, as
    the docker CLI expects them (C{ca.pem}, C{cert.pem}, C{key.pem} in the
    client directory C{client/}).
    """
    client = directory / "client"
    client.mkdir()
    openssl(directory, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-days", "2", "-subj", "/CN=test CA", "-keyout", "ca-key.pem",
            "-out", "ca.pem")  # fmt: skip
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ext in (("server", "server.ext"), ("client/", "client.ext")):
        key, csr = f"{name}key.pem", f"{name}req.csr"
        cert = f"{name}cert.pem"
        if name == "server":
            key, csr, cert = "server-key.pem", "server.csr", "server-cert.pem"
        openssl(directory, "req", "-newkey", "rsa:2048", "-nodes", "-subj",
                f"/CN={name.strip('/')}", "-keyout", key, "-out", csr)  # fmt: skip
        openssl(directory, "x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey",
                "ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", ext,
                "-out", cert)  # fmt: skip
    shutil.copy(directory / "ca.pem", client / "ca.pem")


class TLSVerifyCLITests(SynchronousTestCase):
    """C{docker version} and C{docker info} over TLS-verified TCP."""

    if DOCKER is None:
        skip = "the docker CLI is not installed"
    elif OPENSSL is None:
        skip = "openssl is not installed"
    elif not TWISTD.exists():
        skip = f"{TWISTD} is missing: run make setup"

    def setUp(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="dockserve-cli-tls-"))
        try:
            make_certificates(directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        self.client = directory / "client"
        context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
        context.load_cert_chain(self.client / "cert.pem", self.client / "key.pem")
        self.daemon = RunningDaemon(
            (
                "--tlsverify",
                "--tlscacert",
                str(directory / "ca.pem"),
                "--tlscert",
                str(directory / "server-cert.pem"),
                "--tlskey",
                str(directory / "server-key.pem"),
            ),
            directory=directory,
            client_tls=context,
        )
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_ready()

    def test_version_and_info(self) -> None:
        """Both print, with the client's certificate, and without an error."""
        version = docker(
            self.daemon.tcp_host, "version", "--format", "{{json .}}",
            cert_path=self.client,
        )  # fmt: skip
        self.assertEqual((version.returncode, version.stderr), (0, ""))
        self.assertEqual(json.loads(version.stdout)["Server"]["ApiVersion"], "1.50")
        info = docker(self.daemon.tcp_host, "info", cert_path=self.client)
        self.assertEqual(info.returncode, 0, info.stderr)
        self.assertIn("Server Version: ", info.stdout)

    def test_no_client_certificate(self) -> None:
        """Without a client certificate the CLI gets no answer."""
        done = docker(
            self.daemon.tcp_host, "version", "--format", "{{.Server.Version}}"
        )
        self.assertNotEqual(done.returncode, 0)
        self.assertEqual(done.stdout.strip(), "")
