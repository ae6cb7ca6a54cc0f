"""
The front door of a real C{twistd -n dockserve}: one daemon serving several
C{-H} at once to the docker CLI and curl, and stopping promptly on SIGTERM
and SIGINT with its socket files gone.
"""

import contextlib
import grp
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.integration.harness import (
    RunningDaemon,
    _UNIXConnection,
    start_daemon,
    unix_get,
)
from tests.integration.images import have_busybox, import_busybox

#: Generous bound for "promptly": a clean stop takes milliseconds.
STOP_TIMEOUT = 15.0


def free_port() -> int:
    """A loopback TCP port nothing listens on (just now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unix_post(path: str, url: str, body: bytes = b"") -> tuple[int, bytes]:
    """C{POST url} with a JSON C{body} over the unix socket at C{path}."""
    connection = _UNIXConnection(path, 30)
    try:
        connection.request(
            "POST", url, body=body, headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def refused(port: int) -> bool:
    """Whether nothing accepts on 127.0.0.1:C{port}."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


class _Case(SynchronousTestCase):
    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("the daemon needs root")
        self.other = Path(tempfile.mkdtemp(prefix="dockserve-fd-"))
        self.addCleanup(shutil.rmtree, str(self.other), True)
        self.second = str(self.other / "second.sock")
        self.port = free_port()

    def start(self) -> RunningDaemon:
        """A daemon on its own socket, a second unix socket, and TCP."""
        return start_daemon(
            self,
            ["-H", f"unix://{self.second}", "-H", f"tcp://127.0.0.1:{self.port}"],
        )

    def hosts(self, daemon: RunningDaemon) -> list[str]:
        return [
            daemon.docker_host,
            f"unix://{self.second}",
            f"tcp://127.0.0.1:{self.port}",
        ]

    def stopped_cleanly(self, daemon: RunningDaemon, signum: int) -> None:
        """
        After C{signum}: exited (twistd ends by re-raising the signal, a
        clean stop for systemd), every socket file removed, the TCP port
        closed, and no traceback in the log.
        """
        assert daemon.process is not None
        daemon.process.send_signal(signum)
        try:
            status = daemon.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"still running {STOP_TIMEOUT}s after signal {signum}")
        self.assertIn(status, (0, -signum), daemon.log())
        self.assertFalse(os.path.lexists(daemon.socket_path))
        self.assertFalse(os.path.lexists(self.second))
        self.assertTrue(refused(self.port))
        self.assertNotIn("Traceback", daemon.log())


class ListenersTests(_Case):
    def test_docker_version_on_each(self) -> None:
        """docker version answers on both unix sockets and on TCP."""
        daemon = self.start()
        for host in self.hosts(daemon):
            result = subprocess.run(
                ["docker", "-H", host, "version", "--format",
                 "{{.Server.APIVersion}} {{.Server.Os}}"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            self.assertEqual(
                (result.returncode, result.stdout.strip()),
                (0, "1.50 linux"),
                f"{host}: {result.stderr}",
            )

    def test_loopback_tcp_warned_once(self) -> None:
        """
        TCP on loopback without TLS is allowed, with dockerd's two warnings
        logged once at start.
        """
        daemon = self.start()
        log = daemon.log()
        host = f"host=tcp://127.0.0.1:{self.port}"
        self.assertEqual(
            log.count(
                "Binding to IP address without --tlsverify is insecure and gives"
                " root access on this machine to everyone who has access to your"
                f" network. {host}"
            ),
            1,
            log,
        )
        self.assertEqual(log.count(f"Be safe out there! {host}"), 1, log)

    def test_curl_unix_socket(self) -> None:
        """curl --unix-socket reaches both sockets, which are 0660."""
        if shutil.which("curl") is None:
            raise SkipTest("no curl")
        daemon = self.start()
        for path in (daemon.socket_path, self.second):
            result = subprocess.run(
                ["curl", "-sS", "-i", "--unix-socket", path, "http://localhost/_ping"],
                capture_output=True, timeout=30, check=False,
            )  # fmt: skip
            self.assertEqual(result.returncode, 0, result.stderr)
            head, _, body = result.stdout.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            self.assertIn(b"\r\nApi-Version: 1.50\r\n", head)
            self.assertEqual(body, b"OK")
            self.assertEqual(Path(path).stat().st_mode & 0o777, 0o660)


class StopTests(_Case):
    def test_sigterm(self) -> None:
        """SIGTERM stops every listener and removes both socket files."""
        self.stopped_cleanly(self.start(), signal.SIGTERM)

    def test_sigint(self) -> None:
        """SIGINT (Ctrl-C under -n) does the same."""
        self.stopped_cleanly(self.start(), signal.SIGINT)

    def test_sigint_when_started_ignoring_it(self) -> None:
        """
        Started as a shell script's background job (C{dockserve &}), the
        daemon inherits SIGINT ignored; dockerd still stops on SIGINT then,
        and so must dockserve (it went on running).
        """
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            daemon = self.start()
        finally:
            signal.signal(signal.SIGINT, previous)
        self.stopped_cleanly(daemon, signal.SIGINT)

    def test_sigterm_with_clients_connected(self) -> None:
        """
        Clients in the middle of a request, or idle on a kept-alive
        connection, do not hold the stop up; they see the connection close.
        """
        daemon = self.start()
        partial = socket.socket(socket.AF_UNIX)
        self.addCleanup(partial.close)
        partial.connect(daemon.socket_path)
        partial.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n")
        idle = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(idle.close)
        idle.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(idle.recv(4096).startswith(b"HTTP/1.1 200"))
        self.stopped_cleanly(daemon, signal.SIGTERM)
        partial.settimeout(10)
        self.assertEqual(partial.recv(4096), b"")


class GroupTests(SynchronousTestCase):
    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("the daemon needs root")

    def test_default_group(self) -> None:
        """Without -G the socket is root:docker, or root's group if none."""
        daemon = start_daemon(self)
        try:
            expected = grp.getgrnam("docker").gr_gid
        except KeyError:
            expected = os.getgid()
        info = Path(daemon.socket_path).stat()
        self.assertEqual((info.st_uid, info.st_gid), (0, expected))

    def test_named_group(self) -> None:
        """-G GID gives the socket to that group, still 0660."""
        daemon = start_daemon(self, ["-G", "4321"])
        info = Path(daemon.socket_path).stat()
        self.assertEqual((info.st_uid, info.st_gid), (0, 4321))
        self.assertEqual(info.st_mode & 0o777, 0o660)


class UnixFormsTests(SynchronousTestCase):
    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("the daemon needs root")

    def test_every_form_0660_with_group(self) -> None:
        """
        A real twistd with each spelling of a unix listener: every socket is
        root:GROUP and 0660 (0600 where asked), answers /_ping, and its
        clients' peer name is its own path.  With an option the socket was
        Twisted's, 0666.
        """
        directory = Path(tempfile.mkdtemp(prefix="dockserve-fd-"))
        self.addCleanup(shutil.rmtree, str(directory), True)
        forms = {
            f"unix:{directory}/a.sock:backlog=50": ("a.sock", 0o660),
            f"unix:{directory}/b.sock:lockfile=1": ("b.sock", 0o660),
            f"unix:path={directory}/c.sock:mode=600": ("c.sock", 0o600),
            f"unix:path={directory}/d.sock:mode=0660:wantPID=0": ("d.sock", 0o660),
            f"unix://{directory}/e.sock": ("e.sock", 0o660),
        }
        args = ["-G", "4321"]
        for form in forms:
            args += ["-H", form]
        start_daemon(self, args)
        for form, (name, mode) in forms.items():
            path = str(directory / name)
            info = Path(path).stat()
            self.assertEqual(
                (info.st_uid, info.st_gid, info.st_mode & 0o777),
                (0, 4321, mode),
                form,
            )
            self.assertEqual(unix_get(path, "/_ping"), (200, b"OK"), form)
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(path)
                self.assertEqual(client.getpeername(), path, form)
        self.assertTrue(os.path.lexists(directory / "b.sock.lock"))

    def test_mode_wider_refused(self) -> None:
        """mode=666 on a real twistd: exit 2 with one line, nothing bound."""
        directory = Path(tempfile.mkdtemp(prefix="dockserve-fd-"))
        self.addCleanup(shutil.rmtree, str(directory), True)
        daemon = RunningDaemon(directory, ["-H", f"unix:{directory}/w.sock:mode=666"])
        self.addCleanup(daemon.stop)
        daemon.start(wait=False)
        assert daemon.process is not None
        self.assertEqual(daemon.process.wait(STOP_TIMEOUT), 2, daemon.log())
        [line] = daemon.log().splitlines()
        self.assertIn("mode=666 is wider than 0660", line)
        self.assertFalse(os.path.lexists(directory / "w.sock"))


class SlowClientTests(_Case):
    """
    A daemon whose request-head deadline is 2 s ($DOCKSERVE_HEAD_TIMEOUT):
    slow heads are cut however they dribble, quiet streams are not.
    """

    HEAD = 2.0

    def start(self) -> RunningDaemon:
        os.environ["DOCKSERVE_HEAD_TIMEOUT"] = str(self.HEAD)
        try:
            return start_daemon(self, ["-H", f"tcp://127.0.0.1:{self.port}"])
        finally:
            del os.environ["DOCKSERVE_HEAD_TIMEOUT"]

    def cut_after(self, client: socket.socket, data: bytes) -> float:
        """Seconds until the daemon closes C{client}, which dribbles C{data}."""
        started = time.monotonic()
        client.settimeout(0.5)
        client.sendall(data)
        while time.monotonic() - started < 10 * self.HEAD:
            try:
                if client.recv(4096) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                with contextlib.suppress(OSError):
                    client.sendall(b"X")
            except ConnectionResetError:
                return time.monotonic() - started
        return self.fail("the slow client was never cut")

    def test_slow_heads_cut(self) -> None:
        """
        A head dribbled a byte each 0.5 s, on the unix socket and on TCP,
        and a TCP connection that sends nothing, are closed about 2 s after
        they connected (they were held for as long as bytes kept coming);
        /_ping is answered meanwhile.
        """
        daemon = self.start()
        for family, address, data in (
            (socket.AF_UNIX, daemon.socket_path, b"GET /_ping HTTP/1.1\r\n"),
            (socket.AF_INET, ("127.0.0.1", self.port), b"GET / HTTP/1.1\r\nHost: x"),
            (socket.AF_INET, ("127.0.0.1", self.port), b""),
        ):
            with socket.socket(family) as client:
                client.connect(address)
                elapsed = self.cut_after(client, data)
            self.assertGreaterEqual(elapsed, self.HEAD - 0.5, data)
            self.assertLess(elapsed, self.HEAD + 3, data)
        self.assertEqual(unix_get(daemon.socket_path, "/_ping"), (200, b"OK"))

    def test_quiet_streams_kept(self) -> None:
        """
        With the 2 s head deadline, requests quiet for longer once their
        head is in are not cut: docker run attached to a container silent
        for 5 s (a hijacked attach and a wait), and a raw wait.
        """
        if not have_busybox():
            raise SkipTest("busybox-static is not installed")
        daemon = self.start()
        import_busybox(daemon.docker_host)
        waiting = socket.socket(socket.AF_UNIX)
        self.addCleanup(waiting.close)
        status, body = unix_post(
            daemon.socket_path, "/containers/create?name=quiet",
            json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode(),
        )  # fmt: skip
        self.assertEqual(status, 201, body)
        waiting.connect(daemon.socket_path)
        waiting.settimeout(30)
        waiting.sendall(
            b"POST /containers/quiet/wait?condition=next-exit HTTP/1.1\r\n"
            b"Host: x\r\nContent-Length: 0\r\n\r\n"
        )
        # As dockerd, the head is sent at once; the body when it exits.
        head = waiting.recv(4096)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertTrue(head.endswith(b"\r\n\r\n"), head)
        run = subprocess.run(
            ["docker", "run", "--rm", "busybox", "sh", "-c", "sleep 5; echo done"],
            env=daemon.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        self.assertEqual((run.returncode, run.stdout), (0, "done\n"), run.stderr)
        waiting.settimeout(0.2)
        with self.assertRaises(TimeoutError):
            waiting.recv(4096)
        self.assertEqual(
            unix_post(daemon.socket_path, "/containers/quiet/start")[0],
            204,
        )
        waiting.settimeout(30)
        body = waiting.recv(4096)
        self.assertIn(b'"StatusCode": 0', body.replace(b'":0', b'": 0'))


class _FileLimitedDaemon(RunningDaemon):
    """A daemon started with 1024 open files, soft and hard (C{prlimit})."""

    def argv(self) -> list[str]:
        return ["prlimit", "--nofile=1024:1024", "--", *super().argv()]


class FloodTests(SynchronousTestCase):
    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("the daemon needs root")
        if shutil.which("prlimit") is None:
            raise SkipTest("no prlimit (util-linux)")

    def ping(self, path: str) -> tuple[int, bytes]:
        """
        /_ping, connecting again while the listen queue is full (EAGAIN:
        the daemon is still accepting the flood's last connections).
        """
        deadline = time.monotonic() + 5
        while True:
            try:
                return unix_get(path, "/_ping")
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def test_slow_flood_does_not_lock_out(self) -> None:
        """
        The review's flood: with 1024 open files, 1100 clients each holding
        a half-sent request head.  /_ping is still answered, on the same
        socket, at once (it was refused: the daemon ran out of descriptors,
        EMFILE), and the log says the listener is full.
        """
        directory = Path(tempfile.mkdtemp(prefix="dockserve-fd-"))
        self.addCleanup(shutil.rmtree, str(directory), True)
        daemon = _FileLimitedDaemon(directory, [])
        self.addCleanup(daemon.stop)
        daemon.start()
        flood: list[socket.socket] = []
        self.addCleanup(lambda: [s.close() for s in flood])
        for _ in range(1100):
            client = socket.socket(socket.AF_UNIX)
            flood.append(client)
            client.connect(daemon.socket_path)
            client.sendall(b"GET /info HTTP/1.1\r\n")
        started = time.monotonic()
        self.assertEqual(self.ping(daemon.socket_path), (200, b"OK"))
        self.assertLess(time.monotonic() - started, 5)
        self.assertIn("holds 384 connections", daemon.log())
        self.assertNotIn("EMFILE", daemon.log())


class RequestLogTests(_Case):
    def test_json_request_line(self) -> None:
        """
        Under --log-format json every line the daemon writes is one JSON
        object, and a request's has its method, path, status, bytes,
        duration and the client's address.
        """
        daemon = start_daemon(
            self,
            ["-H", f"tcp://127.0.0.1:{self.port}", "--log-format", "json"],
        )
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.addCleanup(connection.close)
        connection.request("GET", "/v1.50/version?x=1")
        body = connection.getresponse().read()
        assert connection.sock is not None
        client_port = connection.sock.getsockname()[1]
        connection.close()
        daemon.stop()
        records = [json.loads(line) for line in daemon.log().splitlines()]
        [record] = [r for r in records if r.get("path") == "/v1.50/version?x=1"]
        self.assertEqual(
            (record["level"], record["method"], record["status"], record["bytes"]),
            ("info", "GET", 200, len(body)),
        )
        self.assertEqual(record["peer"], f"127.0.0.1:{client_port}")
        self.assertIsInstance(record["duration"], float)
        self.assertEqual(
            record["msg"].split()[:4],
            ["GET", "/v1.50/version?x=1", "200", str(len(body))],
        )


class SocketFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("the daemon needs root")

    def test_stale_socket_after_crash(self) -> None:
        """
        A daemon killed with SIGKILL leaves its socket file; the next one
        replaces it and serves.
        """
        daemon = start_daemon(self)
        daemon.kill()
        self.assertTrue(os.path.lexists(daemon.socket_path))
        daemon.start()
        self.assertEqual(unix_get(daemon.socket_path, "/_ping"), (200, b"OK"))

    def test_live_socket_not_stolen(self) -> None:
        """
        A second daemon asked to listen on the first one's socket exits
        with one line naming that host; the first keeps its socket and
        answers, and the second leaves no socket file of its own behind.
        """
        first = start_daemon(self)
        directory = Path(tempfile.mkdtemp(prefix="dockserve-fd-"))
        self.addCleanup(shutil.rmtree, str(directory), True)
        second = RunningDaemon(directory, ["-H", first.docker_host])
        self.addCleanup(second.stop)
        second.start(wait=False)
        assert second.process is not None
        try:
            status = second.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"the second daemon is still running:\n{second.log()}")
        self.assertNotEqual(status, 0)
        errors = [
            line for line in second.log().splitlines() if line.startswith("dockserve:")
        ]
        self.assertEqual(len(errors), 1, second.log())
        self.assertIn(first.docker_host, errors[0])
        self.assertIn("another live daemon", errors[0])
        self.assertNotIn("Traceback", second.log())
        self.assertFalse(os.path.lexists(second.socket_path))
        self.assertEqual(unix_get(first.socket_path, "/_ping"), (200, b"OK"))
