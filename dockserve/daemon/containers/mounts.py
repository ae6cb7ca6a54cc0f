# -*- test-case-name: tests.daemon.containers.test_mounts -*-
"""
A container's mounts as Docker users see them: what C{Binds}, C{Mounts},
C{Config.Volumes} and the image's C{VOLUME}s add up to.

One list (L{points}) feeds inspect's and C{docker ps}'s C{Mounts}
(L{view}), the anonymous volumes a create makes (L{anonymous_targets}),
the volumes C{docker rm -v} removes, the volumes a first start fills
from the image (C{copy}), and C{docker cp}'s choice of where a path
lands (L{covering}): a copy into a read-only volume is refused with
dockerd's words, a copy into a volume of a read-only container is not.

C{--volumes-from} mounts are resolved once, at create, from the other
container's list (L{inherit}), and kept with the container: they stay
when that container goes, as dockerd keeps them. L{bundle_view} gives the
bundle builder the same list in the C{HostConfig} terms it reads.

Volume names are checked by L{dockserve.daemon.volumes.names} (dockerd's
charset): a name is a directory under the volumes root.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import evolve, field, frozen

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
    @ivar propagation: A bind's propagation (C{rprivate} unless told).
    @ivar recursive: A bind takes the mounts under its source along
        (C{rbind}), unless C{--mount bind-nonrecursive} says not to.
    @ivar copy: A volume the image's content at C{destination} fills
        when it is empty at the container's first start (not for
        C{nocopy}, binds, or what C{--volumes-from} brought).
    @ivar inherited: Brought by C{--volumes-from}.
    @ivar driver: The volume driver the container asks for.
    @ivar options: The driver options a volume is made with if missing
        (C{--mount volume-opt=...}).
    @ivar labels: The labels a volume is made with if missing
        (C{--mount volume-label=...}).
    """

    type: str
    destination: str
    source: str
    name: str = ""
    rw: bool = True
    mode: str = ""
    anonymous: bool = False
    propagation: str = ""
    recursive: bool = True
    copy: bool = False
    inherited: bool = False
    driver: str = "local"
    options: dict[str, str] = field(factory=dict, eq=False)
    labels: dict[str, str] = field(factory=dict, eq=False)


#: Where a container keeps the mounts C{--volumes-from} brought it.
INHERITED_FILE = "volumes-from.json"

#: A bind's propagation when none is asked for.
DEFAULT_PROPAGATION = "rprivate"

_PROPAGATIONS = frozenset({
    "private", "rprivate", "shared", "rshared", "slave", "rslave"
})  # fmt: skip


def _clean(path: str) -> str:
    """An absolute container path, cleaned lexically (never C{//x})."""
    return posixpath.normpath("/" + path.lstrip("/")) if path else ""


def _driver(host_config: Mapping[str, Any], mount: Mapping[str, Any] | None) -> str:
    """The driver a volume is asked of: the mount's, else C{--volume-driver}."""
    options = (mount or {}).get("VolumeOptions") or {}
    named = (options.get("DriverConfig") or {}).get("Name")
    return str(named or host_config.get("VolumeDriver") or "local")


def _mount_volume(
    host_config: Mapping[str, Any],
    mount: Mapping[str, Any],
    destination: str,
    name: str,
    source: str,
    *,
    anonymous: bool,
) -> MountPoint:
    """A C{--mount type=volume} (named or anonymous) as a mount point."""
    options = mount.get("VolumeOptions") or {}
    driver_config = options.get("DriverConfig") or {}
    return MountPoint(
        "volume",
        destination,
        source,
        name,
        rw=not mount.get("ReadOnly"),
        mode="z",
        anonymous=anonymous,
        copy=not options.get("NoCopy"),
        driver=_driver(host_config, mount),
        options=dict(driver_config.get("Options") or {}),
        labels=dict(options.get("Labels") or {}),
    )


def points(
    host_config: Mapping[str, Any],
    anonymous: Mapping[str, str],
    volumes_root: Path,
    inherited: Iterable[MountPoint] = (),
) -> list[MountPoint]:
    """
    The container's mounts from its C{HostConfig}, its anonymous volumes
    (destination -> name) and what C{--volumes-from} brought it
    (C{inherited}), later ones winning a destination as dockerd's
    C{registerMountPoints} has them: the other containers' first, then
    the anonymous volumes, C{Binds}, C{Mounts}.
    """
    found: dict[str, MountPoint] = {}

    def volume(name: str) -> str:
        # Not checked here: an old record's bad name still shows; starting
        # with it is refused (dockserve.daemon.containers.oci).
        return str(volumes_root / name / "_data")

    for point in inherited:
        found[point.destination] = point
    for destination, name in anonymous.items():
        found[_clean(destination)] = MountPoint(
            "volume",
            _clean(destination),
            volume(name),
            name,
            anonymous=True,
            copy=True,
            driver=_driver(host_config, None),
        )
    for bind in host_config.get("Binds") or []:
        parts = str(bind).split(":")
        if len(parts) < 2:
            continue
        source, destination = parts[0], _clean(parts[1])
        mode = parts[2] if len(parts) > 2 else ""
        options = mode.split(",")
        rw = "ro" not in options
        if source.startswith("/"):
            propagation = next(
                (o for o in options if o in _PROPAGATIONS), DEFAULT_PROPAGATION
            )
            found[destination] = MountPoint(
                "bind", destination, source, rw=rw, mode=mode, propagation=propagation
            )
        else:
            found[destination] = MountPoint(
                "volume",
                destination,
                volume(source),
                source,
                rw,
                mode or "z",
                copy="nocopy" not in options,
                driver=_driver(host_config, None),
            )
    for mount in host_config.get("Mounts") or []:
        if not isinstance(mount, dict):
            continue
        kind = str(mount.get("Type") or "volume")
        destination = _clean(str(mount.get("Target") or ""))
        rw = not mount.get("ReadOnly")
        source = str(mount.get("Source") or "")
        if kind == "volume":
            name = source or anonymous.get(destination, "")
            if name:
                found[destination] = _mount_volume(
                    host_config,
                    mount,
                    destination,
                    name,
                    volume(name),
                    anonymous=not source,
                )
        elif kind == "bind":
            bind_options = mount.get("BindOptions") or {}
            asked = bind_options.get("Propagation")
            found[destination] = MountPoint(
                "bind",
                destination,
                source,
                rw=rw,
                propagation=str(asked or DEFAULT_PROPAGATION),
                recursive=not bind_options.get("NonRecursive"),
            )
        elif kind == "tmpfs":
            found[destination] = MountPoint("tmpfs", destination, "", rw=rw)
    return list(found.values())


def anonymous_targets(
    config: Mapping[str, Any],
    host_config: Mapping[str, Any],
    inherited: Iterable[MountPoint] = (),
) -> list[str]:
    """
    Where a create makes anonymous volumes: destination-only binds
    (C{Binds: ["/vol1"]}, what the SDK's C{volumes=["/vol1"]} sends),
    C{--mount type=volume} without a source, and the C{Config.Volumes}
    paths (the image's C{VOLUME}s merged in) that no bind, mount, tmpfs
    or C{--volumes-from} mount covers.
    """
    taken = {p.destination for p in points(host_config, {}, Path("/"), inherited)}
    taken |= {_clean(str(t)) for t in host_config.get("Tmpfs") or {}}
    explicit = [str(b) for b in host_config.get("Binds") or [] if ":" not in str(b)]
    explicit += [
        str(m.get("Target") or "")
        for m in host_config.get("Mounts") or []
        if isinstance(m, dict)
        and (m.get("Type") or "volume") == "volume"
        and not m.get("Source")
    ]
    wanted: list[str] = []
    for path in explicit:
        clean = _clean(path)
        if clean and clean not in wanted:
            wanted.append(clean)
    taken |= set(wanted)
    for path in config.get("Volumes") or {}:
        clean = _clean(str(path))
        if clean and clean not in taken and clean not in wanted:
            wanted.append(clean)
    return wanted


def inherit(source: Iterable[MountPoint], mode: str) -> list[MountPoint]:
    """
    What C{--volumes-from OTHER[:mode]} brings from C{OTHER}'s mounts
    (C{source}): its volumes and binds at the same destinations, writable
    only if they are there and C{mode} does not say C{ro}; never filled
    from the image. A tmpfs is the other container's own and stays there.
    """
    writable = "ro" not in mode.split(",")
    return [
        evolve(
            point,
            rw=point.rw and writable,
            mode="",
            anonymous=False,
            copy=False,
            inherited=True,
            options={},
            labels={},
        )
        for point in source
        if point.type in {"volume", "bind"}
    ]


def to_json(inherited: Iterable[MountPoint]) -> list[dict[str, Any]]:
    """C{--volumes-from} mounts as kept on disk with the container."""
    return [
        {
            "Type": p.type,
            "Name": p.name,
            "Source": p.source,
            "Destination": p.destination,
            "RW": p.rw,
            "Propagation": p.propagation,
            "Recursive": p.recursive,
        }
        for p in inherited
    ]


def from_json(kept: Iterable[Mapping[str, Any]]) -> list[MountPoint]:
    """What L{to_json} kept."""
    return [
        MountPoint(
            str(k.get("Type") or "volume"),
            str(k.get("Destination") or ""),
            str(k.get("Source") or ""),
            str(k.get("Name") or ""),
            rw=bool(k.get("RW")),
            propagation=str(k.get("Propagation") or ""),
            recursive=k.get("Recursive", True) is not False,
            inherited=True,
        )
        for k in kept
    ]


def tmpfs_options(mount: Mapping[str, Any]) -> str:
    """
    The options of a C{--mount type=tmpfs}, as dockerd's
    C{ConvertTmpfsOptions} writes them: C{ro}, C{mode=} in octal,
    C{size=} with the largest suffix that divides it, then the options
    given (C{exec}...).
    """
    tmpfs = mount.get("TmpfsOptions") or {}
    options = ["ro"] if mount.get("ReadOnly") else []
    if tmpfs.get("Mode"):
        options.append(f"mode={int(tmpfs['Mode']):o}")
    size = int(tmpfs.get("SizeBytes") or 0)
    if size:
        suffix = ""
        for unit, divisor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % divisor == 0:
                size, suffix = size // divisor, unit
                break
        options.append(f"size={size}{suffix}")
    options.extend(
        "=".join(str(o) for o in option) for option in tmpfs.get("Options") or []
    )
    return ",".join(options)


def bundle_view(
    host_config: Mapping[str, Any],
    anonymous: Mapping[str, str],
    inherited: Iterable[MountPoint],
) -> dict[str, Any]:
    """
    C{host_config} as the bundle builder is to read it: the same mounts,
    said in the terms it knows (L{dockserve.daemon.containers.spec}).
    C{--volumes-from} mounts become binds ahead of the container's own
    (which win a destination); an anonymous C{--mount} volume is left to
    the anonymous volumes, which the builder mounts; a C{--mount
    type=tmpfs} becomes a C{Tmpfs} entry with dockerd's options
    (read-only, mode, size).
    """
    own = {p.destination for p in points(host_config, anonymous, Path("/"))}
    binds: list[str] = []
    for point in inherited:
        if point.destination in own:
            continue
        if point.type == "volume":
            access = "rw" if point.rw else "ro"
            binds.append(f"{point.name}:{point.destination}:{access}")
        else:
            options = ["rw" if point.rw else "ro"]
            if point.propagation:
                options.append(point.propagation)
            binds.append(f"{point.source}:{point.destination}:{','.join(options)}")
    view = dict(host_config)
    if binds:
        view["Binds"] = [*binds, *(host_config.get("Binds") or [])]
    kept: list[Any] = []
    made: list[str] = []
    tmpfs = dict(host_config.get("Tmpfs") or {})
    for mount in host_config.get("Mounts") or []:
        kind = (mount or {}).get("Type") or "volume"
        if kind == "volume" and not mount.get("Source"):
            continue
        if kind == "tmpfs":
            tmpfs[str(mount.get("Target") or "")] = tmpfs_options(mount)
            continue
        bind_options = mount.get("BindOptions") or {}
        if kind == "bind" and bind_options.get("CreateMountpoint"):
            # A bind whose missing source is made, as the builder makes
            # the source of a C{Binds} entry.
            options = ["ro" if mount.get("ReadOnly") else "rw"]
            options.append(bind_options.get("Propagation") or DEFAULT_PROPAGATION)
            made.append(f"{mount['Source']}:{mount['Target']}:{','.join(options)}")
            continue
        kept.append(mount)
    if made:
        view["Binds"] = [*(view.get("Binds") or []), *made]
    if host_config.get("Mounts"):
        view["Mounts"] = kept
    if tmpfs:
        view["Tmpfs"] = tmpfs
    return view


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
            entry["Driver"] = point.driver
        entry["Mode"] = point.mode
        entry["RW"] = point.rw
        entry["Propagation"] = (
            (point.propagation or DEFAULT_PROPAGATION) if point.type == "bind" else ""
        )
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
