# -*- test-case-name: tests.daemon.containers.test_service -*-
"""
L{ContainerService}: the life of every container, from create to remove.

It keeps the records (L{dockserve.daemon.containers.record}), decides what
runs and when (start, stop, kill, restart policies, AutoRemove), and asks
the L{Runtime} (runc under conmon) to do it. It knows no HTTP: the API
layer calls it through L{dockserve.api.containers.ContainerBackend}.

Every change of state is on disk before the caller is answered; a
container's process is watched through the runtime's exit files, so one
that exits while the daemon is down shows its true exit code at the next
start (L{ContainerService.restore}).
"""

import contextlib
import importlib
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from attrs import evolve

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    DeferredLock,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from dockserve.daemon import network, store
from dockserve.daemon.containers import (
    configs,
    fileview,
    mounts,
    names,
    record,
    restart,
)
from dockserve.daemon.containers.attachment import Attachment
from dockserve.daemon.containers.bundles import Bundles
from dockserve.daemon.containers.execs import ExecInstance, build_process
from dockserve.daemon.containers.logstream import LogReader
from dockserve.daemon.containers.record import ContainerRecord, rfc3339
from dockserve.daemon.containers.signals import parse_signal
from dockserve.daemon.containers.transitions import Transitions
from dockserve.daemon.contracts import (
    ExitStatus,
    ImageSource,
    OutputCallback,
    ResolvedImage,
    Runtime,
    RuntimeState,
)
from dockserve.errors import (
    Conflict,
    DockerError,
    InvalidParameter,
    NotFound,
    NotImplementedByDaemon,
    NotModified,
    SystemError_,
    Unavailable,
)

#: The seconds C{docker stop} waits before SIGKILL when nothing says otherwise.
DEFAULT_STOP_TIMEOUT = 10

#: The log driver a container has unless it names another; see create().
LOG_DRIVER = "json-file"

#: The log file of a container, in its directory (conmon's k8s-file format).
LOG_FILE = "container.log"

_log = Logger()

_T = TypeVar("_T")


class _Container:
    """
    A container's record and the live things that go with it.

    @ivar record: The last saved record.
    @ivar directory: C{<root>/<id>}.
    @ivar pending: Attachments waiting for the next start.
    @ivar exit_waiters: Fired with the exit code at the next exit.
    @ivar removal_waiters: Fired when the container is removed.
    @ivar generation: Counts starts, so a stale exit is ignored.
    @ivar busy: A start, stop or remove in progress.
    @ivar cleanup: Fires when the last run's runtime state and mounts are
        released.
    @ivar released: The last run's runtime state and mounts were released
        without error since its start, so removing needs neither again.
    @ivar draining: Being stopped or killed: attached clients, even those
        that attach now, no longer hold the output back (see
        L{Attachment.drain}); cleared when the run ends.
    """

    def __init__(self, rec: ContainerRecord, directory: Path) -> None:
        self.record = rec
        self.directory = directory
        self.pending: list[Attachment] = []
        self.exit_waiters: list[Deferred[int]] = []
        self.removal_waiters: list[Deferred[int]] = []
        self.generation = 0
        self.busy: Deferred[None] | None = None
        self.cleanup: Deferred[None] = succeed(None)
        self.released = False
        self.root_lock = DeferredLock()
        self.backoff = restart.Backoff()
        self.restart_call: IDelayedCall | None = None
        self.started_at = 0.0
        self.exec_ids: list[str] = []
        self.last_stats: dict[str, Any] = {}
        self.live: list[Attachment] = []
        self.draining = False

    @property
    def id(self) -> str:
        return self.record.id


class _AbsentRuntime:
    """A runtime for a build without one: every operation says so."""

    def __getattr__(self, name: str) -> Any:
        def unavailable(*_: object, **__: object) -> Any:
            if name == "exit_status":
                return None
            if name == "known":
                return []
            raise Unavailable("no container runtime is available in this build")

        return unavailable


def _human_duration(seconds: float) -> str:
    """Docker's C{units.HumanDuration}, for C{Up 3 seconds}."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = whole // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def _accepts(function: Callable[..., Any], keyword: str) -> bool:
    """Whether C{function} takes the keyword argument C{keyword}."""
    import inspect  # noqa: PLC0415

    try:
        return keyword in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _start_error(message: str) -> tuple[int, DockerError]:
    """
    The exit code and error dockerd gives when the runtime cannot start
    the process (moby's C{translateContainerdStartErr}).
    """
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return 127, InvalidParameter(message)
    if "permission denied" in lowered:
        return 126, InvalidParameter(message)
    return 128, SystemError_(message)


class ContainerService:
    """
    Containers, their exec instances and their networks, as the API sees
    them.
    """

    def __init__(
        self,
        *,
        root: Path,
        exec_root: Path,
        images: ImageSource,
        runtime: Runtime,
        bundles: Bundles,
        reactor: IReactorTime,
        threadpool: ThreadPool | None = None,
        threadpool_reactor: Any = None,
    ) -> None:
        """
        @param root: Where container directories live (records, logs,
            upper directories): C{<data-root>/containers}.
        @param exec_root: Where what need not survive a reboot lives.
        @param threadpool: For removing container directories off the
            reactor thread; C{None} removes them inline (tests).
        """
        self._root = root
        self._exec_root = exec_root
        self._images = images
        self._runtime = runtime
        self._bundles = bundles
        self._reactor = reactor
        self._threadpool = threadpool
        self._threadpool_reactor = threadpool_reactor
        self._containers: dict[str, _Container] = {}
        self._names: dict[str, str] = {}
        self._execs: dict[str, ExecInstance] = {}
        self._reaping: dict[str, Deferred[None]] = {}
        self._image_sizes: dict[str, int] = {}
        self._volumes: Any = None
        #: Where every state change is saved and published (set_events).
        self.transitions = Transitions()

    def set_events(self, publish: Any) -> None:
        """Send container events to C{publish} (the daemon's event bus)."""
        self.transitions.set_publish(publish)

    def set_volumes(self, volumes: Any) -> None:
        """
        The volume service (L{dockserve.daemon.volumes.service}): volumes a
        container names are made at its create, and asked who uses them.
        """
        self._volumes = volumes

    @classmethod
    def for_config(cls, config: Any, images: Any, reactor: Any) -> "ContainerService":
        """
        The service for a daemon's L{dockserve.daemon.config.DaemonConfig}:
        runc (or C{--runtime}) under conmon, overlayfs bundles, the
        reactor's thread pool for blocking work; and C{images} learns from
        it which images are in use.
        """
        from dockserve.daemon.containers.oci import OverlayBundles  # noqa: PLC0415

        data_root = Path(config.data_root)
        exec_root = Path(config.exec_root)
        pool = reactor.getThreadPool()
        runtime: Any
        try:
            module: Any = importlib.import_module("dockserve.daemon.runtime")
        except ImportError:
            _log.error("no container runtime: dockserve.daemon.runtime is missing")
            runtime = _AbsentRuntime()
        else:
            runtime = module.RuncRuntime(
                exec_root / "runtime",
                reactor,
                runtime_binary=config.runtime,
                threadpool=pool,
            )
        service = cls(
            root=data_root / "containers",
            exec_root=exec_root,
            images=images,
            runtime=runtime,
            bundles=OverlayBundles(
                volumes_root=data_root / "volumes", reactor=reactor, threadpool=pool
            ),
            reactor=reactor,
            threadpool=pool,
            threadpool_reactor=reactor,
        )
        if images is not None and hasattr(images, "set_users"):
            images.set_users(service)
        return service

    # --- helpers -----------------------------------------------------------

    def _now(self) -> str:
        return rfc3339(int(self._reactor.seconds() * 1_000_000_000))

    def _get(self, reference: str) -> _Container:
        found = names.lookup(reference, self._containers, self._names)
        return self._containers[found]

    def _save(
        self,
        c: _Container,
        rec: ContainerRecord,
        action: str | None = None,
        **extra: str,
    ) -> None:
        """The one transition point: the record on disk, then its event."""
        self.transitions.record(c, rec, action, **extra)

    def _announce(self, c: _Container, action: str, **extra: str) -> None:
        """An event of the container that changes nothing on disk."""
        self.transitions.announce(c, action, **extra)

    def _in_thread(self, work: Callable[[], None]) -> Deferred[None]:
        if self._threadpool is None:
            work()
            return succeed(None)
        return deferToThreadPool(self._threadpool_reactor, self._threadpool, work)

    def log_path(self, reference: str) -> Path:
        """The conmon log file of a container."""
        return self._get(reference).directory / LOG_FILE

    def directory(self, reference: str) -> Path:
        """A container's own directory."""
        return self._get(reference).directory

    def rootfs(self, reference: str) -> Path:
        """Where a container's root filesystem is mounted while it runs."""
        c = self._get(reference)
        return self._bundles.rootfs(c.directory)

    def upper(self, reference: str) -> Path:
        """A container's own changes (the overlayfs upper directory)."""
        c = self._get(reference)
        return self._bundles.upper(c.directory)

    def resolve(self, reference: str) -> ContainerRecord:
        """The record of the container a user means by C{reference}."""
        return self._get(reference).record

    # --- create ------------------------------------------------------------

    def create(self, name: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """
        C{POST /containers/create}: make the record, on disk before return.

        @raise InvalidParameter: Bad name or settings.
        @raise Conflict: The name is taken.
        @raise NotFound: C{No such image: ...}.
        """
        config, host_config, networking = configs.check(body)
        if name:
            full_name = names.validate(name)
            owner = self._names.get(full_name)
            if owner is not None:
                raise names.name_conflict(full_name, owner)
        image_name = config.get("Image") or ""
        if not image_name:
            raise InvalidParameter(
                "config cannot be empty in order to create a container"
            )
        image = self._images.resolve(image_name)
        merged = configs.merge(config, image.config)
        command = (merged.get("Entrypoint") or []) + (merged.get("Cmd") or [])
        if not command:
            raise InvalidParameter("no command specified")
        container_id = names.new_id(lambda i: i in self._containers)
        if not name:
            full_name = names.random_name(lambda n: n in self._names)
        if not merged.get("Hostname"):
            # On the host's network a container has the host's name, as with
            # dockerd; otherwise its short ID.
            merged["Hostname"] = (
                socket.gethostname()
                if host_config.get("NetworkMode") == "host"
                else container_id[:12]
            )
        host_config = dict(host_config)
        host_config["NetworkMode"] = host_config.get("NetworkMode") or "bridge"
        if host_config["NetworkMode"] == "default":
            host_config["NetworkMode"] = "bridge"
        host_config.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        log_config = dict(host_config.get("LogConfig") or {})
        # conmon writes a k8s-file log, but it is read through the API just
        # as dockerd's default driver is, so it is named json-file: the
        # Docker SDK's containers.run() returns output only for that name.
        log_config["Type"] = log_config.get("Type") or LOG_DRIVER
        log_config["Config"] = log_config.get("Config") or {}
        host_config["LogConfig"] = log_config
        anonymous = {
            target: mounts.new_volume_name()
            for target in mounts.anonymous_targets(merged, host_config)
        }
        rec = ContainerRecord(
            id=container_id,
            name=full_name,
            created=self._now(),
            image=image_name,
            image_id=image.id,
            config=merged,
            host_config=host_config,
            networking_config=networking,
            path=command[0],
            args=tuple(command[1:]),
            anonymous_volumes=anonymous,
        )
        if self._volumes is not None:
            # dockerd makes the volumes a container names at its create:
            # docker volume ls shows them from then on.
            for point in self._mount_points(rec):
                if point.type == "volume" and point.name:
                    self._volumes.ensure(point.name, anonymous=point.anonymous)
        directory = self._root / container_id
        directory.mkdir(parents=True, exist_ok=False)
        c = _Container(rec, directory)
        self._save(c, rec, "create")
        self._containers[container_id] = c
        self._names[full_name] = container_id
        warnings: list[str] = []
        return {"Id": container_id, "Warnings": warnings}

    # --- start -------------------------------------------------------------

    def start(self, reference: str) -> Deferred[None]:
        """
        C{POST /containers/{id}/start}.

        @raise NotModified: Already running.
        @raise Conflict: Paused or being removed.
        """
        c = self._get(reference)
        status = c.record.state.status
        if status == "paused":
            raise Conflict("cannot start a paused container, try unpause instead")
        if status == "running" or c.busy is not None:
            raise NotModified("container already started")
        if status in {"removing", "dead"}:
            raise Conflict("container is marked for removal and cannot be started")
        if c.restart_call is not None and c.restart_call.active():
            c.restart_call.cancel()
            c.restart_call = None
        configs.check_network(c.record.host_config)
        c.backoff.reset()
        fresh = evolve(c.record, manually_stopped=False, restart_count=0)
        if fresh != c.record:
            self._save(c, fresh)
        return self._guarded(c, self._start(c))

    def _guarded(self, c: _Container, work: Deferred[None]) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        c.busy = done

        def release(result: object) -> object:
            c.busy = None
            done.callback(None)
            return result

        work.addBoth(release)
        return work

    def _start(self, c: _Container) -> Deferred[None]:
        return Deferred.fromCoroutine(self._start_async(c))

    async def _start_async(self, c: _Container) -> None:
        await c.cleanup
        image = self._images.resolve(c.record.image_id)
        tty = bool(c.record.config.get("Tty"))
        options: dict[str, Any] = {}
        if _accepts(self._runtime.create, "leave_stdin_open"):
            # Without StdinOnce, or with a TTY, a client's going away leaves
            # the container's stdin open for the next one, as dockerd does
            # (conmon's --leave-stdin-open): docker run -it, ctrl-p ctrl-q.
            options["leave_stdin_open"] = tty or not c.record.config.get("StdinOnce")
        try:
            # Inside the try: a bundle that cannot be made (no such user in
            # the image's /etc/passwd, a bad mount) fails the start as a
            # runtime error does, so waiters hear of it and AutoRemove holds
            # (docker run --rm waits for the removal).
            c.released = False
            await self._acquire_volumes(c)
            monitor: dict[str, Any] = {
                "log_path": str(c.directory / LOG_FILE),
                "tty": tty,
                "open_stdin": bool(c.record.config.get("OpenStdin")),
                **options,
            }
            if tty:
                bundle = await self._bundles.prepare(c.directory, c.record, image)
                state = await self._runtime.create(c.id, bundle, **monitor)
                await self._attach_pending(c)
                # The time the process is let go: one that exits at once
                # must not look as if it finished before it started.
                started_at = self._now()
                await self._runtime.start(c.id)
            else:
                started_at = self._now()
                state = await self._run(c, image, monitor)
        except Exception as failed:
            # Anything that fails a start (a runtime's error, or a bug here)
            # must reach the waiters: docker run --rm waits for the removal.
            if isinstance(failed, DockerError):
                e = failed
            else:
                _log.failure("starting container {id}", id=c.id)
                e = SystemError_(
                    f"cannot start container {c.id}: {self._describe(failed)}"
                )
            await self._abandon_start(c, e.message)
            code, error = _start_error(e.message)
            self._save(
                c,
                c.record.with_state(
                    status="exited" if c.record.has_been_started else "created",
                    exit_code=code,
                    error=e.message,
                    pid=0,
                ),
            )
            exits, c.exit_waiters = c.exit_waiters, []
            for waiter in exits:
                waiter.callback(code)
            if c.record.host_config.get("AutoRemove"):
                self._remove(c, volumes=True)
            raise error from None
        c.generation += 1
        c.started_at = self._reactor.seconds()
        pid = state.pid
        if not pid:
            # conmon reports the pid when the container is created; ask
            # runc (one more process on the start's path) only without it.
            with contextlib.suppress(DockerError):
                pid = (await self._runtime.state(c.id)).pid
        self._save(
            c,
            evolve(
                c.record.with_state(
                    status="running",
                    pid=pid,
                    exit_code=0,
                    error="",
                    oom_killed=False,
                    started_at=started_at,
                ),
                has_been_started=True,
            ),
            "start",
        )
        self._watch(c)
        # Clients that attached while it was starting join the running
        # process now.
        late, c.pending = c.pending, []
        for attachment in late:
            self._connect(c, attachment)

    def _describe(self, failed: Exception) -> str:
        """
        What went wrong, for a client: an OSError's text and the file it
        names when that is the user's own (a bind source), never one of the
        daemon's (they say nothing to a client and show its layout).
        """
        if not isinstance(failed, OSError):
            return "internal error (the daemon's log has the details)"
        text = failed.strerror or type(failed).__name__
        name = str(failed.filename or "")
        own = (str(self._root.parent), str(self._exec_root))
        if name and not name.startswith(own):
            text = f"{text}: {name}"
        return text

    def _connect(self, c: _Container, attachment: Attachment) -> None:
        """Connect a client to a running container's stdio."""
        connecting = self._runtime.attach(c.id, attachment.output)
        connecting.addCallbacks(attachment.connect, lambda _: attachment.finish())

    async def _run(
        self, c: _Container, image: ResolvedImage, monitor: dict[str, Any]
    ) -> RuntimeState:
        """
        Create and start C{c} in one runtime process (L{Runtime.run}). The
        monitor starts while the bundle is being made (conmon needs no
        config.json until its runtime runs), and the clients that attached
        first are connected before the process runs.
        """
        outcome: list[object] = []
        # Fires (with None) once the bundle is made or has failed; the
        # failure itself is kept in outcome for before_start to raise.
        made = self._bundles.prepare(c.directory, c.record, image).addBoth(
            outcome.append
        )

        async def before_start() -> None:
            await made
            if isinstance(outcome[0], Failure):
                outcome[0].raiseException()
            await self._attach_pending(c)

        try:
            return await self._runtime.run(
                c.id,
                str(c.directory),
                before_start=lambda: Deferred.fromCoroutine(before_start()),
                **monitor,
            )
        finally:
            # However the start went, the bundle is made (or has failed)
            # before anything releases it.
            await made

    async def _attach_pending(self, c: _Container) -> None:
        """Connect the clients that attached before the start."""
        pending, c.pending = c.pending, []
        for attachment in pending:
            stdio = await self._runtime.attach(c.id, attachment.output)
            attachment.connect(stdio)

    async def _abandon_start(self, c: _Container, message: str) -> None:
        for attachment in c.pending:
            attachment.finish()
        c.pending = []
        try:
            await self._runtime.delete(c.id, force=True)
        except DockerError:
            _log.warn("runtime delete after failed start: {message}", message=message)
        await self._bundles.release(c.directory, c.id)
        await self._release_volumes(c)

    def _volume_points(self, c: _Container) -> list[mounts.MountPoint]:
        return [
            p
            for p in self._mount_points(c.record)
            if p.type == "volume" and p.name and self._volumes is not None
        ]

    async def _acquire_volumes(self, c: _Container) -> None:
        """A start takes its volumes: made if missing, devices mounted."""
        for point in self._volume_points(c):
            await self._volumes.acquire(
                point.name, c.id, point.destination, rw=point.rw
            )

    async def _release_volumes(self, c: _Container) -> None:
        """The run is over: its volumes are let go (devices unmounted last)."""
        for point in self._volume_points(c):
            try:
                await self._volumes.release(point.name, c.id)
            except DockerError as e:
                _log.warn("release volume {name}: {e}", name=point.name, e=e.message)

    def _watch(self, c: _Container) -> None:
        generation = c.generation
        watching = self._runtime.wait_exit(c.id)
        watching.addCallback(self._exited, c, generation)
        watching.addErrback(
            lambda f: _log.failure("watching container {id}", f, id=c.id)
        )

    def _exited(self, status: ExitStatus, c: _Container, generation: int) -> None:
        if generation != c.generation or self._containers.get(c.id) is not c:
            return
        c.draining = False
        ran_for = self._reactor.seconds() - c.started_at
        rec = c.record.with_state(
            status="exited",
            pid=0,
            exit_code=status.code,
            oom_killed=status.oom_killed,
            finished_at=self._finished_at(c.record, status),
            error=_MONITOR_LOST if status.monitor_lost else "",
        )
        policy = restart.parse(rec.host_config)
        will_restart = policy.should_restart(
            status.code, rec.restart_count, rec.manually_stopped
        )
        if will_restart:
            rec = evolve(
                rec.with_state(status="restarting"),
                restart_count=rec.restart_count + 1,
            )
        auto_remove = not will_restart and bool(rec.host_config.get("AutoRemove"))
        if status.oom_killed:
            self._announce(c, "oom")
        died = {"exitCode": str(status.code), "execDuration": str(int(max(ran_for, 0)))}
        if auto_remove:
            # Removed next: the record goes, so saving the exit first would
            # only cost two fsyncs (a crash before the removal finds the
            # container stopped and removes it then).
            c.record = rec
            self._announce(c, "die", **died)
        else:
            self._save(c, rec, "die", **died)
        c.cleanup = self._release(c)
        waiters, c.exit_waiters = c.exit_waiters, []
        for waiter in waiters:
            waiter.callback(status.code)
        if will_restart:
            delay = c.backoff.next_delay(ran_for)
            c.restart_call = self._reactor.callLater(delay, self._restart_now, c)
        elif auto_remove:
            self._remove(c, volumes=True)

    def _finished_at(self, rec: ContainerRecord, status: ExitStatus) -> str:
        """The exit's time, never before the start's (clocks differ a little)."""
        finished = rfc3339(status.finished_at) if status.finished_at else self._now()
        started = rec.state.started_at
        if record.parse_rfc3339(finished) < record.parse_rfc3339(started):
            return started
        return finished

    def _release(self, c: _Container) -> Deferred[None]:
        async def release() -> None:
            # A failure here must not wedge the container: the next start or
            # remove waits for this, so log it and carry on.
            try:
                await self._runtime.delete(c.id)
            except Exception:
                _log.failure("runtime delete {id}", id=c.id)
                return
            try:
                await self._bundles.release(c.directory, c.id)
            except Exception:
                _log.failure("release bundle {id}", id=c.id)
                return
            await self._release_volumes(c)
            c.released = True

        return Deferred.fromCoroutine(release())

    def _restart_now(self, c: _Container) -> None:
        c.restart_call = None
        if self._containers.get(c.id) is not c or c.record.state.status != "restarting":
            return

        def failed(failure: Any) -> None:
            _log.failure("restarting container {id}", failure, id=c.id)

        self._guarded(c, self._start(c)).addErrback(failed)

    # --- stop, kill, restart ----------------------------------------------

    def _next_exit(self, c: _Container) -> Deferred[int]:
        waiter: Deferred[int] = Deferred()
        c.exit_waiters.append(waiter)
        return waiter

    def stop(
        self, reference: str, signal: str | None = None, timeout: int | None = None
    ) -> Deferred[None]:
        """
        C{POST /containers/{id}/stop}: StopSignal, then SIGKILL after the
        timeout (C{-1}: wait for ever).

        @raise NotModified: Not running.
        """
        c = self._get(reference)
        if c.record.state.status == "restarting":
            self._cancel_restart(c)
            return succeed(None)
        if not c.record.state.running:
            raise NotModified("container already stopped")
        number = parse_signal(signal or c.record.config.get("StopSignal") or "SIGTERM")
        if timeout is None:
            timeout = c.record.config.get("StopTimeout")
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT
        self._save(c, evolve(c.record, manually_stopped=True))
        return Deferred.fromCoroutine(self._stop(c, number, timeout))

    def _cancel_restart(self, c: _Container) -> None:
        if c.restart_call is not None and c.restart_call.active():
            c.restart_call.cancel()
        c.restart_call = None
        self._save(
            c,
            evolve(c.record.with_state(status="exited"), manually_stopped=True),
        )

    def _drain_attachments(self, c: _Container) -> None:
        """
        Before a stop, a SIGKILL or a forced removal: no attached client
        may hold conmon back, nor one that attaches before the exit.
        """
        c.draining = True
        for attachment in c.live:
            attachment.drain()

    async def _stop(self, c: _Container, number: int, grace: int) -> None:
        """StopSignal, SIGKILL after C{grace}: dockerd's kill, kill, die, stop."""
        await self._stop_running(c, number, grace)
        self._announce(c, "stop")

    async def _stop_running(self, c: _Container, number: int, grace: int) -> None:
        self._drain_attachments(c)
        exited = self._next_exit(c)
        paused = c.record.state.status == "paused"
        try:
            self._announce(c, "kill", signal=str(number))
            await self._runtime.kill(c.id, number)
            if paused:
                await self._runtime.resume(c.id)
        except DockerError:
            if not c.record.state.running:
                return
        if grace >= 0:
            timer = self._reactor.callLater(grace, exited.cancel)
            try:
                await exited
            except CancelledError:
                pass
            else:
                return
            finally:
                if timer.active():
                    timer.cancel()
            exited = self._next_exit(c)
            try:
                self._announce(c, "kill", signal="9")
                await self._runtime.kill(c.id, 9)
            except DockerError:
                if not c.record.state.running:
                    return
        await exited

    def kill(self, reference: str, signal: str | None = None) -> Deferred[None]:
        """
        C{POST /containers/{id}/kill}.

        @raise Conflict: Not running.
        @raise InvalidParameter: Unknown signal.
        """
        try:
            c = self._get(reference)
        except DockerError as e:
            # dockerd's router names the kill in the error.
            e.message = f"Cannot kill container: {reference}: {e.message}"
            e.args = (e.message,)
            raise
        number = parse_signal(signal or "SIGKILL")
        if not c.record.state.running:
            raise Conflict(
                f"Cannot kill container: {reference}: Container {c.id} is not running"
            )
        if number == 9:
            self._save(c, evolve(c.record, manually_stopped=True))

        async def kill() -> None:
            if number == 9:
                self._drain_attachments(c)
            exited = self._next_exit(c) if number == 9 else None
            self._announce(c, "kill", signal=str(number))
            await self._runtime.kill(c.id, number)
            if exited is None:
                return
            if c.record.state.status == "paused":
                await self._runtime.resume(c.id)
            # As dockerd's Kill: SIGKILL answers once the container is gone
            # (or after a while, if it somehow is not).
            timer = self._reactor.callLater(DEFAULT_STOP_TIMEOUT, exited.cancel)
            with contextlib.suppress(CancelledError):
                await exited
            if timer.active():
                timer.cancel()

        return Deferred.fromCoroutine(kill())

    def restart(
        self, reference: str, signal: str | None = None, timeout: int | None = None
    ) -> Deferred[None]:
        """C{POST /containers/{id}/restart}: stop if running, then start."""
        c = self._get(reference)

        async def restart_it() -> None:
            if c.record.state.running:
                await self.stop(reference, signal, timeout)
            elif c.record.state.status == "restarting":
                self._cancel_restart(c)
            await c.cleanup
            await self.start(c.id)
            self._announce(c, "restart")

        return Deferred.fromCoroutine(restart_it())

    # --- wait ---------------------------------------------------------------

    def wait(self, reference: str, condition: str | None) -> Deferred[dict[str, Any]]:
        """
        C{POST /containers/{id}/wait}: C{not-running} (default),
        C{next-exit} or C{removed}.

        Raises at once for an unknown container or condition, so the API
        can answer before it starts the response.
        """
        condition = condition or "not-running"
        if condition not in {"not-running", "next-exit", "removed"}:
            raise InvalidParameter(
                f"invalid condition: {condition!r}".replace("'", '"')
            )
        c = self._get(reference)
        waiter: Deferred[int]
        if condition == "removed":
            waiter = Deferred()
            c.removal_waiters.append(waiter)
        elif (
            condition == "not-running"
            and not c.record.state.running
            and (c.record.state.status != "restarting")
        ):
            waiter = succeed(c.record.state.exit_code)
        else:
            waiter = self._next_exit(c)

        def result(code: int) -> dict[str, Any]:
            body: dict[str, Any] = {"StatusCode": code}
            error = c.record.state.error
            if error:
                body["Error"] = {"Message": error}
            return body

        return waiter.addCallback(result)

    # --- remove -----------------------------------------------------------

    def remove(
        self, reference: str, *, force: bool = False, volumes: bool = False
    ) -> Deferred[None]:
        """
        C{DELETE /containers/{id}}.

        @raise Conflict: Running (or paused) without C{force}.
        """
        c = self._get(reference)
        status = c.record.state.status
        if status == "removing":
            raise Conflict(f"removal of container {c.id} is already in progress")
        if c.record.state.running and not force:
            reason = (
                "container is paused and must be unpaused first"
                if status == "paused"
                else "container is running: stop the container before removing "
                "or force remove"
            )
            raise Conflict(f'cannot remove container "{c.record.name}": {reason}')
        if status == "restarting" and not force:
            raise Conflict(
                f'cannot remove container "{c.record.name}": container is restarting: '
                "stop the container before removing or force remove"
            )

        async def remove_it() -> None:
            if c.restart_call is not None and c.restart_call.active():
                c.restart_call.cancel()
            if c.record.state.running:
                self._save(c, evolve(c.record, manually_stopped=True))
                self._drain_attachments(c)
                exited = self._next_exit(c)
                with contextlib.suppress(DockerError):
                    await self._runtime.kill(c.id, 9)
                    if c.record.state.status == "paused":
                        await self._runtime.resume(c.id)
                if c.record.state.running:
                    await exited
            # The runtime's cleanup of the last run (runc delete, unmount)
            # goes on in the reaping, after the answer.
            await self._remove(c, volumes=volumes)

        return Deferred.fromCoroutine(remove_it())

    def _remove(self, c: _Container, *, volumes: bool) -> Deferred[None]:
        """
        Remove C{c}: once its record is durably gone it is removed for
        every client (C{wait?condition=removed} answers, the name is free);
        its runtime state, mounts and directory go after, in L{_reap}. A
        crash before that leaves a directory without a record, which the
        next start reaps (L{_restore}).
        """
        if self._containers.get(c.id) is not c:
            return succeed(None)
        c.record = c.record.with_state(status="removing")

        async def remove_it() -> None:
            for exec_id in c.exec_ids:
                self._execs.pop(exec_id, None)
            for attachment in c.pending:
                attachment.finish()
            c.pending = []
            record_path = c.directory / record.RECORD_FILE
            await self._in_thread(lambda: store.remove_durably(record_path))
            self._containers.pop(c.id, None)
            if self._names.get(c.record.name) == c.id:
                del self._names[c.record.name]
            self._announce(c, "destroy")
            waiters, c.removal_waiters = c.removal_waiters, []
            for waiter in waiters:
                waiter.callback(c.record.state.exit_code)
            exits, c.exit_waiters = c.exit_waiters, []
            for waiter in exits:
                waiter.callback(c.record.state.exit_code)
            anonymous = [
                name for name in c.record.anonymous_volumes.values() if volumes
            ]
            self._reap(
                c.id,
                c.directory,
                after=c.cleanup,
                released=lambda: c.released,
                volumes=anonymous,
            )

        return Deferred.fromCoroutine(remove_it())

    def _reap(
        self,
        container_id: str,
        directory: Path,
        *,
        after: Deferred[None] | None = None,
        released: Callable[[], bool] = lambda: False,
        volumes: list[str] | None = None,
    ) -> Deferred[None]:
        """
        Delete a removed container's runtime state, unmount its root and
        delete its directory, in the background; L{settled} waits for it.

        @param volumes: Its anonymous volumes, removed last (C{docker rm
            -v}, C{--rm}) unless another container names one.
        """

        async def reap() -> None:
            if after is not None:
                await after
            # After an exit already released everything (docker run --rm),
            # a second runc delete would only cost a process.
            if not released():
                try:
                    await self._runtime.delete(container_id, force=True)
                except DockerError as e:
                    _log.warn("runtime delete {id}: {e}", id=container_id, e=e.message)
                try:
                    await self._bundles.release(directory, container_id)
                except DockerError as e:
                    _log.warn("release bundle {id}: {e}", id=container_id, e=e.message)
            await self._in_thread(lambda: _remove_tree(directory))
            for name in volumes or []:
                await self._remove_volume(name)

        reaping = Deferred.fromCoroutine(reap())
        self._reaping[container_id] = reaping

        def done(result: object) -> None:
            self._reaping.pop(container_id, None)
            if isinstance(result, Failure):
                _log.failure("reaping container {id}", result, id=container_id)

        reaping.addBoth(done)
        return reaping

    async def _remove_volume(self, name: str) -> None:
        """An anonymous volume of a removed container goes, unless in use."""
        if self._volumes is None:
            await self._in_thread(partial(_remove_tree, self._volumes_root / name))
            return
        # Another container took it (--volumes-from): then it stays.
        with contextlib.suppress(Conflict):
            await self._volumes.remove(name, force=True)

    def settled(self) -> Deferred[None]:
        """Fires once every removed container's leftovers are gone."""
        pending = list(self._reaping.values())
        if not pending:
            return succeed(None)
        return DeferredList(pending, consumeErrors=True).addCallback(lambda _: None)

    # --- pause, rename, update ---------------------------------------------

    def pause(self, reference: str) -> Deferred[None]:
        """C{POST /containers/{id}/pause} (cgroup freezer)."""
        c = self._get(reference)
        if c.record.state.status == "paused":
            raise Conflict(f"Container {c.id} is already paused")
        if c.record.state.status != "running":
            raise Conflict(f"Container {c.id} is not running")

        async def pause_it() -> None:
            await self._runtime.pause(c.id)
            self._save(c, c.record.with_state(status="paused"), "pause")

        return Deferred.fromCoroutine(pause_it())

    def unpause(self, reference: str) -> Deferred[None]:
        """C{POST /containers/{id}/unpause}."""
        c = self._get(reference)
        if c.record.state.status != "paused":
            raise Conflict(f"Container {c.id} is not paused")

        async def unpause_it() -> None:
            await self._runtime.resume(c.id)
            self._save(c, c.record.with_state(status="running"), "unpause")

        return Deferred.fromCoroutine(unpause_it())

    def rename(self, reference: str, new_name: str | None) -> None:
        """
        C{POST /containers/{id}/rename?name=}.

        @raise InvalidParameter: Missing, invalid or unchanged name.
        @raise Conflict: The name is taken.
        """
        c = self._get(reference)
        if not new_name:
            raise InvalidParameter("Neither old nor new names may be empty")
        full = "/" + new_name.lstrip("/")
        if full == c.record.name:
            raise InvalidParameter(
                "Renaming a container with the same name as its current name"
            )
        # dockerd checks the name as it reserves it, with the slash added.
        allocating = "Error when allocating new name: "
        try:
            names.validate(full)
        except InvalidParameter as e:
            raise InvalidParameter(allocating + e.message) from None
        owner = self._names.get(full)
        if owner is not None:
            conflict = names.name_conflict(full, owner)
            raise Conflict(allocating + conflict.message)
        old = c.record.name
        self._save(c, evolve(c.record, name=full), "rename", oldName=old)
        del self._names[old]
        self._names[full] = c.id

    def update(self, reference: str, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """
        C{POST /containers/{id}/update}: the resources and restart policy,
        kept for the next start and, through the runtime's C{update} (runc
        update), applied to a running container at once.
        """
        c = self._get(reference)
        allowed = {
            "Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares",
            "CpuPeriod", "CpuQuota", "CpusetCpus", "CpusetMems", "PidsLimit",
            "BlkioWeight", "KernelMemory", "RestartPolicy",
        }  # fmt: skip
        configs.check_update(body)
        merged = dict(c.record.host_config)
        merged.update({k: v for k, v in body.items() if k in allowed and v is not None})
        if merged.get("AutoRemove") and restart.parse(merged).name != "no":
            raise InvalidParameter(
                "Restart policy cannot be updated because AutoRemove is enabled "
                "for the container"
            )
        previous = c.record
        self._save(c, evolve(c.record, host_config=merged), "update")
        warnings: list[str] = []
        apply = getattr(self._runtime, "update", None)
        live = c.record.state.running and any(
            k in body for k in allowed - {"RestartPolicy"}
        )
        if not live:
            return succeed({"Warnings": warnings})
        if apply is None:
            warnings.append(
                "the runtime cannot change a running container's resources: "
                "they apply from its next start"
            )
            return succeed({"Warnings": warnings})
        from dockserve.daemon.containers.spec import (  # noqa: PLC0415
            _resources as oci_resources,
        )

        resources = oci_resources(merged)
        resources.pop("devices", None)

        async def update_it() -> dict[str, Any]:
            try:
                await apply(c.id, resources)
            except DockerError as e:
                # As dockerd: the old settings stay, the error is a 500.
                self._save(c, evolve(c.record, host_config=previous.host_config))
                raise SystemError_(
                    f"Cannot update container {c.id}: {e.message}"
                ) from None
            return {"Warnings": warnings}

        return Deferred.fromCoroutine(update_it())

    # --- attach -------------------------------------------------------------

    def attach(
        self,
        reference: str,
        on_output: OutputCallback,
        *,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        stream: bool,
        logs: bool = False,
    ) -> Attachment:
        """
        C{POST /containers/{id}/attach}: connect now if running, at the next
        start otherwise (C{docker run} and C{docker start -a} attach first);
        with C{logs}, what the container wrote so far comes first.
        """
        c = self._get(reference)
        attachment = Attachment(
            on_output,
            tty=bool(c.record.config.get("Tty")),
            stdin=stdin and bool(c.record.config.get("OpenStdin")),
            stdout=stdout,
            stderr=stderr,
            stdin_once=bool(c.record.config.get("StdinOnce")),
        )
        self._announce(c, "attach")
        replay: Deferred[None] = succeed(None)
        if logs:
            reader = LogReader(
                c.directory / LOG_FILE, attachment.output, reactor=self._reactor
            ).start()
            attachment.replaying(reader)
            # Cancelled when the attach ends first: not an error.
            replay = reader.done.addErrback(_unless_cancelled)
        if not stream:
            replay.addBoth(lambda _: attachment.finish())
            return attachment
        c.live.append(attachment)
        attachment.closed.addBoth(lambda _: c.live.remove(attachment))
        if c.draining:
            attachment.drain()
        if c.record.state.running and c.busy is None:
            self._connect(c, attachment)
        else:
            c.pending.append(attachment)
        return attachment

    def resize(self, reference: str, height: int, width: int) -> None:
        """
        C{POST /containers/{id}/resize}: the TTY size of the container.

        @raise Conflict: Not running.
        """
        c = self._get(reference)
        if not c.record.state.running:
            raise Conflict(f"Container {c.id} is not running")
        self._announce(c, "resize", height=str(height), width=str(width))
        if c.live:
            # The attached client's connection carries the resize.
            c.live[0].resize(height, width)
            return

        def resize(stdio: Any) -> None:
            stdio.resize(height, width)
            stdio.detach()

        self._runtime.attach(c.id, lambda _s, _d: None).addCallbacks(
            resize, lambda f: _log.failure("resize {id}", f, id=c.id)
        )

    # --- exec ----------------------------------------------------------------

    def exec_create(self, reference: str, body: dict[str, Any]) -> dict[str, Any]:
        """
        C{POST /containers/{id}/exec}.

        @raise Conflict: Not running, or paused.
        """
        c = self._get(reference)
        self._check_exec_target(c, reference)
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd:
            raise InvalidParameter("No exec command specified")
        instance = ExecInstance.from_request(
            names.new_id(lambda i: i in self._execs), c.id, body, cmd
        )
        self._execs[instance.id] = instance
        c.exec_ids.append(instance.id)
        self._announce(c, f"exec_create: {_exec_command(instance)}", execID=instance.id)
        return {"Id": instance.id}

    def _check_exec_target(self, c: _Container, reference: str | None = None) -> None:
        """As dockerd's C{getActiveContainer}: running, not paused, not restarting."""
        status = c.record.state.status
        if status == "restarting":
            raise Conflict(
                f"Container {c.id} is restarting, wait until the container is running"
            )
        if not c.record.state.running:
            raise Conflict(f"Container {c.id} is not running")
        if status == "paused":
            raise Conflict(
                f"Container {reference or c.id} is paused, unpause the container "
                "before exec"
            )

    def _exec(self, exec_id: str) -> ExecInstance:
        instance = self._execs.get(exec_id)
        if instance is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return instance

    def exec_start(
        self,
        exec_id: str,
        on_output: OutputCallback | None,
    ) -> Deferred[ExecInstance]:
        """
        C{POST /exec/{id}/start}: run the process; C{on_output=None} detaches.
        Fires once the process runs; C{instance.exited} fires at its end.
        """
        instance = self._exec(exec_id)
        if instance.running or instance.started:
            raise Conflict(f"Error: Exec command {exec_id} is already running")
        c = self._containers.get(instance.container_id)
        if c is None:
            raise NotFound(f"No such container: {instance.container_id}")
        self._check_exec_target(c)
        instance.started = True
        process = build_process(
            c.directory / "config.json", self._bundles.rootfs(c.directory), instance
        )

        self._announce(c, f"exec_start: {_exec_command(instance)}", execID=exec_id)

        def died(code: int) -> int:
            if self._containers.get(c.id) is c:
                self._announce(c, "exec_die", execID=exec_id, exitCode=str(code))
            return code

        instance.exited.addCallback(died)

        async def run() -> ExecInstance:
            try:
                proc = await self._runtime.exec(
                    c.id,
                    process,
                    on_output=on_output,
                    stdin=bool(instance.config["AttachStdin"]),
                )
            except DockerError as e:
                code, error = _start_error(e.message)
                instance.finished(code)
                raise error from None
            instance.attach_process(proc)
            return instance

        return Deferred.fromCoroutine(run())

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        """C{GET /exec/{id}/json}."""
        instance = self._exec(exec_id)
        c = self._containers.get(instance.container_id)
        return instance.describe(c.record.state.pid if c else 0)

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        """C{POST /exec/{id}/resize}."""
        instance = self._exec(exec_id)
        if instance.exit_code is not None:
            raise Conflict(f"Exec {exec_id} is not running")
        instance.resize(height, width)

    # --- looking inside -----------------------------------------------------

    def inspect(self, reference: str, *, size: bool = False) -> dict[str, Any]:
        """C{GET /containers/{id}/json}."""
        c = self._get(reference)
        rec = c.record
        state = rec.state
        value: dict[str, Any] = {
            "Id": rec.id,
            "Created": rec.created,
            "Path": rec.path,
            "Args": list(rec.args),
            "State": {
                "Status": state.status,
                "Running": state.running,
                "Paused": state.status == "paused",
                "Restarting": state.status == "restarting",
                "OOMKilled": state.oom_killed,
                "Dead": state.status == "dead",
                "Pid": state.pid,
                "ExitCode": state.exit_code,
                "Error": state.error,
                "StartedAt": state.started_at,
                "FinishedAt": state.finished_at,
            },
            "Image": rec.image_id,
            "ResolvConfPath": str(c.directory / "resolv.conf"),
            "HostnamePath": str(c.directory / "hostname"),
            "HostsPath": str(c.directory / "hosts"),
            "LogPath": str(c.directory / LOG_FILE),
            "Name": rec.name,
            "RestartCount": rec.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": list(c.exec_ids) or None,
            "HostConfig": _host_config_view(rec.host_config),
            "GraphDriver": {
                "Name": "overlay2",
                "Data": {
                    "MergedDir": str(self._bundles.rootfs(c.directory)),
                    "UpperDir": str(self._bundles.upper(c.directory)),
                },
            },
            "Mounts": mounts.view(self._mount_points(rec)),
            "Config": {
                **rec.config,
                "Volumes": rec.config.get("Volumes") or None,
            },
            "NetworkSettings": network.container_settings(
                rec.host_config.get("NetworkMode"), rec.id
            ),
        }
        if size:
            value["SizeRw"], value["SizeRootFs"] = self._sizes(c)
        return value

    def _sizes(self, c: _Container) -> tuple[int, int]:
        """
        C{SizeRw} (the container's own files, without the init layer's)
        and C{SizeRootFs} (those and the image's), as C{ps -s} shows them.
        """
        own, image = _measure(*self._size_plan(c))
        self._image_sizes[c.record.image_id] = image
        return own, own + image

    def _size_plan(self, c: _Container) -> tuple[Path, int | tuple[str, ...]]:
        """
        What measuring C{c} needs, read on the reactor: its upper
        directory, and its image's size if known, else the image's layers.
        """
        image: int | tuple[str, ...] | None = self._image_sizes.get(c.record.image_id)
        if image is None:
            try:
                image = self._images.resolve(c.record.image_id).layer_dirs
            except DockerError:
                image = ()
        return self._bundles.upper(c.directory), image

    def container_usage(self) -> Deferred[list[dict[str, Any]]]:
        """
        C{GET /system/df}'s containers: every one with C{SizeRw} and
        C{SizeRootFs}, measured in the thread pool (a walk of every
        container's files would stall every client on the reactor).
        """
        listed = self.list_containers(all=True)
        plans = [self._size_plan(self._containers[item["Id"]]) for item in listed]

        def fill(sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
            for item, (own, image) in zip(listed, sizes, strict=True):
                self._image_sizes[item["ImageID"]] = image
                item["SizeRw"], item["SizeRootFs"] = own, own + image
            return listed

        measuring = self._blocking(lambda: [_measure(*plan) for plan in plans])
        return measuring.addCallback(fill)

    def _status_text(self, rec: ContainerRecord) -> str:
        state = rec.state
        now = self._reactor.seconds()
        if state.status in {"running", "paused"}:
            since = record.parse_rfc3339(state.started_at)
            text = f"Up {_human_duration(now - since)}"
            return text + " (Paused)" if state.status == "paused" else text
        if state.status == "restarting":
            since = record.parse_rfc3339(state.finished_at)
            return f"Restarting ({state.exit_code}) {_human_duration(now - since)} ago"
        if state.status == "removing":
            return "Removal In Progress"
        if state.status == "dead":
            return "Dead"
        if state.status == "created" or not rec.has_been_started:
            return "Created"
        since = record.parse_rfc3339(state.finished_at)
        return f"Exited ({state.exit_code}) {_human_duration(now - since)} ago"

    def list_containers(
        self,
        *,
        all: bool = False,  # noqa: A002 - the API's own parameter name.
        limit: int | None = None,
        size: bool = False,
        filters: dict[str, list[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """C{GET /containers/json}: newest first, as dockerd lists them."""
        filters = filters or {}
        records = sorted(
            (c.record for c in self._containers.values()),
            key=lambda r: r.created,
            reverse=True,
        )
        records = _filter(
            records,
            filters,
            self._names,
            all_=all or (limit is not None and limit > 0),
            mount_points=self._mount_points,
        )
        if limit is not None and limit > 0:
            records = records[:limit]
        result = []
        for rec in records:
            # As dockerd lists it: an argument with a space in single quotes.
            command = " ".join(
                [rec.path, *(f"'{a}'" if " " in a else a for a in rec.args)]
            )
            item: dict[str, Any] = {
                "Id": rec.id,
                "Names": [rec.name],
                "Image": self._image_shown(rec),
                "ImageID": rec.image_id,
                "Command": command,
                "Created": int(record.parse_rfc3339(rec.created)),
                "Ports": [],
                "Labels": rec.config.get("Labels") or {},
                "State": rec.state.status,
                "Status": self._status_text(rec),
                "HostConfig": {
                    "NetworkMode": rec.host_config.get("NetworkMode", "bridge")
                },
                "NetworkSettings": {
                    "Networks": network.container_settings(
                        rec.host_config.get("NetworkMode"), rec.id
                    )["Networks"]
                },
                "Mounts": mounts.view(self._mount_points(rec)),
            }
            if size:
                sizes = self._sizes(self._containers[rec.id])
                item["SizeRw"], item["SizeRootFs"] = sizes
            result.append(item)
        return result

    def _image_shown(self, rec: ContainerRecord) -> str:
        """
        The image as dockerd lists it: the name it was created from while
        that name still means the same image (not after an rmi -f or a pull
        that moved the tag), else the image's ID.
        """
        try:
            same = self._images.resolve(rec.image).id == rec.image_id
        except DockerError:
            same = False
        return rec.image if same else rec.image_id

    def volume_users(self, name: str) -> list[str]:
        """The IDs of the containers that name volume C{name}, any state."""
        return [
            c.id
            for c in self._containers.values()
            if name in mounts.volume_names(self._mount_points(c.record))
        ]

    def volume_usage(self) -> Deferred[list[dict[str, Any]]]:
        """
        C{GET /system/df}'s volumes: the named volumes under
        C{<data-root>/volumes}, with what each takes on disk (measured in
        the thread pool) and how many containers mount it.
        """
        if self._volumes is not None:
            usage: Deferred[list[dict[str, Any]]] = self._volumes.usage()
            return usage
        users: dict[str, int] = {}
        for c in self._containers.values():
            for name in mounts.volume_names(self._mount_points(c.record)):
                users[name] = users.get(name, 0) + 1
        root = self._volumes_root
        return self._blocking(lambda: _volumes(root, users))

    @property
    def _volumes_root(self) -> Path:
        return self._root.parent / "volumes"

    def _mount_points(self, rec: ContainerRecord) -> list[mounts.MountPoint]:
        """C{rec}'s mounts: its binds, mounts and anonymous volumes."""
        return mounts.points(rec.host_config, rec.anonymous_volumes, self._volumes_root)

    def network_members(self) -> dict[str, dict[str, Any]]:
        """Network name -> C{Containers} map of its running members."""
        members: dict[str, dict[str, Any]] = {}
        for c in self._containers.values():
            if not c.record.state.running:
                continue
            net = network.mode_network(c.record.host_config.get("NetworkMode"))
            members.setdefault(net, {})[c.id] = {
                "Name": c.record.name.lstrip("/"),
                "EndpointID": "",
                "MacAddress": "",
                "IPv4Address": "",
                "IPv6Address": "",
            }
        return members

    def prune(self, filters: dict[str, list[str]]) -> Deferred[dict[str, Any]]:
        """C{POST /containers/prune}: remove every stopped container."""
        for key in filters:
            if key not in {"until", "label", "label!"}:
                raise InvalidParameter(f"invalid filter '{key}'")
        limits = _check_until(filters, self._reactor.seconds())
        victims = [
            c
            for c in list(self._containers.values())
            if c.record.state.status in {"created", "exited", "dead"}
            and _labels_match(c.record, filters)
            and _before_until(c.record, limits)
        ]

        async def prune_them() -> dict[str, Any]:
            deleted = []
            reclaimed = 0
            for c in victims:
                upper = self._bundles.upper(c.directory)
                # What the container wrote (dockerd's SizeRw), measured
                # before the removal lets it go.
                own, _ = await self._blocking(partial(_measure, upper, 0))
                try:
                    await self._remove(c, volumes=False)
                except DockerError:
                    continue
                deleted.append(c.id)
                reclaimed += own
            return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

        return Deferred.fromCoroutine(prune_them())

    # --- logs, top, stats, networks ---------------------------------------------

    def logs(
        self,
        reference: str,
        on_output: OutputCallback,
        *,
        stdout: bool,
        stderr: bool,
        since: float = 0.0,
        until: float = 0.0,
        tail: int | None = None,
        timestamps: bool = False,
        follow: bool = False,
    ) -> tuple[bool, LogReader]:
        """
        C{GET /containers/{id}/logs}: C{(tty, reader)}; the entries go to
        C{on_output} as C{(stream, bytes)} until C{reader.done} fires.
        """
        c = self._get(reference)
        reader = LogReader(
            c.directory / LOG_FILE,
            on_output,
            reactor=self._reactor,
            stdout=stdout,
            stderr=stderr,
            since=since,
            until=until,
            tail=tail,
            timestamps=timestamps,
            follow=follow,
            running=lambda: (
                c.record.state.running or c.record.state.status == "restarting"
            ),
        )
        return bool(c.record.config.get("Tty")), reader.start()

    def top(self, reference: str, ps_args: str | None) -> Deferred[dict[str, Any]]:
        """
        C{GET /containers/{id}/top}: the host's C{ps}, narrowed to the
        container's processes (those in its init's PID namespace), as
        moby's C{ContainerTop} does.

        @raise Conflict: Not running.
        """
        c = self._get(reference)
        if not c.record.state.running:
            raise Conflict(f"Container {c.id} is not running")
        args = (ps_args or "-ef").split()
        init = c.record.state.pid
        self._announce(c, "top")
        from twisted.internet.utils import getProcessOutputAndValue  # noqa: PLC0415

        running: Deferred[tuple[bytes, bytes, int]]
        running = getProcessOutputAndValue(  # type: ignore[no-untyped-call]
            "/usr/bin/ps", args, env={"LC_ALL": "C"}, reactor=self._reactor
        )

        def parse(result: tuple[bytes, bytes, int]) -> dict[str, Any]:
            out, err, code = result
            if code != 0:
                # As dockerd: the first line of ps's complaint, as a 500.
                lines = err.decode(errors="replace").strip().splitlines()
                first = lines[0] if lines else f"exited with {code}"
                raise SystemError_(first if first.startswith("ps:") else f"ps: {first}")
            return _parse_ps(out.decode(errors="replace"), _namespace_pids(init))

        return running.addCallback(parse)

    def stats(self, reference: str) -> Deferred[dict[str, Any]]:
        """One sample of C{GET /containers/{id}/stats}, with the previous one."""
        c = self._get(reference)
        now = self._now()
        sample: dict[str, Any] = {
            "read": now,
            "preread": c.last_stats.get("read", record.ZERO_TIME),
            "id": c.id,
            "name": c.record.name,
            "num_procs": 0,
            "pids_stats": {},
            "blkio_stats": {},
            "cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
            "memory_stats": {},
            "storage_stats": {},
        }
        if c.record.state.running:
            sample.update(self._runtime.stats(c.id))
        cpu = sample.setdefault("cpu_stats", {})
        cpu.setdefault("system_cpu_usage", _system_cpu_ns())
        cpu.setdefault("online_cpus", os.cpu_count() or 1)
        sample["precpu_stats"] = c.last_stats.get(
            "cpu_stats", {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}
        )
        c.last_stats = sample
        return succeed(sample)

    def list_networks(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        """C{GET /networks}."""
        return network.list_networks(filters, self.network_members())

    def inspect_network(self, reference: str) -> dict[str, Any]:
        """C{GET /networks/{id}}."""
        return network.inspect_network(reference, self.network_members())

    # --- files: docker cp, export, changes ---------------------------------------

    def _archive(self) -> Any:
        """The archive module (safe tar in/out of a container's root)."""
        try:
            return importlib.import_module("dockserve.daemon.archive")
        except ImportError:
            raise NotImplementedByDaemon(
                "copying files, export and changes are not available in this build yet"
            ) from None

    def _blocking(self, work: Callable[[], _T]) -> Deferred[_T]:
        if self._threadpool is None:
            try:
                return succeed(work())
            except Exception as e:
                from twisted.internet.defer import fail  # noqa: PLC0415

                return fail(e)
        return deferToThreadPool(self._threadpool_reactor, self._threadpool, work)

    def _with_root(
        self,
        c: _Container,
        work: Callable[[fileview.View], _T],
        *,
        mounts_too: bool = False,
    ) -> Deferred[_T]:
        """
        Run C{work(view)} in a thread with the container's files at hand:
        its root filesystem (mounted for the while if it is not running),
        or with C{mounts_too} its files as it sees them, volumes, binds and
        the C{/etc} files included (L{fileview}), as C{docker cp} does.
        """

        async def run() -> _T:
            # One at a time per container, and after the last run's own
            # release: otherwise that release (or another copy's) could
            # unmount the root under this one ("Could not find the file").
            await c.cleanup
            await c.root_lock.acquire()
            try:
                if mounts_too and c.record.state.running:
                    pid, cid = c.record.state.pid, c.id

                    def in_running() -> _T:
                        with fileview.running(pid, cid) as view:
                            return work(view)

                    try:
                        return await self._blocking(in_running)
                    except fileview.ContainerGone:
                        raise Conflict(f"Container {cid} is not running") from None
                mounted_here = False
                if not c.record.state.running:
                    image = self._images.resolve(c.record.image_id)
                    await self._bundles.prepare(c.directory, c.record, image)
                    mounted_here = True
                root = self._bundles.rootfs(c.directory)
                config = c.directory / "config.json"

                def in_stopped() -> _T:
                    binds = fileview.bundle_binds(config) if mounts_too else []
                    with fileview.stopped(root, binds) as view:
                        return work(view)

                try:
                    return await self._blocking(in_stopped)
                finally:
                    if mounted_here and not c.record.state.running and c.busy is None:
                        await self._bundles.release(c.directory, c.id)
            finally:
                c.root_lock.release()

        return Deferred.fromCoroutine(run())

    def _not_found(self, reference: str, path: str) -> NotFound:
        return NotFound(f"Could not find the file {path} in container {reference}")

    def archive_stat(self, reference: str, path: str) -> Deferred[dict[str, Any]]:
        """The C{X-Docker-Container-Path-Stat} of C{path} in the container."""
        c = self._get(reference)
        archive = self._archive()

        def stat(view: fileview.View) -> dict[str, Any]:
            try:
                return dict(archive.stat_path(view.root, path))
            except FileNotFoundError:
                raise self._not_found(reference, path) from None

        self._announce(c, "archive-path")
        return self._with_root(c, stat, mounts_too=True)

    def archive_get(
        self, reference: str, path: str, out: Any
    ) -> Deferred[dict[str, Any]]:
        """Write the tar of C{path} to C{out} (from a thread)."""
        c = self._get(reference)
        archive = self._archive()

        def tar(view: fileview.View) -> dict[str, Any]:
            try:
                info = dict(archive.stat_path(view.root, path))
                archive.tar_out(view.root, path, out.write, opaque=view.opaque)
            except FileNotFoundError:
                raise self._not_found(reference, path) from None
            return info

        self._announce(c, "archive-path")
        return self._with_root(c, tar, mounts_too=True)

    def archive_put(
        self,
        reference: str,
        path: str,
        source: Any,
        *,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Deferred[None]:
        """
        Extract the tar C{source} into directory C{path} (from a thread),
        through the container's mounts: into a volume of a read-only
        container, never into a read-only volume, as dockerd decides it
        (by the path as written).
        """
        c = self._get(reference)
        mount = mounts.covering(self._mount_points(c.record), path)
        if mount is not None and not mount.rw:
            raise InvalidParameter("mounted volume is marked read-only")
        if mount is None and c.record.host_config.get("ReadonlyRootfs"):
            from dockserve.errors import Forbidden  # noqa: PLC0415

            raise Forbidden("container rootfs is marked read-only")
        archive = self._archive()
        # docker cp -a: the files become the container's user's, as dockerd
        # makes them (root when it names none).
        user = str(c.record.config.get("User") or "0:0")

        def untar(view: fileview.View) -> None:
            try:
                archive.tar_in(
                    view.root,
                    path,
                    source.read,
                    no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
                    copy_uidgid=copy_uid_gid,
                    user=user,
                )
            except FileNotFoundError:
                raise self._not_found(reference, path) from None

        self._announce(c, "extract-to-dir")
        return self._with_root(c, untar, mounts_too=True)

    def export(self, reference: str, out: Any) -> Deferred[None]:
        """C{GET /containers/{id}/export}: the tar of the root filesystem."""
        c = self._get(reference)
        archive = self._archive()
        self._announce(c, "export")
        return self._with_root(c, lambda view: archive.export(view.root, out.write))

    def changes(self, reference: str) -> Deferred[list[dict[str, Any]]]:
        """C{GET /containers/{id}/changes}: from the overlayfs upper directory."""
        c = self._get(reference)
        archive = self._archive()
        image = self._images.resolve(c.record.image_id)
        upper = self._bundles.upper(c.directory)

        def changes() -> list[dict[str, Any]]:
            if not upper.exists():
                return []
            lowers = [Path(d) for d in image.layer_dirs]
            return _without_init_paths(list(archive.changes(upper, lowers)))

        return self._blocking(changes)

    # --- images ---------------------------------------------------------------

    def containers_using(self, image_id: str) -> list[tuple[str, bool]]:
        """L{dockserve.daemon.contracts.ImageUsers}: who uses C{image_id}."""
        return [
            (c.id, c.record.state.running)
            for c in self._containers.values()
            if c.record.image_id == image_id
        ]

    # --- restore -----------------------------------------------------------------

    def restore(self) -> Deferred[None]:
        """
        Load every record and reconcile it with the runtime: running ones
        are watched again, ones that exited meanwhile get their true exit
        code, and restart policies apply as at a daemon start.
        """
        return Deferred.fromCoroutine(self._restore())

    async def _restore(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        for directory in sorted(self._root.iterdir()):
            if not (directory / record.RECORD_FILE).exists():
                if directory.is_dir() and names.is_full_id(directory.name):
                    # Removed, but the daemon stopped before its leftovers
                    # were gone: finish the job.
                    self._reap(directory.name, directory)
                continue
            try:
                rec = record.load(directory)
            except (OSError, ValueError, TypeError) as e:
                _log.error("unreadable container record {dir}: {e}", dir=directory, e=e)
                continue
            c = _Container(rec, directory)
            self._containers[rec.id] = c
            self._names[rec.name] = rec.id
        work = [
            Deferred.fromCoroutine(self._reconcile(c))
            for c in list(self._containers.values())
        ]
        await DeferredList(work, consumeErrors=True)
        if self._volumes is not None:
            # Devices a crash left mounted with no running container on them.
            try:
                await self._volumes.release_unheld()
            except DockerError as e:
                _log.warn("unmounting unused volumes: {e}", e=e.message)

    async def _reconcile(self, c: _Container) -> None:
        rec = c.record
        if rec.state.status == "removing":
            await self._remove(c, volumes=False)
            return
        state = await self._runtime.state(c.id)
        if state.status in {"running", "paused"}:
            started_at = rec.state.started_at
            if not record.parse_rfc3339(started_at):
                # Started, but the daemon died before it could say so: the
                # runtime knows when.
                started_at = state.created or self._now()
            c.started_at = record.parse_rfc3339(started_at) or time.time()
            for point in self._volume_points(c):
                self._volumes.adopt(point.name, c.id)
            self._save(
                c,
                rec.with_state(
                    status=state.status, pid=state.pid, started_at=started_at
                ),
            )
            self._watch(c)
            return
        if rec.state.running or rec.state.status == "restarting":
            status = self._runtime.exit_status(c.id)
            if status is None:
                status = ExitStatus(code=255, finished_at=0)
            c.started_at = self._reactor.seconds()
            self._exited(status, c, c.generation)
            if rec.host_config.get("AutoRemove") or c.restart_call is not None:
                return
        else:
            if state.status is not None:
                await self._runtime.delete(c.id, force=True)
            # A start or a docker cp that the daemon died in the middle of
            # may have left the root mounted.
            try:
                await self._bundles.release(c.directory, c.id)
            except Exception:
                _log.failure("unmounting the root of {id}", id=c.id)
        policy = restart.parse(c.record.host_config)
        if (
            policy.restarts_at_boot(
                c.record.state.exit_code,
                c.record.restart_count,
                c.record.manually_stopped,
            )
            and c.record.state.status == "exited"
            and c.record.has_been_started
        ):
            self._boot_start(c, attempts=30)

    def _boot_start(self, c: _Container, attempts: int) -> None:
        """
        Start a container whose policy restarts it with the daemon; the
        image store restores beside us, so an image not found yet is
        looked for again a little later.
        """
        if self._containers.get(c.id) is not c or c.busy is not None:
            return

        def failed(failure: Any) -> None:
            if failure.check(NotFound) and attempts > 1:
                self._reactor.callLater(1.0, self._boot_start, c, attempts - 1)
                return
            _log.failure("starting container {id} at boot", failure, id=c.id)

        self._guarded(c, self._start(c)).addErrback(failed)


#: C{State.Error} of a container stopped because its conmon was gone.
_MONITOR_LOST = (
    "the container's monitor (conmon) ended unexpectedly; the container was stopped"
)


#: What dockerd keeps in a container's init layer (below its own changes):
#: the mount points of the files it makes, which docker diff never shows.
_INIT_PATHS = frozenset({
    "/.dockerenv", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf",
    "/etc/mtab", "/dev/console", "/dev/pts", "/dev/shm", "/proc", "/sys",
})  # fmt: skip


def _exec_command(instance: ExecInstance) -> str:
    """An exec's command as dockerd's exec events name it (C{true }, with the space)."""
    cmd = [str(a) for a in instance.config["Cmd"]]
    return f"{cmd[0]} {' '.join(cmd[1:])}"


def _unless_cancelled(failure: Failure) -> None:
    """An errback that lets a cancellation go and passes anything else on."""
    if not isinstance(failure.value, CancelledError):
        failure.raiseException()


def _without_init_paths(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    C{docker diff} as dockerd shows it: without the init layer's paths, nor
    a directory that changed only because they were made in it.
    """
    kept = [c for c in found if c["Path"] not in _INIT_PATHS]
    parents = {p.rsplit("/", 1)[0] or "/" for p in _INIT_PATHS}
    made_in = {
        parent
        for parent in parents
        if any(c["Path"].startswith(parent.rstrip("/") + "/") for c in found)
    }

    def only_init(change: dict[str, Any]) -> bool:
        path = change["Path"]
        if change["Kind"] != 0 or path not in made_in:
            return False
        prefix = path.rstrip("/") + "/"
        return not any(c["Path"].startswith(prefix) for c in kept)

    return [c for c in kept if not only_init(c)]


def _measure(upper: Path, image: int | tuple[str, ...]) -> tuple[int, int]:
    """
    Blocking: the size of a container's own files (without the init
    layer's) and of its image (C{image} itself when known, else a walk of
    its layer directories).
    """
    own = sum(
        size for path, size in _file_sizes(upper) if "/" + path not in _INIT_PATHS
    )
    if not isinstance(image, int):
        image = sum(size for layer in image for _, size in _file_sizes(Path(layer)))
    return own, image


def _volumes(root: Path, users: dict[str, int]) -> list[dict[str, Any]]:
    """Blocking: the volumes under C{root} as C{system df} lists them."""
    try:
        entries = sorted(p for p in root.iterdir() if p.is_dir())
    except FileNotFoundError:
        return []
    volumes = []
    for entry in entries:
        data = entry / "_data"
        created = time.gmtime(entry.stat().st_mtime)
        volumes.append(
            {
                "Name": entry.name,
                "Driver": "local",
                "Mountpoint": str(data),
                "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", created),
                "Labels": {},
                "Scope": "local",
                "Options": {},
                "UsageData": {
                    "Size": sum(size for _, size in _file_sizes(data)),
                    "RefCount": users.get(entry.name, 0),
                },
            }
        )
    return volumes


def _file_sizes(top: Path) -> list[tuple[str, int]]:
    """
    C{(relative path, size)} of every file and link under C{top}, each
    inode counted once (moby's C{directory.Size}); nothing if it is absent.
    """
    found: list[tuple[str, int]] = []
    seen: set[tuple[int, int]] = set()
    for base, dirs, files in os.walk(top):
        for name in files + [d for d in dirs if Path(base, d).is_symlink()]:
            path = Path(base, name)
            try:
                info = path.lstat()
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            if info.st_nlink > 1:
                if key in seen:
                    continue
                seen.add(key)
            found.append((str(path.relative_to(top)), info.st_size))
    return found


def _system_cpu_ns() -> int:
    """
    The host's total CPU time in nanoseconds (C{/proc/stat}), which the
    docker CLI divides by to get a container's CPU percentage.
    """
    try:
        with Path("/proc/stat").open() as stat:
            fields = stat.readline().split()[1:8]
    except OSError:
        return 0
    ticks = os.sysconf("SC_CLK_TCK") or 100
    return sum(int(f) for f in fields) * 1_000_000_000 // ticks


def _namespace_pids(init: int) -> set[int]:
    """The host PIDs of the processes in C{init}'s PID namespace."""
    try:
        namespace = Path(f"/proc/{init}/ns/pid").readlink()
    except OSError:
        return set()
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "ns" / "pid").readlink() == namespace:
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def _parse_ps(output: str, pids: set[int]) -> dict[str, Any]:
    """C{ps} output as C{{"Titles": [...], "Processes": [[...]]}}, rows of C{pids}."""
    lines = output.splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    try:
        column = titles.index("PID")
    except ValueError:
        raise InvalidParameter("Couldn't find PID field in ps output") from None
    processes = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) <= column:
            continue
        try:
            pid = int(fields[column])
        except ValueError:
            continue
        if pid in pids:
            processes.append(fields)
    return {"Titles": titles, "Processes": processes}


def _remove_tree(directory: Path) -> None:
    """Remove a container's directory (its record is already gone)."""
    for child in directory.iterdir() if directory.exists() else ():
        # Never delete through a mount that is somehow still there.
        if child.is_dir() and not child.is_symlink() and child.is_mount():
            _log.error("not removing {path}: still mounted", path=child)
            return
    shutil.rmtree(directory, ignore_errors=True)


def _host_config_view(host_config: dict[str, Any]) -> dict[str, Any]:
    """C{HostConfig} as inspect shows it: Docker's defaults filled in."""
    defaults: dict[str, Any] = {
        "Binds": None,
        "ContainerIDFile": "",
        "LogConfig": {"Type": LOG_DRIVER, "Config": {}},
        "NetworkMode": "bridge",
        "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False,
        "VolumeDriver": "",
        "VolumesFrom": None,
        "CapAdd": None,
        "CapDrop": None,
        "Dns": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": None,
        "IpcMode": "private",
        "Privileged": False,
        "PublishAllPorts": False,
        "ReadonlyRootfs": False,
        "SecurityOpt": None,
        "Tmpfs": None,
        "UTSMode": "",
        "ShmSize": 67108864,
        "Runtime": "runc",
        "Memory": 0,
        "MemorySwap": 0,
        "MemoryReservation": 0,
        "NanoCpus": 0,
        "CpuShares": 0,
        "CpuPeriod": 0,
        "CpuQuota": 0,
        "CpusetCpus": "",
        "PidsLimit": None,
        "Ulimits": None,
        "Init": None,
        "Mounts": None,
        "ConsoleSize": [0, 0],
    }
    defaults.update({
        "GroupAdd": None, "Links": None, "DeviceCgroupRules": None,
        "DeviceRequests": None, "KernelMemory": 0, "KernelMemoryTCP": 0,
        "MemorySwappiness": None, "CgroupnsMode": _CGROUPNS_DEFAULT,
    })  # fmt: skip
    if not host_config.get("Privileged"):
        from dockserve.daemon.containers.spec import (  # noqa: PLC0415
            MASKED_PATHS,
            READONLY_PATHS,
        )

        defaults["MaskedPaths"] = list(MASKED_PATHS)
        defaults["ReadonlyPaths"] = list(READONLY_PATHS)
    # What the client left at its zero value shows dockerd's default.
    unset = {"ShmSize": 0, "IpcMode": "", "CgroupnsMode": "", "NetworkMode": ""}
    for key, value in host_config.items():
        if value is None or unset.get(key, object()) == value:
            continue
        if key == "PidsLimit" and isinstance(value, int) and value <= 0:
            continue
        if key == "MemorySwappiness" and value == -1:
            continue
        defaults[key] = value
    return defaults


#: dockerd's default cgroup namespace mode: private on cgroup v2, host on v1.
_CGROUPNS_DEFAULT = (
    "private" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "host"
)


def _labels_match(rec: ContainerRecord, filters: dict[str, list[str]]) -> bool:
    labels = rec.config.get("Labels") or {}

    def has(spec: str) -> bool:
        key, eq, value = spec.partition("=")
        return key in labels and (not eq or labels[key] == value)

    if not all(has(spec) for spec in filters.get("label", [])):
        return False
    return not any(has(spec) for spec in filters.get("label!", []))


_GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def until_seconds(value: str, now: float) -> float:
    """
    An C{until} (or C{since}) filter value as Unix seconds, as moby's
    C{timetypes.GetTimestamp} reads it: a Go duration before C{now}
    (C{90s}, C{1h30m}), a Unix timestamp, or an RFC 3339 time or date.

    @raise InvalidParameter: dockerd's C{failed to parse value as time or
        duration} for anything else.
    """
    if _GO_DURATION.match(value):
        return now - sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(value))
    try:
        return float(value)
    except ValueError:
        pass
    import datetime as dt  # noqa: PLC0415

    text = value.replace("Z", "+00:00")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidParameter(
            f'failed to parse value as time or duration: "{value}"'
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _check_until(filters: dict[str, list[str]], now: float) -> list[float]:
    return [until_seconds(u, now) for u in filters.get("until", [])]


def _before_until(rec: ContainerRecord, limits: list[float]) -> bool:
    created = record.parse_rfc3339(rec.created)
    return all(created <= limit for limit in limits)


_LIST_FILTERS = {
    "id", "name", "label", "status", "exited", "ancestor", "before", "since",
    "volume", "network", "health", "isolation", "is-task", "publish", "expose",
}  # fmt: skip

_STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}


def _filter(
    records: list[ContainerRecord],
    filters: dict[str, list[str]],
    names_: dict[str, str],
    *,
    all_: bool,
    mount_points: Callable[[ContainerRecord], list[mounts.MountPoint]],
) -> list[ContainerRecord]:
    """C{GET /containers/json} filters, as moby's C{daemon/list.go}."""
    for key in filters:
        if key not in _LIST_FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
    for status in filters.get("status", []):
        if status not in _STATUSES:
            raise InvalidParameter(f"invalid filter 'status={status}'")
    exited: list[int] = []
    for value in filters.get("exited", []):
        try:
            exited.append(int(value))
        except ValueError:
            raise InvalidParameter(f"invalid filter 'exited={value}'") from None

    def position(reference: str) -> str:
        try:
            found = names.lookup(reference, [r.id for r in records], names_)
        except NotFound:
            raise InvalidParameter(f"No such container: {reference}") from None
        return found

    before = [position(r) for r in filters.get("before", [])]
    since = [position(r) for r in filters.get("since", [])]
    if filters.get("status") or exited or before or since:
        all_ = True
    result = []
    ids = [r.id for r in records]
    for rec in records:
        if not all_ and not rec.state.running and rec.state.status != "restarting":
            continue
        if filters.get("id") and not any(rec.id.startswith(i) for i in filters["id"]):
            continue
        if filters.get("name") and not any(
            n.lstrip("/") in rec.name for n in filters["name"]
        ):
            continue
        if not _labels_match(rec, filters):
            continue
        if filters.get("status") and rec.state.status not in filters["status"]:
            continue
        if exited and (
            rec.state.status != "exited" or rec.state.exit_code not in exited
        ):
            continue
        if filters.get("ancestor") and not any(
            a in {rec.image, rec.image_id}
            or rec.image_id.removeprefix("sha256:").startswith(a)
            for a in filters["ancestor"]
        ):
            continue
        if before and ids.index(rec.id) <= max(ids.index(b) for b in before):
            continue
        if since and ids.index(rec.id) >= min(ids.index(s) for s in since):
            continue
        if filters.get("volume") and not any(
            any(
                m["Source"] == v or m["Destination"] == v
                for m in mounts.view(mount_points(rec))
            )
            for v in filters["volume"]
        ):
            continue
        if filters.get("network") and not any(
            network.mode_network(rec.host_config.get("NetworkMode")) == n
            for n in filters["network"]
        ):
            continue
        result.append(rec)
    return result
