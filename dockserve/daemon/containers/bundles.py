# -*- test-case-name: tests.daemon.containers.test_service -*-
"""
The seam between a container's life cycle and its root filesystem and OCI
bundle.

L{ContainerService} asks a L{Bundles} to make a bundle directory before it
asks the runtime to create the container, and to release it after the
container exits. The real one mounts overlayfs and writes C{config.json}
(L{dockserve.daemon.containers.oci}); tests use a fake that only writes a
C{config.json}.
"""

from pathlib import Path
from typing import Protocol

from twisted.internet.defer import Deferred

from dockserve.daemon.containers.record import ContainerRecord
from dockserve.daemon.contracts import ResolvedImage
from dockserve.daemon.network.model import NetPlan


class Bundles(Protocol):
    """Makes and unmakes the OCI bundle of a container."""

    def prepare(
        self,
        directory: Path,
        record: ContainerRecord,
        image: ResolvedImage,
        network: NetPlan | None = None,
    ) -> Deferred[str]:
        """
        Mount the root filesystem and write C{config.json} for C{record}
        under its container C{directory}, in the network C{network} plumbed
        (C{None}: loopback only, or the host's).

        @return: The bundle directory for L{dockserve.daemon.contracts.Runtime.create}:
            C{directory} itself (L{dockserve.daemon.contracts.Runtime.run}
            is given it before the bundle is made).
        """

    def release(self, directory: Path, container_id: str) -> Deferred[None]:
        """
        Unmount what L{prepare} mounted; the upper directory stays. Needs
        no record: a removed container's leftovers are released too.
        """

    def rootfs(self, directory: Path) -> Path:
        """Where the container's root filesystem is (mounted while it runs)."""

    def upper(self, directory: Path) -> Path:
        """The container's own changes (overlayfs upper directory)."""
