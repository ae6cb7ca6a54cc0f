# -*- test-case-name: tests.daemon.build.test_cache -*-
"""
The classic builder's layer cache: before a step runs, look for an image
made on the current image by a step of the same config.

As dockerd's C{image/cache} (C{getLocalCachedImage} and C{compare}): the
candidates are the children of the current image (the parent links of
L{dockserve.daemon.images.commit.Parents}); one matches when its
C{container_config} equals the step's, the fields a build does not set
(C{Hostname}, C{Domainname}, C{Image}) aside. The step's config carries
what makes the step itself: the command with C{#(nop)} for a metadata
step, the RUN's command with its build args (C{|2 A=1 B=2 /bin/sh -c ...}),
COPY's content digest (C{file:<hex>}), so two steps match only when they
would make the same image. The newest match wins, as in dockerd.

Once a step misses, every later step of the stage misses too (the
prober's "cache busted"); a new stage starts probing again.

With C{--cache-from}, only images in the parent chain of one of those
images count (dockerd's C{ImageCache} around its local cache).
"""

from collections.abc import Callable, Iterable
from typing import Any

from dockserve.daemon.images.commit import go_config

#: Fields a step's config does not decide.
_IGNORED = ("Hostname", "Domainname", "Image")


def key(config: dict[str, Any]) -> dict[str, Any]:
    """What of a step's config a cache match compares."""
    normal = go_config(config)
    for name in _IGNORED:
        normal.pop(name, None)
    # An empty map and no map are the same to a container.
    for name in ("Labels", "Volumes", "ExposedPorts"):
        if not normal.get(name):
            normal.pop(name, None)
    return normal


class Prober:
    """
    Cache lookups for one build.

    @param children: The images made on an image (C{""}: on none).
    @param config_of: An image's config (its C{container_config} and
        C{created} are read), or C{None} when it is gone.
    @param parent_of: An image's parent, or C{""}.
    @param enabled: C{False} for C{--no-cache}.
    @param cache_from: C{--cache-from}'s image IDs.
    """

    def __init__(
        self,
        children: Callable[[str], Iterable[str]],
        config_of: Callable[[str], dict[str, Any] | None],
        parent_of: Callable[[str], str],
        *,
        enabled: bool = True,
        cache_from: Iterable[str] = (),
    ) -> None:
        self._children = children
        self._config_of = config_of
        self._parent_of = parent_of
        self._enabled = enabled
        self._sources = list(cache_from)
        self._busted = False

    def reset(self) -> None:
        """A new stage: probe again."""
        self._busted = False

    def probe(self, parent: str, config: dict[str, Any]) -> str | None:
        """The image a step of C{config} on C{parent} made before, if any."""
        if not self._enabled or self._busted:
            return None
        wanted = key(config)
        best: tuple[str, str] | None = None
        for child in self._children(parent):
            image = self._config_of(child)
            if image is None:
                continue
            if key(image.get("container_config") or {}) != wanted:
                continue
            if self._sources and not self._from_sources(child):
                continue
            created = str(image.get("created") or "")
            if best is None or created > best[0]:
                best = (created, child)
        if best is None:
            self._busted = True
            return None
        return best[1]

    def _from_sources(self, image_id: str) -> bool:
        """Whether C{image_id} is a C{--cache-from} image or an ancestor of one."""
        for source in self._sources:
            current = source
            seen: set[str] = set()
            while current and current not in seen:
                if current == image_id:
                    return True
                seen.add(current)
                current = self._parent_of(current)
        return False
