# -*- test-case-name: tests.integration.test_cp_mounts -*-
"""
A container's files as the container sees them, for C{docker cp}: its
root with its volumes, binds and C{/etc/hosts}, C{/etc/hostname} and
C{/etc/resolv.conf} in place.

A running container's view is its own mount namespace, reached through
C{/proc/<pid>/root}: every mount it has is there as it has it (tmpfs
mounts too, which dockerd's copy does not see). The walk in
L{dockserve.daemon.archive} never follows a link out of that root, and
the directories of kernel file systems (C{/proc}, C{/sys}...) are archived
without their contents, as dockerd's copy shows them (empty).

A stopped container has no namespace: its root is mounted on the host and
the bind mounts of its bundle (volumes, binds, the generated C{/etc}
files) are bound into it for the while, each mount point reached with
L{dockserve.daemon.archive.mount_point} (no path a container left behind
is followed out of its root) and made when missing, as runc would.

Everything here blocks: run it in a thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import frozen

from dockserve.daemon import archive, rootfs

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Kernel file systems whose contents are not the container's files.
_OPAQUE_TYPES = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "securityfs",
    "debugfs", "tracefs", "bpf", "pstore", "configfs", "fusectl", "hugetlbfs",
    "binfmt_misc", "autofs", "nsfs", "efivarfs", "selinuxfs",
})  # fmt: skip

#: Mount points under these are the runtime's, never bound for a copy.
_RUNTIME_TREES = ("/proc", "/sys", "/dev")


@frozen
class View:
    """
    Where a copy reads and writes.

    @ivar root: The directory to resolve container paths in.
    @ivar opaque: Devices of kernel file systems: archived without contents.
    """

    root: Path
    opaque: frozenset[int] = frozenset()


class ContainerGone(Exception):
    """The running container's process is gone (or was never this one)."""


def _opaque_devices(mountinfo: str) -> frozenset[int]:
    """The devices of C{/proc/<pid>/mountinfo}'s kernel file systems."""
    found = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 3:
            continue
        fstype = line.split(" - ", 1)[1].split()[0]
        if fstype in _OPAQUE_TYPES:
            major, _, minor = fields[2].partition(":")
            with contextlib.suppress(ValueError):
                found.add(os.makedev(int(major), int(minor)))
    return frozenset(found)


@contextlib.contextmanager
def running(pid: int, container_id: str) -> Iterator[View]:
    """
    The view of the running container C{container_id} whose init is
    C{pid}: its root as its own mount namespace has it.

    The process is pinned by a pidfd and checked to be in the container's
    cgroup before its root is opened, and still alive after, so a pid the
    container's death freed (and the kernel gave another process) is never
    taken for it.

    @raise ContainerGone: The process is not the container's (any more).
    """
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        raise ContainerGone from None
    try:
        try:
            cgroups = Path(f"/proc/{pid}/cgroup").read_text()
            mountinfo = Path(f"/proc/{pid}/mountinfo").read_text()
            root_fd = os.open(
                f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
            )
        except OSError:
            raise ContainerGone from None
        try:
            ended, _, _ = select.select([pidfd], [], [], 0)
            if container_id not in cgroups or ended:
                raise ContainerGone
            yield View(Path(f"/proc/self/fd/{root_fd}"), _opaque_devices(mountinfo))
        finally:
            os.close(root_fd)
    finally:
        os.close(pidfd)


def bundle_binds(config_json: Path) -> list[tuple[str, str, bool]]:
    """
    C{(source, destination, read-only)} of each bind mount in the bundle's
    C{config.json}, in its order (a mount inside another comes after it),
    the runtime's own trees left out.
    """
    spec: dict[str, Any] = json.loads(config_json.read_bytes())
    binds = []
    for mount in spec.get("mounts") or []:
        destination = str(mount.get("destination") or "")
        if mount.get("type") != "bind" or not destination.startswith("/"):
            continue
        if any(
            destination == tree or destination.startswith(tree + "/")
            for tree in _RUNTIME_TREES
        ):
            continue
        options = mount.get("options") or []
        binds.append((str(mount.get("source") or ""), destination, "ro" in options))
    return binds


@contextlib.contextmanager
def stopped(root: Path, binds: list[tuple[str, str, bool]]) -> Iterator[View]:
    """
    The view of a stopped container whose root is mounted at C{root}: the
    C{binds} bound into it until the block ends (then lazily unmounted,
    last first).
    """
    mounted: list[int] = []
    try:
        for source, destination, readonly in binds:
            if not os.path.lexists(source):
                continue
            parent, name = archive.mount_point(
                root, destination, directory=Path(source).is_dir()
            )
            with parent:
                mounted.append(rootfs.bind(source, parent.fd, name, readonly=readonly))
        yield View(root)
    finally:
        for fd in reversed(mounted):
            rootfs.detach(fd)
