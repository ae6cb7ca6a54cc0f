# -*- test-case-name: tests.daemon.containers.test_mounts -*-
"""
A container's mounts as Docker users see them: what C{Binds}, C{Mounts},
C{Config.Volumes} and the image's C{VOLUME}s add up to.

One list (L{points}) feeds inspect's and C{docker ps}'s C{Mounts}
(L{view}), the anonymous volumes a create makes (L{anonymous_targets}),
the volumes C{docker rm -v} removes, and C{docker cp}'s choice of where a
path lands (L{covering}): a copy into a read-only volume is refused with
dockerd's words, a copy into a volume of a read-only container is not.

Volume names are checked by L{dockserve.daemon.volumes.names} (dockerd's
charset): a name is a directory under the volumes root.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import frozen

from dockserve.daemon.volumes.names import check_name, new_name

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

check_volume_name = check_name
new_volume_name = new_name


@frozen
class MountPoint:
    """
    One mount of a container as inspect shows it.

    @ivar type: C{bind}, C{volume} or C{tmpfs}.
    @ivar destination: The absolute path inside the container.
    @ivar source: The host path (a volume's C{_data} directory); C{""}
        for tmpfs.
    @ivar name: The volume's name (C{""} for binds and tmpfs).
    @ivar rw: Writable.
    @ivar mode: What the user wrote after the second colon (C{ro},
        C{z}...), as dockerd reports it.
    @ivar anonymous: A volume made for this container alone.
    """

    type: str
    destination: str
    source: str
    name: str = ""
    rw: bool = True
    mode: str = ""
    anonymous: bool = False


def _clean(path: str) -> str:
    """An absolute container path, cleaned lexically (never C{//x})."""
    return posixpath.normpath("/" + path.lstrip("/")) if path else ""


def points(
    host_config: Mapping[str, Any],
    anonymous: Mapping[str, str],
    volumes_root: Path,
) -> list[MountPoint]:
    """
    The container's mounts from its C{HostConfig} and its anonymous
    volumes (destination -> name), later ones winning a destination as
    they do at start (a C{--mount} over a C{-v}).
    """
    found: dict[str, MountPoint] = {}

    def volume(name: str) -> str:
        # Not checked here: an old record's bad name still shows; starting
        # with it is refused (dockserve.daemon.containers.oci).
        return str(volumes_root / name / "_data")

    for destination, name in anonymous.items():
        found[_clean(destination)] = MountPoint(
            "volume", _clean(destination), volume(name), name, anonymous=True
        )
    for bind in host_config.get("Binds") or []:
        parts = str(bind).split(":")
        if len(parts) < 2:
            continue
        source, destination = parts[0], _clean(parts[1])
        mode = parts[2] if len(parts) > 2 else ""
        rw = "ro" not in mode.split(",")
        if source.startswith("/"):
            found[destination] = MountPoint(
                "bind", destination, source, rw=rw, mode=mode
            )
        else:
            found[destination] = MountPoint(
                "volume", destination, volume(source), source, rw, mode or "z"
            )
    for mount in host_config.get("Mounts") or []:
        if not isinstance(mount, dict):
            continue
        kind = str(mount.get("Type") or "volume")
        destination = _clean(str(mount.get("Target") or ""))
        rw = not mount.get("ReadOnly")
        source = str(mount.get("Source") or "")
        if kind == "volume" and source:
            found[destination] = MountPoint(
                "volume", destination, volume(source), source, rw, "z"
            )
        elif kind == "bind":
            found[destination] = MountPoint("bind", destination, source, rw=rw)
        elif kind == "tmpfs":
            found[destination] = MountPoint("tmpfs", destination, "", rw=rw)
    return list(found.values())


def anonymous_targets(
    config: Mapping[str, Any], host_config: Mapping[str, Any]
) -> list[str]:
    """
    The C{Config.Volumes} paths (the image's C{VOLUME}s merged in) that no
    bind, mount or tmpfs covers: each gets an anonymous volume at create.
    """
    taken = {p.destination for p in points(host_config, {}, Path("/"))}
    taken |= {_clean(str(t)) for t in host_config.get("Tmpfs") or {}}
    wanted = []
    # A bind of a destination alone (C{Binds: ["/vol1"]}, what the SDK's
    # volumes=["/vol1"] sends) is an anonymous volume too.
    alone = [b for b in host_config.get("Binds") or [] if ":" not in str(b)]
    for path in [*alone, *(config.get("Volumes") or {})]:
        clean = _clean(str(path))
        if clean and clean not in taken and clean not in wanted:
            wanted.append(clean)
    return wanted


def view(mounts: Iterable[MountPoint]) -> list[dict[str, Any]]:
    """Inspect's C{Mounts}: each field as dockerd fills it."""
    shown = []
    for point in mounts:
        entry: dict[str, Any] = {"Type": point.type}
        if point.type == "volume":
            entry["Name"] = point.name
        entry["Source"] = point.source
        entry["Destination"] = point.destination
        if point.type == "volume":
            entry["Driver"] = "local"
        entry["Mode"] = point.mode
        entry["RW"] = point.rw
        entry["Propagation"] = "rprivate" if point.type == "bind" else ""
        shown.append(entry)
    return shown


def covering(mounts: Iterable[MountPoint], path: str) -> MountPoint | None:
    """
    The mount that C{path} (a container path, taken lexically as dockerd
    takes it) lies in, the deepest one; C{None} for the root filesystem.
    """
    clean = _clean(path)
    best: MountPoint | None = None
    for point in mounts:
        top = point.destination
        if (clean == top or clean.startswith(top.rstrip("/") + "/")) and (
            best is None or len(top) > len(best.destination)
        ):
            best = point
    return best


def volume_names(mounts: Iterable[MountPoint]) -> set[str]:
    """The volumes among C{mounts}, by name."""
    return {p.name for p in mounts if p.type == "volume" and p.name}
