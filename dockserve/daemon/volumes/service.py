# -*- test-case-name: tests.daemon.volumes.test_service -*-
"""
L{VolumeService}: volumes as objects of their own, as dockerd keeps them.

Each volume is a directory C{<data-root>/volumes/<name>/} holding its data
(C{_data}, what containers mount) and its record (C{volume.json}: labels,
the local driver's options, when it was made), written durably before a
create is answered. Volumes made by an earlier version (a C{_data}
directory alone) are volumes too, with no labels.

Who uses a volume is the containers' to say (C{users}): a volume any
container names is in use (C{rm} answers 409 as dockerd) and is not
pruned. Which ones hold it mounted is the volume's own count
(L{acquire}/L{release}): a volume with driver options is mounted by its
first container and unmounted after its last. A container is removed
(and names the volume no more) a little before its run's release comes:
a plain volume it still holds is free already (C{docker run --rm -v v:/d
...; docker volume rm v}), one with a device mounted waits for the
release.

Every change publishes an event (C{create}, C{mount}, C{unmount},
C{destroy}, C{prune}) with dockerd's attributes.
"""

from __future__ import annotations

import calendar
import os
import shutil
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from attrs import define, field

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from dockserve.daemon import store
from dockserve.daemon.volumes import local
from dockserve.daemon.volumes.names import check_name, new_name
from dockserve.errors import Conflict, InvalidParameter, NotFound, SystemError_
from dockserve.timetypes import get_timestamp

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

_log = Logger()

#: The label dockerd (23 and later) gives an anonymous volume; prune from
#: API 1.42 removes only volumes with it unless told C{all=true}.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"

#: A volume's record, beside its C{_data}.
RECORD = "volume.json"

_DRIVER = "local"

_LIST_FILTERS = frozenset({"dangling", "driver", "label", "label!", "name"})
_PRUNE_FILTERS = frozenset({"label", "label!", "all", "until"})


def _no_users(name: str) -> list[str]:
    del name
    return []


@define
class _Volume:
    name: str
    created_at: str
    labels: dict[str, str] = field(factory=dict)
    options: dict[str, str] = field(factory=dict)
    holders: set[str] = field(factory=set)
    mounted: bool = False


def _labels_match(labels: Mapping[str, str], filters: Mapping[str, list[str]]) -> bool:
    def has(spec: str) -> bool:
        key, eq, value = spec.partition("=")
        return key in labels and (not eq or labels[key] == value)

    return all(has(s) for s in filters.get("label", [])) and not any(
        has(s) for s in filters.get("label!", [])
    )


def _bool_filter(filters: Mapping[str, list[str]], key: str) -> bool | None:
    values = filters.get(key)
    if not values:
        return None
    value = values[-1].lower()
    if value in {"true", "1"}:
        return True
    if value in {"false", "0"}:
        return False
    shown = "[" + " ".join(values) + "]"
    raise InvalidParameter(f"Invalid filter '{key}={shown}'")


class VolumeService:
    """
    The volumes under C{root}.

    @param users: The IDs of the containers that name a volume (any state).
    @param publish: The event bus's C{publish}.
    @param run: Runs a command (C{mount}, C{umount}); fires with its exit
        code and output.
    @param blocking: Runs blocking work (removing a volume's files) off the
        reactor.
    """

    def __init__(
        self,
        root: Path,
        *,
        users: Callable[[str], list[str]] = _no_users,
        publish: Callable[..., Any] | None = None,
        run: Callable[[list[str]], Deferred[tuple[int, bytes]]] | None = None,
        blocking: Callable[[Callable[[], Any]], Deferred[Any]] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._root = root
        self._users = users
        self._publish = publish
        self._run = run
        self._blocking = blocking
        self._now = now
        self._volumes: dict[str, _Volume] = {}

    def set_users(self, users: Callable[[str], list[str]]) -> None:
        """Who names a volume: the container service, once it exists."""
        self._users = users

    def _event(self, action: str, name: str, **attributes: str) -> None:
        if self._publish is not None:
            self._publish("volume", action, name, {"driver": _DRIVER, **attributes})

    def _in_thread(self, work: Callable[[], Any]) -> Deferred[Any]:
        if self._blocking is None:
            return succeed(work())
        return self._blocking(work)

    # --- the records ---------------------------------------------------------

    def restore(self) -> None:
        """Read every volume's record (blocking, at start: small files)."""
        self._root.mkdir(parents=True, exist_ok=True)
        for directory in sorted(self._root.iterdir()):
            if not (directory / "_data").is_dir():
                continue
            try:
                meta = store.read_json(directory / RECORD)
            except FileNotFoundError:
                meta = {}
            except (OSError, ValueError) as e:
                _log.error("unreadable volume record {dir}: {e}", dir=directory, e=e)
                meta = {}
            created = meta.get("CreatedAt") or time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(directory.stat().st_mtime)
            )
            self._volumes[directory.name] = _Volume(
                directory.name,
                created,
                dict(meta.get("Labels") or {}),
                dict(meta.get("Options") or {}),
                mounted=os.path.ismount(directory / "_data"),
            )

    def _save(self, volume: _Volume) -> None:
        directory = self._root / volume.name
        (directory / "_data").mkdir(parents=True, exist_ok=True)
        store.write_json(
            directory / RECORD,
            {
                "Name": volume.name,
                "CreatedAt": volume.created_at,
                "Labels": volume.labels,
                "Options": volume.options,
            },
        )

    def _get(self, name: str, verb: str = "get") -> _Volume:
        volume = self._volumes.get(name)
        if volume is None:
            raise NotFound(f"{verb} {name}: no such volume")
        return volume

    def mountpoint(self, name: str) -> Path:
        """Where C{name}'s data is on the host (what a container mounts)."""
        return self._root / name / "_data"

    def view(self, volume: _Volume) -> dict[str, Any]:
        """The API's C{Volume} object."""
        return {
            "CreatedAt": volume.created_at,
            "Driver": _DRIVER,
            "Labels": volume.labels or None,
            "Mountpoint": str(self.mountpoint(volume.name)),
            "Name": volume.name,
            "Options": volume.options or None,
            "Scope": "local",
        }

    # --- the API ------------------------------------------------------------

    def create(
        self,
        name: str | None = None,
        *,
        driver: str | None = None,
        driver_opts: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """
        C{POST /volumes/create}: a new volume (a 64-hex name when none is
        given), or the existing one of that name, as dockerd answers both.

        @raise InvalidParameter: A bad name or option.
        @raise NotFound: A driver other than C{local}.
        """
        name = name or new_name()
        if driver and driver != _DRIVER:
            raise NotFound(
                f"create {name}: error looking up volume plugin {driver}: "
                f'plugin "{driver}" not found'
            )
        check_name(name)
        existing = self._volumes.get(name)
        if existing is not None:
            return self.view(existing)
        options = local.check_options(name, dict(driver_opts or {}))
        volume = _Volume(
            name,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._now())),
            dict(labels or {}),
            options,
        )
        self._save(volume)
        self._volumes[name] = volume
        self._event("create", name)
        return self.view(volume)

    def inspect(self, name: str) -> dict[str, Any]:
        """C{GET /volumes/{name}}."""
        return self.view(self._get(name))

    def list_volumes(self, filters: Mapping[str, list[str]]) -> dict[str, Any]:
        """C{GET /volumes}: C{dangling}, C{driver}, C{label}, C{label!}, C{name}."""
        for key in filters:
            if key not in _LIST_FILTERS:
                raise InvalidParameter(f"Invalid filter '{key}'")
        dangling = _bool_filter(filters, "dangling")
        found = []
        for volume in sorted(self._volumes.values(), key=lambda v: v.name):
            if dangling is not None and bool(self._users(volume.name)) == dangling:
                continue
            if filters.get("driver") and _DRIVER not in filters["driver"]:
                continue
            if filters.get("name") and not any(
                n in volume.name for n in filters["name"]
            ):
                continue
            if not _labels_match(volume.labels, filters):
                continue
            found.append(self.view(volume))
        return {"Volumes": found, "Warnings": None}

    def remove(self, name: str, *, force: bool = False) -> Deferred[None]:
        """
        C{DELETE /volumes/{name}}: gone with its data, unless a container
        names it (409, dockerd's text); C{force} makes a missing one fine.
        """
        volume = self._volumes.get(name)
        if volume is None:
            if force:
                return succeed(None)
            raise NotFound(f"get {name}: no such volume")
        users = self._users(name)
        if self._held(volume, users):
            ids = ", ".join(users or sorted(volume.holders))
            raise Conflict(f"remove {name}: volume is in use - [{ids}]")
        return self._destroy(volume)

    def _held(self, volume: _Volume, users: list[str]) -> bool:
        """
        Whether C{volume} is in use: a container names it, or a removed
        one's release has yet to unmount its device. (A holder no
        container is any more is one whose release is on its way.)
        """
        return bool(users) or bool(volume.holders and volume.mounted)

    def _destroy(self, volume: _Volume) -> Deferred[None]:
        del self._volumes[volume.name]
        directory = self._root / volume.name
        # Removed containers whose release had not come yet: their unmount
        # is said now, before the destroy (their release finds no volume).
        for holder in sorted(volume.holders):
            self._event("unmount", volume.name, container=holder)
        volume.holders.clear()

        def destroy() -> None:
            # The record first: a crash half-way leaves data without a
            # record, which restore shows as a volume to remove again.
            store.remove_durably(directory / RECORD)
            shutil.rmtree(directory, ignore_errors=True)

        async def destroyed() -> None:
            await self._in_thread(destroy)
            self._event("destroy", volume.name)

        return Deferred.fromCoroutine(destroyed())

    def prune(
        self, filters: Mapping[str, list[str]], *, anonymous_only: bool
    ) -> Deferred[dict[str, Any]]:
        """
        C{POST /volumes/prune}: every volume no container names; from API
        1.42 only anonymous ones unless C{all=true} (C{anonymous_only}
        says which the caller's version wants).
        """
        for key in filters:
            if key not in _PRUNE_FILTERS:
                raise InvalidParameter(f"Invalid filter '{key}'")
        everything = _bool_filter(filters, "all")
        if everything is not None:
            anonymous_only = not everything
        until = [get_timestamp(u, self._now()) for u in filters.get("until", [])]
        victims = [
            v
            for v in list(self._volumes.values())
            if not self._held(v, self._users(v.name))
            and (not anonymous_only or ANONYMOUS_LABEL in v.labels)
            and _labels_match(v.labels, filters)
            and all(_created(v) <= limit for limit in until)
        ]

        async def prune_them() -> dict[str, Any]:
            deleted, reclaimed = [], 0
            for volume in victims:
                data = self.mountpoint(volume.name)
                size = await self._in_thread(partial(_size, data))
                await self._destroy(volume)
                deleted.append(volume.name)
                reclaimed += size
            if self._publish is not None:
                self._publish("volume", "prune", "", {"reclaimed": str(reclaimed)})
            return {"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

        return Deferred.fromCoroutine(prune_them())

    # --- what containers ask -------------------------------------------------

    def ensure(
        self,
        name: str,
        *,
        anonymous: bool = False,
        driver: str | None = None,
        driver_opts: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Path:
        """
        The volume C{name}, made now if it does not exist (a container
        that names one makes it, as with dockerd, with the driver, options
        and labels its C{--mount} gives); its mount point.

        @raise InvalidParameter: A name or option that is not one.
        @raise NotFound: A driver other than C{local}, as dockerd's
            C{plugin "x" not found}.
        """
        if name not in self._volumes or (driver and driver != _DRIVER):
            made = {ANONYMOUS_LABEL: ""} if anonymous else {}
            self.create(
                name,
                driver=driver,
                driver_opts=driver_opts,
                labels={**made, **(labels or {})},
            )
        return self.mountpoint(name)

    def acquire(
        self, name: str, container_id: str, destination: str, *, rw: bool = True
    ) -> Deferred[Path]:
        """
        C{container_id} mounts C{name} at C{destination}: made if missing,
        its device mounted by the first such container (C{mount} event).
        """
        path = self.ensure(name)
        volume = self._volumes[name]
        first = not volume.holders
        volume.holders.add(container_id)

        async def acquire() -> Path:
            argv = local.mount_argv(volume.options, str(path))
            if first and argv is not None and not volume.mounted:
                await self._command(argv, f"mount volume {name}")
                volume.mounted = True
            self._event(
                "mount",
                name,
                container=container_id,
                destination=destination,
                propagation="",
                **{"read/write": "true" if rw else "false"},
            )
            return path

        return Deferred.fromCoroutine(acquire())

    def adopt(self, name: str, container_id: str) -> None:
        """At restore: C{container_id} still runs with C{name} mounted."""
        volume = self._volumes.get(name)
        if volume is not None:
            volume.holders.add(container_id)

    def release(self, name: str, container_id: str) -> Deferred[None]:
        """
        C{container_id} no longer mounts C{name}; its device is unmounted
        after the last one (C{unmount} event).
        """
        volume = self._volumes.get(name)
        if volume is None or container_id not in volume.holders:
            return succeed(None)
        volume.holders.discard(container_id)

        async def release() -> None:
            self._event("unmount", name, container=container_id)
            if not volume.holders and volume.mounted:
                await self._command(
                    ["umount", str(self.mountpoint(name))], f"unmount volume {name}"
                )
                volume.mounted = False

        return Deferred.fromCoroutine(release())

    def release_unheld(self) -> Deferred[None]:
        """After restore: unmount the devices no running container holds."""

        async def release() -> None:
            for volume in list(self._volumes.values()):
                if volume.mounted and not volume.holders:
                    await self._command(
                        ["umount", str(self.mountpoint(volume.name))],
                        f"unmount volume {volume.name}",
                    )
                    volume.mounted = False

        return Deferred.fromCoroutine(release())

    async def _command(self, argv: list[str], what: str) -> None:
        if self._run is None:
            raise SystemError_(f"{what}: no way to run {argv[0]}")
        code, output = await self._run(argv)
        if code != 0:
            text = output.decode(errors="replace").strip()
            raise SystemError_(f"{what}: {text or f'{argv[0]} exited {code}'}")

    def names(self) -> Iterable[str]:
        """Every volume's name."""
        return list(self._volumes)

    def usage(self) -> Deferred[list[dict[str, Any]]]:
        """C{GET /system/df}'s volumes: each with its size and users."""
        volumes = list(self._volumes.values())

        def measure() -> list[dict[str, Any]]:
            return [
                {
                    **self.view(v),
                    "UsageData": {
                        "Size": _size(self.mountpoint(v.name)),
                        "RefCount": len(self._users(v.name)),
                    },
                }
                for v in volumes
            ]

        return self._in_thread(measure)


def _created(volume: _Volume) -> float:
    try:
        return calendar.timegm(time.strptime(volume.created_at, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return 0.0


def _size(top: Path) -> int:
    """What the files under C{top} take (each inode once); 0 if it is gone."""
    seen: set[int] = set()
    total = 0
    stack = [str(top)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif info.st_ino not in seen:
                seen.add(info.st_ino)
                total += info.st_size
    return total
