# -*- test-case-name: tests.daemon.containers.test_committing -*-
"""
C{docker commit}: a container's changes and config become an image, as
dockerd's C{CreateImageFromContainer} makes one.

The config is the body's (C{Config} fields, as C{POST /containers/create}
decodes them) or, without one, the container's own; the C{--change}
instructions are applied to it, then what it leaves empty is filled from
the container's config (moby's C{merge} in C{daemon/commit.go}: C{Cmd}
only when neither C{Cmd} nor C{Entrypoint} was given, C{Env} and
C{Labels} per key, C{ExposedPorts} and C{Volumes} joined, the
healthcheck field by field). A running container is paused for the while
(C{pause=true}, dockerd's default) and resumed after, failure or not; one
paused already stays so. The layer is the container's upper directory
without the mount points the runtime made for its own files (C{/etc/hosts}
and the others dockerd keeps in an init layer); volumes and binds are
mounts, never in the upper directory, so never in the image. The image
itself is made by the image area's commit step (L{ImageCommitter}, which
L{dockserve.daemon.images.service.ImageService} is); the container then
announces C{commit} with dockerd's attributes (C{comment}, C{imageID},
C{imageRef}).
"""

import contextlib
from pathlib import Path
from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred

from dockserve.daemon.containers import configs
from dockserve.daemon.containers.table import _INIT_PATHS, Container, ContainerParts
from dockserve.errors import (
    Conflict,
    DockerError,
    InvalidParameter,
    NotImplementedByDaemon,
)


class ImageCommitter(Protocol):
    """
    What a commit asks of the image area (the consumer's side of
    L{dockserve.daemon.images.commit}).
    """

    def commit_reference(self, repo: str | None, tag: str | None) -> str | None:
        """
        The familiar C{repo:tag} to tag the image with (C{None}: none).

        @raise InvalidParameter: For a bad repository or tag.
        """

    def apply_changes(
        self, config: dict[str, Any], instructions: list[str]
    ) -> dict[str, Any]:
        """
        C{config} with the C{--change} Dockerfile instructions applied.

        @raise InvalidParameter: For a bad instruction.
        """

    def commit_image(
        self,
        *,
        parent: str | None,
        upper: Path | None,
        config: dict[str, Any],
        history: dict[str, Any],
        empty_layer: bool = False,
        container: str = "",
        container_config: dict[str, Any] | None = None,
        exclude: frozenset[str] = frozenset(),
        repo_tag: str | None = None,
    ) -> Deferred[str]:
        """The new image's ID, once it is durably stored (and tagged)."""


def merge(config: dict[str, Any], container_config: dict[str, Any]) -> dict[str, Any]:
    """
    The committed image's config: C{config} (the body's or the
    container's, changes applied) with what it leaves empty taken from
    C{container_config}, as moby's commit C{merge}. The create path's
    L{configs.merge} does most of it (and the healthcheck field by
    field); commit's differs in joining C{ExposedPorts} and C{Volumes}
    and in leaving C{OnBuild} and C{Shell} as C{config} has them.
    """
    merged = configs.merge(config, {"config": container_config})
    for key in ("OnBuild", "Shell"):
        merged[key] = config.get(key)
    for key in ("ExposedPorts", "Volumes"):
        own = config.get(key) or {}
        theirs = container_config.get(key) or {}
        if own and theirs:
            merged[key] = {**own, **{k: v for k, v in theirs.items() if k not in own}}
    return merged


class ContainerCommitting(ContainerParts):
    """C{POST /commit}: the container side of a commit."""

    def _committer(self) -> ImageCommitter:
        """The image area, as far as a commit needs it."""
        images = self._images
        if not all(
            hasattr(images, name)
            for name in ("commit_reference", "apply_changes", "commit_image")
        ):
            raise NotImplementedByDaemon("this daemon's images cannot be committed to")
        return cast("ImageCommitter", images)

    def commit(
        self,
        reference: str,
        *,
        repo: str | None = None,
        tag: str | None = None,
        author: str = "",
        comment: str = "",
        pause: bool = True,
        changes: list[str] | tuple[str, ...] = (),
        config: dict[str, Any] | None = None,
    ) -> Deferred[str]:
        """
        C{POST /commit?container=}: the new image's ID, once it is on disk.

        @param config: The request body (C{Config} fields), or C{None}.
        @raise NotFound: C{No such container: x}.
        @raise Conflict: For a container being removed, or dead.
        @raise InvalidParameter: For a bad name, change or body, before
            anything is paused or written.
        """
        if not reference:
            raise InvalidParameter('invalid name or ID supplied: ""')
        c = self._get(reference)
        status = c.record.state.status
        if status == "dead":
            raise Conflict(f"You cannot commit container {c.id} which is Dead")
        if status == "removing":
            raise Conflict(f"You cannot commit container {c.id} which is being removed")
        images = self._committer()
        repo_tag = images.commit_reference(repo, tag)
        own = configs.decode(config)[0] if config else {}
        # As inspect shows it (and dockerd keeps it): no volumes is null.
        current = {**c.record.config, "Volumes": c.record.config.get("Volumes") or None}
        changed = images.apply_changes(dict(own or current), list(changes))
        image_config = merge(changed, current)
        history = {
            "created_by": " ".join(current.get("Cmd") or []),
            "author": author,
            "comment": comment,
        }

        async def commit_it() -> str:
            paused = await self._pause_for_commit(c) if pause else False
            try:
                await c.root_lock.acquire()
                try:
                    image_id = await images.commit_image(
                        parent=c.record.image_id,
                        upper=self._bundles.upper(c.directory),
                        config=image_config,
                        history=history,
                        container=c.id,
                        container_config=current,
                        exclude=_INIT_PATHS,
                        repo_tag=repo_tag,
                    )
                finally:
                    c.root_lock.release()
                self._announce(
                    c,
                    "commit",
                    comment=comment,
                    imageID=image_id,
                    imageRef=repo_tag or "",
                )
            finally:
                if paused and c.record.state.status == "paused":
                    with contextlib.suppress(DockerError):
                        await self.unpause(c.id)
            return image_id

        return Deferred.fromCoroutine(commit_it())

    async def _pause_for_commit(self, c: Container) -> bool:
        """
        Pause C{c} if it runs (not if it is paused already).

        @return: Whether it was paused here, so must be resumed; a pause
            that fails is not an error, as with dockerd.
        """
        if c.record.state.status != "running":
            return False
        try:
            await self.pause(c.id)
        except DockerError:
            return False
        return True
