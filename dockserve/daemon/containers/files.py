# -*- test-case-name: tests.integration.test_cp_mounts -*-
"""
A container's files: C{docker cp} both ways (through its mounts, see
L{dockserve.daemon.containers.fileview}), C{docker export} and C{docker
diff}. The tar work runs in the thread pool (L{dockserve.daemon.archive}).
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import (
    Deferred,
)

from dockserve.daemon import archive
from dockserve.daemon.containers import (
    fileview,
    mounts,
)
from dockserve.daemon.containers.table import (
    _INIT_PATHS,
    Container,
    ContainerParts,
)
from dockserve.errors import (
    Conflict,
    InvalidParameter,
    NotFound,
)

_T = TypeVar("_T")


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


class ContainerFiles(ContainerParts):
    """The file operations of the container service."""

    def _with_root(
        self,
        c: Container,
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
        self._announce(c, "export")
        return self._with_root(c, lambda view: archive.export(view.root, out.write))

    def changes(self, reference: str) -> Deferred[list[dict[str, Any]]]:
        """C{GET /containers/{id}/changes}: from the overlayfs upper directory."""
        c = self._get(reference)
        image = self._images.resolve(c.record.image_id)
        upper = self._bundles.upper(c.directory)

        def changes() -> list[dict[str, Any]]:
            if not upper.exists():
                return []
            lowers = [Path(d) for d in image.layer_dirs]
            return _without_init_paths(list(archive.changes(upper, lowers)))

        return self._blocking(changes)
