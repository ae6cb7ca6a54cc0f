# -*- test-case-name: tests.daemon.containers.test_devices -*-
"""
The host's devices a container is given (C{--device}, C{--privileged})
and the device cgroup rules it runs under (C{--device-cgroup-rule}), as
the OCI spec's C{linux.devices} and C{linux.resources.devices}.

As dockerd 20.10 does (moby's C{oci.DevicesFromPath}, runc's
C{devices.DeviceFromPath}, containerd's C{HostDevices}): a device node on
the host is given at the path asked for, with its type, numbers, mode and
owner, and an allow rule with the permissions asked for; a directory
gives every device node under it; a symbolic link named on the command
line is followed, one found in a directory is not. A path that is no
device is dockerd's error at the start, not at create (L{DeviceError}).

These functions read the host's file system: call them from a thread.
"""

import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dockserve.errors import SystemError_

#: A device cgroup rule as dockerd reads it: type, major:minor, access.
_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")

#: Directories of C{/dev} that are the container's own, never the host's
#: (containerd's C{HostDevices} skips them too).
_OWN_DIRECTORIES = frozenset({
    "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev",
})  # fmt: skip

#: Devices runc makes itself, or that belong to the container's own terminal.
_OWN_DEVICES = frozenset({
    "console", "ptmx", "tty", "full", "null", "random", "urandom", "zero",
})  # fmt: skip


def _char(major: int, minor: int, *, allow: bool = True) -> dict[str, Any]:
    """A rule for one character device, all of C{rwm}."""
    return {
        "allow": allow,
        "type": "c",
        "major": major,
        "minor": minor,
        "access": "rwm",
    }


#: The rules every unprivileged container starts with, dockerd's default
#: spec's: nothing but zero, null, urandom, random, tty and console, and
#: not fuse (runc adds its own defaults after all of a spec's rules).
DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    _char(1, 5),
    _char(1, 3),
    _char(1, 9),
    _char(1, 8),
    _char(5, 0),
    _char(5, 1),
    _char(10, 229, allow=False),
)

#: What C{--privileged} runs under.
ALLOW_ALL: dict[str, Any] = {"allow": True, "access": "rwm"}


class DeviceError(SystemError_):
    """
    A C{--device} or C{--device-cgroup-rule} that cannot be given: a 500
    at the start with dockerd's text, the container's exit code 128.
    """


def _node(path: str, permissions: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """
    The OCI device and its cgroup rule for the node at C{path} (not
    followed if a link), as runc's C{DeviceFromPath}; C{None} when it is
    no device (a FIFO is one, as runc has it).

    @raise OSError: It cannot be looked at.
    """
    info = os.lstat(path)
    if stat.S_ISBLK(info.st_mode):
        kind = "b"
    elif stat.S_ISCHR(info.st_mode):
        kind = "c"
    elif stat.S_ISFIFO(info.st_mode):
        kind = "p"
    else:
        return None
    major, minor = os.major(info.st_rdev), os.minor(info.st_rdev)
    device = {
        "path": path,
        "type": kind,
        "major": major,
        "minor": minor,
        "fileMode": stat.S_IMODE(info.st_mode),
        "uid": info.st_uid,
        "gid": info.st_gid,
    }
    rule = {
        "allow": True,
        "type": kind,
        "major": major,
        "minor": minor,
        "access": permissions,
    }
    return device, rule


def _reason(error: OSError) -> str:
    """Go's text for a failed C{lstat}: the errno's words, lower case."""
    return (error.strerror or str(error)).lower()


def _walk(top: Path) -> Iterable[Path]:
    """
    C{top} and everything under it in Go's C{filepath.Walk} order (the
    entries of a directory by name, depth first), links not followed.
    """
    yield top
    try:
        entries = sorted(top.iterdir())
    except OSError:
        return
    for path in entries:
        try:
            is_dir = stat.S_ISDIR(path.lstat().st_mode)
        except OSError:
            continue
        if is_dir:
            yield from _walk(path)
        else:
            yield path


def from_path(
    on_host: str, in_container: str, permissions: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """
    One C{HostConfig.Devices} entry: its devices and their allow rules, as
    moby's C{DevicesFromPath}.

    @raise DeviceError: C{error gathering device information while adding
        custom device "PATH": REASON}, dockerd's text.
    """
    resolved = on_host
    if Path(on_host).is_symlink():
        resolved = os.path.realpath(on_host)
    try:
        found = _node(resolved, permissions)
    except OSError as e:
        raise DeviceError(
            "error gathering device information while adding custom device "
            f'"{on_host}": {_reason(e)}'
        ) from None
    if found is not None:
        device, rule = found
        device["path"] = in_container
        return [device], [rule]
    devices: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    if resolved and Path(resolved).is_dir():
        for path in _walk(Path(resolved)):
            try:
                child = _node(str(path), permissions)
            except OSError:
                continue
            if child is None:
                continue
            device, rule = child
            device["path"] = str(path).replace(resolved, in_container, 1)
            devices.append(device)
            rules.append(rule)
    if devices:
        return devices, rules
    raise DeviceError(
        "error gathering device information while adding custom device "
        f'"{on_host}": not a device node'
    )


def cgroup_rule(rule: str) -> dict[str, Any]:
    """
    One C{--device-cgroup-rule} (C{c 10:229 rwm}, C{b 7:* r}, C{a}) as an
    allow rule, as dockerd reads it; C{*} is every number (-1).

    @raise DeviceError: C{invalid device cgroup rule format: 'RULE'}.
    """
    text = "a *:* rwm" if rule == "a" else rule
    match = _RULE.match(text)
    if match is None:
        raise DeviceError(f"invalid device cgroup rule format: '{rule}'")
    kind, major, minor, access = match.groups()
    return {
        "allow": True,
        "type": kind,
        "major": -1 if major == "*" else int(major),
        "minor": -1 if minor == "*" else int(minor),
        "access": access,
    }


def host_devices(dev: Path = Path("/dev"), *, top: bool = True) -> list[dict[str, Any]]:
    """
    This machine's devices under C{dev}, as C{--privileged} gives them
    (containerd's C{HostDevices}): every character and block device, in
    subdirectories too (C{/dev/net/tun}, C{/dev/dri/*}), but the
    container's own (C{pts}, C{shm}, C{mqueue}, the console and the
    devices runc makes itself, at the top).
    """
    devices: list[dict[str, Any]] = []
    try:
        entries = sorted(dev.iterdir())
    except OSError:
        return devices
    for path in entries:
        try:
            info = path.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode):
            if path.name not in _OWN_DIRECTORIES:
                devices += host_devices(path, top=False)
            continue
        if top and path.name in _OWN_DEVICES:
            continue
        try:
            found = _node(str(path), "rwm")
        except OSError:
            continue
        if found is not None and found[0]["type"] in {"b", "c"}:
            devices.append(found[0])
    return devices


def resolve(
    host_config: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """
    What a start gives a container of the host's devices: C{linux.devices}
    and C{linux.resources.devices}, as dockerd's C{WithDevices}. Its
    C{Devices} and C{DeviceCgroupRules} after L{DEFAULT_RULES}; with
    C{--privileged} every host device, the mapped ones that land elsewhere,
    and no rule but allow-all (the cgroup rules are not read then).

    @raise DeviceError: A device that cannot be given, a bad rule.
    """
    mappings = [m or {} for m in host_config.get("Devices") or []]
    devices: list[dict[str, Any]] = []
    if host_config.get("Privileged"):
        devices = host_devices()
        for mapping in mappings:
            on_host = str(mapping.get("PathOnHost") or "")
            in_container = str(mapping.get("PathInContainer") or "")
            if on_host == in_container:
                continue  # /dev is the host's already.
            devices += from_path(on_host, in_container, "rwm")[0]
        return devices, [ALLOW_ALL]
    rules = [dict(r) for r in DEFAULT_RULES]
    for mapping in mappings:
        found, allowed = from_path(
            str(mapping.get("PathOnHost") or ""),
            str(mapping.get("PathInContainer") or ""),
            str(mapping.get("CgroupPermissions") or ""),
        )
        devices += found
        rules += allowed
    rules += [cgroup_rule(str(r)) for r in host_config.get("DeviceCgroupRules") or []]
    return devices, rules
