# -*- test-case-name: tests.integration.test_runtime -*-
"""
The real L{dockserve.daemon.contracts.Runtime}: runc under conmon.

Each container gets its own conmon, which runs the runtime, holds the
container's stdio (a k8s-file log, an attach socket, a resize fifo) and
writes the exit code to a file when the process ends; so containers, and
the record of how they ended, outlive the daemon. Everything else (start,
kill, pause, state, delete, exec) is a short C{runc} command. Every
subprocess is spawned through the reactor.

A start without a TTY is one runtime process, not two: conmon runs
L{GATED_RUN}, which turns conmon's C{runc create} into C{runc run
--detach} once the daemon has attached its waiting clients (see
L{RuncRuntime.run}). Each runc process costs 5 to 10 ms here, and the
start of a container is what C{docker run} waits for.

Layout under the runtime's exec root::

    runc/        runc's own state (C{--root})
    exits/<id>   the exit code conmon writes
    s/<short>    conmon's short symlink to the bundle (attach socket)
    c/<id>/      conmon and container pid files, conmon's persist dir
    gated-run.sh L{GATED_RUN}
"""

import contextlib
import fcntl
import json
import os
import re
import shutil
import struct
import tempfile
import termios
import tty
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import define

from twisted.internet import error as net_error
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from dockserve.daemon import cgroups
from dockserve.daemon.attachsocket import AttachSocket
from dockserve.daemon.contracts import (
    ExecProcess,
    ExitStatus,
    OutputCallback,
    PushProducer,
    RuntimeState,
    Stdio,
)
from dockserve.errors import SystemError_

if TYPE_CHECKING:
    from collections.abc import Callable

_log = Logger()

_POLL = 0.05

#: coreutils' env, which starts conmon in its bundle directory.
_ENV = shutil.which("env") or "/usr/bin/env"

#: How often a gated start looks for conmon's attach socket to be set up.
_SETUP_POLL = 0.001

#: How long conmon may take to set up its attach socket.
_SETUP_TIMEOUT = 10.0

#: conmon's sync pipe (C{_OCI_SYNCPIPE}): it writes the pid, or the error.
SYNC_FD = 3

#: The descriptor of the start gate in conmon and in L{GATED_RUN}.
GATE_FD = 4

#: A read end of conmon's own sync pipe that conmon inherits and keeps, so
#: its write of the pid never fails, whether or not the daemon still lives.
KEEPER_FD = 5

#: The runtime conmon runs (through C{/bin/sh}) for L{RuncRuntime.run}: it
#: waits for a line on the start gate (a pipe the daemon holds the other end
#: of, inherited through conmon as descriptor L{GATE_FD}), then runs the real
#: runtime with C{run --detach} where conmon asked for C{create}. End of file
#: instead of a line (the daemon gave up, or died) cancels the start.
GATED_RUN = r"""# dockserve: create and start a container in one runtime process.
runtime=$DOCKSERVE_RUNTIME
unset DOCKSERVE_RUNTIME
if ! read -r _ <&4; then
    echo "the container start was cancelled" >&2
    exit 1
fi
exec 4<&-
replaced=
for arg do
    shift
    if [ -z "$replaced" ] && [ "$arg" = create ]; then
        set -- "$@" run --detach
        replaced=1
    else
        set -- "$@" "$arg"
    fi
done
exec "$runtime" "$@"
"""

#: How often exits are polled for even with inotify, in case an event is lost.
_SAFETY_POLL = 1.0

#: How long an exit may be waited for with no live conmon found for it (its
#: pid file is written as it forks, before it reports the container's pid).
_MONITOR_GRACE = 1.0

#: How long a container whose conmon is gone may take to die of SIGKILL.
_UNMONITORED_STOP_TIMEOUT = 10.0


class _Collect(ProcessProtocol):
    """Collects a short command's output and its exit code."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.done: Deferred[tuple[int, bytes, bytes]] = Deferred()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        (self.out if childFD == 1 else self.err).extend(data)

    def processEnded(self, reason: Failure) -> None:
        code = 0
        if isinstance(reason.value, net_error.ProcessTerminated):
            value: Any = reason.value
            code = (
                value.exitCode
                if value.exitCode is not None
                else 128 + (value.signal or 0)
            )
        self.done.callback((code, bytes(self.out), bytes(self.err)))


class _Conmon(ProcessProtocol):
    """
    Waits for conmon's word on the sync pipe: the pid, or the error.

    conmon forks to the background at once, so its first process ending
    says nothing; the sync pipe closing does (the conmon that stays holds
    it until it ends). Only when both have happened without a word has
    the create failed.
    """

    def __init__(self) -> None:
        self.sync = bytearray()
        self.err = bytearray()
        self.created: Deferred[int] = Deferred()
        self._sync_closed = False
        self._ended = False

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == SYNC_FD:
            self.sync.extend(data)
            self._check()
        else:
            self.err.extend(data)

    def _check(self) -> None:
        if self.created.called:
            return
        try:
            message = json.loads(bytes(self.sync))
        except ValueError:
            return
        pid = int(message.get("data", -1))
        if pid > 0:
            self.created.callback(pid)
        else:
            text = str(message.get("message") or "container create failed")
            self.created.errback(SystemError_(_clean(text)))

    def childConnectionLost(self, childFD: int) -> None:
        if childFD == SYNC_FD:
            self._sync_closed = True
            self._give_up()

    def processEnded(self, reason: Failure) -> None:  # noqa: ARG002
        self._ended = True
        self._give_up()

    def _give_up(self) -> None:
        self._check()
        if self.created.called or not (self._sync_closed and self._ended):
            return
        text = bytes(self.err).decode(errors="replace").strip()
        self.created.errback(
            SystemError_(text or "conmon ended before the container was created")
        )


@implementer(IReadDescriptor)
class _SyncReader:
    """
    The daemon's end of conmon's sync pipe, read by the reactor: what
    arrives goes to the L{_Conmon} protocol as its descriptor L{SYNC_FD}.

    The pipe is the daemon's own rather than one C{spawnProcess} makes,
    because conmon must hold a read end of it too (L{KEEPER_FD}): conmon
    exits when a write to its sync pipe fails, so a daemon that died
    between a container's start and conmon's report of its pid used to
    take the container's monitor with it, and the container ran on with
    nobody to record its output or its exit.
    """

    def __init__(self, reactor: Any, fd: int, protocol: _Conmon) -> None:
        self._reactor = reactor
        self._fd = fd
        self._protocol = protocol
        os.set_blocking(fd, False)

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "conmon-sync"

    def doRead(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._protocol.childDataReceived(SYNC_FD, data)
            return
        self._close()

    def _close(self) -> None:
        if self._fd < 0:
            return
        self._reactor.removeReader(self)
        os.close(self._fd)
        self._fd = -1
        self._protocol.childConnectionLost(SYNC_FD)

    def connectionLost(self, reason: Failure) -> None:  # noqa: ARG002
        self._close()


@implementer(IReadDescriptor)
class _ProcessWatch:
    """
    Calls C{ended} once the process C{pid} has exited: a pidfd (which
    names that very process, whatever later reuses the number) read by
    the reactor, so nothing is polled.

    @ivar ended: Whether the process has exited (true at once if it had
        before the watch began).
    """

    def __init__(self, reactor: Any, pid: int, ended: "Callable[[], None]") -> None:
        self._reactor = reactor
        self._callback = ended
        self.ended = False
        try:
            self._fd = os.pidfd_open(pid)
        except OSError:
            self._fd = -1
            self.ended = True
            return
        reactor.addReader(self)

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "conmon-watch"

    def doRead(self) -> None:
        self.ended = True
        self.close()
        self._callback()

    def connectionLost(self, reason: Failure) -> None:  # noqa: ARG002
        self.close()

    def close(self) -> None:
        """Stop watching."""
        if self._fd >= 0:
            self._reactor.removeReader(self)
            os.close(self._fd)
            self._fd = -1


def _clean(text: str) -> str:
    """
    Runc's message without its log decoration (C{time=... level=error
    msg="..."}), worded as dockerd words a failed create.
    """
    text = text.strip()
    match = re.search(r'msg="((?:[^"\\]|\\.)*)"', text)
    if match:
        text = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
    if text.startswith("runc run failed: "):
        # A gated start (runc run): worded as dockerd words its create.
        text = "runc create failed: " + text.removeprefix("runc run failed: ")
    if text.startswith("runc create failed: "):
        return (
            "failed to create task for container: failed to create shim task: "
            f"OCI runtime create failed: {text}: unknown"
        )
    if text.startswith("runc exec failed: "):
        return f"OCI runtime exec failed: {text.split(': ', 1)[1]}: unknown"
    return text


def _runc_message(err: bytes) -> str:
    text = err.decode(errors="replace").strip()
    lines = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if isinstance(record, dict) and record.get("msg"):
            lines.append(str(record["msg"]))
    return _clean("\n".join(lines) or text)


#: The exit code dockerd reports for an exec that could not be started.
EXEC_START_FAILED = 126

#: logrus's decoration of runc's message on a terminal: colour, then the
#: level and the time (C{ERRO[0000] }).
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_LEVEL = re.compile(r"^[A-Z]{4}\[\d+\] ", re.MULTILINE)


def exec_failure(output: bytes) -> str:
    """
    The words dockerd uses for what runc printed when it could not start an
    exec'd process: C{OCI runtime exec failed: exec failed: unable to start
    container process: exec: "nosuch": executable file not found in $PATH:
    unknown}.
    """
    text = _COLOUR.sub("", output.decode(errors="replace"))
    text = _LEVEL.sub("", text.replace("\r\n", "\n")).strip()
    message = _runc_message(text.encode())
    if message.startswith("OCI runtime exec failed: "):
        return message
    return f"OCI runtime exec failed: {message or 'exec failed'}: unknown"


class _ExecProtocol(ProcessProtocol):
    """
    C{runc exec} in the foreground. Its output is held until runc has
    written the process's pid file: what comes before that is runc's own
    complaint when the process cannot be started, which the client reads
    as dockerd's error, with exit code 126, rather than as the process's
    output with runc's 255.
    """

    def __init__(self, on_output: OutputCallback | None, pid_file: Path) -> None:
        self.on_output = on_output
        self.pid_file = pid_file
        self.exited: Deferred[int] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self.held: list[tuple[int, bytes]] | None = []
        self.failure: str | None = None

    def stream(self, childFD: int) -> int:
        """The output stream (1 stdout, 2 stderr) of a child descriptor."""
        return childFD

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD not in (1, 2):
            return
        stream = self.stream(childFD)
        if self.held is not None and not self.pid_file.exists():
            self.held.append((stream, data))
            return
        self.release()
        if self.on_output is not None:
            self.on_output(stream, data)

    def release(self) -> None:
        """The process runs: what was held is its output."""
        held, self.held = self.held, None
        if self.on_output is not None:
            for stream, data in held or []:
                self.on_output(stream, data)

    def processEnded(self, reason: Failure) -> None:
        code = 0
        if isinstance(reason.value, net_error.ProcessTerminated):
            value: Any = reason.value
            code = (
                value.exitCode
                if value.exitCode is not None
                else 128 + (value.signal or 0)
            )
        if self.held is not None and not self.pid_file.exists():
            # runc ended without starting the process.
            said = b"".join(data for _, data in self.held)
            self.held = None
            self.failure = exec_failure(said)
            code = EXEC_START_FAILED
            if self.on_output is not None:
                self.on_output(1, self.failure.encode() + b"\r\n")
        self.release()
        if not self.closed.called:
            self.closed.callback(None)
        self.exited.callback(code)


@define
class _Unstoppable:
    """
    A client's connection as the producer of a process's stdin: paused and
    resumed by the pipe's writer, never stopped by it (the connection ends
    on its own terms, not when the process closes its stdin); when the pipe
    goes, the client is read on.
    """

    producer: PushProducer

    def pauseProducing(self) -> None:
        self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        self.producer.resumeProducing()

    def stopProducing(self) -> None:
        # The process closed its stdin: what the client sends from now on
        # is dropped, but the client must be read on, or its going away
        # (or its end of input) would go unnoticed.
        self.producer.resumeProducing()


@define
class _Exec:
    """
    An L{ExecProcess} run by C{runc exec} with pipes.

    Flow control is Twisted's: the client's connection is the producer of
    runc's stdin pipe (paused while more than the pipe writer's buffer
    waits), and pausing the output stops reading runc's stdout and stderr.
    """

    protocol: _ExecProtocol
    transport: Any
    pid: int
    exited: Deferred[int]
    closed: Deferred[None]
    _stdin_producer: _Unstoppable | None = None
    _output_paused: bool = False

    def write_stdin(self, data: bytes) -> None:
        with contextlib.suppress(KeyError, OSError):
            self.transport.writeToChild(0, data)

    def set_stdin_producer(self, producer: PushProducer) -> None:
        self._unregister_stdin_producer()
        self._stdin_producer = _Unstoppable(producer)
        with contextlib.suppress(KeyError, OSError, RuntimeError):
            self.transport.registerProducer(self._stdin_producer, True)

    def _unregister_stdin_producer(self) -> None:
        if self._stdin_producer is not None:
            self._stdin_producer = None
            with contextlib.suppress(KeyError, OSError, RuntimeError):
                self.transport.unregisterProducer()

    def close_stdin(self) -> None:
        # A pipe writer does not close while a paused producer is
        # registered: the end of input would never come.
        self._unregister_stdin_producer()
        with contextlib.suppress(KeyError, OSError):
            self.transport.closeChildFD(0)

    def resize(self, height: int, width: int) -> None:
        pass

    def pause_output(self) -> None:
        self._output_paused = True
        self.transport.pauseProducing()

    def resume_output(self) -> None:
        if self._output_paused:
            self._output_paused = False
            self.transport.resumeProducing()

    def detach(self) -> None:
        self.protocol.on_output = None
        # Nobody reads on: the process must not wait on a full pipe.
        self._unregister_stdin_producer()
        self.resume_output()


class _TtyExecProtocol(_ExecProtocol):
    """C{runc exec -t} on our pty: what it prints is the exec's output."""

    def stream(self, childFD: int) -> int:  # noqa: ARG002
        """A terminal has one stream."""
        return 1


@define
class _TtyExec(_Exec):
    """An L{ExecProcess} with a TTY: runc on a pty whose master we hold."""

    def write_stdin(self, data: bytes) -> None:
        with contextlib.suppress(OSError, AttributeError):
            self.transport.write(data)

    def close_stdin(self) -> None:
        # A terminal has no end of input but the EOF character.
        self.write_stdin(b"\x04")

    def resize(self, height: int, width: int) -> None:
        fd = getattr(self.transport, "fd", -1)
        if fd is None or fd < 0:
            return
        with contextlib.suppress(OSError):
            fcntl.ioctl(
                fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0)
            )


class RuncRuntime:
    """
    Containers run by C{runc} under C{conmon}.

    @param exec_root: Where the runtime keeps its state (tmpfs in a real
        daemon: a reboot forgets containers' processes anyway).
    @param reactor: Spawns the processes and runs the timers.
    @param threadpool: Unused for now: nothing here blocks for long.
    """

    def __init__(
        self,
        exec_root: Path,
        reactor: Any,
        runtime_binary: str = "runc",
        conmon_binary: str = "conmon",
        threadpool: ThreadPool | None = None,
    ) -> None:
        self._root = Path(exec_root)
        self._reactor = reactor
        self._runc = shutil.which(runtime_binary) or runtime_binary
        self._conmon = shutil.which(conmon_binary) or conmon_binary
        self._threadpool = threadpool
        self._runc_root = self._root / "runc"
        self._exits = self._root / "exits"
        self._sockets = self._root / "s"
        self._monitors = self._root / "c"
        # Exit files are seen through inotify when the reactor can watch a
        # descriptor; polling stays as the fallback (and as a safety net).
        self._exit_waiters: dict[str, list[Callable[[], None]]] = {}
        self._inotify: Any = None
        self._inotify_tried = False
        for path in (self._runc_root, self._exits, self._sockets, self._monitors):
            path.mkdir(parents=True, exist_ok=True)
        self._gated_run = self._root / "gated-run.sh"
        self._gated_run.write_text(GATED_RUN)

    # --- plumbing ---

    def _run(self, *args: str) -> Deferred[tuple[int, bytes, bytes]]:
        protocol = _Collect()
        argv = [self._runc, f"--root={self._runc_root}", *args]
        self._reactor.spawnProcess(
            protocol,
            argv[0],
            argv,
            env=dict(os.environ),
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        return protocol.done

    async def _runc_ok(self, *args: str, missing_ok: bool = False) -> bytes:
        code, out, err = await self._run(*args)
        if code != 0:
            message = _runc_message(err)
            if missing_ok and "does not exist" in message:
                return b""
            raise SystemError_(message or f"runc {args[0]} failed with status {code}")
        return out

    def _short(self, container_id: str) -> str:
        return container_id[:12]

    def _bundle(self, container_id: str) -> Path:
        return self._sockets / self._short(container_id)

    # --- the Runtime ---

    def create(
        self,
        container_id: str,
        bundle_dir: str,
        *,
        log_path: str,
        tty: bool,
        open_stdin: bool,
        leave_stdin_open: bool = False,
    ) -> Deferred[RuntimeState]:
        """
        Start conmon, which runs C{runc create}; fires with the pid.

        @param leave_stdin_open: Keep the container's stdin open when an
            attached client goes (a TTY, or C{-i} without C{StdinOnce}), so
            that the next C{docker attach} can type into it.
        """
        try:
            created = self._monitor(
                container_id,
                bundle_dir,
                log_path=log_path,
                tty=tty,
                open_stdin=open_stdin,
                leave_stdin_open=leave_stdin_open,
                gate=None,
            )
        except SystemError_ as e:
            return fail(e)
        return created.addCallback(lambda pid: RuntimeState("created", pid))

    def run(
        self,
        container_id: str,
        bundle_dir: str,
        *,
        log_path: str,
        tty: bool,
        open_stdin: bool,
        leave_stdin_open: bool = False,
        before_start: "Callable[[], Deferred[None]] | None" = None,
    ) -> Deferred[RuntimeState]:
        """
        Create and start the container in one runtime process; fires with
        the pid once it runs.

        conmon runs L{GATED_RUN} as its runtime, which waits at a gate (a
        pipe it inherits) before it runs C{runc run --detach}.
        Once conmon's attach socket is up, C{before_start} connects the
        clients that attached before the start (C{docker run} attaches
        first), then the gate opens: they see the container's first byte.
        If C{before_start} fails, the gate closes unopened and the
        container never runs.

        Not for a TTY: conmon's terminal mode could reap a process that
        exits at once before it knows its pid, and never report the exit.
        Use L{create} and L{start} there.
        """
        if tty:
            msg = "a container with a TTY is created, then started"
            raise ValueError(msg)

        async def run() -> RuntimeState:
            # The gate: conmon's runtime inherits the read end and waits for
            # a line; closing the write end without one cancels the start.
            gate_read, gate_write = os.pipe2(os.O_CLOEXEC)
            # conmon makes its control fifo after its attach socket listens.
            ready = Path(bundle_dir) / "ctl"
            ready.unlink(missing_ok=True)
            try:
                try:
                    created = self._monitor(
                        container_id,
                        bundle_dir,
                        log_path=log_path,
                        tty=False,
                        open_stdin=open_stdin,
                        leave_stdin_open=leave_stdin_open,
                        gate=gate_read,
                    )
                finally:
                    os.close(gate_read)
                if before_start is not None:
                    try:
                        await self._set_up(ready, created)
                        if not created.called:  # else conmon gave up: see below
                            await before_start()
                    except BaseException:
                        # The gated runtime reads end of file and gives up;
                        # so does conmon, whose word on it nobody waits for.
                        os.close(gate_write)
                        gate_write = -1
                        created.addErrback(lambda _: None)
                        raise
                os.write(gate_write, b"start\n")
                pid = await created
            finally:
                if gate_write >= 0:
                    os.close(gate_write)
            return RuntimeState("running", pid)

        return Deferred.fromCoroutine(run())

    def _set_up(self, ready: Path, created: Deferred[int]) -> Deferred[None]:
        """Fires once C{ready} exists, or conmon has given up."""
        done: Deferred[None] = Deferred()
        deadline = self._reactor.seconds() + _SETUP_TIMEOUT

        def check() -> None:
            if ready.exists() or created.called:
                done.callback(None)
            elif self._reactor.seconds() > deadline:
                done.errback(SystemError_("conmon did not set up the container's io"))
            else:
                self._reactor.callLater(_SETUP_POLL, check)

        check()
        return done

    def _monitor(
        self,
        container_id: str,
        bundle_dir: str,
        *,
        log_path: str,
        tty: bool,
        open_stdin: bool,
        leave_stdin_open: bool,
        gate: int | None,
    ) -> Deferred[int]:
        """
        Spawn conmon for C{container_id}: it runs C{runc create}, or with a
        C{gate} (the read end of the start gate), L{GATED_RUN}. Fires with
        the pid conmon reports.

        @raise SystemError_: conmon could not be run.
        """
        monitor = self._monitors / container_id
        monitor.mkdir(parents=True, exist_ok=True)
        (self._exits / container_id).unlink(missing_ok=True)
        (monitor / "oom").unlink(missing_ok=True)
        link = self._sockets / self._short(container_id)
        if link.is_symlink():
            link.unlink()
        # The attach socket is <bundle>/attach; a socket's path must fit in
        # 108 bytes, so it is reached through this short link.
        link.symlink_to(bundle_dir)
        env = dict(os.environ)
        env["_OCI_SYNCPIPE"] = str(SYNC_FD)
        sync_read, sync_write = os.pipe2(os.O_CLOEXEC)
        child_fds: dict[int, str | int] = {
            0: "w",
            1: "r",
            2: "r",
            SYNC_FD: sync_write,
            KEEPER_FD: sync_read,
        }
        if gate is None:
            runtime = [self._runc]
        else:
            runtime = ["/bin/sh", "--runtime-arg", str(self._gated_run)]
            env["DOCKSERVE_RUNTIME"] = self._runc
            child_fds[GATE_FD] = gate
        argv = [
            self._conmon,
            "--api-version", "1",
            "-c", container_id,
            "-u", self._short(container_id),
            "-n", container_id,
            "-r", *runtime,
            "-b", bundle_dir,
            "-p", str(monitor / "pid"),
            "--conmon-pidfile", str(monitor / "conmon.pid"),
            "--exit-dir", str(self._exits),
            "--persist-dir", str(monitor),
            "-l", f"k8s-file:{log_path}",
            "--log-level", "error",
            "--full-attach",
            "--runtime-arg", f"--root={self._runc_root}",
        ]  # fmt: skip
        if tty:
            argv.append("-t")
        if open_stdin:
            argv.append("-i")
            if leave_stdin_open:
                argv.append("--leave-stdin-open")
        protocol = _Conmon()
        # conmon's working directory is the bundle (it drops an "oom" file
        # there); env -C sets it, so the reactor can posix_spawn instead of
        # forking the whole daemon (2 to 4 ms on every start).
        argv = [_ENV, "-C", bundle_dir, *argv]
        try:
            self._reactor.spawnProcess(
                protocol,
                argv[0],
                argv,
                env=env,
                childFDs=child_fds,
            )
        except OSError as e:
            os.close(sync_read)
            raise SystemError_(f"cannot run conmon: {e}") from None
        finally:
            os.close(sync_write)
        self._reactor.addReader(_SyncReader(self._reactor, sync_read, protocol))
        return protocol.created

    def update(self, container_id: str, resources: dict[str, Any]) -> Deferred[None]:
        """C{runc update --resources}: new limits for a running container."""
        return Deferred.fromCoroutine(self._update(container_id, resources))

    async def _update(self, container_id: str, resources: dict[str, Any]) -> None:
        monitor = self._monitors / container_id
        monitor.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="update-", suffix=".json", dir=monitor)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(resources, f)
            await self._runc_ok("update", "--resources", name, container_id)
        finally:
            Path(name).unlink(missing_ok=True)  # noqa: ASYNC240 (a small file)

    def start(self, container_id: str) -> Deferred[None]:
        """C{runc start}."""
        return Deferred.fromCoroutine(self._start(container_id))

    async def _start(self, container_id: str) -> None:
        await self._runc_ok("start", container_id)

    def kill(self, container_id: str, signal: int) -> Deferred[None]:
        """C{runc kill}; a container already gone is not an error."""

        async def kill() -> None:
            code, _, err = await self._run("kill", container_id, str(signal))
            if code != 0:
                message = _runc_message(err)
                if "not running" in message or "does not exist" in message:
                    return
                raise SystemError_(message)

        return Deferred.fromCoroutine(kill())

    def pause(self, container_id: str) -> Deferred[None]:
        """C{runc pause}."""
        return Deferred.fromCoroutine(self._simple("pause", container_id))

    def resume(self, container_id: str) -> Deferred[None]:
        """C{runc resume}."""
        return Deferred.fromCoroutine(self._simple("resume", container_id))

    async def _simple(self, command: str, container_id: str) -> None:
        await self._runc_ok(command, container_id)

    def delete(self, container_id: str, *, force: bool = False) -> Deferred[None]:
        """
        C{runc delete} and the monitor's files, its exit file too (the
        caller has recorded the exit by now); unknown is fine.
        """

        async def delete() -> None:
            args = (
                ["delete", "--force", container_id]
                if force
                else ["delete", container_id]
            )
            await self._runc_ok(*args, missing_ok=True)
            link = self._sockets / self._short(container_id)
            if link.is_symlink():
                link.unlink()
            (self._exits / container_id).unlink(missing_ok=True)
            shutil.rmtree(self._monitors / container_id, ignore_errors=True)

        return Deferred.fromCoroutine(delete())

    def state(self, container_id: str) -> Deferred[RuntimeState]:
        """C{runc state}."""

        async def state() -> RuntimeState:
            code, out, err = await self._run("state", container_id)
            if code != 0:
                message = _runc_message(err)
                if "does not exist" in message:
                    return RuntimeState(None, 0)
                raise SystemError_(message)
            data = json.loads(out)
            return RuntimeState(
                str(data.get("status")),
                int(data.get("pid") or 0),
                str(data.get("created") or ""),
            )

        return Deferred.fromCoroutine(state())

    def exit_status(self, container_id: str) -> ExitStatus | None:
        """The code in conmon's exit file, its mtime as the time of death."""
        path = self._exits / container_id
        try:
            text = path.read_text().strip()
            finished = path.stat().st_mtime_ns
        except OSError:
            return None
        if not text:
            return None
        try:
            code = int(text)
        except ValueError:
            return None
        oom = (self._monitors / container_id / "oom").exists()
        return ExitStatus(code=code, finished_at=finished, oom_killed=oom)

    def wait_exit(self, container_id: str) -> Deferred[ExitStatus]:
        """
        Fires with the status once conmon's exit file appears: at once
        through inotify on the exits directory, else by polling.

        conmon itself is watched too (a pidfd on the pid in its pid file):
        a conmon that ends, or is not there, without writing the exit file
        never will, so the container is stopped and its exit reported with
        C{monitor_lost} (L{_stop_unmonitored}) rather than waited for in
        vain, which would hang every stop, kill, wait and rm of it.
        """
        done: Deferred[ExitStatus] = Deferred()
        interval = _POLL if self._watch_exits() is None else _SAFETY_POLL
        timer: list[Any] = []
        monitor: list[_ProcessWatch] = []
        began = self._reactor.seconds()

        def forget() -> None:
            if timer and timer[0].active():
                timer[0].cancel()
            waiting = self._exit_waiters.get(container_id, [])
            if check in waiting:
                waiting.remove(check)
            if not waiting:
                self._exit_waiters.pop(container_id, None)
            for watch in monitor:
                watch.close()

        def check() -> None:
            if done.called:
                return
            status = self.exit_status(container_id)
            if status is not None:
                forget()
                done.callback(status)
                return
            if not monitor:
                pid = self._monitor_pid(container_id)
                if pid is not None:
                    monitor.append(_ProcessWatch(self._reactor, pid, check))
            if (monitor and monitor[0].ended) or (
                not monitor and self._reactor.seconds() - began >= _MONITOR_GRACE
            ):
                forget()
                stopping = Deferred.fromCoroutine(self._stop_unmonitored(container_id))
                stopping.chainDeferred(done)
                return
            waiting = self._exit_waiters.setdefault(container_id, [])
            if check not in waiting:
                waiting.append(check)
            if not timer or not timer[0].active():
                timer[:] = [self._reactor.callLater(interval, check)]

        check()
        return done

    def _monitor_pid(self, container_id: str) -> int | None:
        """
        The pid of the conmon that monitors C{container_id}, if it lives:
        the pid in its pid file, checked to be a process whose command
        line names the container (a pid can be reused).
        """
        try:
            text = (self._monitors / container_id / "conmon.pid").read_text()
            pid = int(text.strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if container_id.encode() in cmdline.split(b"\0") else None

    async def _stop_unmonitored(self, container_id: str) -> ExitStatus:
        """
        Stop a container whose conmon is gone, and say how it ended.

        Without its monitor nobody holds its stdio (its output has nowhere
        to go), records its log or its exit code; dockerd, whose shim is
        the same kind of parent, stops such a task on restore. So the
        container is killed (thawed first if it was paused) and waited for
        through C{runc state}; the exit is 137, or 255 when it had already
        ended on its own with nobody to see the code.
        """
        _log.warn(
            "container {id}: its monitor (conmon) is gone; stopping the container",
            id=container_id,
        )
        state = await self.state(container_id)
        alive = {"created", "running", "paused"}
        killed = state.status in alive
        if killed:
            with contextlib.suppress(SystemError_):
                await self.kill(container_id, 9)
            if state.status == "paused":
                with contextlib.suppress(SystemError_):
                    await self.resume(container_id)
            deadline = self._reactor.seconds() + _UNMONITORED_STOP_TIMEOUT
            while (await self.state(container_id)).status in alive:
                if self._reactor.seconds() > deadline:
                    _log.error("container {id} did not die of SIGKILL", id=container_id)
                    break
                await deferLater(self._reactor, _POLL, lambda: None)
        status = self.exit_status(container_id)
        if status is not None:
            return status
        return ExitStatus(
            code=137 if killed else 255,
            finished_at=int(self._reactor.seconds() * 1e9),
            monitor_lost=True,
        )

    def _watch_exits(self) -> Any:
        """The inotify watch on the exits directory, or C{None} if none."""
        if not self._inotify_tried:
            self._inotify_tried = True
            try:
                from twisted.internet import inotify  # noqa: PLC0415
                from twisted.python.filepath import FilePath  # noqa: PLC0415

                notifier = inotify.INotify(self._reactor)  # type: ignore[no-untyped-call]
                notifier.startReading()  # type: ignore[no-untyped-call]
                notifier.watch(  # type: ignore[no-untyped-call]
                    FilePath(str(self._exits)),
                    mask=inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO,
                    callbacks=[self._exit_written],
                )
            except Exception:
                _log.info("No inotify for exit files: polling them instead")
            else:
                self._inotify = notifier
        return self._inotify

    def close(self) -> None:
        """Stop watching the exits directory (containers keep running)."""
        if self._inotify is not None:
            self._inotify.loseConnection()
            self._inotify = None
        self._inotify_tried = False

    def _exit_written(self, _watch: object, path: Any, _mask: int) -> None:
        name = path.basename()  # bytes: Twisted's inotify reports raw names
        if isinstance(name, bytes):
            name = name.decode("utf-8", "surrogateescape")
        for check in list(self._exit_waiters.get(name, [])):
            check()

    def attach(self, container_id: str, on_output: OutputCallback) -> Deferred[Stdio]:
        """Connect to conmon's attach socket."""
        try:
            stdio = AttachSocket.connect(
                self._reactor, self._bundle(container_id), on_output
            )
        except OSError as e:
            return fail(SystemError_(f"cannot attach to container {container_id}: {e}"))
        return succeed(stdio)

    def exec(
        self,
        container_id: str,
        process: dict[str, Any],
        *,
        on_output: OutputCallback | None,
        stdin: bool = False,
    ) -> Deferred[ExecProcess]:
        """C{runc exec --process} with pipes, or on a pty for a TTY."""
        return Deferred.fromCoroutine(
            self._exec(container_id, process, on_output, stdin)
        )

    async def _exec(
        self,
        container_id: str,
        process: dict[str, Any],
        on_output: OutputCallback | None,
        stdin: bool,
    ) -> ExecProcess:
        monitor = self._monitors / container_id
        monitor.mkdir(parents=True, exist_ok=True)
        process = dict(process)
        if process.get("terminal") and on_output is not None:
            return await self._tty_exec(container_id, process, on_output, monitor)
        process["terminal"] = False
        fd, name = tempfile.mkstemp(prefix="exec-", suffix=".json", dir=monitor)
        with os.fdopen(fd, "w") as f:
            json.dump(process, f)
        pid_file = name[:-5] + ".pid"
        argv = [
            self._runc, f"--root={self._runc_root}", "exec",
            "--process", name, "--pid-file", pid_file,
        ]  # fmt: skip
        # Not -d, even for a detached exec: runc stays the process's parent
        # and exits with its status, which exec inspect then reports.
        argv.append(container_id)
        protocol = _ExecProtocol(on_output, Path(pid_file))
        transport = self._reactor.spawnProcess(
            protocol,
            argv[0],
            argv,
            env=dict(os.environ),
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        exited: Deferred[int] = Deferred()
        if on_output is None or not stdin:
            # Without -i the process reads end of file at once, as under
            # dockerd (docker exec c cat ends).
            with contextlib.suppress(KeyError, OSError):
                transport.closeChildFD(0)
        if on_output is None:
            pid = await self._await_pid(pid_file, protocol.exited)
            if pid:
                # It runs: nothing later is taken for a failure to start
                # (the pid file goes with the container's directory).
                protocol.release()
            elif protocol.failure is not None:
                await protocol.exited
                for path in (name, pid_file):
                    Path(path).unlink(missing_ok=True)  # noqa: ASYNC240 (tiny files)
                raise SystemError_(protocol.failure)
        else:
            # Answer at once: the client's stdin may already be flowing,
            # and bytes sent before the process is known would be lost.
            pid = 0
        running = _Exec(protocol, transport, pid, exited, protocol.closed)

        def ended(code: int) -> int:
            for path in (name, pid_file):
                Path(path).unlink(missing_ok=True)
            exited.callback(code)
            return code

        protocol.exited.addCallback(ended)
        if on_output is not None:
            learn = Deferred.fromCoroutine(self._await_pid(pid_file, protocol.exited))
            learn.addCallback(self._learned, running, protocol)
        return running

    def _learned(self, pid: int, running: "_Exec", protocol: _ExecProtocol) -> None:
        """The pid file is there: the process runs, its output flows."""
        if pid:
            running.pid = pid
            protocol.release()

    async def _tty_exec(
        self,
        container_id: str,
        process: dict[str, Any],
        on_output: OutputCallback,
        monitor: Path,
    ) -> ExecProcess:
        """
        C{runc exec} with a TTY, not detached, on a pty of its own.

        runc relays between the container's console and its own terminal
        (the pty we give it) and exits with the process's status, so
        C{docker exec -it} reports the real exit code; resizing our pty
        reaches runc as SIGWINCH, which it passes on to the container's
        console.  (With C{--console-socket} runc must detach, and the
        process is then nobody's child: its exit code is lost.)
        """
        fd, name = tempfile.mkstemp(prefix="exec-", suffix=".json", dir=monitor)
        with os.fdopen(fd, "w") as f:
            json.dump(process, f)
        pid_file = name[:-5] + ".pid"
        argv = [
            self._runc, f"--root={self._runc_root}", "exec",
            "--process", name, "--pid-file", pid_file, container_id,
        ]  # fmt: skip
        protocol = _TtyExecProtocol(on_output, Path(pid_file))
        # runc's terminal is raw from the start: the container's console
        # already turns \n into \r\n, and bytes typed before runc sets it
        # raw must not be echoed or edited by a second line discipline.
        master, slave = os.openpty()
        tty.setraw(slave)
        # Twisted closes both ends if the fork fails, and the slave after it.
        transport = self._reactor.spawnProcess(
            protocol,
            argv[0],
            argv,
            env=dict(os.environ),
            usePTY=(master, slave, os.ttyname(slave)),
        )
        size = process.get("consoleSize") or {}
        running = _TtyExec(protocol, transport, 0, protocol.exited, protocol.closed)
        if size.get("height") and size.get("width"):
            running.resize(int(size["height"]), int(size["width"]))

        def ended(code: int) -> int:
            for path in (name, pid_file):
                Path(path).unlink(missing_ok=True)
            return code

        protocol.exited.addCallback(ended)
        learn = Deferred.fromCoroutine(self._await_pid(pid_file, protocol.exited))
        learn.addCallback(self._learned, running, protocol)
        return running

    async def _await_pid(self, pid_file: str, ended: Deferred[int]) -> int:
        waited = 0.0
        while waited < 10:
            try:
                text = Path(pid_file).read_text().strip()  # noqa: ASYNC240 (a tiny pid file)
            except OSError:
                text = ""
            if text:
                return int(text)
            if ended.called:
                return 0
            pause: Deferred[None] = Deferred()
            self._reactor.callLater(0.005, pause.callback, None)
            await pause
            waited += 0.005
        return 0

    def stats(self, container_id: str) -> dict[str, Any]:
        """The container's cgroup v1 counters."""
        return cgroups.stats(f"dockserve/{container_id}")

    def known(self) -> list[str]:
        """Containers in runc's root or with a monitor directory."""
        names: set[str] = set()
        for path in (self._runc_root, self._monitors):
            with contextlib.suppress(OSError):
                names.update(p.name for p in path.iterdir() if p.is_dir())
        return sorted(names)
