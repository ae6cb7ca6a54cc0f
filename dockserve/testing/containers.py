# -*- test-case-name: tests.daemon.containers.test_service -*-
"""
Fakes for testing containers without runc: an image source, a bundle
maker, a small scripted runtime, and L{make_service} that puts them
together into a real L{ContainerService} on a clock.

The runtime here is small and scripted (a test says when a container's
process writes, reads or exits), and keeps the runtime contract
(C{tests.daemon.runtime_contract}) that C{RuncRuntime} keeps too: the
same tests run against both, so what a unit test sees of it is what the
service would see of runc and conmon.
"""

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from dockserve.daemon.containers.record import ContainerRecord
from dockserve.daemon.containers.service import ContainerService
from dockserve.daemon.contracts import (
    ExecProcess,
    ExitStatus,
    ImageSource,
    OutputCallback,
    PushProducer,
    ResolvedImage,
    Runtime,
    RuntimeState,
    Stdio,
)
from dockserve.errors import NotFound, SystemError_

if TYPE_CHECKING:
    from dockserve.api.containers import ContainerBackend

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: What runc says of an exec whose executable is not there, as dockerd
#: words it.
EXEC_NOT_FOUND = (
    "OCI runtime exec failed: exec failed: unable to start container process: "
    'exec: "nosuch": executable file not found in $PATH: unknown'
)

#: The image every fake source knows.
BUSYBOX = ResolvedImage(
    id="sha256:" + "b" * 64,
    config={
        "config": {
            "Cmd": ["sh"],
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            ],
        }
    },
    layer_dirs=(),
    repo_tags=("busybox:latest",),
)


class FakeImages:
    """An L{ImageSource} with a fixed set of images."""

    def __init__(self, *images: ResolvedImage) -> None:
        self.images = list(images) or [BUSYBOX]

    def resolve(self, name: str) -> ResolvedImage:
        """By tag (C{busybox} means C{busybox:latest}), ID or ID prefix."""
        wanted = name if ":" in name and not name.startswith("sha256:") else None
        for image in self.images:
            tags = set(image.repo_tags)
            if name in tags or wanted in tags or f"{name}:latest" in tags:
                return image
            bare = image.id.removeprefix("sha256:")
            if name == image.id or (len(name) >= 4 and bare.startswith(name)):
                return image
        raise NotFound(f"No such image: {name}")


class FakeBundles:
    """
    A L{Bundles} that mounts nothing: it writes a C{config.json} with a
    C{process} built from the record, and counts what is mounted.
    """

    def __init__(self) -> None:
        self.mounted: set[str] = set()
        #: The network plan each container's last bundle was made with.
        self.networks: dict[str, Any] = {}

    def prepare(
        self,
        directory: Path,
        record: ContainerRecord,
        image: ResolvedImage,
        network: Any = None,
    ) -> Deferred[str]:
        """Write a minimal OCI config."""
        del image
        self.networks[record.id] = network
        self.rootfs(directory).mkdir(parents=True, exist_ok=True)
        process = {
            "args": [record.path, *record.args],
            "env": record.config.get("Env") or [],
            "cwd": record.config.get("WorkingDir") or "/",
            "terminal": bool(record.config.get("Tty")),
            "user": {"uid": 0, "gid": 0},
        }
        (directory / "config.json").write_text(json.dumps({"process": process}))
        self.mounted.add(record.id)
        return succeed(str(directory))

    def release(self, directory: Path, container_id: str) -> Deferred[None]:
        """Forget the pretend mount."""
        del directory
        self.mounted.discard(container_id)
        return succeed(None)

    def rootfs(self, directory: Path) -> Path:
        """C{<dir>/rootfs}."""
        return directory / "rootfs"

    def upper(self, directory: Path) -> Path:
        """C{<dir>/upper}."""
        return directory / "upper"


class FakeStdio:
    """One attach or exec connection of the L{ScriptedRuntime}."""

    def __init__(self, on_output: OutputCallback | None) -> None:
        self.on_output = on_output
        self.closed: Deferred[None] = Deferred()
        self.stdin = b""
        self.stdin_closed = False
        self.size: tuple[int, int] | None = None
        self.detached = False
        self.stdin_producer: PushProducer | None = None
        self.output_paused = False
        #: The process reads what the client sends (C{None}: its end of
        #: input); a test's script.
        self.on_stdin: Callable[[bytes | None], None] = lambda _: None

    def write_stdin(self, data: bytes) -> None:
        """See L{dockserve.daemon.contracts}: C{write_stdin}."""
        if self.stdin_closed:
            return
        self.stdin += data
        self.on_stdin(data)

    def set_stdin_producer(self, producer: PushProducer) -> None:
        """See L{dockserve.daemon.contracts}: C{set_stdin_producer}."""
        self.stdin_producer = producer

    def pause_output(self) -> None:
        """See L{dockserve.daemon.contracts}: C{pause_output}."""
        self.output_paused = True

    def resume_output(self) -> None:
        """See L{dockserve.daemon.contracts}: C{resume_output}."""
        self.output_paused = False

    def close_stdin(self) -> None:
        """See L{dockserve.daemon.contracts}: C{close_stdin}."""
        if not self.stdin_closed:
            self.stdin_closed = True
            self.on_stdin(None)

    def resize(self, height: int, width: int) -> None:
        """See L{dockserve.daemon.contracts}: C{resize}."""
        self.size = (height, width)

    def detach(self) -> None:
        """See L{dockserve.daemon.contracts}: C{detach}."""
        self.detached = True

    def emit(self, stream: int, data: bytes) -> None:
        """The process writes C{data} to C{stream} (the script)."""
        if self.on_output is not None and not self.detached:
            self.on_output(stream, data)

    def end(self) -> None:
        """The process's output ends (the script)."""
        if not self.closed.called:
            self.closed.callback(None)


class FakeExec(FakeStdio):
    """An exec'd process of the L{ScriptedRuntime}."""

    def __init__(
        self, on_output: OutputCallback | None, process: dict[str, Any]
    ) -> None:
        super().__init__(on_output)
        self.process = process
        self.pid = 4242
        self.exited: Deferred[int] = Deferred()

    def exit(self, code: int) -> None:
        """The exec'd process ends with C{code} (the script)."""
        self.end()
        if not self.exited.called:
            self.exited.callback(code)


class _Fake:
    def __init__(self, tty: bool) -> None:
        self.status = "created"
        self.pid = 1000
        self.tty = tty
        self.exit: ExitStatus | None = None
        self.waiters: list[Deferred[ExitStatus]] = []
        self.stdios: list[FakeStdio] = []
        self.signals: list[int] = []
        #: Deadly signals sent while paused: they act at the thaw.
        self.held: list[int] = []


def _answers(method: Callable[_P, Deferred[_T]]) -> Callable[_P, Deferred[_T]]:
    """
    A runtime method that answers every failure through its L{Deferred},
    as the real one does: the service chains callbacks on what it gets.
    """

    @functools.wraps(method)
    def answer(*args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]:
        try:
            return method(*args, **kwargs)
        except Exception as e:
            return fail(e)

    return answer


class ScriptedRuntime:
    """
    A L{dockserve.daemon.contracts.Runtime} whose processes do what the
    test says: L{output} writes, L{exit} ends; a signal in C{deadly}
    ends the process with 128+N at once (SIGKILL a paused one too, as runc
    does; another signal at its thaw).

    @ivar fail_create: A message that the next create fails with.
    @ivar execs: Every exec started, in order.
    @ivar runs: How many starts went through L{run} (create and start in one).
    @ivar on_start: Called with the container's ID as its process starts
        (a test makes it write its first bytes at once).
    @ivar hold: While set, L{run} waits for it to fire after C{before_start}
        (the runtime is still starting the process).
    @ivar on_stdin: Called with the container's ID and what a client sends
        its process (C{None}: its end of input).
    @ivar on_exec: Called with the container's ID and each exec'd process
        as it starts (a test makes it write or exit).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.containers: dict[str, _Fake] = {}
        self.deadly = {9, 15}
        self.fail_create: str | None = None
        self.execs: list[FakeExec] = []
        self._next_pid = 1000
        self.runs = 0
        self.on_start: Callable[[str], None] = lambda _: None
        self.hold: Deferred[None] | None = None
        #: Every C{update} asked for: C{(container ID, resources)}.
        self.updates: list[tuple[str, dict[str, Any]]] = []
        self.on_stdin: Callable[[str, bytes | None], None] = lambda *_: None
        self.on_exec: Callable[[str, FakeExec], None] = lambda *_: None

    @_answers
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
        """See L{dockserve.daemon.contracts}: C{create}."""
        del bundle_dir, log_path, open_stdin, leave_stdin_open
        if self.fail_create is not None:
            message, self.fail_create = self.fail_create, None
            raise SystemError_(message)
        fake = _Fake(tty)
        self._next_pid += 1
        fake.pid = self._next_pid
        self.containers[container_id] = fake
        return succeed(RuntimeState("created", fake.pid))

    def _fake(self, container_id: str) -> _Fake:
        fake = self.containers.get(container_id)
        if fake is None:
            raise SystemError_(f"container {container_id} does not exist")
        return fake

    def run(
        self,
        container_id: str,
        bundle_dir: str,
        *,
        log_path: str,
        tty: bool,
        open_stdin: bool,
        leave_stdin_open: bool = False,
        before_start: Callable[[], Deferred[None]] | None = None,
    ) -> Deferred[RuntimeState]:
        """See L{dockserve.daemon.contracts}: C{run}."""
        self.runs += 1
        created = self.create(
            container_id,
            bundle_dir,
            log_path=log_path,
            tty=tty,
            open_stdin=open_stdin,
            leave_stdin_open=leave_stdin_open,
        )

        async def run() -> RuntimeState:
            state = await created
            if before_start is not None:
                try:
                    await before_start()
                except BaseException:
                    self.containers.pop(container_id, None)
                    raise
            if self.hold is not None:
                await self.hold
            self._fake(container_id).status = "running"
            self.on_start(container_id)
            return RuntimeState("running", state.pid)

        return Deferred.fromCoroutine(run())

    @_answers
    def start(self, container_id: str) -> Deferred[None]:
        """See L{dockserve.daemon.contracts}: C{start}."""
        self._fake(container_id).status = "running"
        self.on_start(container_id)
        return succeed(None)

    @_answers
    def update(self, container_id: str, resources: dict[str, Any]) -> Deferred[None]:
        """See L{dockserve.daemon.contracts}: C{update}."""
        self._fake(container_id)
        self.updates.append((container_id, resources))
        return succeed(None)

    @_answers
    def kill(self, container_id: str, signal: int) -> Deferred[None]:
        """See L{dockserve.daemon.contracts}: C{kill}."""
        fake = self.containers.get(container_id)
        if fake is None or fake.status == "stopped":
            # As runc kill: a container already gone is not an error.
            return succeed(None)
        if fake.status not in {"running", "paused"}:
            raise SystemError_("container not running")
        fake.signals.append(signal)
        if signal in self.deadly:
            if fake.status == "running" or signal == 9:
                # runc thaws a paused container to deliver SIGKILL.
                self.exit(container_id, 128 + signal)
            else:
                fake.held.append(signal)
        return succeed(None)

    @_answers
    def pause(self, container_id: str) -> Deferred[None]:
        """See L{dockserve.daemon.contracts}: C{pause}."""
        fake = self._fake(container_id)
        if fake.status != "running":
            raise SystemError_("container not running")
        fake.status = "paused"
        return succeed(None)

    @_answers
    def resume(self, container_id: str) -> Deferred[None]:
        """See L{dockserve.daemon.contracts}: C{resume}."""
        fake = self._fake(container_id)
        if fake.status != "paused":
            raise SystemError_("container not paused")
        fake.status = "running"
        held, fake.held = fake.held, []
        if held:
            self.exit(container_id, 128 + held[0])
        return succeed(None)

    @_answers
    def delete(self, container_id: str, *, force: bool = False) -> Deferred[None]:
        """See L{dockserve.daemon.contracts}: C{delete}."""
        fake = self.containers.get(container_id)
        if fake is not None and fake.status in {"running", "paused"}:
            if not force:
                raise SystemError_("cannot delete a running container")
            self.exit(container_id, 137)
        self.containers.pop(container_id, None)
        return succeed(None)

    def state(self, container_id: str) -> Deferred[RuntimeState]:
        """See L{dockserve.daemon.contracts}: C{state}."""
        fake = self.containers.get(container_id)
        if fake is None:
            return succeed(RuntimeState(None, 0))
        pid = fake.pid if fake.status in {"running", "paused", "created"} else 0
        return succeed(RuntimeState(fake.status, pid))

    def exit_status(self, container_id: str) -> ExitStatus | None:
        """See L{dockserve.daemon.contracts}: C{exit_status}."""
        fake = self.containers.get(container_id)
        return None if fake is None else fake.exit

    @_answers
    def wait_exit(self, container_id: str) -> Deferred[ExitStatus]:
        """See L{dockserve.daemon.contracts}: C{wait_exit}."""
        fake = self._fake(container_id)
        if fake.exit is not None:
            return succeed(fake.exit)
        waiter: Deferred[ExitStatus] = Deferred()
        fake.waiters.append(waiter)
        return waiter

    @_answers
    def attach(self, container_id: str, on_output: OutputCallback) -> Deferred[Stdio]:
        """See L{dockserve.daemon.contracts}: C{attach}."""
        fake = self._fake(container_id)
        stdio = FakeStdio(on_output)
        stdio.on_stdin = lambda data: self.on_stdin(container_id, data)
        fake.stdios.append(stdio)
        return succeed(stdio)

    @_answers
    def exec(
        self,
        container_id: str,
        process: dict[str, Any],
        *,
        on_output: OutputCallback | None,
        stdin: bool = False,
    ) -> Deferred[ExecProcess]:
        """
        See L{dockserve.daemon.contracts}: C{exec}. C{nosuch} is not there:
        detached, the exec fails with runc's words; attached, the client
        reads them and the exec ends with 126.
        """
        del stdin
        fake = self._fake(container_id)
        if fake.status != "running":
            raise SystemError_("cannot exec in a stopped container")
        proc = FakeExec(on_output, process)
        if process["args"][0] == "nosuch":
            if on_output is None:
                raise SystemError_(EXEC_NOT_FOUND)
            proc.pid = 0
            proc.emit(1, EXEC_NOT_FOUND.encode() + b"\r\n")
            proc.exit(126)
            return succeed(proc)
        self.execs.append(proc)
        self.on_exec(container_id, proc)
        return succeed(proc)

    def stats(self, container_id: str) -> dict[str, Any]:
        """See L{dockserve.daemon.contracts}: C{stats}."""
        self._fake(container_id)
        return {
            "cpu_stats": {"cpu_usage": {"total_usage": 1000}, "online_cpus": 1},
            "memory_stats": {"usage": 1 << 20, "limit": 1 << 30},
            "pids_stats": {"current": 1},
            "blkio_stats": {},
        }

    def known(self) -> list[str]:
        """See L{dockserve.daemon.contracts}: C{known}."""
        return list(self.containers)

    # --- the script --------------------------------------------------------

    def output(self, container_id: str, stream: int, data: bytes) -> None:
        """The container's process writes C{data}."""
        for stdio in self._fake(container_id).stdios:
            stdio.emit(stream, data)

    def exit(
        self,
        container_id: str,
        code: int,
        *,
        oom: bool = False,
        monitor_lost: bool = False,
    ) -> None:
        """
        The container's process ends with C{code}; with C{monitor_lost},
        as the real runtime reports a container it stopped because its
        conmon was gone.
        """
        fake = self._fake(container_id)
        if fake.exit is not None and fake.status == "stopped":
            return
        fake.status = "stopped"
        fake.exit = ExitStatus(
            code=code,
            finished_at=int(self.clock.seconds() * 1e9),
            oom_killed=oom,
            monitor_lost=monitor_lost,
        )
        for stdio in fake.stdios:
            stdio.end()
        waiters, fake.waiters = fake.waiters, []
        for waiter in waiters:
            waiter.callback(fake.exit)


def make_service(
    root: Path,
    *,
    clock: Clock | None = None,
    runtime: Runtime | None = None,
    images: ImageSource | None = None,
) -> tuple[ContainerService, Any, Clock]:
    """
    A L{ContainerService} on fakes: C{(service, runtime, clock)}. mypy
    checks here that the fakes satisfy the Protocols the real parts do
    (L{ScriptedRuntime} and L{dockserve.daemon.runtime.RuncRuntime} the same
    L{Runtime}).

    @param root: An empty directory for the records.
    """
    clock = clock or Clock()
    fake: Runtime = runtime if runtime is not None else ScriptedRuntime(clock)
    service = ContainerService(
        root=root / "containers",
        exec_root=root / "exec",
        images=images if images is not None else FakeImages(),
        runtime=fake,
        bundles=FakeBundles(),
        reactor=clock,
    )
    return service, fake, clock


def as_backend(service: ContainerService) -> "ContainerBackend":
    """
    C{service} as the API's L{ContainerBackend}: mypy checks here that the
    real service satisfies the Protocol the handlers use.
    """
    return service
