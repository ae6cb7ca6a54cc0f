"""
The runtime contract: what the container service relies on from its
L{dockserve.daemon.contracts.Runtime}, as one set of tests that runs
against both runtimes, so the fake cannot drift from the real one.

L{RuntimeContract} is mixed into a C{TestCase} that provides the runtime
and a way to make a bundle that runs a given program:

 - C{tests.daemon.test_runtime_contract}: the L{ScriptedRuntime} of
   L{dockserve.testing.containers} (every unit test of the container
   service stands on it), whose processes are played by a script;
 - C{tests.integration.test_runtime_contract}: the real
   L{dockserve.daemon.runtime.RuncRuntime}, runc under conmon, running the
   same programs in busybox.

The programs are few and named here: each is a shell line for the real
runtime and a few lines of script for the fake. The tests say what the
service does with a runtime (create, start, run with clients attached
before the start, state, kill, wait for the exit, delete, pause, exec,
attach) and what it then counts on.
"""

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail

from dockserve.daemon.contracts import ExitStatus, Runtime, RuntimeState, Stdio
from dockserve.errors import SystemError_

#: Runs until it is killed (as a container's pid 1 it ignores SIGTERM).
SLEEPER = ("sleep", "1000")
#: Writes a line at once, copies its stdin to its stdout until end of
#: input, then writes a line to stderr and exits 3.
ECHO = ("sh", "-c", "echo first; cat; echo err >&2; exit 3")
#: Exits 7 at once.
EXITS = ("sh", "-c", "exit 7")
#: An executable that is not there.
MISSING = ("nosuch",)
#: Exec'd: copies its stdin to its stdout until end of input, exits 5.
CAT_THEN_5 = ("sh", "-c", "cat; exit 5")
#: Exec'd: exits 4 at once.
EXEC_EXITS = ("sh", "-c", "exit 4")

#: What a runtime says of L{MISSING}, wherever it says it.
NOT_FOUND = 'exec: "nosuch": executable file not found in $PATH'

#: The resources of an update: an OCI C{linux.resources} object.
RESOURCES = {"pids": {"limit": 64}}


class Output:
    """What a process wrote, by stream, and when its output ended."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []

    def __call__(self, stream: int, data: bytes) -> None:
        self.chunks.append((stream, data))

    def stream(self, number: int) -> bytes:
        """Everything written to stream C{number} (1 stdout, 2 stderr)."""
        return b"".join(data for n, data in self.chunks if n == number)


class RuntimeContract:
    """
    The contract's tests, mixed into a C{TestCase} that provides
    L{runtime} and L{bundle} (and may override L{process}).
    """

    runtime: Runtime

    # --- what the test case provides ----------------------------------------

    def bundle(self, container_id: str, argv: tuple[str, ...], **config: Any) -> str:
        """
        A bundle directory whose container runs C{argv}; C{config} is the
        container's Docker config (C{OpenStdin}, C{Tty}).
        """
        raise NotImplementedError

    def log_path(self, container_id: str) -> str:
        """Where the container's log goes."""
        raise NotImplementedError

    def process(self, argv: tuple[str, ...]) -> dict[str, Any]:
        """An OCI C{process} that runs C{argv} in the container (an exec)."""
        return {
            "args": list(argv),
            "env": ["PATH=/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
        }

    # --- helpers ----------------------------------------------------------------

    def new_id(self) -> str:
        """A container ID no other test uses."""
        return os.urandom(32).hex()

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """
        Call a runtime method that answers with a L{Deferred}: it must,
        failures included (the service chains callbacks on what it gets,
        so a failure raised at once would escape them).
        """
        try:
            result = method(*args, **kwargs)
        except Exception as e:
            self.fail(
                f"{method.__name__} raised {e!r} instead of answering with a "
                "failed Deferred"
            )
        self.assertIsInstance(result, Deferred)
        return result

    async def failure(self, d: Deferred[Any]) -> SystemError_:
        """The L{SystemError_} C{d} fails with (the test fails otherwise)."""
        try:
            await d
        except SystemError_ as e:
            return e
        self.fail("expected a SystemError_")
        raise AssertionError  # not reached

    async def created(
        self, argv: tuple[str, ...], *, tty: bool = False, open_stdin: bool = False
    ) -> tuple[str, RuntimeState]:
        """A container created (not started) from a new bundle."""
        cid = self.new_id()
        bundle = self.bundle(cid, argv, Tty=tty, OpenStdin=open_stdin)
        state = await self.call(
            self.runtime.create,
            cid,
            bundle,
            log_path=self.log_path(cid),
            tty=tty,
            open_stdin=open_stdin,
        )
        return cid, state

    async def running(
        self,
        argv: tuple[str, ...],
        *,
        open_stdin: bool = False,
        output: Output | None = None,
    ) -> tuple[str, RuntimeState, Stdio | None]:
        """
        A container run (created and started in one) from a new bundle;
        with C{output}, a client attached before its start.
        """
        cid = self.new_id()
        bundle = self.bundle(cid, argv, OpenStdin=open_stdin)
        attached: list[Stdio] = []

        async def attach() -> None:
            assert output is not None
            attached.append(await self.call(self.runtime.attach, cid, output))

        state = await self.call(
            self.runtime.run,
            cid,
            bundle,
            log_path=self.log_path(cid),
            tty=False,
            open_stdin=open_stdin,
            before_start=(
                (lambda: Deferred.fromCoroutine(attach())) if output else None
            ),
        )
        return cid, state, (attached[0] if attached else None)

    async def exited(self, cid: str) -> ExitStatus:
        """Wait for the container's exit."""
        status: ExitStatus = await self.call(self.runtime.wait_exit, cid)
        return status

    async def state(self, cid: str) -> RuntimeState:
        """The runtime's view of C{cid}."""
        state: RuntimeState = await self.call(self.runtime.state, cid)
        return state

    # --- the life of a container ------------------------------------------------

    async def test_create_start_kill_delete(self) -> None:
        """
        A created container has a pid and is C{created}; started, the same
        process is C{running}; SIGKILL ends it with 137, which wait_exit
        and exit_status report and C{state} shows as C{stopped} without a
        pid; once deleted the runtime knows nothing of it.
        """
        cid, state = await self.created(SLEEPER, tty=True)
        self.assertEqual(state.status, "created")
        self.assertGreater(state.pid, 0)
        self.assertEqual((await self.state(cid)).status, "created")
        self.assertIn(cid, self.runtime.known())
        self.assertIsNone(self.runtime.exit_status(cid))
        await self.call(self.runtime.start, cid)
        now = await self.state(cid)
        self.assertEqual((now.status, now.pid), ("running", state.pid))
        await self.call(self.runtime.kill, cid, 9)
        status = await self.exited(cid)
        self.assertEqual(status.code, 137)
        self.assertEqual(self.runtime.exit_status(cid), status)
        after = await self.state(cid)
        self.assertEqual((after.status, after.pid), ("stopped", 0))
        await self.call(self.runtime.delete, cid)
        self.assertEqual(await self.state(cid), RuntimeState(None, 0))
        self.assertIsNone(self.runtime.exit_status(cid))
        self.assertNotIn(cid, self.runtime.known())

    async def test_run_attached_before_start(self) -> None:
        """
        run creates and starts at once; a client attached in before_start
        sees the process's very first bytes, by stream; its stdin reaches
        the process and its end of input is the process's; the exit code
        and time are kept, and the client's output ends.
        """
        output = Output()
        cid, state, stdio = await self.running(ECHO, open_stdin=True, output=output)
        assert stdio is not None
        self.assertEqual(state.status, "running")
        self.assertGreater(state.pid, 0)
        stdio.write_stdin(b"typed\n")
        stdio.close_stdin()
        status = await self.exited(cid)
        await stdio.closed
        self.assertEqual(status.code, 3)
        # Unix time in nanoseconds (after 2001).
        self.assertGreater(status.finished_at, 10**18)
        self.assertEqual(
            (output.stream(1), output.stream(2)), (b"first\ntyped\n", b"err\n")
        )
        self.assertEqual((await self.state(cid)).status, "stopped")

    async def test_wait_after_exit(self) -> None:
        """
        wait_exit fires for a process that ended before anyone asked, at
        once and as often as asked, with what exit_status says.
        """
        cid, _, _ = await self.running(EXITS)
        first = await self.exited(cid)
        self.assertEqual(first.code, 7)
        self.assertFalse(first.oom_killed or first.monitor_lost)
        self.assertEqual(await self.exited(cid), first)
        self.assertEqual(self.runtime.exit_status(cid), first)

    async def test_before_start_fails(self) -> None:
        """
        When before_start fails, run fails with that very error and the
        process never runs: nothing is left of the container.
        """
        cid = self.new_id()
        bundle = self.bundle(cid, ECHO)
        refused = SystemError_("no attaching today")
        running = self.call(
            self.runtime.run,
            cid,
            bundle,
            log_path=self.log_path(cid),
            tty=False,
            open_stdin=False,
            before_start=lambda: fail(refused),
        )
        self.assertIs(await self.failure(running), refused)
        self.assertIsNone((await self.state(cid)).status)

    async def test_missing_executable(self) -> None:
        """
        A command that is not there fails create and run with the
        runtime's words, which name it (the service's exit code 127 is
        read from them), and leaves no container.
        """
        cid = self.new_id()
        creating = self.call(
            self.runtime.create,
            cid,
            self.bundle(cid, MISSING),
            log_path=self.log_path(cid),
            tty=False,
            open_stdin=False,
        )
        self.assertIn(NOT_FOUND, (await self.failure(creating)).message)
        self.assertIsNone((await self.state(cid)).status)
        other = self.new_id()
        running = self.call(
            self.runtime.run,
            other,
            self.bundle(other, MISSING),
            log_path=self.log_path(other),
            tty=False,
            open_stdin=False,
        )
        self.assertIn(NOT_FOUND, (await self.failure(running)).message)
        self.assertIsNone((await self.state(other)).status)

    # --- kill, delete, state of what is gone or not there ------------------------

    async def test_gone_or_unknown(self) -> None:
        """
        What the service meets in races: killing a container that has
        exited, or one the runtime does not know, is no error; deleting an
        unknown one succeeds; the state of an unknown one is no status and
        no pid, and it has no exit status.
        """
        cid, _, _ = await self.running(EXITS)
        await self.exited(cid)
        await self.call(self.runtime.kill, cid, 9)
        unknown = self.new_id()
        await self.call(self.runtime.kill, unknown, 9)
        await self.call(self.runtime.delete, unknown)
        self.assertEqual(await self.state(unknown), RuntimeState(None, 0))
        self.assertIsNone(self.runtime.exit_status(unknown))

    async def test_delete_running(self) -> None:
        """
        A running container is deleted only by force (which kills it);
        without, the delete fails and the container runs on.
        """
        cid, _, _ = await self.running(SLEEPER)
        refused = await self.failure(self.call(self.runtime.delete, cid))
        self.assertTrue(refused.message)
        self.assertEqual((await self.state(cid)).status, "running")
        await self.call(self.runtime.delete, cid, force=True)
        self.assertIsNone((await self.state(cid)).status)

    async def test_pause_resume(self) -> None:
        """
        pause freezes (C{paused}), resume thaws (C{running}); resuming what
        is not paused fails.
        """
        cid, _, _ = await self.running(SLEEPER)
        await self.call(self.runtime.pause, cid)
        self.assertEqual((await self.state(cid)).status, "paused")
        await self.call(self.runtime.resume, cid)
        self.assertEqual((await self.state(cid)).status, "running")
        refused = await self.failure(self.call(self.runtime.resume, cid))
        self.assertIn("not paused", refused.message)

    async def test_kill_paused(self) -> None:
        """
        SIGKILL ends a paused container at once, frozen as it is (runc
        thaws it to deliver the signal): the exit comes without a resume,
        and a resume after it fails, which the service's stop, kill and
        rm -f must not mind.
        """
        cid, _, _ = await self.running(SLEEPER)
        await self.call(self.runtime.pause, cid)
        await self.call(self.runtime.kill, cid, 9)
        self.assertEqual((await self.exited(cid)).code, 137)
        refused = await self.failure(self.call(self.runtime.resume, cid))
        self.assertIn("not paused", refused.message)

    # --- exec ------------------------------------------------------------------

    async def test_exec_attached(self) -> None:
        """
        An attached exec runs beside the main process: the client's stdin
        reaches it, its end of input too, its output comes back on
        stdout, and C{exited} fires with its code; the main process runs
        on.
        """
        cid, _, _ = await self.running(SLEEPER)
        output = Output()
        proc = await self.call(
            self.runtime.exec,
            cid,
            self.process(CAT_THEN_5),
            on_output=output,
            stdin=True,
        )
        proc.write_stdin(b"x")
        proc.close_stdin()
        self.assertEqual(await proc.exited, 5)
        await proc.closed
        self.assertEqual(output.stream(1), b"x")
        self.assertEqual((await self.state(cid)).status, "running")

    async def test_exec_detached(self) -> None:
        """A detached exec has its pid when it is answered, and its code at its end."""
        cid, _, _ = await self.running(SLEEPER)
        proc = await self.call(
            self.runtime.exec, cid, self.process(EXEC_EXITS), on_output=None
        )
        self.assertGreater(proc.pid, 0)
        self.assertEqual(await proc.exited, 4)

    async def test_exec_missing(self) -> None:
        """
        An exec of a command that is not there: attached, the client reads
        dockerd's error and the exec ends with 126; detached, the exec
        fails with that error.
        """
        cid, _, _ = await self.running(SLEEPER)
        output = Output()
        proc = await self.call(
            self.runtime.exec, cid, self.process(MISSING), on_output=output
        )
        self.assertEqual(await proc.exited, 126)
        said = output.stream(1).decode()
        self.assertTrue(said.startswith("OCI runtime exec failed: "), said)
        self.assertIn(NOT_FOUND, said)
        detached = self.call(
            self.runtime.exec, cid, self.process(MISSING), on_output=None
        )
        message = (await self.failure(detached)).message
        self.assertTrue(message.startswith("OCI runtime exec failed: "), message)
        self.assertIn(NOT_FOUND, message)

    # --- what a running container is asked ------------------------------------------

    async def test_stats_and_update(self) -> None:
        """
        A running container has the stats body's members, and takes new
        limits while it runs.
        """
        cid, _, _ = await self.running(SLEEPER)
        stats = self.runtime.stats(cid)
        for member in ("cpu_stats", "memory_stats", "pids_stats", "blkio_stats"):
            self.assertIn(member, stats)
        await self.call(self.runtime.update, cid, RESOURCES)
        self.assertEqual((await self.state(cid)).status, "running")
