# -*- test-case-name: tests.api.test_images -*-
"""The /images endpoints: placeholder until filled in."""

from typing import Protocol

from dockserve.api.route import Route


class ImageBackend(Protocol):
    """What the /images handlers ask of the daemon."""


class ImagesAPI:
    """The /images handlers."""

    def __init__(self, backend: ImageBackend) -> None:
        self._backend = backend


ROUTES: list[Route] = []
