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
import shutil
import socket
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import evolve

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    succeed,
)
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from dockserve.daemon import store
from dockserve.daemon.config import DaemonConfig
from dockserve.daemon.containers import (
    configs,
    mounts,
    mountsetup,
    names,
    record,
    restart,
    validate,
)
from dockserve.daemon.containers.attachment import Attachment
from dockserve.daemon.containers.bundles import Bundles
from dockserve.daemon.containers.committing import ContainerCommitting
from dockserve.daemon.containers.devices import DeviceError
from dockserve.daemon.containers.exec_control import ExecControl
from dockserve.daemon.containers.files import ContainerFiles
from dockserve.daemon.containers.health import Health, Settings
from dockserve.daemon.containers.health_control import ContainerHealth
from dockserve.daemon.containers.joining import ContainerJoining
from dockserve.daemon.containers.metrics import ContainerMetrics, _measure
from dockserve.daemon.containers.networking import (
    ContainerNetworking,
    normalize_endpoints,
)
from dockserve.daemon.containers.oci import OverlayBundles
from dockserve.daemon.containers.record import ContainerRecord, rfc3339
from dockserve.daemon.containers.signals import parse_signal
from dockserve.daemon.containers.stdio import ContainerStdio
from dockserve.daemon.containers.table import (
    LOG_DRIVER,
    LOG_FILE,
    Container,
    _start_error,
)
from dockserve.daemon.containers.transitions import Publish, Transitions
from dockserve.daemon.containers.views import (
    ContainerViews,
    _before_until,
    _check_until,
    _labels_match,
)
from dockserve.daemon.contracts import (
    ExitStatus,
    ImageSource,
    ResolvedImage,
    Runtime,
    RuntimeState,
)
from dockserve.daemon.network.model import NetPlan
from dockserve.daemon.runtime import RuncRuntime
from dockserve.daemon.volumes import copyup
from dockserve.daemon.volumes.service import VolumeService
from dockserve.errors import (
    Conflict,
    DockerError,
    InvalidParameter,
    NotFound,
    NotModified,
    SystemError_,
)

if TYPE_CHECKING:
    from dockserve.daemon.containers.execs import ExecInstance
    from dockserve.daemon.containers.fileview import View
    from dockserve.daemon.network.attach import Attachments
    from dockserve.daemon.network.service import NetworkService

#: The seconds C{docker stop} waits before SIGKILL when nothing says otherwise.
DEFAULT_STOP_TIMEOUT = 10


_log = Logger()


class ContainerService(
    ContainerStdio,
    ContainerViews,
    ContainerFiles,
    ContainerMetrics,
    ExecControl,
    ContainerNetworking,
    ContainerJoining,
    ContainerHealth,
    ContainerCommitting,
):
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
        threadpool_reactor: IReactorFromThreads | None = None,
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
        # Every bundle (a start's, a docker cp's) sees all of a record's mounts.
        self._bundles = mountsetup.BundlesWithMounts(bundles, self._bundle_record)
        self._reactor = reactor
        self._threadpool = threadpool
        self._threadpool_reactor = threadpool_reactor
        self._containers: dict[str, Container] = {}
        self._names: dict[str, str] = {}
        self._execs: dict[str, ExecInstance] = {}
        self._reaping: dict[str, Deferred[None]] = {}
        self._image_sizes: dict[str, int] = {}
        self._volumes: VolumeService | None = None
        self._networks: NetworkService | None = None
        self._attachments: Attachments | None = None
        #: Where every state change is saved and published (set_events).
        self.transitions = Transitions()

    def set_events(self, publish: Publish) -> None:
        """Send container events to C{publish} (the daemon's event bus)."""
        self.transitions.set_publish(publish)

    def set_volumes(self, volumes: VolumeService) -> None:
        """
        The volume service (L{dockserve.daemon.volumes.service}): volumes a
        container names are made at its create, and asked who uses them.
        """
        self._volumes = volumes

    @classmethod
    def for_config(
        cls, config: DaemonConfig, images: ImageSource, reactor: Any
    ) -> "ContainerService":
        """
        The service for a daemon's L{dockserve.daemon.config.DaemonConfig}:
        runc (or C{--runtime}) under conmon, overlayfs bundles, the
        reactor's thread pool for blocking work.
        """
        data_root = Path(config.data_root)
        exec_root = Path(config.exec_root)
        pool = reactor.getThreadPool()
        runtime = RuncRuntime(
            exec_root / "runtime",
            reactor,
            runtime_binary=config.runtime,
            threadpool=pool,
        )
        return cls(
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

    # --- helpers -----------------------------------------------------------

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
        self._joined_at_create(host_config, full_name)
        self._static_at_create(host_config, networking)
        log_config = dict(host_config.get("LogConfig") or {})
        # conmon writes a k8s-file log, but it is read through the API just
        # as dockerd's default driver is, so it is named json-file: the
        # Docker SDK's containers.run() returns output only for that name.
        log_config["Type"] = log_config.get("Type") or LOG_DRIVER
        log_config["Config"] = log_config.get("Config") or {}
        host_config["LogConfig"] = log_config
        inherited = self._volumes_from(host_config)
        anonymous = {
            target: mounts.new_volume_name()
            for target in mounts.anonymous_targets(merged, host_config, inherited)
        }
        rec = ContainerRecord(
            id=container_id,
            name=full_name,
            created=self._now(),
            image=image_name,
            image_id=image.id,
            config=merged,
            host_config=host_config,
            networking_config=normalize_endpoints(host_config, networking),
            path=command[0],
            args=tuple(command[1:]),
            anonymous_volumes=anonymous,
        )
        if self._volumes is not None:
            # dockerd makes the volumes a container names at its create:
            # docker volume ls shows them from then on.
            points = mounts.points(
                host_config, anonymous, self._volumes_root, inherited
            )
            for point in points:
                if point.type == "volume" and point.name and not point.inherited:
                    self._volumes.ensure(
                        point.name,
                        anonymous=point.anonymous,
                        driver=point.driver,
                        driver_opts=point.options,
                        labels=point.labels,
                    )
        directory = self._root / container_id
        directory.mkdir(parents=True, exist_ok=False)
        c = Container(rec, directory)
        if inherited:
            # Kept beside the record: they stay when the other container goes.
            store.write_json(
                directory / mounts.INHERITED_FILE, {"Mounts": mounts.to_json(inherited)}
            )
        c.inherited = inherited
        self._save(c, rec, "create")
        self._containers[container_id] = c
        self._names[full_name] = container_id
        warnings: list[str] = []
        return {"Id": container_id, "Warnings": warnings}

    def _volumes_from(self, host_config: dict[str, Any]) -> list[mounts.MountPoint]:
        """
        What C{--volumes-from} brings a new container, resolved now as
        dockerd resolves it at create: each named container's volumes and
        binds at the same destinations (a later one winning a destination).

        @raise InvalidParameter: A container that is not there, with
            dockerd's text and its 400 (a 404 would have the CLI go and
            pull the image).
        """
        found: dict[str, mounts.MountPoint] = {}
        for spec in host_config.get("VolumesFrom") or []:
            reference, mode = validate.parse_volumes_from(spec)
            if not reference:
                raise InvalidParameter('invalid name or ID supplied: ""')
            try:
                other = self._get(reference)
            except NotFound as e:
                raise InvalidParameter(e.message) from None
            for point in mounts.inherit(self._mount_points(other.record), mode):
                found[point.destination] = point
        return list(found.values())

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
        if status in {"running", "restarting"} or c.busy is not None:
            # dockerd counts a restarting container as running: a start
            # changes nothing (its restart comes when its back-off ends).
            raise NotModified("container already started")
        if status in {"removing", "dead"}:
            raise Conflict("container is marked for removal and cannot be started")
        if c.restart_call is not None and c.restart_call.active():
            c.restart_call.cancel()
            c.restart_call = None
        try:
            self._check_networks(c.record)
        except DockerError:
            if c.record.host_config.get("AutoRemove"):
                # docker run --rm waits for the removal: without it, a
                # --network that does not exist hung the CLI for good.
                self._remove(c, volumes=True)
            raise
        c.backoff.reset()
        fresh = evolve(c.record, manually_stopped=False, restart_count=0)
        if fresh != c.record:
            self._save(c, fresh)
        return self._guarded(c, self._start(c))

    def _guarded(self, c: Container, work: Deferred[None]) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        c.busy = done

        def release(result: object) -> object:
            c.busy = None
            done.callback(None)
            return result

        work.addBoth(release)
        return work

    def _start(self, c: Container) -> Deferred[None]:
        return Deferred.fromCoroutine(self._start_async(c))

    async def _start_async(self, c: Container) -> None:
        await c.cleanup
        image = self._images.resolve(c.record.image_id)
        tty = bool(c.record.config.get("Tty"))
        # Without StdinOnce, or with a TTY, a client's going away leaves the
        # container's stdin open for the next one, as dockerd does (conmon's
        # --leave-stdin-open): docker run -it, ctrl-p ctrl-q.
        leave_stdin_open = tty or not c.record.config.get("StdinOnce")
        try:
            # Inside the try: a bundle that cannot be made (no such user in
            # the image's /etc/passwd, a bad mount) fails the start as a
            # runtime error does, so waiters hear of it and AutoRemove holds
            # (docker run --rm waits for the removal).
            c.released = False
            await self._acquire_volumes(c)
            joined = await self._joins(c)
            plan = await self._plumb(c)
            plan, joined = await self._linked(c, joined, plan)
            start_record = self._start_record(c, joined)
            monitor: dict[str, Any] = {
                "log_path": str(c.directory / LOG_FILE),
                "tty": tty,
                "open_stdin": bool(c.record.config.get("OpenStdin")),
                "leave_stdin_open": leave_stdin_open,
            }
            if tty:
                bundle = await self._bundles.prepare(
                    c.directory, start_record, image, plan
                )
                await self._ready_volumes(c)
                state = await self._runtime.create(c.id, bundle, **monitor)
                await self._attach_pending(c)
                # The time the process is let go: one that exits at once
                # must not look as if it finished before it started.
                started_at = self._now()
                await self._runtime.start(c.id)
            else:
                started_at = self._now()
                state = await self._run(c, image, monitor, plan, start_record)
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
            code, error = (
                (128, e) if isinstance(e, DeviceError) else _start_error(e.message)
            )
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
        # Health starts again at each start (starting, no failing streak);
        # its last results stay, as dockerd keeps them.
        health = (
            Health(log=Health.from_view(c.record.state.health).log)
            if Settings.of(c.record.config) is not None
            else None
        )
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
                    health=health.view() if health is not None else None,
                ),
                has_been_started=True,
            ),
            "start",
        )
        self._watch(c)
        self._start_health(c, health)
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

    def _connect(self, c: Container, attachment: Attachment) -> None:
        """Connect a client to a running container's stdio."""
        connecting = self._runtime.attach(c.id, attachment.output)
        connecting.addCallbacks(attachment.connect, lambda _: attachment.finish())

    async def _run(
        self,
        c: Container,
        image: ResolvedImage,
        monitor: dict[str, Any],
        plan: NetPlan | None = None,
        start_record: ContainerRecord | None = None,
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
        made = self._bundles.prepare(
            c.directory, start_record or c.record, image, plan
        ).addBoth(outcome.append)

        async def before_start() -> None:
            await made
            if isinstance(outcome[0], Failure):
                outcome[0].raiseException()
            await self._ready_volumes(c)
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

    async def _attach_pending(self, c: Container) -> None:
        """Connect the clients that attached before the start."""
        pending, c.pending = c.pending, []
        for attachment in pending:
            stdio = await self._runtime.attach(c.id, attachment.output)
            attachment.connect(stdio)

    async def _abandon_start(self, c: Container, message: str) -> None:
        for attachment in c.pending:
            attachment.finish()
        c.pending = []
        try:
            await self._runtime.delete(c.id, force=True)
        except DockerError:
            _log.warn("runtime delete after failed start: {message}", message=message)
        await self._bundles.release(c.directory, c.id)
        await self._release_volumes(c)
        await self._unplumb(c)

    def _volume_points(self, c: Container) -> list[mounts.MountPoint]:
        return [
            p
            for p in self._mount_points(c.record)
            if p.type == "volume" and p.name and self._volumes is not None
        ]

    async def _acquire_volumes(self, c: Container) -> None:
        """A start takes its volumes: made if missing, devices mounted."""
        if self._volumes is None:
            return
        for point in self._volume_points(c):
            await self._volumes.acquire(
                point.name, c.id, point.destination, rw=point.rw
            )

    async def _ready_volumes(self, c: Container) -> None:
        """
        With the root mounted and the bundle written, before the process
        runs: binds' propagation checked, non-recursive binds made so, and
        the empty volumes filled from the image whose fill is due (its
        own at its first start, or one of a container created and never
        started: L{mountsetup.fillers}), in a thread: a copy can be long.
        """
        points = self._mount_points(c.record)
        names = {p.name for p in points if p.type == "volume" and p.name}
        pending = [
            (other.record.created, other.id, self._mount_points(other.record))
            for other in self._containers.values()
            if names
            and self._volumes is not None
            and not other.record.has_been_started
            and other.record.state.status != "removing"
        ]
        fills = mountsetup.fillers(names, pending)
        own = [
            evolve(p, copy=fills.get(p.name, ("", p))[0] == c.id)
            if p.type == "volume"
            else p
            for p in points
        ]
        for owner_id, point in fills.values():
            owner = self._containers.get(owner_id)
            if owner is not None and owner is not c:
                await self._fill_from(owner, point)
        first_run = any(p.copy for p in own if p.type == "volume")
        if not mountsetup.needed(own, first_run=first_run):
            return
        rootfs = self._bundles.rootfs(c.directory)
        await self._blocking(
            partial(
                mountsetup.ready,
                rootfs,
                own,
                first_run=first_run,
                config=c.directory / "config.json",
            )
        )

    async def _fill_from(self, owner: Container, point: mounts.MountPoint) -> None:
        """
        The volume of C{point} filled, if empty, from C{owner}'s image
        (created, never started: dockerd would have filled it then).
        """
        volume = Path(point.source)

        def fill(view: "View") -> bool:
            return copyup.populate(view.root, point.destination, volume)

        try:
            await self._with_root(owner, fill)
        except DockerError as e:
            _log.warn(
                "filling volume {name} from {id}: {e}",
                name=point.name,
                id=owner.id,
                e=e.message,
            )

    async def _release_volumes(self, c: Container) -> None:
        """The run is over: its volumes are let go (devices unmounted last)."""
        if self._volumes is None:
            return
        for point in self._volume_points(c):
            try:
                await self._volumes.release(point.name, c.id)
            except DockerError as e:
                _log.warn("release volume {name}: {e}", name=point.name, e=e.message)

    def _watch(self, c: Container) -> None:
        generation = c.generation
        watching = self._runtime.wait_exit(c.id)
        watching.addCallback(self._exited, c, generation)
        watching.addErrback(
            lambda f: _log.failure("watching container {id}", f, id=c.id)
        )

    def _exited(self, status: ExitStatus, c: Container, generation: int) -> None:
        if generation != c.generation:
            return
        if self._containers.get(c.id) is not c:
            # Removed while a start was under way (rm -f of a container its
            # restart policy was starting): that run's network (its ports,
            # address, namespace) is still to be undone.
            Deferred.fromCoroutine(self._unplumb(c))
            return
        self._stop_health(c)
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
        will_restart = not c.backoff.canceled and policy.should_restart(
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

    def _release(self, c: Container) -> Deferred[None]:
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
            await self._unplumb(c)
            c.released = True

        return Deferred.fromCoroutine(release())

    def _restart_now(self, c: Container) -> None:
        c.restart_call = None
        if self._containers.get(c.id) is not c or c.record.state.status != "restarting":
            return

        def failed(failure: Any) -> None:
            _log.failure("restarting container {id}", failure, id=c.id)

        self._guarded(c, self._start(c)).addErrback(failed)

    # --- stop, kill, restart ----------------------------------------------

    def _next_exit(self, c: Container) -> Deferred[int]:
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
            # As dockerd: no signal (nothing runs), but a stop all the same.
            self._cancel_restart(c)
            self._announce(c, "stop")
            return succeed(None)
        if not c.record.state.running:
            raise NotModified("container already stopped")
        c.backoff.cancel()
        number = parse_signal(signal or c.record.config.get("StopSignal") or "SIGTERM")
        if timeout is None:
            timeout = c.record.config.get("StopTimeout")
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT
        self._save(c, evolve(c.record, manually_stopped=True))
        return Deferred.fromCoroutine(self._stop(c, number, timeout))

    def _cancel_restart(self, c: Container) -> None:
        c.backoff.cancel()
        if c.restart_call is not None and c.restart_call.active():
            c.restart_call.cancel()
        c.restart_call = None
        self._save(
            c,
            evolve(c.record.with_state(status="exited"), manually_stopped=True),
        )

    def _drain_attachments(self, c: Container) -> None:
        """
        Before a stop, a SIGKILL or a forced removal: no attached client
        may hold conmon back, nor one that attaches before the exit.
        """
        c.draining = True
        for attachment in c.live:
            attachment.drain()

    async def _stop(self, c: Container, number: int, grace: int) -> None:
        """StopSignal, SIGKILL after C{grace}: dockerd's kill, kill, die, stop."""
        await self._stop_running(c, number, grace)
        self._announce(c, "stop")

    async def _stop_running(self, c: Container, number: int, grace: int) -> None:
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
        if c.record.state.status == "restarting":
            # dockerd: nothing to signal; its restart is cancelled, silently.
            self._cancel_restart(c)
            return succeed(None)
        if not c.record.state.running:
            raise Conflict(
                f"Cannot kill container: {reference}: Container {c.id} is not running"
            )
        # Every kill counts as a stop by hand (unless-stopped heeds it);
        # one that stops the container cancels its restarts (moby's kill).
        stop_signal = c.record.config.get("StopSignal")
        own = parse_signal(stop_signal) if stop_signal else None
        if restart.kill_cancels(number, own):
            c.backoff.cancel()
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
                # runc thaws a paused container to deliver SIGKILL: there
                # may be nothing left to resume by now.
                with contextlib.suppress(DockerError):
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
            if c.record.state.running or c.record.state.status == "restarting":
                await self.stop(reference, signal, timeout)
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
            # Not for a removal: after a failed start of a --rm container
            # dockerd's answer has none, and the CLI would print "Error
            # waiting for container" under the start's own error.
            if error and condition != "removed":
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
            c.backoff.cancel()
            if c.restart_call is not None and c.restart_call.active():
                c.restart_call.cancel()
            if c.busy is not None:
                # A start under way ends running or failed: removing under
                # it left its network, and its record saved again into a
                # directory being reaped (a container back after a restart).
                # busy only ever fires None (see _guarded).
                await c.busy
                if self._containers.get(c.id) is not c:
                    return  # AutoRemove, or another removal, got there first
                if c.record.state.running and not force:
                    raise Conflict(
                        f'cannot remove container "{c.record.name}": container is '
                        "running: stop the container before removing or force remove"
                    )
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

    def _remove(self, c: Container, *, volumes: bool) -> Deferred[None]:
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
        if c.record.state.status == "restarting":
            raise Conflict(
                f"Container {c.id} is restarting, wait until the container is running"
            )
        if c.record.state.status != "running":
            raise Conflict(f"Container {c.id} is not running")

        async def pause_it() -> None:
            await self._runtime.pause(c.id)
            self._stop_health(c)
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
            self._start_health(c, Health.from_view(c.record.state.health))

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
        self._links_renamed(old, full)

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
        live = c.record.state.running and any(
            k in body for k in allowed - {"RestartPolicy"}
        )
        if not live:
            return succeed({"Warnings": warnings})
        from dockserve.daemon.containers.spec import (  # noqa: PLC0415
            _resources as oci_resources,
        )

        resources = oci_resources(merged)
        resources.pop("devices", None)

        async def update_it() -> dict[str, Any]:
            try:
                await self._runtime.update(c.id, resources)
            except DockerError as e:
                # As dockerd: the old settings stay, the error is a 500.
                self._save(c, evolve(c.record, host_config=previous.host_config))
                raise SystemError_(
                    f"Cannot update container {c.id}: {e.message}"
                ) from None
            return {"Warnings": warnings}

        return Deferred.fromCoroutine(update_it())

    # --- attach -------------------------------------------------------------

    # --- exec ----------------------------------------------------------------

    # --- looking inside -----------------------------------------------------

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

    # --- files: docker cp, export, changes ---------------------------------------

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
            c = Container(rec, directory)
            self._containers[rec.id] = c
            self._names[rec.name] = rec.id
        work = [
            Deferred.fromCoroutine(self._reconcile(c))
            for c in list(self._containers.values())
        ]
        await DeferredList(work, consumeErrors=True)
        if self._attachments is not None:
            running = {
                c.id: c.record.name.lstrip("/")
                for c in self._containers.values()
                if c.record.state.running
            }
            try:
                await self._attachments.restore(running)
            except DockerError as e:
                _log.warn("restoring networking: {e}", e=e.message)
        if self._volumes is not None:
            # Devices a crash left mounted with no running container on them.
            try:
                await self._volumes.release_unheld()
            except DockerError as e:
                _log.warn("unmounting unused volumes: {e}", e=e.message)

    async def _reconcile(self, c: Container) -> None:
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
            if self._volumes is not None:
                for point in self._volume_points(c):
                    self._volumes.adopt(point.name, c.id)
            self._save(
                c,
                rec.with_state(
                    status=state.status, pid=state.pid, started_at=started_at
                ),
            )
            self._watch(c)
            if state.status == "running":
                self._start_health(c, Health.from_view(rec.state.health))
            return
        if rec.state.running:
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
            if rec.state.status == "restarting":
                # Its die was told when it died; its policy decides again
                # below, as at any daemon start.
                self._save(c, rec.with_state(status="exited"))
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

    def _boot_start(self, c: Container, attempts: int) -> None:
        """
        Start a container whose policy restarts it with the daemon; the
        image store restores beside us, so an image not found yet is
        looked for again a little later.
        """
        if self._containers.get(c.id) is not c or c.busy is not None:
            return
        # dockerd starts it as a start does: its restarts counted anew.
        c.backoff.reset()
        fresh = evolve(c.record, manually_stopped=False, restart_count=0)
        if fresh != c.record:
            self._save(c, fresh)

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


def _remove_tree(directory: Path) -> None:
    """Remove a container's directory (its record is already gone)."""
    for child in directory.iterdir() if directory.exists() else ():
        # Never delete through a mount that is somehow still there.
        if child.is_dir() and not child.is_symlink() and child.is_mount():
            _log.error("not removing {path}: still mounted", path=child)
            return
    shutil.rmtree(directory, ignore_errors=True)
