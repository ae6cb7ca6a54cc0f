"""
The listen buffer and the daemon's own start and stop, for real: a client
that connects while the daemon is still restoring its state is answered once
it is ready (not refused), or with a JSON 503 when that takes longer than
C{--activation-timeout}; SIGTERM stops the daemon and removes its socket; a
listener that cannot bind stops start-up with one line naming the host.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.harness import RunningDaemon, _UNIXConnection, unix_get
from tests.integration.images import busybox_save_archive, have_busybox
from tests.integration.test_socket_activation import free_port, tcp_ping
from tests.server.test_tls import PKI
from tests.tempdirs import temp_dir

#: The log line the daemon writes when its restore is done.
READY_LINE = "Daemon has completed initialization"

DOCKER = shutil.which("docker")


def wait_for_socket(path: str, timeout: float = 20.0) -> None:
    """
    Wait until the unix socket at C{path} takes connections (the daemon
    listens; the file appears when it binds, a moment before).
    """
    _wait_until(lambda: _connects(socket.AF_UNIX, path), path, timeout)


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    """Wait until 127.0.0.1:C{port} takes connections."""
    _wait_until(
        lambda: _connects(socket.AF_INET, ("127.0.0.1", port)), str(port), timeout
    )


def _connects(family: int, address: str | tuple[str, int]) -> bool:
    with socket.socket(family) as probe:
        try:
            probe.connect(address)
        except OSError:
            return False
    return True


def _wait_until(ready: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never took a connection")
        time.sleep(0.02)


def before(log: str, first: str, second: str) -> bool:
    """Whether C{first} is logged, and before C{second} (or without it)."""
    at = log.find(first)
    later = log.find(second)
    return at >= 0 and (later < 0 or at < later)


class _Case(SynchronousTestCase):
    def daemon(self, *args: str) -> RunningDaemon:
        directory = Path(tempfile.mkdtemp(prefix="dockserve-lb-"))
        self.addCleanup(shutil.rmtree, str(directory), True)
        daemon = RunningDaemon(directory, args)
        self.addCleanup(daemon.stop)
        daemon.start(wait=False)
        return daemon


class ListenBufferTests(_Case):
    def test_held_then_answered(self) -> None:
        """
        During a 3 s restore a raw HTTP client and the docker CLI both
        connect at once and get their answers when the daemon is ready.
        """
        daemon = self.daemon("--activation-delay", "3")
        wait_for_socket(daemon.socket_path)
        docker = None
        if DOCKER is not None:
            docker = subprocess.Popen(
                [DOCKER, "version", "--format", "{{.Server.APIVersion}}"],
                env=daemon.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        status, body = unix_get(daemon.socket_path, "/_ping", timeout=30)
        self.assertEqual((status, body), (200, b"OK"))
        # It was held, not answered early: served after the restore.
        self.assertTrue(before(daemon.log(), READY_LINE, "GET /_ping"), daemon.log())
        if docker is not None:
            out, err = docker.communicate(timeout=30)
            self.assertEqual((docker.returncode, out, err), (0, b"1.50\n", b""))

    def test_timeout_503(self) -> None:
        """
        Held longer than --activation-timeout, a client gets the 503 JSON
        error and the docker CLI prints its message; once the daemon is
        ready it answers normally.
        """
        daemon = self.daemon("--activation-delay", "8", "--activation-timeout", "1")
        wait_for_socket(daemon.socket_path)
        docker = None
        if DOCKER is not None:
            docker = subprocess.Popen(
                [DOCKER, "ps"], env=daemon.env, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
        status, body = unix_get(daemon.socket_path, "/_ping", timeout=30)
        self.assertEqual(status, 503)
        self.assertIn(
            "did not become ready within 1 seconds", json.loads(body)["message"]
        )
        if docker is not None:
            # Each of its requests (HEAD and GET /_ping, then the list) is
            # held a second and refused; it prints the message as dockerd's.
            _, err = docker.communicate(timeout=30)
            self.assertEqual(docker.returncode, 1, err)
            self.assertIn(
                "Error response from daemon: the daemon is still starting up", err
            )
        daemon.wait_ready()
        self.assertEqual(unix_get(daemon.socket_path, "/_ping")[0], 200)

    def test_no_buffer(self) -> None:
        """With --no-buffer, requests are served while the restore runs."""
        daemon = self.daemon("--no-buffer", "--activation-delay", "5")
        wait_for_socket(daemon.socket_path)
        status, _ = unix_get(daemon.socket_path, "/_ping", timeout=30)
        self.assertEqual(status, 200)
        daemon.wait_ready()
        self.assertTrue(before(daemon.log(), "GET /_ping", READY_LINE), daemon.log())

    def test_big_upload_while_held(self) -> None:
        """
        A docker load posted in full during the restore (a 2 MB archive, more
        than the buffer keeps: the rest waits in the socket) loads once the
        daemon is ready.
        """
        if not have_busybox():
            self.skipTest("needs busybox-static")
        daemon = self.daemon("--activation-delay", "3")
        archive = busybox_save_archive(daemon.directory / "busybox.tar", "held:big")
        body = archive.read_bytes()
        self.assertGreater(len(body), 1 << 20)
        wait_for_socket(daemon.socket_path)
        connection = _UNIXConnection(daemon.socket_path, timeout=60)
        self.addCleanup(connection.close)
        connection.request(
            "POST", "/v1.50/images/load?quiet=1", body,
            {"Content-Type": "application/x-tar"},
        )  # fmt: skip
        response = connection.getresponse()
        reply = response.read()
        self.assertEqual(response.status, 200, reply)
        self.assertIn(b"held:big", reply)
        self.assertTrue(before(daemon.log(), READY_LINE, "POST /v1.50/images/load"))
        status, listed = unix_get(daemon.socket_path, "/v1.50/images/json")
        self.assertEqual(status, 200)
        self.assertIn(
            "held:big", [t for i in json.loads(listed) for t in i["RepoTags"]]
        )

    def test_held_over_tls(self) -> None:
        """
        On a TLS listener the handshake completes while the daemon restores;
        a client's request is then held and answered once it is ready, and
        one held past --activation-timeout gets the 503 through TLS.
        """
        pki = PKI(temp_dir(self))
        self.addCleanup(shutil.rmtree, str(pki.directory), True)
        port = free_port()
        self.daemon(
            "-H", f"tcp://127.0.0.1:{port}", "--tlsverify",
            f"--tlscacert={pki.ca}", f"--tlscert={pki.server_cert}",
            f"--tlskey={pki.server_key}",
            "--activation-delay", "3", "--activation-timeout", "2",
        )  # fmt: skip
        wait_for_port(port)
        context = ssl.create_default_context(cafile=pki.ca)
        context.load_cert_chain(pki.client_cert, pki.client_key)
        refused = tcp_ping(port, context)
        self.assertTrue(refused.startswith(b"HTTP/1.1 503 "), refused)
        self.assertIn(b"did not become ready within 2 seconds", refused)
        answered = tcp_ping(port, context)
        self.assertTrue(answered.startswith(b"HTTP/1.1 200 "), answered)

    def test_stopped_while_held(self) -> None:
        """
        SIGTERM during the restore: a held client gets the 503 JSON saying
        the daemon is shutting down (not an empty reply), and the daemon
        stops without a traceback.
        """
        daemon = self.daemon("--activation-delay", "30")
        wait_for_socket(daemon.socket_path)
        open_files = Path(f"/proc/{daemon.pid}/fd")

        def sockets() -> set[str]:
            found = set()
            for fd in open_files.iterdir():
                with contextlib.suppress(OSError):
                    target = str(fd.readlink())
                    if target.startswith("socket:"):
                        found.add(target)
            return found

        before = sockets()
        connection = _UNIXConnection(daemon.socket_path, timeout=30)
        self.addCleanup(connection.close)
        connection.request("GET", "/_ping")
        # Signal only once the daemon has accepted (holds) the connection: a
        # socket it did not have. Before that, the stop would drop it
        # unaccepted. (Counting all its files raced with files it opens and
        # closes while restoring.)
        deadline = time.monotonic() + 10
        while not sockets() - before:
            self.assertLess(time.monotonic(), deadline, "never accepted")
            time.sleep(0.02)
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGTERM)
        response = connection.getresponse()
        self.assertEqual(response.status, 503)
        self.assertEqual(
            json.loads(response.read())["message"],
            "the daemon is shutting down before it became ready",
        )
        self.assertIn(daemon.process.wait(15), (0, -signal.SIGTERM))
        self.assertNotIn("Traceback", daemon.log())

    def start_failing(self) -> RunningDaemon:
        """A daemon whose restore fails: its image index is not JSON."""
        directory = Path(tempfile.mkdtemp(prefix="dockserve-lb-"))
        self.addCleanup(shutil.rmtree, str(directory), True)
        daemon = RunningDaemon(directory, ["--activation-delay", "2"])
        index = Path(daemon.data_root) / "image" / "index.json"
        index.parent.mkdir(parents=True)
        index.write_text("not json{")
        self.addCleanup(daemon.stop)
        daemon.start(wait=False)
        wait_for_socket(daemon.socket_path)
        return daemon

    def test_failed_start(self) -> None:
        """
        When the restore fails, a held client gets the 503 JSON error with
        the reason in one line (no traceback, no FirstError), and the
        daemon stops and removes its socket.
        """
        daemon = self.start_failing()
        status, body = unix_get(daemon.socket_path, "/_ping", timeout=30)
        self.assertEqual(status, 503, body)
        message = json.loads(body)["message"]
        self.assertTrue(message.startswith("the daemon failed to start: "), message)
        self.assertIn("index.json is not valid JSON: Expecting value", message)
        self.assertNotIn("Traceback", message)
        self.assertNotIn("FirstError", message)
        assert daemon.process is not None
        daemon.process.wait(30)
        self.assertFalse(os.path.lexists(daemon.socket_path))

    def test_failed_start_exit_status(self) -> None:
        """A daemon that could not start exits non-zero (systemd restarts it)."""
        daemon = self.start_failing()
        assert daemon.process is not None
        self.assertNotEqual(daemon.process.wait(30), 0, daemon.log())


class StartStopTests(_Case):
    def test_sigterm(self) -> None:
        """
        SIGTERM ends the daemon promptly and removes its socket file. twistd
        reports the signal as its status (systemd counts that as a clean
        stop), and nothing went wrong on the way.
        """
        daemon = self.daemon()
        daemon.wait_ready()
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGTERM)
        self.assertIn(daemon.process.wait(15), (0, -signal.SIGTERM))
        self.assertFalse(os.path.lexists(daemon.socket_path))
        self.assertNotIn("Traceback", daemon.log())
        self.assertIn("Main loop terminated", daemon.log())

    def test_socket_mode(self) -> None:
        """The socket file is 0660: only root and the group may connect."""
        daemon = self.daemon()
        daemon.wait_ready()
        self.assertEqual(Path(daemon.socket_path).stat().st_mode & 0o777, 0o660)

    def test_port_in_use(self) -> None:
        """A TCP host that cannot be bound: exit, one line naming the host."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = self.daemon("-H", f"tcp://127.0.0.1:{port}")
        assert daemon.process is not None
        self.assertNotEqual(daemon.process.wait(20), 0)
        errors = [
            line for line in daemon.log().splitlines() if line.startswith("dockserve:")
        ]
        self.assertEqual(len(errors), 1, daemon.log())
        self.assertIn(f"tcp://127.0.0.1:{port}", errors[0])
        self.assertNotIn("Traceback", daemon.log())


class HangupTests(_Case):
    def test_sighup_keeps_running(self) -> None:
        """SIGHUP neither kills the daemon nor leaves it deaf; it says why."""
        daemon = self.daemon()
        daemon.wait_ready()
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        self.assertIsNone(daemon.process.poll(), daemon.log())
        self.assertEqual(unix_get(daemon.socket_path, "/_ping")[0], 200)
        self.assertIn("Received SIGHUP", daemon.log())
