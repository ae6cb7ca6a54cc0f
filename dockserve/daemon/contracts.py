# -*- test-case-name: tests.daemon.test_daemon -*-
"""
What the image store and the containers ask of each other.

Images and containers are built side by side; each sees the other only
through these small Protocols, so either can be tested with a fake of the
other and neither imports the other's package.
"""

from collections.abc import Callable
from typing import Any, Protocol

from attrs import frozen

from twisted.internet.defer import Deferred, succeed


@frozen
class ResolvedImage:
    """
    An image as a container needs it.

    @ivar id: C{sha256:<64 hex>}, the digest of the image config.
    @ivar config: The image config JSON (its C{config} member holds Cmd,
        Entrypoint, Env, WorkingDir, User, ExposedPorts, Volumes, Labels,
        StopSignal, Healthcheck...).
    @ivar layer_dirs: Absolute paths of the unpacked layer directories, the
        base layer first; overlayfs takes them as C{lowerdir} in reverse.
    @ivar repo_tags: The image's C{repo:tag} references.
    """

    id: str
    config: dict[str, Any]
    layer_dirs: tuple[str, ...]
    repo_tags: tuple[str, ...]


class ImageSource(Protocol):
    """What containers ask of the image store."""

    def resolve(self, name: str) -> ResolvedImage:
        """
        The image a user means by C{name}: C{busybox}, C{busybox:1.36},
        C{repo@sha256:...}, a full or short image ID.

        @raise dockserve.errors.NotFound: C{No such image: <name>}.
        """


class ImageUsers(Protocol):
    """What the image store asks of the containers before removing an image."""

    def containers_using(self, image_id: str) -> list[tuple[str, bool]]:
        """
        The containers created from C{image_id}, as C{(container ID,
        running)} pairs, so C{docker rmi} can refuse with dockerd's message.
        """

    def settled(self) -> Deferred[None]:
        """
        Fires once removed containers have let go of their roots (their
        overlayfs mounts on image layers are gone).
        """


class NoImageUsers:
    """An L{ImageUsers} for a daemon with no containers (and for tests)."""

    def containers_using(self, image_id: str) -> list[tuple[str, bool]]:  # noqa: ARG002
        """Nobody uses any image."""
        return []

    def settled(self) -> Deferred[None]:
        """Nothing to wait for."""
        return succeed(None)


# --- The seam between containers/ (the life cycle) and runtime.py (runc + conmon) ---


@frozen
class RuntimeState:
    """
    What the OCI runtime says of a container (C{runc state}).

    @ivar status: C{created}, C{running}, C{paused} or C{stopped}; C{None}
        when the runtime does not know the container (never created, or
        deleted).
    @ivar pid: The container's init process on the host, 0 when none.
    @ivar created: When the runtime created it (RFC 3339), C{""} if unknown.
    """

    status: str | None
    pid: int
    created: str = ""


@frozen
class ExitStatus:
    """
    How a container's main process ended, as conmon recorded it.

    @ivar code: The exit code; 128+N for death by signal N, as Docker
        reports it.
    @ivar finished_at: Unix time in nanoseconds at which it exited.
    @ivar oom_killed: The kernel's OOM killer ended it.
    @ivar monitor_lost: conmon ended without recording the exit: the
        container was stopped for want of it, and C{code} is 137 (killed)
        or 255 (it had ended unseen).
    """

    code: int
    finished_at: int
    oom_killed: bool = False
    monitor_lost: bool = False


#: An output callback: C{(stream, data)}; stream 1 is stdout, 2 stderr (a
#: TTY has only stream 1).
OutputCallback = Callable[[int, bytes], None]


class PushProducer(Protocol):
    """
    Whoever sends a stream and can be asked to wait (a client's connection,
    a process's output): Twisted's C{IPushProducer} without C{stopProducing}.
    """

    def pauseProducing(self) -> None:
        """Stop sending for now."""

    def resumeProducing(self) -> None:
        """Send again."""


class Stdio(Protocol):
    """
    A live connection to a process's standard streams (attach or exec).

    Output arrives through the L{OutputCallback} given when it was opened;
    the C{closed} L{Deferred} fires when the output ends.

    Neither direction is buffered without bound in the daemon: a process
    that reads its stdin slower than the client sends it pauses the client
    (L{set_stdin_producer}), and a client that reads slower than the process
    writes pauses the process's output (L{pause_output}), whose writes then
    block as on a full pipe.
    """

    closed: Deferred[None]

    def set_stdin_producer(self, producer: PushProducer) -> None:
        """Pause C{producer} while the process's stdin is full."""

    def pause_output(self) -> None:
        """Stop reading the process's output until L{resume_output}."""

    def resume_output(self) -> None:
        """Read the process's output again."""

    def write_stdin(self, data: bytes) -> None:
        """Send bytes to the process's stdin (dropped when stdin is not open)."""

    def close_stdin(self) -> None:
        """Half-close: the process reads end-of-file on stdin."""

    def resize(self, height: int, width: int) -> None:
        """Set the TTY size (no-op without a TTY)."""

    def detach(self) -> None:
        """Stop receiving output; the process goes on."""


class ExecProcess(Stdio, Protocol):
    """An exec'd process: its stdio, its pid and its end."""

    pid: int
    exited: Deferred[int]


class Runtime(Protocol):
    """
    An OCI runtime driven under a monitor (runc under conmon), so that
    containers outlive the daemon. Knows nothing of Docker's records:
    containers/ decides what to run; this runs it.
    """

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
        Start a monitor that creates (not starts) the container from
        C{bundle_dir}/config.json, logging its output to C{log_path}
        (conmon's k8s-file format). Fires once the container is created.

        @param leave_stdin_open: The container's stdin stays open when an
            attached client goes (a TTY, or C{-i} without C{StdinOnce}),
            so the next C{docker attach} can type into it; otherwise the
            first client's end of input is the container's.

        @raise dockserve.errors.SystemError_: with the runtime's own message
            (for example C{exec: "nosuch": executable file not found in $PATH}).
        """

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
        """
        L{create} and L{start} at once (one runtime process instead of
        two), for a container without a TTY. C{before_start} runs once the
        monitor's stdio can be attached to and before the process runs, so
        clients it attaches see all the output. Fires once it runs.
        """

    def start(self, container_id: str) -> Deferred[None]:
        """Start a created container's process."""

    def update(self, container_id: str, resources: dict[str, Any]) -> Deferred[None]:
        """
        New limits for a running container at once: C{resources} is an OCI
        runtime-spec C{linux.resources} object (C{runc update --resources}).
        """

    def kill(self, container_id: str, signal: int) -> Deferred[None]:
        """Send C{signal} to the container's init process."""

    def pause(self, container_id: str) -> Deferred[None]:
        """Freeze every process of the container (cgroup freezer)."""

    def resume(self, container_id: str) -> Deferred[None]:
        """Thaw a paused container."""

    def delete(self, container_id: str, *, force: bool = False) -> Deferred[None]:
        """
        Forget a stopped container (C{runc delete}) and its monitor files;
        with C{force}, kill it first. Deleting an unknown container succeeds.
        """

    def state(self, container_id: str) -> Deferred[RuntimeState]:
        """The runtime's view of the container."""

    def exit_status(self, container_id: str) -> ExitStatus | None:
        """
        The exit status conmon recorded, or C{None} if the process has not
        exited (or never ran). Survives a daemon restart: it is a file.
        """

    def wait_exit(self, container_id: str) -> Deferred[ExitStatus]:
        """
        Fires when the container's process exits (at once if it already
        has). Works for containers created by an earlier daemon process.
        A container whose monitor is gone is stopped, never waited for in
        vain (L{ExitStatus.monitor_lost}).
        """

    def attach(self, container_id: str, on_output: OutputCallback) -> Deferred[Stdio]:
        """Connect to a created or running container's stdio through conmon."""

    def exec(
        self,
        container_id: str,
        process: dict[str, Any],
        *,
        on_output: OutputCallback | None,
        stdin: bool = False,
    ) -> Deferred[ExecProcess]:
        """
        Run another process in a running container. C{process} is an OCI
        runtime-spec C{process} object (args, env, cwd, user, terminal,
        capabilities...). With C{on_output=None} the process is detached.

        Attached, a process that cannot be started writes dockerd's error
        (C{OCI runtime exec failed: ...: unknown}) to the output and exits
        with 126; detached, that is raised as a
        L{dockserve.errors.SystemError_}.

        @param stdin: The client sends the process's stdin (C{-i});
            otherwise the process reads end of file at once.
        """

    def stats(self, container_id: str) -> dict[str, Any]:
        """
        Resource use from the container's cgroups, shaped as the
        C{/containers/{id}/stats} body's C{cpu_stats}, C{memory_stats},
        C{pids_stats}, C{blkio_stats} members.
        """

    def known(self) -> list[str]:
        """The IDs of every container the runtime has, for restore at start."""
