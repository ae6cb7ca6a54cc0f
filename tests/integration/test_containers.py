# -*- test-case-name: tests.integration.test_containers -*-
"""
Real containers through the real docker CLI: runc under conmon, overlayfs,
a busybox image made at test time.

One daemon per test class (starting it and importing the image is the
slow part); every test names its containers and removes them.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.images import have_busybox, import_busybox

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"


def _missing() -> str | None:
    """Why these tests cannot run here, or C{None}."""
    if os.geteuid() != 0:
        return "real containers need root"
    for binary in ("runc", "conmon"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed"
    if not Path(DOCKER).exists():
        return "the docker CLI is not installed"
    if not have_busybox():
        return "busybox-static is not installed (/bin/busybox)"
    try:
        import tests.integration.harness  # noqa: F401, PLC0415
    except ImportError:
        return "tests/integration/harness.py is not in the tree yet"
    try:
        import dockserve.daemon.runtime  # noqa: F401, PLC0415
    except ImportError:
        return "dockserve.daemon.runtime (RuncRuntime) is not in the tree yet"
    return None


class _DaemonCase(SynchronousTestCase):
    """A daemon with busybox:latest, shared by the tests of a class."""

    daemon: Any = None
    skip = _missing()

    def setUp(self) -> None:
        from tests.integration.harness import start_daemon  # noqa: PLC0415

        self.daemon = start_daemon(self)
        import_busybox(self.daemon.docker_host)

    def docker(
        self, *args: str, stdin: bytes | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [DOCKER, *args],
            input=stdin,
            capture_output=True,
            env=self.daemon.env,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, stdin: bytes | None = None) -> str:
        result = self.docker(*args, stdin=stdin)
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        return result.stdout.decode()

    def cleanup_container(self, name: str) -> None:
        self.addCleanup(self.docker, "rm", "-f", name)

    def fails(self, *args: str, stdin: bytes | None = None) -> str:
        """Run a docker command that must fail; its stderr."""
        result = self.docker(*args, stdin=stdin)
        self.assertNotEqual(result.returncode, 0, result.stdout.decode())
        return result.stderr.decode()

    def inspect(self, name: str, template: str) -> str:
        """C{docker inspect -f template name}, without the newline."""
        return self.ok("inspect", "-f", template, name).rstrip("\n")

    def until(
        self, check: Any, what: str = "the condition", timeout: float = 20
    ) -> Any:
        """Poll C{check()} until it is true (and return it), or fail."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                self.fail(f"timed out waiting for {what}")
            time.sleep(0.1)

    def sdk(self) -> Any:
        """A Docker SDK client on this daemon, closed at the end."""
        import docker  # noqa: PLC0415

        client = docker.DockerClient(base_url=self.daemon.docker_host, version="1.50")
        self.addCleanup(client.close)
        return client


class RunTests(_DaemonCase):
    def test_run_rm(self) -> None:
        """C{docker run --rm busybox echo hi} prints hi and leaves nothing."""
        result = self.docker("run", "--rm", "busybox", "echo", "hi")
        self.assertEqual((result.returncode, result.stdout), (0, b"hi\n"))
        self.assertEqual(self.ok("ps", "-aq"), "")

    def test_exit_code(self) -> None:
        """The container's exit code is docker run's."""
        self.cleanup_container("three")
        result = self.docker("run", "--name", "three", "busybox", "sh", "-c", "exit 3")
        self.assertEqual(result.returncode, 3)
        self.assertEqual(
            self.ok("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "three"),
            "exited 3\n",
        )

    def test_stdin(self) -> None:
        """C{-i}: stdin reaches the container; its end ends cat."""
        result = self.docker("run", "--rm", "-i", "busybox", "cat", stdin=b"abc\ndef\n")
        self.assertEqual((result.returncode, result.stdout), (0, b"abc\ndef\n"))

    def test_stderr(self) -> None:
        """stdout and stderr stay apart without a TTY."""
        result = self.docker(
            "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2"
        )
        self.assertEqual((result.stdout, result.stderr), (b"out\n", b"err\n"))

    def test_tty_shell(self) -> None:
        """C{docker run --rm -it busybox sh} is usable in a terminal."""
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover - the child
            os.environ.update(self.daemon.env)
            os.execv(DOCKER, [DOCKER, "run", "--rm", "-it", "busybox", "sh"])  # noqa: S606
        output = b""

        def read_until(marker: bytes, limit: float = 20) -> None:
            nonlocal output
            deadline = time.monotonic() + limit
            while marker not in output and time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready:
                    try:
                        output += os.read(fd, 4096)
                    except OSError:
                        return

        read_until(b"# ")
        os.write(fd, b"echo $((6*7))\r")
        read_until(b"42")
        os.write(fd, b"exit 5\r")
        read_until(b"\x00never", limit=5)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        self.assertIn(b"42", output)
        self.assertEqual(os.waitstatus_to_exitcode(status), 5)


class LifeCycleTests(_DaemonCase):
    def test_detached_logs_exec_stop(self) -> None:
        """run -d, logs, exec (exit codes), stop, rm."""
        self.cleanup_container("box")
        self.ok("run", "-d", "--name", "box", "busybox", "sh", "-c",
                "echo started; exec sleep 300")  # fmt: skip
        deadline = time.monotonic() + 10
        while "started" not in self.ok("logs", "box") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.ok("logs", "box"), "started\n")
        self.assertIn("box", self.ok("ps", "--format", "{{.Names}} {{.Status}}"))
        self.assertEqual(self.ok("exec", "box", "echo", "hi"), "hi\n")
        self.assertEqual(self.docker("exec", "box", "sh", "-c", "exit 7").returncode, 7)
        self.assertEqual(
            self.ok("exec", "-i", "box", "cat", stdin=b"through\n"), "through\n"
        )
        started = time.monotonic()
        self.ok("stop", "-t", "1", "box")
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(
            self.ok("inspect", "-f", "{{.State.ExitCode}}", "box"), "137\n"
        )
        failed = self.docker("exec", "box", "true")
        self.assertNotEqual(failed.returncode, 0)
        self.assertIn(b"is not running", failed.stderr)
        self.ok("rm", "box")

    def test_sdk(self) -> None:
        """The Docker SDK for Python runs a container and reads its output."""
        import docker  # noqa: PLC0415

        client = docker.DockerClient(base_url=self.daemon.docker_host, version="1.50")
        self.addCleanup(client.close)
        output = client.containers.run("busybox", ["echo", "sdk"], remove=True)
        self.assertEqual(output, b"sdk\n")


class CrashTests(_DaemonCase):
    def test_sigkill_daemon(self) -> None:
        """
        SIGKILL the daemon with a running and an exiting container; after a
        restart the first still runs (and can be exec'd and stopped) and
        the second shows the exit code it had while the daemon was down.
        """
        for name in ("keeps", "exits"):
            self.cleanup_container(name)
        self.ok("run", "-d", "--name", "keeps", "busybox", "sleep", "300")
        self.ok("run", "-d", "--name", "exits", "busybox", "sh", "-c",
                "echo bye; sleep 1; exit 4")  # fmt: skip
        self.daemon.kill()
        time.sleep(2)
        self.daemon.restart()
        self.assertEqual(
            self.ok("inspect", "-f", "{{.State.Status}}", "keeps"), "running\n"
        )
        self.assertEqual(
            self.ok("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "exits"),
            "exited 4\n",
        )
        self.assertEqual(self.ok("logs", "exits"), "bye\n")
        self.assertEqual(self.ok("exec", "keeps", "echo", "alive"), "alive\n")
        self.ok("rm", "-f", "keeps", "exits")

    def test_running_after_restart(self) -> None:
        """
        After a clean restart and after a SIGKILL of the daemon, a running
        container is listed as running, its log is whole, and it can be
        attached, exec'd and stopped.
        """
        self.cleanup_container("talks")
        self.ok("run", "-d", "--name", "talks", "busybox", "sh", "-c",
                "echo one; i=0; while true; do i=$((i+1)); echo n$i; sleep 1; done")  # fmt: skip # noqa: E501
        self.until(lambda: "n1" in self.ok("logs", "talks"), "the first line")
        pid = self.inspect("talks", "{{.State.Pid}}")
        for stop in (self.daemon.stop, self.daemon.kill):
            stop()
            self.daemon.start()
            self.assertEqual(
                self.ok("ps", "--format", "{{.Names}} {{.State}}"), "talks running\n"
            )
            self.assertEqual(self.inspect("talks", "{{.State.Pid}}"), pid)
            self.assertTrue(self.ok("logs", "talks").startswith("one\nn1\n"))
            self.assertEqual(self.ok("exec", "talks", "echo", "hi"), "hi\n")
            attach = subprocess.Popen(
                [DOCKER, "attach", "--sig-proxy=false", "talks"],
                env=self.daemon.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert attach.stdout is not None
            self.assertRegex(attach.stdout.readline(), rb"^n\d+\n$")
            attach.kill()
            attach.wait()
        self.ok("stop", "-t", "1", "talks")
        self.assertEqual(
            self.inspect("talks", "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 137",
        )

    def test_stopped_while_down(self) -> None:
        """
        A container killed while the daemon is down shows that when it
        comes back: the exit code, and no Pid; it can start again.
        """
        self.cleanup_container("victim")
        self.ok("run", "-d", "--name", "victim", "busybox", "sleep", "300")
        pid = int(self.inspect("victim", "{{.State.Pid}}"))
        self.daemon.kill()
        os.kill(pid, signal.SIGKILL)
        time.sleep(1)
        self.daemon.start()
        self.assertEqual(
            self.inspect(
                "victim", "{{.State.Status}} {{.State.ExitCode}} {{.State.Pid}}"
            ),
            "exited 137 0",
        )
        self.ok("start", "victim")
        self.assertEqual(self.inspect("victim", "{{.State.Running}}"), "true")


class CopyTests(_DaemonCase):
    def test_cp_both_ways(self) -> None:
        """docker cp into and out of a container, and no escape through a symlink."""
        self.cleanup_container("files")
        self.ok("create", "--name", "files", "busybox", "true")
        source = Path(self.mktemp())
        source.mkdir()
        (source / "hello.txt").write_text("hello\n")
        self.ok("cp", str(source / "hello.txt"), "files:/hello.txt")
        out = Path(self.mktemp())
        out.mkdir()
        self.ok("cp", "files:/hello.txt", str(out))
        self.assertEqual((out / "hello.txt").read_text(), "hello\n")
        missing = self.docker("cp", "files:/nope", str(out))
        self.assertNotEqual(missing.returncode, 0)
        self.assertIn(
            b"Could not find the file /nope in container files", missing.stderr
        )
