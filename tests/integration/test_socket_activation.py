"""
C{fd://} for real: Debian's C{systemd-socket-activate} binds a unix socket
and a loopback TCP port, starts the daemon on the first connection with
C{LISTEN_FDS}, and the daemon serves both; C{READY=1} reaches the
C{NOTIFY_SOCKET} the test made; under C{--tlsverify} the TCP socket speaks
TLS and the unix one does not (as dockerd); C{fd://N} serves descriptor N
only; without passed sockets C{fd://} is a usage error naming systemd.
"""

import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.integration.harness import ROOT, TWISTD, unix_get
from tests.integration.images import have_busybox, import_busybox
from tests.server.test_tls import PKI
from tests.tempdirs import temp_dir

ACTIVATE = shutil.which("systemd-socket-activate")
DOCKER = shutil.which("docker")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tcp_ping(port: int, context: ssl.SSLContext | None = None) -> bytes:
    """C{GET /_ping} over TCP (TLS when C{context} is given): the raw reply."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    with raw:
        sock = raw
        if context is not None:
            sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        return reply


def _listening(path: str) -> bool:
    """Whether a unix socket at C{path} takes connections."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


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
        self.notify_path = str(self.directory / "notify")
        self.notify.bind(self.notify_path)
        self.notify.settimeout(30)
        self.docker_env = {
            "PATH": "/usr/bin:/bin",
            "DOCKER_CONFIG": str(self.directory / "docker-config"),
        }

    def start(self, *args: str) -> None:
        """
        systemd-socket-activate listening on the unix path (descriptor 3)
        and the TCP port (descriptor 4), to run the daemon with C{args}.
        """
        log = (self.directory / "daemon.log").open("wb")
        self.addCleanup(log.close)
        self.process = subprocess.Popen(
            [ACTIVATE or "", "-l", self.socket_path, "-l", f"127.0.0.1:{self.port}",
             "-E", f"NOTIFY_SOCKET={self.notify_path}", "-E", f"PYTHONPATH={ROOT}",
             TWISTD, "-n", "--pidfile=", "dockserve",
             "--data-root", str(self.directory / "data"),
             "--exec-root", str(self.directory / "exec"), *args],
            stdout=log, stderr=subprocess.STDOUT, cwd=str(self.directory),
        )  # fmt: skip
        self.addCleanup(self.stop)
        # The path appears at bind(), before listen(): wait until a connect
        # is taken (systemd-socket-activate accepts nothing itself; the
        # connection waits in the backlog for the daemon).
        deadline = time.monotonic() + 10
        while not _listening(self.socket_path):
            self.assertLess(time.monotonic(), deadline, "socket never listened")
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

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DOCKER or "docker", *args], capture_output=True, text=True,
            timeout=30, check=False, env=self.docker_env,
        )  # fmt: skip

    def daemon_log(self) -> str:
        return (self.directory / "daemon.log").read_text(errors="replace")

    def test_serves_passed_sockets(self) -> None:
        """
        The first connection starts the daemon; it answers on the unix socket
        and on the TCP port systemd bound, and tells systemd READY=1; on
        SIGTERM it tells systemd STOPPING=1 and dies of the signal, as
        twistd does (the unit's SuccessExitStatus=SIGTERM counts it clean).
        """
        self.start("-H", "fd://")
        status, body = unix_get(self.socket_path, "/_ping", timeout=30)
        self.assertEqual((status, body), (200, b"OK"), self.daemon_log())
        self.assertEqual(self.notify.recv(100), b"READY=1")
        reply = tcp_ping(self.port)
        self.assertTrue(reply.startswith(b"HTTP/1.1 200"), reply)
        if DOCKER is not None:
            self.docker_version_on_both()
        self.process.terminate()
        self.assertIn(self.process.wait(30), (0, -signal.SIGTERM), self.daemon_log())
        self.assertNotIn("Traceback", self.daemon_log())
        self.assertEqual(self.notify.recv(100), b"STOPPING=1")

    def docker_version_on_both(self) -> None:
        for host in (f"unix://{self.socket_path}", f"tcp://127.0.0.1:{self.port}"):
            done = self.docker(
                "-H", host, "version", "--format", "{{.Server.APIVersion}}"
            )  # fmt: skip
            self.assertEqual((done.returncode, done.stdout), (0, "1.50\n"), done.stderr)

    def test_tls_on_tcp_only(self) -> None:
        """
        Under --tlsverify the passed TCP socket speaks TLS and wants a client
        certificate from the CA; the passed unix socket stays plain HTTP, as
        dockerd (go-systemd's TLSListeners) has it.
        """
        pki = PKI(temp_dir(self))
        self.addCleanup(shutil.rmtree, str(pki.directory), True)
        self.start(
            "-H", "fd://", "--tlsverify", f"--tlscacert={pki.ca}",
            f"--tlscert={pki.server_cert}", f"--tlskey={pki.server_key}",
        )  # fmt: skip
        status, body = unix_get(self.socket_path, "/_ping", timeout=30)
        self.assertEqual((status, body), (200, b"OK"), self.daemon_log())
        context = ssl.create_default_context(cafile=pki.ca)
        context.load_cert_chain(pki.client_cert, pki.client_key)
        reply = tcp_ping(self.port, context)
        self.assertTrue(reply.startswith(b"HTTP/1.1 200"), reply)
        plain = tcp_ping(self.port)
        self.assertFalse(plain.startswith(b"HTTP/1.1 200"), plain)
        if DOCKER is None:
            return
        done = self.docker(
            "-H", f"tcp://127.0.0.1:{self.port}", "--tlsverify",
            f"--tlscacert={pki.ca}", f"--tlscert={pki.client_cert}",
            f"--tlskey={pki.client_key}",
            "version", "--format", "{{.Server.APIVersion}}",
        )  # fmt: skip
        self.assertEqual((done.returncode, done.stdout), (0, "1.50\n"), done.stderr)
        done = self.docker(
            "-H", f"unix://{self.socket_path}", "version", "--format",
            "{{.Server.APIVersion}}",
        )  # fmt: skip
        self.assertEqual((done.returncode, done.stdout), (0, "1.50\n"), done.stderr)

    def test_children_inherit_no_activation(self) -> None:
        """
        A container started under socket activation: neither conmon nor the
        container's process sees NOTIFY_SOCKET, LISTEN_FDS or LISTEN_PID,
        so none of them can speak to systemd in the daemon's name or take
        the daemon's sockets for their own.
        """
        if DOCKER is None or not have_busybox():
            raise SkipTest("needs the docker CLI and busybox-static")
        self.start("-H", "fd://")
        host = f"unix://{self.socket_path}"
        status, _ = unix_get(self.socket_path, "/_ping", timeout=30)
        self.assertEqual(status, 200, self.daemon_log())
        import_busybox(host)
        self.addCleanup(self.docker, "-H", host, "rm", "-f", "sa-env")
        done = self.docker("-H", host, "run", "-d", "--name", "sa-env",
                           "busybox", "sleep", "300")  # fmt: skip
        self.assertEqual(done.returncode, 0, done.stderr)
        done = self.docker("-H", host, "inspect", "-f", "{{.State.Pid}}", "sa-env")
        self.assertEqual(done.returncode, 0, done.stderr)
        pid = int(done.stdout)
        conmon = int(
            Path(f"/proc/{pid}/status").read_text().split("PPid:")[1].split()[0]
        )
        self.assertIn("conmon", Path(f"/proc/{conmon}/comm").read_text())
        for process in (conmon, pid):
            names = {
                entry.partition(b"=")[0]
                for entry in Path(f"/proc/{process}/environ").read_bytes().split(b"\0")
            }
            for name in (b"NOTIFY_SOCKET", b"LISTEN_FDS", b"LISTEN_PID"):
                self.assertNotIn(name, names, (process, sorted(names)))

    def test_fd_n(self) -> None:
        """
        -H fd://4 serves the TCP socket (the second one passed); the unix
        socket it did not name is closed, so connecting there is refused.
        """
        self.start("-H", "fd://4")
        reply = tcp_ping(self.port)
        self.assertTrue(reply.startswith(b"HTTP/1.1 200"), self.daemon_log())
        self.assertEqual(self.notify.recv(100), b"READY=1")
        self.assertRaises(ConnectionRefusedError, unix_get, self.socket_path, "/_ping")

    def test_fd_n_not_passed(self) -> None:
        """-H fd://9 when systemd passed 3 and 4: exit 2 naming both."""
        self.start("-H", "fd://9")
        # The daemon starts (and exits) on the first connection.
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(self.socket_path)
            self.assertEqual(self.process.wait(30), 2)
        log = self.daemon_log()
        self.assertIn("fd://9", log)
        self.assertIn("3, 4", log)
        self.assertNotIn("Traceback", log)


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
