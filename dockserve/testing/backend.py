# -*- test-case-name: tests.api.test_router -*-
"""
L{MemoryBackend}: the API's backend with every area in memory.

Each area's fake lives in its own module (L{dockserve.testing.system},
C{images}, C{containers}); a test passes the ones it needs and gets a
blank stand-in for the rest.
"""

from typing import Any


class _Blank:
    """An area with no operations, for tests that don't reach it."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


class MemoryBackend:
    """
    A L{dockserve.api.backend.Backend} made of in-memory areas.

    @ivar system: Ping/version/info facts.
    @ivar images: The image area.
    @ivar containers: Containers, exec and networks.
    @ivar events: The event bus (a real one: it is in memory anyway).
    @ivar volumes: The volume area.
    @ivar networks: The network area.
    """

    def __init__(  # noqa: PLR0917 - an area each, as the Backend has them
        self,
        system: Any = None,
        images: Any = None,
        containers: Any = None,
        events: Any = None,
        volumes: Any = None,
        networks: Any = None,
    ) -> None:
        self.system: Any = system if system is not None else _Blank()
        self.images: Any = images if images is not None else _Blank()
        self.containers: Any = containers if containers is not None else _Blank()
        self.events: Any = events if events is not None else _Blank()
        self.volumes: Any = volumes if volumes is not None else _Blank()
        self.networks: Any = networks if networks is not None else _Blank()
