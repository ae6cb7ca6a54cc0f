# -*- test-case-name: tests.daemon.test_daemon -*-
"""
What the image store and the containers ask of each other.

Images and containers are built side by side; each sees the other only
through these small Protocols, so either can be tested with a fake of the
other and neither imports the other's package.
"""

from typing import Any, Protocol

from attrs import frozen


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


class NoImageUsers:
    """An L{ImageUsers} for a daemon with no containers (and for tests)."""

    def containers_using(self, image_id: str) -> list[tuple[str, bool]]:  # noqa: ARG002
        """Nobody uses any image."""
        return []
