# -*- test-case-name: tests.daemon.containers.test_oci -*-
"""
The real L{Bundles}: an overlayfs root and a C{config.json} per container.

The container's directory is its OCI bundle: C{rootfs/} is the overlayfs
mount (the image's layers below, C{upper/} above, C{work/} beside),
C{config.json} is written by L{dockserve.daemon.containers.spec}, and the
generated C{hosts}, C{hostname} and C{resolv.conf} live beside it. Named
volumes in C{Binds} become directories under the volumes root, given to the
spec as plain host paths. Mounting and writing happen in a thread.
"""

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from dockserve.daemon import store
from dockserve.daemon.containers import joins, mounts, shm, spec
from dockserve.daemon.containers.record import ContainerRecord
from dockserve.daemon.contracts import ResolvedImage
from dockserve.daemon.network.model import NetPlan
from dockserve.daemon.rootfs import mount_rootfs, unmount
from dockserve.errors import DockerError, SystemError_

_T = TypeVar("_T")


def volume_binds(
    host_config: dict[str, Any],
    volumes_root: Path,
    anonymous: dict[str, str] | None = None,
) -> dict[str, Any]:
    """
    C{host_config} with every named volume in C{Binds} (C{name:/dst[:mode]})
    replaced by its host directory, which is made if missing; the
    container's C{anonymous} volumes (destination -> name) come first, so
    that a bind or mount of the same destination wins, as at create.

    @raise InvalidParameter: A volume name that is not one (C{../x}): it
        would be a directory outside the volumes root.
    """
    named = [f"{name}:{target}" for target, name in (anonymous or {}).items()]
    binds = []
    for bind in [*named, *(host_config.get("Binds") or [])]:
        source, colon, rest = bind.partition(":")
        if not colon:
            continue  # A destination alone: one of the anonymous volumes.
        if not source.startswith("/"):
            data = volumes_root / mounts.check_volume_name(source) / "_data"
            data.mkdir(parents=True, exist_ok=True)
            source = str(data)
        binds.append(f"{source}:{rest}")
    changed = dict(host_config)
    if binds or host_config.get("Binds"):
        changed["Binds"] = binds
    return changed


class OverlayBundles:
    """
    L{dockserve.daemon.containers.bundles.Bundles} for real containers.
    """

    def __init__(
        self,
        *,
        volumes_root: Path,
        reactor: Any,
        threadpool: ThreadPool | None = None,
    ) -> None:
        self._volumes_root = volumes_root
        self._reactor = reactor
        self._threadpool = threadpool

    def _in_thread(self, work: Callable[[], _T]) -> Deferred[_T]:
        if self._threadpool is None:
            try:
                return succeed(work())
            except Exception as e:
                return fail(e)
        return deferToThreadPool(self._reactor, self._threadpool, work)

    def rootfs(self, directory: Path) -> Path:
        """C{<dir>/rootfs}, the overlayfs mount point."""
        return directory / "rootfs"

    def upper(self, directory: Path) -> Path:
        """C{<dir>/upper}, the container's own changes."""
        return directory / "upper"

    def prepare(
        self,
        directory: Path,
        record: ContainerRecord,
        image: ResolvedImage,
        network: NetPlan | None = None,
    ) -> Deferred[str]:
        """Mount the root (if not mounted) and write C{config.json}."""
        return self._in_thread(lambda: self._prepare(directory, record, image, network))

    def _prepare(
        self,
        directory: Path,
        record: ContainerRecord,
        image: ResolvedImage,
        network: NetPlan | None,
    ) -> str:
        rootfs = self.rootfs(directory)
        upper = self.upper(directory)
        work = directory / "work"
        for path in (rootfs, upper, work):
            path.mkdir(exist_ok=True)
        if not os.path.ismount(rootfs):
            try:
                mount_rootfs(list(image.layer_dirs), upper, work, rootfs)
            except OSError as e:
                # strerror names the call, not the data root's paths.
                raise SystemError_(
                    f"error mounting container root: {e.strerror}"
                ) from None
        host_config = volume_binds(
            record.host_config, self._volumes_root, record.anonymous_volumes
        )
        joined = joins.of(host_config)
        if joined is not None and joined.own_shm:
            # --ipc shareable: a /dev/shm on the host, for others to join.
            try:
                shm.mount(Path(joined.shm), int(host_config.get("ShmSize") or 0))
            except OSError as e:
                self._unmount(rootfs)
                raise SystemError_(e.strerror or str(e)) from None
        try:
            config = spec.build_spec(
                container_id=record.id,
                image_config=image.config,
                config=record.config,
                host_config=host_config,
                rootfs=rootfs,
                container_dir=directory,
                network=network,
            )
        except DockerError:
            self._unmount(rootfs)
            raise
        # Made again at every start: atomic, but no fsync on the start's path.
        store.atomic_write(
            directory / "config.json",
            json.dumps(config).encode(),
            mode=0o600,
            durable=False,
        )
        return str(directory)

    def _unmount(self, rootfs: Path) -> None:
        if os.path.ismount(rootfs):
            unmount(rootfs)

    def release(self, directory: Path, container_id: str) -> Deferred[None]:
        """Unmount the root; the upper directory and the files stay."""
        del container_id

        def release() -> None:
            self._unmount(self.rootfs(directory))
            shm.release(shm.path(directory))

        return self._in_thread(release)
