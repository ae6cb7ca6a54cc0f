# -*- test-case-name: tests.daemon.containers.test_service -*-
"""
What containers use: C{docker top}, C{docker stats}, the sizes of
C{ps -s} and C{system df}, and who uses which volume. Walks of files run
in the thread pool.
"""

import os
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import (
    Deferred,
    succeed,
)

from dockserve.daemon import netstats
from dockserve.daemon.containers import (
    mounts,
    record,
)
from dockserve.daemon.containers.table import (
    _INIT_PATHS,
    Container,
    ContainerParts,
)
from dockserve.errors import (
    Conflict,
    DockerError,
    InvalidParameter,
    SystemError_,
)


def _measure(upper: Path, image: int | tuple[str, ...]) -> tuple[int, int]:
    """
    Blocking: the size of a container's own files (without the init
    layer's) and of its image (C{image} itself when known, else a walk of
    its layer directories).
    """
    own = sum(
        size for path, size in _file_sizes(upper) if "/" + path not in _INIT_PATHS
    )
    if not isinstance(image, int):
        image = sum(size for layer in image for _, size in _file_sizes(Path(layer)))
    return own, image


def _volumes(root: Path, users: dict[str, int]) -> list[dict[str, Any]]:
    """Blocking: the volumes under C{root} as C{system df} lists them."""
    try:
        entries = sorted(p for p in root.iterdir() if p.is_dir())
    except FileNotFoundError:
        return []
    volumes = []
    for entry in entries:
        data = entry / "_data"
        created = time.gmtime(entry.stat().st_mtime)
        volumes.append(
            {
                "Name": entry.name,
                "Driver": "local",
                "Mountpoint": str(data),
                "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", created),
                "Labels": {},
                "Scope": "local",
                "Options": {},
                "UsageData": {
                    "Size": sum(size for _, size in _file_sizes(data)),
                    "RefCount": users.get(entry.name, 0),
                },
            }
        )
    return volumes


def _file_sizes(top: Path) -> list[tuple[str, int]]:
    """
    C{(relative path, size)} of every file and link under C{top}, each
    inode counted once (moby's C{directory.Size}); nothing if it is absent.
    """
    found: list[tuple[str, int]] = []
    seen: set[tuple[int, int]] = set()
    for base, dirs, files in os.walk(top):
        for name in files + [d for d in dirs if Path(base, d).is_symlink()]:
            path = Path(base, name)
            try:
                info = path.lstat()
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            if info.st_nlink > 1:
                if key in seen:
                    continue
                seen.add(key)
            found.append((str(path.relative_to(top)), info.st_size))
    return found


def _system_cpu_ns() -> int:
    """
    The host's total CPU time in nanoseconds (C{/proc/stat}), which the
    docker CLI divides by to get a container's CPU percentage.
    """
    try:
        with Path("/proc/stat").open() as stat:
            fields = stat.readline().split()[1:8]
    except OSError:
        return 0
    ticks = os.sysconf("SC_CLK_TCK") or 100
    return sum(int(f) for f in fields) * 1_000_000_000 // ticks


def _namespace_pids(init: int) -> set[int]:
    """The host PIDs of the processes in C{init}'s PID namespace."""
    try:
        namespace = Path(f"/proc/{init}/ns/pid").readlink()
    except OSError:
        return set()
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "ns" / "pid").readlink() == namespace:
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def _parse_ps(output: str, pids: set[int]) -> dict[str, Any]:
    """C{ps} output as C{{"Titles": [...], "Processes": [[...]]}}, rows of C{pids}."""
    lines = output.splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    try:
        column = titles.index("PID")
    except ValueError:
        raise InvalidParameter("Couldn't find PID field in ps output") from None
    processes = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) <= column:
            continue
        try:
            pid = int(fields[column])
        except ValueError:
            continue
        if pid in pids:
            processes.append(fields)
    return {"Titles": titles, "Processes": processes}


class ContainerMetrics(ContainerParts):
    """Top, stats and sizes of the container service."""

    def _sizes(self, c: Container) -> tuple[int, int]:
        """
        C{SizeRw} (the container's own files, without the init layer's)
        and C{SizeRootFs} (those and the image's), as C{ps -s} shows them.
        """
        own, image = _measure(*self._size_plan(c))
        self._image_sizes[c.record.image_id] = image
        return own, own + image

    def _size_plan(self, c: Container) -> tuple[Path, int | tuple[str, ...]]:
        """
        What measuring C{c} needs, read on the reactor: its upper
        directory, and its image's size if known, else the image's layers.
        """
        image: int | tuple[str, ...] | None = self._image_sizes.get(c.record.image_id)
        if image is None:
            try:
                image = self._images.resolve(c.record.image_id).layer_dirs
            except DockerError:
                image = ()
        return self._bundles.upper(c.directory), image

    def container_usage(self) -> Deferred[list[dict[str, Any]]]:
        """
        C{GET /system/df}'s containers: every one with C{SizeRw} and
        C{SizeRootFs}, measured in the thread pool (a walk of every
        container's files would stall every client on the reactor).
        """
        listed = self.list_containers(all=True)
        plans = [self._size_plan(self._containers[item["Id"]]) for item in listed]

        def fill(sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
            for item, (own, image) in zip(listed, sizes, strict=True):
                self._image_sizes[item["ImageID"]] = image
                item["SizeRw"], item["SizeRootFs"] = own, own + image
            return listed

        measuring = self._blocking(lambda: [_measure(*plan) for plan in plans])
        return measuring.addCallback(fill)

    def volume_users(self, name: str) -> list[str]:
        """The IDs of the containers that name volume C{name}, any state."""
        return [
            c.id
            for c in self._containers.values()
            if name in mounts.volume_names(self._mount_points(c.record))
        ]

    def volume_usage(self) -> Deferred[list[dict[str, Any]]]:
        """
        C{GET /system/df}'s volumes: the named volumes under
        C{<data-root>/volumes}, with what each takes on disk (measured in
        the thread pool) and how many containers mount it.
        """
        if self._volumes is not None:
            usage: Deferred[list[dict[str, Any]]] = self._volumes.usage()
            return usage
        users: dict[str, int] = {}
        for c in self._containers.values():
            for name in mounts.volume_names(self._mount_points(c.record)):
                users[name] = users.get(name, 0) + 1
        root = self._volumes_root
        return self._blocking(lambda: _volumes(root, users))

    def top(self, reference: str, ps_args: str | None) -> Deferred[dict[str, Any]]:
        """
        C{GET /containers/{id}/top}: the host's C{ps}, narrowed to the
        container's processes (those in its init's PID namespace), as
        moby's C{ContainerTop} does.

        @raise Conflict: Not running.
        """
        c = self._get(reference)
        if c.record.state.status == "restarting":
            raise Conflict(
                f"Container {c.id} is restarting, wait until the container is running"
            )
        if not c.record.state.running:
            raise Conflict(f"Container {c.id} is not running")
        args = (ps_args or "-ef").split()
        init = c.record.state.pid
        self._announce(c, "top")
        from twisted.internet.utils import getProcessOutputAndValue  # noqa: PLC0415

        running: Deferred[tuple[bytes, bytes, int]]
        running = getProcessOutputAndValue(  # type: ignore[no-untyped-call]
            "/usr/bin/ps", args, env={"LC_ALL": "C"}, reactor=self._reactor
        )

        def parse(result: tuple[bytes, bytes, int]) -> dict[str, Any]:
            out, err, code = result
            if code != 0:
                # As dockerd: the first line of ps's complaint, as a 500.
                lines = err.decode(errors="replace").strip().splitlines()
                first = lines[0] if lines else f"exited with {code}"
                raise SystemError_(first if first.startswith("ps:") else f"ps: {first}")
            return _parse_ps(out.decode(errors="replace"), _namespace_pids(init))

        return running.addCallback(parse)

    def stats(self, reference: str) -> Deferred[dict[str, Any]]:
        """One sample of C{GET /containers/{id}/stats}, with the previous one."""
        c = self._get(reference)
        now = self._now()
        sample: dict[str, Any] = {
            "read": now,
            "preread": c.last_stats.get("read", record.ZERO_TIME),
            "id": c.id,
            "name": c.record.name,
            "num_procs": 0,
            "pids_stats": {},
            "blkio_stats": {},
            "cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
            "memory_stats": {},
            "storage_stats": {},
        }
        if c.record.state.running:
            sample.update(self._runtime.stats(c.id))
            if networks := netstats.network_stats(c.record.state.pid):
                sample["networks"] = networks
        cpu = sample.setdefault("cpu_stats", {})
        cpu.setdefault("system_cpu_usage", _system_cpu_ns())
        cpu.setdefault("online_cpus", os.cpu_count() or 1)
        sample["precpu_stats"] = c.last_stats.get(
            "cpu_stats", {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}
        )
        c.last_stats = sample
        return succeed(sample)
