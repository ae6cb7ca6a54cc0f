"""
Unit tests for the parts of L{dockserve.daemon.runtime} that need no runc:
the commands it spawns, how it reads their output and conmon's exit files.
A fake reactor records each spawn; the test plays the process.
"""

import json
import os
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

    def spawnProcess(
        self, protocol: Any, executable: str, args: list[str], **kwargs: Any
    ) -> None:
        assert executable == args[0]
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


class RuncRuntimeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = _Reactor()
        self.root = Path(self.mktemp())
        self.runtime = RuncRuntime(
            self.root, self.reactor, runtime_binary="/x/runc", conmon_binary="/x/conmon"
        )

    def last(self) -> _Spawn:
        return self.reactor.spawned[-1]

    def test_layout(self) -> None:
        """The exec root holds runc's root, exits, short links and monitors."""
        self.assertEqual(
            sorted(p.name for p in self.root.iterdir()), ["c", "exits", "runc", "s"]
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
        argv = spawn.argv
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
        self.assertEqual(spawn.kwargs["childFDs"][3], "r")
        # A stale exit file of an earlier run is gone; the short link leads
        # to the bundle.
        self.assertFalse((self.root / "exits" / CID).exists())
        self.assertEqual((self.root / "s" / CID[:12]).resolve(), bundle.resolve())
        spawn.protocol.childDataReceived(3, b'{"data": 4242}')
        self.assertEqual(self.successResultOf(d), RuntimeState("created", 4242))

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
        d = self.runtime.wait_exit(CID)
        self.reactor.advance(1)
        self.assertNoResult(d)
        (self.root / "exits" / CID).write_text("3")
        self.reactor.advance(1)
        self.assertEqual(self.successResultOf(d).code, 3)


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
