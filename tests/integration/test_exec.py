"""
C{docker exec} against real runc: exit codes with and without a TTY, the
options that shape the process, exec inspect, and dockerd's errors for a
stopped or paused container and an unknown exec.
"""

import json
from pathlib import Path

from tests.integration.test_container_io import _Terminal
from tests.integration.test_containers import _DaemonCase


class ExecTests(_DaemonCase):
    def setUp(self) -> None:
        super().setUp()
        self.cleanup_container("box")
        self.ok("run", "-d", "--name", "box", "busybox", "sleep", "300")

    def test_exit_code(self) -> None:
        """docker exec returns the process's exit code."""
        self.assertEqual(self.docker("exec", "box", "sh", "-c", "exit 3").returncode, 3)

    def test_tty_exit_code(self) -> None:
        """
        docker exec -it under a terminal: a usable shell whose exit code is
        docker exec's, with the terminal's size inside.
        """
        term = _Terminal(self.daemon.env, ["exec", "-it", "box", "sh"], 30, 100)
        self.addCleanup(term.close)
        self.assertTrue(term.read_until(b"# "), term.output)
        term.write(b"echo $((6*7)); tty; stty size\r")
        self.assertTrue(term.read_until(b"30 100"), term.output)
        term.write(b"exit 7\r")
        self.assertEqual(term.wait(), 7)
        self.assertIn(b"42", term.output)
        self.assertIn(b"/dev/pts/", term.output)

    def test_tty_without_terminal(self) -> None:
        """docker exec -t without -i: the output, raw, and the exit code."""
        result = self.docker("exec", "-t", "box", "sh", "-c", "echo hi; exit 4")
        self.assertEqual(result.returncode, 4)
        # A terminal ends lines with CR LF. Under load runc's console
        # set-up races the first write and a second CR can slip in (a known
        # gap), so the line is compared without its CRs.
        self.assertTrue(result.stdout.endswith(b"\r\n"), result.stdout)
        self.assertEqual(result.stdout.replace(b"\r", b""), b"hi\n")

    def test_env_workdir_user(self) -> None:
        """-e, -w and -u shape the process."""
        script = "echo $A $(pwd) $(id -u):$(id -g)"
        out = self.ok("exec", "-e", "A=1", "-w", "/tmp", "-u", "65534:65534",
                      "box", "sh", "-c", script)  # fmt: skip
        self.assertEqual(out, "1 /tmp 65534:65534\n")

    def test_user_by_name(self) -> None:
        """-u NAME is looked up in the container's /etc/passwd."""
        out = self.ok(
            "exec", "-u", "nobody", "box", "sh", "-c", "echo $(id -un):$(id -u)"
        )
        self.assertEqual(out, "nobody:65534\n")

    def test_privileged(self) -> None:
        """
        --privileged gives the exec every capability the daemon has (its
        own bounding set), more than the container's default set.
        """

        def cap_eff(*options: str) -> int:
            out = self.ok(
                "exec", *options, "box", "grep", "CapEff", "/proc/self/status"
            )
            return int(out.split()[1], 16)

        status = Path("/proc/self/status").read_text().splitlines()
        bounding = next(
            int(line.split()[1], 16) for line in status if line.startswith("CapBnd:")
        )
        self.assertEqual(cap_eff("--privileged"), bounding)
        self.assertNotEqual(cap_eff(), bounding)

    def test_detach(self) -> None:
        """-d returns at once; the process runs on in the container."""
        result = self.docker(
            "exec", "-d", "box", "sh", "-c", "sleep 1; touch /tmp/done"
        )
        self.assertEqual((result.returncode, result.stdout), (0, b""))
        self.until(
            lambda: (
                self.docker("exec", "box", "test", "-e", "/tmp/done").returncode == 0
            ),
            "the detached exec's file",
        )

    def test_stdin(self) -> None:
        """-i: stdin reaches the process; its end ends it."""
        result = self.docker("exec", "-i", "box", "cat", stdin=b"abc\n")
        self.assertEqual((result.returncode, result.stdout), (0, b"abc\n"))

    def test_no_stdin(self) -> None:
        """Without -i the process reads end of file at once: cat ends."""
        result = self.docker("exec", "box", "cat", timeout=10)
        self.assertEqual((result.returncode, result.stdout), (0, b""))

    def test_cannot_start(self) -> None:
        """
        A process runc cannot start: dockerd's message, exit code 126, with
        and without a TTY (not runc's log line and its 255); a process that
        exits 255 itself still reports 255.
        """
        for args in (("nosuch",), ("-t", "nosuch")):
            result = self.docker("exec", *args[:-1], "box", args[-1])
            self.assertEqual(result.returncode, 126, result)
            self.assertIn(
                b"OCI runtime exec failed: exec failed: unable to start container "
                b'process: exec: "nosuch": executable file not found in $PATH: '
                b"unknown\r\n",
                result.stdout + result.stderr,
            )
            self.assertNotIn(b"ERRO", result.stdout + result.stderr)
        result = self.docker("exec", "box", "/etc")
        self.assertEqual(result.returncode, 126)
        self.assertIn(b'exec: "/etc": permission denied: unknown', result.stdout)
        result = self.docker("exec", "box", "sh", "-c", "echo out; exit 255")
        self.assertEqual((result.returncode, result.stdout), (255, b"out\n"))

    def test_inspect(self) -> None:
        """exec inspect: Running with a real pid while it runs; then ExitCode."""
        client = self.sdk()
        container = client.containers.get("box")
        command = ["sh", "-c", "sleep 2; exit 5"]
        exec_id = client.api.exec_create(container.id, command)["Id"]
        client.api.exec_start(exec_id, detach=True)
        running = self.until(
            lambda: (info := client.api.exec_inspect(exec_id))["Pid"] and info,
            "the exec's pid",
        )
        self.assertTrue(running["Running"])
        self.assertGreater(running["Pid"], 0)
        self.assertEqual(running["ProcessConfig"]["entrypoint"], "sh")
        done = self.until(
            lambda: not (info := client.api.exec_inspect(exec_id))["Running"] and info,
            "the exec's end",
        )
        self.assertEqual(done["ExitCode"], 5)

    def test_paused_and_stopped(self) -> None:
        """Exec into a paused or stopped container: dockerd's 409 texts."""
        self.ok("pause", "box")
        err = self.fails("exec", "box", "true")
        self.assertIn("is paused, unpause the container before exec", err)
        self.ok("unpause", "box")
        self.ok("kill", "box")
        err = self.fails("exec", "box", "true")
        self.assertIn("is not running", err)

    def test_unknown_exec(self) -> None:
        """An unknown exec ID is a 404 naming it."""
        client = self.sdk()
        import docker  # noqa: PLC0415

        with self.assertRaises(docker.errors.NotFound) as caught:
            client.api.exec_inspect("nosuchexec")
        self.assertIn("No such exec instance: nosuchexec", str(caught.exception))
        json.dumps(caught.exception.response.json())


class StartFailureTests(_DaemonCase):
    def test_unknown_user_with_rm(self) -> None:
        """
        docker run --rm -u with a user the image does not have (nosuchuser): dockerd's
        message at once (the CLI waits for the removal, which once never
        came), exit 125, and nothing left behind.
        """
        result = self.docker(
            "run", "--rm", "-u", "nosuchuser", "busybox", "id", timeout=30
        )
        self.assertEqual(result.returncode, 125)
        self.assertIn(
            b"unable to find user nosuchuser: no matching entries in passwd file",
            result.stderr,
        )
        self.assertEqual(self.ok("ps", "-aq"), "")
