# -*- test-case-name: tests.daemon.containers.test_mountsetup -*-
"""
A container's mounts made ready for a start, beyond what the bundle
builder does with a C{HostConfig}.

L{BundlesWithMounts} is the container service's L{Bundles}: it hands the
builder (L{dockserve.daemon.containers.oci}, which reads C{Binds},
C{Mounts}, C{Tmpfs} and the anonymous volumes) each record with its
mounts said in those terms (L{dockserve.daemon.containers.mounts.bundle_view}):
C{--volumes-from} mounts, anonymous C{--mount} volumes, the options of a
C{--mount type=tmpfs}. Every bundle is made through it, a start's and a
C{docker cp}'s alike, so both see the same mounts.

L{ready} runs before the container's process does (in a thread), when
L{needed} says there is something to do: a bind asking for shared or
slave propagation needs a host mount that has it, or dockerd's error; a
non-recursive bind is made a plain C{bind} in the bundle's C{config.json}
(the builder writes every bind as C{rbind}); and at a container's first
start each empty volume the image has content for is filled with it
(L{dockserve.daemon.volumes.copyup}).

dockerd fills a volume when it creates a container; here the fill waits
for the first time the volume is about to be used, and L{fillers} says
whose fill that is: of the containers that name the volume (and want it
filled) and have never run, the one created first, as with dockerd the
first create fills it and the later ones find it full. So a data
container that is created and never started (C{docker create -v /data
--name store image}) still gives C{--volumes-from store} its image's
files.
"""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockserve.daemon import store
from dockserve.daemon.volumes import copyup
from dockserve.errors import InvalidParameter

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable

    from twisted.internet.defer import Deferred

    from dockserve.daemon.containers.bundles import Bundles
    from dockserve.daemon.containers.mounts import MountPoint
    from dockserve.daemon.containers.record import ContainerRecord
    from dockserve.daemon.contracts import ResolvedImage
    from dockserve.daemon.network.model import NetPlan

_SHARED = frozenset({"shared", "rshared"})
_SLAVE = frozenset({"slave", "rslave"})


class BundlesWithMounts:
    """
    A L{Bundles} that gives C{inner} each record as C{view} has it: the
    same record, its C{HostConfig} saying every mount the container has.
    Anything else is C{inner}'s (tests reach their fake through it).
    """

    def __init__(
        self, inner: Bundles, view: Callable[[ContainerRecord], ContainerRecord]
    ) -> None:
        self._inner = inner
        self._view = view

    def prepare(
        self,
        directory: Path,
        record: ContainerRecord,
        image: ResolvedImage,
        network: NetPlan | None = None,
    ) -> Deferred[str]:
        """L{Bundles.prepare} of the record with all its mounts."""
        return self._inner.prepare(directory, self._view(record), image, network)

    def release(self, directory: Path, container_id: str) -> Deferred[None]:
        """L{Bundles.release}."""
        return self._inner.release(directory, container_id)

    def rootfs(self, directory: Path) -> Path:
        """L{Bundles.rootfs}."""
        return self._inner.rootfs(directory)

    def upper(self, directory: Path) -> Path:
        """L{Bundles.upper}."""
        return self._inner.upper(directory)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def fillers(
    wanted: Collection[str],
    pending: Iterable[tuple[str, str, Iterable[MountPoint]]],
) -> dict[str, tuple[str, MountPoint]]:
    """
    Whose image fills each volume of C{wanted} (names), if it is empty:
    C{pending} holds C{(created, container ID, mounts)} of each container
    whose fill has not happened yet (it never ran); of those that want a
    volume filled, the one created first fills it.

    @return: Volume name -> the container's ID and its mount of it.
    """
    found: dict[str, tuple[str, str, MountPoint]] = {}
    for created, container_id, points in pending:
        for point in points:
            if point.type != "volume" or not point.copy or point.name not in wanted:
                continue
            first = found.get(point.name)
            if first is None or created < first[0]:
                found[point.name] = (created, container_id, point)
    return {name: (cid, point) for name, (_, cid, point) in found.items()}


def needed(points: Iterable[MountPoint], *, first_run: bool) -> bool:
    """
    Whether L{ready} has anything to do for C{points}: most starts (binds
    as they come, a container's later runs) need no trip to a thread.
    """
    for point in points:
        if point.type == "bind" and (
            point.propagation in _SHARED | _SLAVE or not point.recursive
        ):
            return True
        if first_run and point.type == "volume" and point.copy:
            return True
    return False


def ready(
    rootfs: Path,
    points: Iterable[MountPoint],
    *,
    first_run: bool,
    config: Path | None = None,
) -> list[str]:
    """
    Make C{points} (a container's mounts) ready for its process, its root
    mounted at C{rootfs} and its bundle's C{config} written: binds'
    propagation checked, non-recursive binds made so; at the
    C{first_run}, empty volumes filled from the image. Blocks.

    @return: The destinations of the volumes filled.
    @raise InvalidParameter: A shared or slave bind of a host path whose
        mount is not one, in dockerd's words.
    @raise dockserve.errors.SystemError_: A volume could not be filled.
    """
    points = list(points)
    for point in points:
        if point.type == "bind" and point.propagation in _SHARED | _SLAVE:
            check_propagation(point.source, point.propagation)
    flat = {p.destination for p in points if p.type == "bind" and not p.recursive}
    if flat and config is not None:
        non_recursive(config, flat)
    filled = []
    if first_run:
        for point in points:
            wanted = point.type == "volume" and point.copy and point.source
            if wanted and copyup.populate(
                rootfs, point.destination, Path(point.source)
            ):
                filled.append(point.destination)
    return filled


def non_recursive(config: Path, destinations: set[str]) -> None:
    """
    In the bundle's C{config}, the binds at C{destinations} without the
    mounts under their sources: C{bind}, not C{rbind}.
    """
    spec = json.loads(config.read_bytes())
    for mount in spec.get("mounts") or []:
        where = posixpath.normpath(str(mount.get("destination") or "/"))
        if mount.get("type") == "bind" and where in destinations:
            mount["options"] = [
                "bind" if option == "rbind" else option
                for option in mount.get("options") or []
            ]
    # As the builder writes it: made again at every start, so no fsync.
    store.atomic_write(config, json.dumps(spec).encode(), mode=0o600, durable=False)


def _unescape(field: str) -> str:
    """A mountinfo path field, whose blanks and backslashes are octal escapes."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _source_mount(path: str, mountinfo: str) -> tuple[str, set[str]]:
    """The mount point C{path} lies on, and that mount's optional fields."""
    best, tags = "/", set()
    for line in mountinfo.splitlines():
        head, sep, _ = line.partition(" - ")
        fields = head.split()
        if not sep or len(fields) < 6:  # mountinfo's six fixed fields
            continue
        point = _unescape(fields[4])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        # Later lines are mounted on top: the last of a place wins.
        if inside and len(point) >= len(best):
            best, tags = point, {f.split(":")[0] for f in fields[6:]}
    return best, tags


def check_propagation(
    source: str, propagation: str, mountinfo: str | None = None
) -> None:
    """
    A bind of C{source} may be C{[r]shared} only from a shared mount, and
    C{[r]slave} only from a shared or slave one, as dockerd requires.

    @raise InvalidParameter: C{path X is mounted on Y but it is not a
        shared mount} (or C{shared or slave}).
    """
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    path = os.path.realpath(source)
    on, tags = _source_mount(path, mountinfo)
    if propagation in _SHARED and "shared" not in tags:
        msg = f"path {source} is mounted on {on} but it is not a shared mount"
        raise InvalidParameter(msg)
    if propagation in _SLAVE and not tags & {"shared", "master"}:
        msg = f"path {source} is mounted on {on} but it is not a shared or slave mount"
        raise InvalidParameter(msg)
