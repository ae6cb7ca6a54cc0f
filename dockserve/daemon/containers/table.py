# -*- test-case-name: tests.daemon.containers.test_service -*-
"""
The table of containers and what every part of the container service
shares: a L{Container} per record (the record and the live things that go
with it), and L{ContainerParts}, the state and helpers each part (life
cycle, views, files, metrics, exec, stdio) is written against.

The parts are mixins of one L{dockserve.daemon.containers.service.ContainerService}:
each module holds one job and names the others' methods only through the
stubs declared here.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from attrs import evolve

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredLock,
    succeed,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorFromThreads,
    IReactorTime,
)
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from dockserve.daemon import store
from dockserve.daemon.containers import (
    mounts,
    names,
    restart,
)
from dockserve.daemon.containers.attachment import Attachment
from dockserve.daemon.containers.bundles import Bundles
from dockserve.daemon.containers.execs import ExecInstance
from dockserve.daemon.containers.record import ContainerRecord, rfc3339
from dockserve.daemon.containers.transitions import Transitions
from dockserve.daemon.contracts import (
    ImageSource,
    Runtime,
)
from dockserve.daemon.volumes.service import VolumeService
from dockserve.errors import (
    DockerError,
    InvalidParameter,
    SystemError_,
)

_log = Logger()

_T = TypeVar("_T")

#: The log file of a container, in its directory (conmon's k8s-file format).
LOG_FILE = "container.log"


#: The log driver a container has unless it names another; see create().
LOG_DRIVER = "json-file"


class Container:
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
        #: The running healthcheck's monitor, if any (health_control).
        self.health_monitor: Any = None
        #: What C{--volumes-from} brought it (read from its directory when
        #: first asked: None until then).
        self.inherited: list[mounts.MountPoint] | None = None

    @property
    def id(self) -> str:
        """The container's ID (its record's)."""
        return self.record.id


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


#: What dockerd keeps in a container's init layer (below its own changes):
#: the mount points of the files it makes, which docker diff never shows.
_INIT_PATHS = frozenset({
    "/.dockerenv", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf",
    "/etc/mtab", "/dev/console", "/dev/pts", "/dev/shm", "/proc", "/sys",
})  # fmt: skip


def _unless_cancelled(failure: Failure) -> None:
    """An errback that lets a cancellation go and passes anything else on."""
    if not isinstance(failure.value, CancelledError):
        failure.raiseException()


class ContainerParts:
    """
    The state and helpers the parts of the container service share.

    @ivar transitions: Where every state change is saved and published.
    """

    _root: Path
    _exec_root: Path
    _images: ImageSource
    _runtime: Runtime
    _bundles: Bundles
    _reactor: IReactorTime
    _threadpool: ThreadPool | None
    _threadpool_reactor: IReactorFromThreads | None
    _containers: dict[str, Container]
    _names: dict[str, str]
    _execs: dict[str, ExecInstance]
    _reaping: dict[str, Deferred[None]]
    _image_sizes: dict[str, int]
    _volumes: VolumeService | None
    transitions: Transitions

    def _now(self) -> str:
        return rfc3339(int(self._reactor.seconds() * 1_000_000_000))

    def _get(self, reference: str) -> Container:
        found = names.lookup(reference, self._containers, self._names)
        return self._containers[found]

    def _save(
        self,
        c: Container,
        rec: ContainerRecord,
        action: str | None = None,
        **extra: str,
    ) -> None:
        """The one transition point: the record on disk, then its event."""
        self.transitions.record(c, rec, action, **extra)

    def _announce(self, c: Container, action: str, **extra: str) -> None:
        """An event of the container that changes nothing on disk."""
        self.transitions.announce(c, action, **extra)

    def _in_thread(self, work: Callable[[], None]) -> Deferred[None]:
        if self._threadpool is None or self._threadpool_reactor is None:
            work()
            return succeed(None)
        return deferToThreadPool(self._threadpool_reactor, self._threadpool, work)

    def _blocking(self, work: Callable[[], _T]) -> Deferred[_T]:
        if self._threadpool is None or self._threadpool_reactor is None:
            try:
                return succeed(work())
            except Exception as e:
                from twisted.internet.defer import fail  # noqa: PLC0415

                return fail(e)
        return deferToThreadPool(self._threadpool_reactor, self._threadpool, work)

    @property
    def _volumes_root(self) -> Path:
        return self._root.parent / "volumes"

    def _mount_points(self, rec: ContainerRecord) -> list[mounts.MountPoint]:
        """
        C{rec}'s mounts: its binds, mounts, anonymous volumes and what
        C{--volumes-from} brought it.
        """
        return mounts.points(
            rec.host_config,
            rec.anonymous_volumes,
            self._volumes_root,
            self._inherited(rec),
        )

    def _inherited(self, rec: ContainerRecord) -> list[mounts.MountPoint]:
        """The C{--volumes-from} mounts of C{rec}'s container, kept at create."""
        c = self._containers.get(rec.id)
        if c is None or not rec.host_config.get("VolumesFrom"):
            return []
        if c.inherited is None:
            try:
                kept = store.read_json(c.directory / mounts.INHERITED_FILE)
            except FileNotFoundError:
                kept = {}
            except (OSError, ValueError) as e:
                _log.error("unreadable volumes-from of {id}: {e}", id=rec.id, e=e)
                kept = {}
            c.inherited = mounts.from_json(kept.get("Mounts") or [])
        return c.inherited

    def _bundle_record(self, rec: ContainerRecord) -> ContainerRecord:
        """C{rec} as the bundle builder reads it: every mount in its C{HostConfig}."""
        view = mounts.bundle_view(
            rec.host_config, rec.anonymous_volumes, self._inherited(rec)
        )
        return evolve(rec, host_config=view)

    # --- what one part asks of another (each defined in its own part) ---

    def _connect(self, c: Container, attachment: Attachment) -> None:
        """Connect a client to a running container's stdio (life cycle)."""
        raise NotImplementedError

    def _sizes(self, c: Container) -> tuple[int, int]:
        """C{SizeRw} and C{SizeRootFs} (metrics)."""
        raise NotImplementedError

    def list_containers(
        self,
        *,
        all: bool = False,  # noqa: A002 - the API's name
        limit: int | None = None,
        size: bool = False,
        filters: dict[str, list[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """C{GET /containers/json} (views)."""
        raise NotImplementedError

    def network_settings(self, rec: ContainerRecord) -> dict[str, Any]:
        """Inspect's C{NetworkSettings} (networking)."""
        raise NotImplementedError

    def ports_list(self, rec: ContainerRecord) -> list[dict[str, Any]]:
        """C{docker ps}'s C{Ports} (networking)."""
        raise NotImplementedError

    def _start_health(self, c: Container, health: Any = None) -> None:
        """Probe C{c} if it has a healthcheck (health_control)."""
        raise NotImplementedError

    def _stop_health(self, c: Container) -> None:
        """Stop C{c}'s probes (health_control)."""
        raise NotImplementedError

    def pause(self, reference: str) -> Deferred[None]:
        """C{POST /containers/{id}/pause} (life cycle)."""
        raise NotImplementedError

    def unpause(self, reference: str) -> Deferred[None]:
        """C{POST /containers/{id}/unpause} (life cycle)."""
        raise NotImplementedError
