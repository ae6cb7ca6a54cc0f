"""
Unit tests for the parts of L{dockserve.daemon.runtime} that need no runc:
the commands it spawns, how it reads their output and conmon's exit files.
A fake reactor records each spawn; the test plays the process.
"""

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import error as net_error
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dockserve.daemon import runtime as runtime_module
from dockserve.daemon.contracts import ExitStatus, RuntimeState
from dockserve.daemon.runtime import RuncRuntime, _clean, _runc_message
from dockserve.errors import SystemError_

CID = "a" * 64


class _Spawn:
    def __init__(self, protocol: Any, argv: list[str], kwargs: dict[str, Any]):
        self.protocol = protocol
        self.argv = argv
        self.kwargs = kwargs

    def end(self, code: int = 0, out: bytes = b"", err: bytes = b"") -> None:
        """The process writes C{out} and C{err} and exits with C{code}."""
        if out:
            self.protocol.childDataReceived(1, out)
        if err:
            self.protocol.childDataReceived(2, err)
        # conmon's sync pipe closes as it ends (ProcessProtocol's default
        # ignores this for the short runc commands).
        self.protocol.childConnectionLost(runtime_module.SYNC_FD)
        reason: Failure
        if code:
            reason = Failure(net_error.ProcessTerminated(exitCode=code))
        else:
            reason = Failure(net_error.ProcessDone(0))
        self.protocol.processEnded(reason)


class _Reactor(Clock):
    """A clock that records C{spawnProcess} calls."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[_Spawn] = []
        self.readers: list[Any] = []

    def addReader(self, reader: Any) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:
        self.readers.remove(reader)

    def spawnProcess(
        self, protocol: Any, executable: str, args: list[str], **kwargs: Any
    ) -> None:
        assert executable == args[0]
        # A descriptor handed to the child is the child's own copy.
        for child, parent in kwargs.get("childFDs", {}).items():
            if isinstance(parent, int):
                kwargs["childFDs"][child] = os.dup(parent)
        self.spawned.append(_Spawn(protocol, list(args), kwargs))


class MessageTests(SynchronousTestCase):
    def test_log_decoration(self) -> None:
        """Runc's logfmt decoration goes; escaped quotes come back."""
        text = 'time="2024" level=error msg="exec: \\"nope\\": not found"'
        self.assertEqual(_clean(text), 'exec: "nope": not found')

    def test_create_failed(self) -> None:
        """A failed create is worded as dockerd words it."""
        self.assertEqual(
            _clean("runc create failed: unable to start container process: boom"),
            "failed to create task for container: failed to create shim task: "
            "OCI runtime create failed: runc create failed: unable to start "
            "container process: boom: unknown",
        )

    def test_stdin_pipe_gone_resumes_the_client(self) -> None:
        """
        A client paused because the exec's stdin was full is read on when
        the process closes its stdin (the pipe's writer stops its producer),
        so that its going away is still seen.
        """
        from dockserve.daemon.runtime import _Unstoppable  # noqa: PLC0415

        calls: list[str] = []

        class Client:
            def pauseProducing(self) -> None:
                calls.append("pause")

            def resumeProducing(self) -> None:
                calls.append("resume")

        flow = _Unstoppable(Client())
        flow.pauseProducing()
        flow.stopProducing()
        self.assertEqual(calls, ["pause", "resume"])

    def test_exec_could_not_start(self) -> None:
        """
        What runc prints when it cannot start an exec'd process, in its
        log format or coloured on a terminal, in dockerd's words.
        """
        from dockserve.daemon.runtime import exec_failure  # noqa: PLC0415

        want = (
            "OCI runtime exec failed: exec failed: unable to start container "
            'process: exec: "nosuch": executable file not found in $PATH: unknown'
        )
        logged = (
            b'time="2026-11-29T09:47:49Z" level=error msg="exec failed: unable '
            b'to start container process: exec: \\"nosuch\\": executable file '
            b'not found in $PATH"\n'
        )
        coloured = (
            b"\x1b[31mERRO\x1b[0m[0000] exec failed: unable to start container "
            b'process: exec: "nosuch": executable file not found in $PATH \r\n'
        )
        self.assertEqual(exec_failure(logged), want)
        self.assertEqual(exec_failure(coloured), want)

    def test_exec_failed(self) -> None:
        self.assertEqual(
            _clean("runc exec failed: no such file"),
            "OCI runtime exec failed: no such file: unknown",
        )

    def test_json_log_lines(self) -> None:
        """Runc's JSON log lines give their msg; other lines stay as they are."""
        err = (
            json.dumps({"level": "error", "msg": "container does not exist"}).encode()
            + b"\nplain line\n"
        )
        self.assertEqual(_runc_message(err), "container does not exist\nplain line")


class _RuntimeCase(SynchronousTestCase):
    """A L{RuncRuntime} on a recording reactor, with made-up binaries."""

    def setUp(self) -> None:
        self.reactor = _Reactor()
        self.root = Path(self.mktemp())
        self.runtime = RuncRuntime(
            self.root, self.reactor, runtime_binary="/x/runc", conmon_binary="/x/conmon"
        )
        # Exits are polled on this clock (ExitWatchTests cover inotify).
        self.runtime._inotify_tried = True
        self.addCleanup(self._close_readers)

    def _close_readers(self) -> None:
        for reader in list(self.reactor.readers):
            reader.connectionLost(None)
        for spawn in self.reactor.spawned:
            for fd in spawn.kwargs.get("childFDs", {}).values():
                if isinstance(fd, int):
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def monitor(self, container_id: str = CID) -> Any:
        """A live process standing for conmon, named in its pid file."""
        process = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)", container_id]
        )
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        # Until the exec, the child's command line is the test runner's.
        cmdline = Path(f"/proc/{process.pid}/cmdline")
        deadline = time.monotonic() + 10
        while container_id.encode() not in cmdline.read_bytes():
            self.assertLess(time.monotonic(), deadline, "the process never ran")
            time.sleep(0.001)
        directory = self.root / "c" / container_id
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "conmon.pid").write_text(str(process.pid))
        return process

    def last(self) -> _Spawn:
        return self.reactor.spawned[-1]


class RuncRuntimeTests(_RuntimeCase):
    def test_layout(self) -> None:
        """
        The exec root holds runc's root, exits, short links, monitors and
        the gated-run script.
        """
        self.assertEqual(
            sorted(p.name for p in self.root.iterdir()),
            ["c", "exits", "gated-run.sh", "runc", "s"],
        )
        self.assertEqual(
            (self.root / "gated-run.sh").read_text(), runtime_module.GATED_RUN
        )

    def test_create_argv(self) -> None:
        """
        conmon runs the configured runc on the bundle with the log, exit dir
        and pid files in the exec root; the sync pipe is fd 3.
        """
        bundle = Path(self.mktemp()).absolute()
        bundle.mkdir()
        (self.root / "exits" / CID).write_text("0")
        d = self.runtime.create(CID, str(bundle), log_path="/l/log", tty=False,
                                open_stdin=False)  # fmt: skip
        spawn = self.last()
        # env -C starts conmon in the bundle, so the daemon need not fork.
        self.assertEqual(spawn.argv[1:3], ["-C", str(bundle)])
        self.assertNotIn("path", spawn.kwargs)
        argv = spawn.argv[3:]
        self.assertEqual(argv[0], "/x/conmon")
        pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
        self.assertEqual(pairs["-c"], CID)
        self.assertEqual(pairs["-u"], CID[:12])
        self.assertEqual(pairs["-r"], "/x/runc")
        self.assertEqual(pairs["-b"], str(bundle))
        self.assertIn("--exit-dir", argv)
        self.assertEqual(argv[argv.index("--exit-dir") + 1], str(self.root / "exits"))
        self.assertIn("k8s-file:/l/log", argv)
        self.assertIn(f"--root={self.root / 'runc'}", argv)
        for flag in ("-t", "-i", "--leave-stdin-open"):
            self.assertNotIn(flag, argv)
        self.assertEqual(spawn.kwargs["env"]["_OCI_SYNCPIPE"], "3")
        # A stale exit file of an earlier run is gone; the short link leads
        # to the bundle.
        self.assertFalse((self.root / "exits" / CID).exists())
        self.assertEqual((self.root / "s" / CID[:12]).resolve(), bundle.resolve())
        spawn.protocol.childDataReceived(3, b'{"data": 4242}')
        self.assertEqual(self.successResultOf(d), RuntimeState("created", 4242))

    def test_sync_pipe_outlives_the_daemon(self) -> None:
        """
        conmon writes the pid on descriptor 3 and holds a read end of that
        very pipe as descriptor 5: the daemon reads the pid through the
        reactor, and once the daemon's end is gone (it died), conmon's
        write still succeeds rather than failing (conmon exits when it
        cannot report, and the container would run on without it).
        """
        bundle = self.mktemp()
        Path(bundle).mkdir()
        d = self.runtime.create(CID, bundle, log_path="/l", tty=False, open_stdin=False)
        fds = self.last().kwargs["childFDs"]
        sync, keeper = fds[runtime_module.SYNC_FD], fds[runtime_module.KEEPER_FD]
        self.assertEqual(os.fstat(sync).st_ino, os.fstat(keeper).st_ino)
        [reader] = self.reactor.readers
        os.write(sync, b'{"data": 31}')
        reader.doRead()
        self.assertEqual(self.successResultOf(d).pid, 31)
        # The daemon dies: its end closes. conmon's report does not fail.
        reader.connectionLost(None)
        self.assertEqual(self.reactor.readers, [])
        self.assertEqual(os.write(sync, b'{"data": 31}'), 12)

    def test_create_tty_stdin(self) -> None:
        """-t, -i and --leave-stdin-open when asked."""
        bundle = self.mktemp()
        Path(bundle).mkdir()
        self.runtime.create(CID, bundle, log_path="/l", tty=True, open_stdin=True,
                            leave_stdin_open=True)  # fmt: skip
        argv = self.last().argv
        for flag in ("-t", "-i", "--leave-stdin-open"):
            self.assertIn(flag, argv)

    def test_create_failure(self) -> None:
        """conmon's error on the sync pipe fails the create, in dockerd's words."""
        bundle = self.mktemp()
        Path(bundle).mkdir()
        d = self.runtime.create(CID, bundle, log_path="/l", tty=False, open_stdin=False)
        message = {"data": -1, "message": "runc create failed: no such user"}
        self.last().protocol.childDataReceived(3, json.dumps(message).encode())
        failure = self.failureResultOf(d, SystemError_)
        self.assertIn("OCI runtime create failed: runc create failed: no such user",
                      str(failure.value))  # fmt: skip

    def test_create_conmon_dies(self) -> None:
        """conmon ending without a word fails with its stderr."""
        bundle = self.mktemp()
        Path(bundle).mkdir()
        d = self.runtime.create(CID, bundle, log_path="/l", tty=False, open_stdin=False)
        self.last().end(1, err=b"conmon: bad option\n")
        failure = self.failureResultOf(d, SystemError_)
        self.assertEqual(str(failure.value), "conmon: bad option")

    def test_runc_commands(self) -> None:
        """Short commands run the configured runc with its own --root."""
        self.runtime.start(CID)
        self.assertEqual(
            self.last().argv, ["/x/runc", f"--root={self.root / 'runc'}", "start", CID]
        )
        self.runtime.kill(CID, 15)
        self.assertEqual(self.last().argv[2:], ["kill", CID, "15"])
        self.runtime.delete(CID, force=True)
        self.assertEqual(self.last().argv[2:], ["delete", "--force", CID])

    def test_kill_gone(self) -> None:
        """Killing a container that is no longer running is no error."""
        d = self.runtime.kill(CID, 9)
        self.last().end(1, err=b'{"level":"error","msg":"container not running"}\n')
        self.assertIsNone(self.successResultOf(d))

    def test_start_error(self) -> None:
        """A failing runc command fails with its message."""
        d = self.runtime.start(CID)
        self.last().end(
            1, err=b'{"level":"error","msg":"cannot start a paused container"}'
        )
        failure = self.failureResultOf(d, SystemError_)
        self.assertEqual(str(failure.value), "cannot start a paused container")

    def test_state(self) -> None:
        """runc state's status and pid; an unknown container is no state."""
        d = self.runtime.state(CID)
        self.last().end(0, out=json.dumps({"status": "running", "pid": 77}).encode())
        self.assertEqual(self.successResultOf(d), RuntimeState("running", 77))
        d = self.runtime.state(CID)
        self.last().end(1, err=b"container does not exist\n")
        self.assertEqual(self.successResultOf(d), RuntimeState(None, 0))

    def test_exit_status(self) -> None:
        """conmon's exit file: its code, its mtime, and the OOM marker."""
        path = self.root / "exits" / CID
        self.assertIsNone(self.runtime.exit_status(CID))
        path.write_text("")
        self.assertIsNone(self.runtime.exit_status(CID))
        path.write_text("garbage")
        self.assertIsNone(self.runtime.exit_status(CID))
        path.write_text("137")
        os.utime(path, ns=(5_000_000_000, 5_000_000_000))
        self.assertEqual(
            self.runtime.exit_status(CID),
            ExitStatus(code=137, finished_at=5_000_000_000, oom_killed=False),
        )
        (self.root / "c" / CID).mkdir()
        (self.root / "c" / CID / "oom").write_text("")
        status = self.runtime.exit_status(CID)
        assert status is not None
        self.assertTrue(status.oom_killed)

    def test_wait_exit(self) -> None:
        """wait_exit fires once conmon has written the exit file."""
        self.monitor()
        d = self.runtime.wait_exit(CID)
        self.reactor.advance(1)
        self.reactor.advance(1)
        self.assertNoResult(d)
        (self.root / "exits" / CID).write_text("3")
        self.reactor.advance(1)
        self.assertEqual(self.successResultOf(d).code, 3)
        self.assertEqual(self.reactor.readers, [])

    def answer_state(self, status: str) -> None:
        """The last spawn was C{runc state}: it answers C{status}."""
        self.assertEqual(self.last().argv[2:], ["state", CID])
        self.last().end(0, out=json.dumps({"status": status, "pid": 9}).encode())

    def test_wait_exit_without_conmon(self) -> None:
        """
        A running container whose conmon is not there (its pid file names
        a process that is gone) is not waited for in vain: after a grace
        second it is killed, seen stopped, and reported as killed (137)
        with the monitor lost.
        """
        directory = self.root / "c" / CID
        directory.mkdir(parents=True)
        (directory / "conmon.pid").write_text("999999999")
        d = self.runtime.wait_exit(CID)
        self.reactor.advance(1)
        self.answer_state("running")
        self.assertEqual(self.last().argv[2:], ["kill", CID, "9"])
        self.last().end(0)
        self.answer_state("running")
        self.reactor.advance(runtime_module._POLL)
        self.answer_state("stopped")
        status = self.successResultOf(d)
        self.assertEqual((status.code, status.monitor_lost), (137, True))

    def test_conmon_ends_without_exit_file(self) -> None:
        """
        conmon is watched through a pidfd: when it ends without writing the
        exit file, the container is stopped at once; one that had already
        ended on its own is reported 255.
        """
        process = self.monitor()
        d = self.runtime.wait_exit(CID)
        [watch] = self.reactor.readers
        self.reactor.advance(5)
        self.assertNoResult(d)
        process.kill()
        process.wait()
        watch.doRead()
        self.assertEqual(self.reactor.readers, [])
        self.answer_state("stopped")
        status = self.successResultOf(d)
        self.assertEqual((status.code, status.monitor_lost), (255, True))

    def test_paused_without_conmon(self) -> None:
        """A paused container without conmon is thawed to let SIGKILL work."""
        d = self.runtime.wait_exit(CID)
        self.reactor.advance(1)
        self.answer_state("paused")
        self.last().end(0)  # kill
        self.assertEqual(self.last().argv[2:], ["resume", CID])
        self.last().end(0)
        self.answer_state("stopped")
        self.assertEqual(self.successResultOf(d).code, 137)


class ExitWatchTests(TestCase):
    """Exit files seen through inotify on a real reactor."""

    async def test_exit_seen_without_polling(self) -> None:
        """
        With polling pushed out of reach, conmon's exit file (written under a
        temporary name and renamed, as conmon does) still fires wait_exit:
        the inotify watch saw it.
        """
        from twisted.internet import reactor  # noqa: PLC0415

        self.patch(runtime_module, "_SAFETY_POLL", 3600.0)
        self.patch(runtime_module, "_POLL", 3600.0)
        runtime = RuncRuntime(Path(self.mktemp()), reactor)
        self.addCleanup(runtime.close)
        waiting = runtime.wait_exit("c1")
        other = runtime.wait_exit("c2")
        exits = Path(runtime._exits)
        (exits / "c1.tmp").write_text("3")
        (exits / "c1.tmp").rename(exits / "c1")
        status = await waiting
        self.assertEqual(status.code, 3)
        self.assertFalse(other.called)
        (exits / "c2").write_text("0")
        self.assertEqual((await other).code, 0)
        for call in reactor.getDelayedCalls():
            if call.getTime() - reactor.seconds() > 3000:
                self.fail("a wait left its safety poll behind")


class RunTests(_RuntimeCase):
    """L{RuncRuntime.run}: conmon through the gate, then runc run --detach."""

    def setUp(self) -> None:
        super().setUp()
        self.bundle = Path(self.mktemp()).absolute()
        self.bundle.mkdir()

    def gate(self) -> int:
        """conmon's end of the start gate, without blocking."""
        fd: int = self.last().kwargs["childFDs"][runtime_module.GATE_FD]
        self.addCleanup(os.close, fd)
        os.set_blocking(fd, False)
        return fd

    def run_it(self, before_start: Any = None) -> Any:
        return self.runtime.run(
            CID, str(self.bundle), log_path="/l/log", tty=False, open_stdin=False,
            before_start=before_start,
        )  # fmt: skip

    def test_argv(self) -> None:
        """
        conmon runs the gated script with sh and the real runc in its
        environment, beside the gate.
        """
        self.run_it()
        spawn = self.last()
        argv = spawn.argv[3:]
        at = argv.index("-r")
        script = str(self.root / "gated-run.sh")
        self.assertEqual(argv[at + 1 : at + 4], ["/bin/sh", "--runtime-arg", script])
        self.assertIn(f"--root={self.root / 'runc'}", argv)
        self.assertEqual(spawn.kwargs["env"]["DOCKSERVE_RUNTIME"], "/x/runc")
        self.assertIsInstance(spawn.kwargs["childFDs"][runtime_module.GATE_FD], int)

    def test_no_one_waiting(self) -> None:
        """
        Without clients to attach first, the gate is open from the start;
        the pid conmon reports is the running container's, and the gate is
        gone after.
        """
        d = self.run_it()
        reader = self.gate()
        self.assertEqual(os.read(reader, 100), b"start\n")
        self.last().protocol.childDataReceived(3, b'{"data": 4242}')
        self.assertEqual(self.successResultOf(d), RuntimeState("running", 4242))
        # The daemon's end is closed: nothing more will come.
        self.assertEqual(os.read(reader, 100), b"")

    def test_attach_first(self) -> None:
        """
        The gate stays shut until conmon's control fifo (made after its
        attach socket listens) is there and C{before_start} has run.
        """
        calls: list[str] = []

        def before_start() -> Any:
            calls.append("attached")
            from twisted.internet.defer import succeed  # noqa: PLC0415

            return succeed(None)

        (self.bundle / "ctl").write_text("stale")
        d = self.run_it(before_start)
        reader = self.gate()
        # A control fifo of an earlier run does not count.
        self.assertFalse((self.bundle / "ctl").exists())
        self.reactor.advance(0.01)
        self.assertEqual(calls, [])
        with self.assertRaises(BlockingIOError):
            os.read(reader, 100)
        (self.bundle / "ctl").write_text("")
        self.reactor.advance(0.002)
        self.assertEqual(calls, ["attached"])
        self.assertEqual(os.read(reader, 100), b"start\n")
        self.last().protocol.childDataReceived(3, b'{"data": 7}')
        self.assertEqual(self.successResultOf(d).pid, 7)

    def test_before_start_fails(self) -> None:
        """
        If attaching fails, the gate closes without a line (the container
        never runs) and the start fails with that error.
        """
        from twisted.internet.defer import fail  # noqa: PLC0415

        d = self.run_it(lambda: fail(SystemError_("cannot attach")))
        reader = self.gate()
        (self.bundle / "ctl").write_text("")
        self.reactor.advance(0.002)
        # The gated script reads end-of-file: no writer is left, no line.
        self.assertEqual(os.read(reader, 100), b"")
        failure = self.failureResultOf(d, SystemError_)
        self.assertEqual(str(failure.value), "cannot attach")

    def test_conmon_fails_first(self) -> None:
        """conmon failing before it is set up ends the wait with its error."""
        d = self.run_it(lambda: self.fail("must not attach"))
        message = {"data": -1, "message": "runc run failed: no such user"}
        self.last().protocol.childDataReceived(3, json.dumps(message).encode())
        self.reactor.advance(0.002)
        failure = self.failureResultOf(d, SystemError_)
        # Worded as dockerd words a failed create.
        self.assertIn("OCI runtime create failed: runc create failed: no such user",
                      str(failure.value))  # fmt: skip

    def test_tty_refused(self) -> None:
        """A TTY container is created, then started: run refuses it."""
        with self.assertRaises(ValueError):
            self.runtime.run(CID, str(self.bundle), log_path="/l", tty=True,
                             open_stdin=False)  # fmt: skip


class GatedRunScriptTests(TestCase):
    """L{runtime_module.GATED_RUN} under the real /bin/sh."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.script = self.dir / "gated-run.sh"
        self.script.write_text(runtime_module.GATED_RUN)
        # A runtime that prints the arguments it was given, one per line.
        self.fake = self.dir / "runtime"
        self.fake.write_text('#!/bin/sh\nfor a do echo "$a"; done\n')
        self.fake.chmod(0o755)

    def sh(self, line: bytes | None) -> Any:
        """
        Run the script as conmon would, with the gate on descriptor 4: the
        daemon writes C{line} and closes its end (C{None}: closes it only).
        """
        import subprocess  # noqa: PLC0415

        read_end, write_end = os.pipe()
        if line is not None:
            os.write(write_end, line)
        os.close(write_end)
        try:
            # As conmon hands it over: the gate is descriptor 4 (put there
            # in the child, since dash cannot name a descriptor above 9).
            def gate_on_4() -> None:
                os.dup2(read_end, 4)

            process = subprocess.run(
                ["/bin/sh", str(self.script), "--root=/r",
                 "create", "--bundle", "/b", "--pid-file", "/p", "create"],
                env={"DOCKSERVE_RUNTIME": str(self.fake),
                     "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                check=False, close_fds=False, preexec_fn=gate_on_4,
            )  # fmt: skip
        finally:
            os.close(read_end)
        return process.returncode, process.stdout.decode(), process.stderr.decode()

    def test_create_becomes_run(self) -> None:
        """
        Once the gate has its line, the runtime runs with C{run --detach}
        for conmon's C{create} (only the first: a container may be named
        "create"), every other argument as it was.
        """
        code, out, err = self.sh(b"start\n")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(
            out.splitlines(),
            ["--root=/r", "run", "--detach", "--bundle", "/b", "--pid-file", "/p",
             "create"],
        )  # fmt: skip

    def test_closed_gate_cancels(self) -> None:
        """A gate closed without a line: no runtime, an error for conmon."""
        code, out, err = self.sh(None)
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertEqual(err.strip(), "the container start was cancelled")
