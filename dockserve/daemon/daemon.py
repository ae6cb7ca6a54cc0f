# -*- test-case-name: tests.daemon.test_daemon -*-
"""
The facade the API calls: one object with an attribute per area.

L{create} wires the areas together; L{Daemon.restore} loads state from
disk and fires when the daemon can answer truthfully, which is when the
listen buffer lets held connections through.
"""

import os
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

from dockserve.daemon import roots
from dockserve.daemon.build.service import BuildService
from dockserve.daemon.config import DaemonConfig
from dockserve.daemon.containers.service import ContainerService
from dockserve.daemon.events import EventBus
from dockserve.daemon.images.service import ImageService
from dockserve.daemon.network.plumbing import attachments
from dockserve.daemon.network.service import NetworkService
from dockserve.daemon.system import SystemService, area_counts, disk_usage
from dockserve.daemon.volumes.service import VolumeService

_log = Logger()

#: How long a stopping daemon waits for removed containers to be reaped.
_STOP_GRACE = 5.0


class Daemon:
    """
    L{dockserve.api.backend.Backend} for real: images on disk, containers
    under runc.
    """

    def __init__(
        self,
        system: SystemService,
        images: ImageService,
        containers: ContainerService,
        reactor: Any = None,
        *,
        events: EventBus | None = None,
        volumes: VolumeService | None = None,
        networks: NetworkService | None = None,
        build: BuildService | None = None,
    ) -> None:
        self.system = system
        self.images = images
        self.containers = containers
        self.events = events if events is not None else EventBus()
        self.volumes = volumes
        self.networks = networks
        self.build = build
        self._reactor = reactor

    def restore(self) -> Deferred[None]:
        """Load every area's state; fires when requests may be served."""
        if self.volumes is not None:
            # Small records, read before the containers that name them.
            self.volumes.restore()
        if self.networks is not None:
            self.networks.restore()
        if self.build is not None:
            self.build.restore()
        restoring = [
            area.restore()
            for area in (self.images, self.containers)
            if hasattr(area, "restore")
        ]
        if not restoring:
            return succeed(None)
        from twisted.internet.defer import gatherResults  # noqa: PLC0415

        return gatherResults(restoring, consumeErrors=True).addCallback(lambda _: None)

    def stop(self) -> Deferred[None]:
        """
        Let removed containers' leftovers go (a few seconds at most; the
        next start reaps what is left), then give the host back what
        networking changed if no container still uses it. Containers keep
        running.
        """
        settled = getattr(self.containers, "settled", None)
        if settled is None or self._reactor is None:
            return succeed(None)
        waiting: Deferred[None] = settled()
        waiting.addTimeout(_STOP_GRACE, self._reactor)
        waiting.addErrback(lambda _: None)
        attachments = getattr(self.containers, "_attachments", None)
        if attachments is not None:
            waiting.addCallback(lambda _: Deferred.fromCoroutine(attachments.stop()))
            waiting.addErrback(lambda f: _log.failure("network stop", f))
        return waiting


#: The most threads the reactor's pool makes (see L{create}).
THREAD_POOL_SIZE = 64


def create(config: DaemonConfig, reactor: IReactorCore) -> Daemon:
    """
    Build the daemon's areas for C{config}: the image store, the containers
    (which tell the store which images are in use), and the system facts,
    whose counts are read from the other two at request time.
    """
    # A streamed body (image save, export, docker cp) waits in a pool
    # thread while its client is behind: with Twisted's default of ten
    # threads, ten stalled clients would starve every other blocking job
    # (bundles, removals, image work). Threads are made only when needed.
    suggest = getattr(reactor, "suggestThreadPoolSize", None)
    if suggest is not None:
        suggest(THREAD_POOL_SIZE)
    roots.secure(Path(config.data_root), Path(config.exec_root))
    bus = EventBus()
    images = ImageService.for_config(config, reactor)

    def publish_image_event(m: dict[str, Any]) -> None:
        bus.publish(m["Type"], m["Action"], m["Actor"]["ID"], m["Actor"]["Attributes"])

    images.set_events(publish_image_event)
    containers = ContainerService.for_config(config, images, reactor)
    images.set_users(containers)
    containers.set_events(bus.publish)
    volumes = VolumeService(
        Path(config.data_root) / "volumes",
        users=containers.volume_users,
        publish=bus.publish,
        run=_run_command(reactor),
        blocking=_blocking(reactor),
    )
    containers.set_volumes(volumes)
    networks = NetworkService(
        Path(config.data_root) / "network",
        bridge_enabled=config.bridge != "none",
        publish=bus.publish,
    )
    networks.in_use = containers.network_in_use
    networks.drained = containers.network_drained
    plumbing = attachments(
        Path(config.exec_root), networks, reactor, publish=bus.publish
    )
    networks.members = plumbing.members
    networks.forget = lambda rec: Deferred.fromCoroutine(plumbing.forget_network(rec))
    containers.set_networking(networks, plumbing)
    build = BuildService(Path(config.data_root) / "build", images, containers, reactor)
    system = SystemService(
        config,
        lambda: area_counts(images, containers),
        usage=lambda types: Deferred.fromCoroutine(
            disk_usage(images, containers, types, build=build)
        ),
    )
    return Daemon(
        system,
        images,
        containers,
        reactor,
        events=bus,
        volumes=volumes,
        networks=networks,
        build=build,
    )


def _blocking(reactor: Any) -> Any:
    """Runs blocking work in the reactor's thread pool."""
    from twisted.internet.threads import deferToThreadPool  # noqa: PLC0415

    def run(work: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), work)

    return run


def _run_command(reactor: Any) -> Any:
    """Runs a command (mount, umount): its exit code and its output."""
    from twisted.internet.utils import getProcessOutputAndValue  # noqa: PLC0415

    def run(argv: list[str]) -> Deferred[tuple[int, bytes]]:
        ran: Deferred[tuple[bytes, bytes, int]] = getProcessOutputAndValue(  # type: ignore[no-untyped-call]
            argv[0], argv[1:], env=dict(os.environ), reactor=reactor
        )
        return ran.addCallback(lambda r: (r[2], r[0] + r[1]))

    return run
