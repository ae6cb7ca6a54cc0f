# -*- test-case-name: tests.daemon.containers.test_configs -*-
"""
The settings of a create or update body that dockerd refuses before it
answers, each with dockerd's message.

The body has been through L{dockserve.daemon.containers.gojson}, so every
value here has its Go type (or is C{None}). The checks are tables of small
functions, in the order dockerd runs them (the runconfig decoder's checks,
C{verifyContainerSettings}, the volumes' C{registerMountPoints}, the log
driver's options), so a body with two faults gets dockerd's first message.

Beyond dockerd, settings that would be stored here and then fail at start,
or be silently dropped, are refused at create too: C{DeviceRequests}, a
volume subpath, a sysctl runc would refuse, a negative C{CpuShares}.
Their messages say so in dockerd's style.
"""

import os
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attrs import frozen

from dockserve.daemon.containers import restart, security
from dockserve.daemon.containers.execs import ALL_CAPABILITIES
from dockserve.daemon.containers.gojson import go_quote
from dockserve.daemon.containers.signals import parse_signal
from dockserve.daemon.volumes.names import check_name as check_volume_name
from dockserve.errors import InvalidParameter

Settings = dict[str, Any]
Check = Callable[[Settings], None]

#: dockerd's smallest memory limit (and reservation, and kernel memory).
MIN_MEMORY = 6 * 1024 * 1024

#: Runtime names this daemon answers to: dockerd's stock ones.
RUNTIMES = frozenset({"", "runc", "io.containerd.runc.v2"})

#: The log drivers whose logs this daemon keeps (it reads all of them the
#: same way), with the options each accepts, as dockerd validates them.
LOG_DRIVERS: dict[str, frozenset[str] | None] = {
    "json-file": frozenset({
        "max-file", "max-size", "compress", "labels", "labels-regex", "env",
        "env-regex", "tag",
    }),
    "local": frozenset({"max-file", "max-size", "compress"}),
    "none": None,
}  # fmt: skip

#: dockerd's other built-in drivers: known names, but not kept here.
OTHER_LOG_DRIVERS = frozenset({
    "syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "etwlogs",
    "gcplogs", "logentries",
})  # fmt: skip

#: The ulimit names (case-insensitive), as the OCI spec builder knows them.
ULIMITS = frozenset({
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
    "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack", "as",
})  # fmt: skip

#: Sysctls runc puts in the container's IPC namespace (besides fs.mqueue.*).
_IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
    "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
})  # fmt: skip

#: The options of a bind in C{Binds}, by class: at most one of each.
_BIND_MODE_CLASSES = (
    frozenset({"rw", "ro"}),
    frozenset({"z", "Z"}),
    frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"}),
    frozenset({"nocopy"}),
    frozenset({"consistent", "cached", "delegated"}),
)
_PROPAGATIONS = _BIND_MODE_CLASSES[2]

#: A local volume's name, as dockerd's local driver allows it.


def _absolute(path: str) -> bool:
    return path.startswith("/")


# --- Config ----------------------------------------------------------------


def _working_dir(config: Settings) -> None:
    working_dir = config.get("WorkingDir") or ""
    if working_dir and not _absolute(working_dir):
        raise InvalidParameter(
            f"the working directory '{working_dir}' is invalid, it needs to be an "
            "absolute path"
        )


def _stop_signal(config: Settings) -> None:
    if config.get("StopSignal"):
        parse_signal(config["StopSignal"])


def _env(config: Settings) -> None:
    for item in config.get("Env") or []:
        if not item.partition("=")[0]:
            raise InvalidParameter(f"invalid environment variable: {item}")


def _healthcheck(config: Settings) -> None:
    health = config.get("Healthcheck") or {}
    for name in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        duration = health.get(name) or 0
        if duration != 0 and duration < 1_000_000:
            raise InvalidParameter(f"{name} in Healthcheck cannot be less than 1ms")
    if (health.get("Retries") or 0) < 0:
        raise InvalidParameter("Retries in Healthcheck cannot be negative")


def _exposed_ports(config: Settings) -> None:
    for port in config.get("ExposedPorts") or {}:
        number = port.partition("/")[0]
        if not number or not _port_range(number):
            raise InvalidParameter(f"invalid port specification: {go_quote(number)}")


# --- HostConfig: the runconfig decoder's checks ----------------------------


def _network_mode(host: Settings) -> None:
    mode = host.get("NetworkMode") or ""
    kind, colon, name = mode.partition(":")
    if kind == "container" and colon and not name:
        raise InvalidParameter(
            "Invalid network mode: invalid container format container:<name|id>"
        )
    if kind == "container" and host.get("Links"):
        raise InvalidParameter(
            "conflicting options: container type network can't be used with "
            "links. This would result in undefined behavior"
        )
    # An unknown network is dockerd's 404 at start (configs.check_network),
    # not here: a 404 from create makes the docker CLI try to pull the image.


def _isolation(host: Settings) -> None:
    isolation = host.get("Isolation") or ""
    if isolation not in {"", "default"}:
        raise InvalidParameter(
            f"Invalid isolation: {go_quote(isolation)} - linux only supports 'default'"
        )


def _qos(host: Settings) -> None:
    if host.get("IOMaximumBandwidth"):
        raise InvalidParameter(
            "Invalid QoS settings: linux does not support configuration of "
            "maximum bandwidth"
        )
    if host.get("IOMaximumIOps"):
        raise InvalidParameter(
            "Invalid QoS settings: linux does not support configuration of maximum IOps"
        )


# --- Resources (create and update) -----------------------------------------


def _memory(resources: Settings, *, update: bool) -> None:
    memory = resources.get("Memory") or 0
    swap = resources.get("MemorySwap") or 0
    reservation = resources.get("MemoryReservation") or 0
    if memory != 0 and memory < MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    if memory > 0 and 0 < swap < memory:
        raise InvalidParameter(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if memory == 0 and swap > 0 and not update:
        raise InvalidParameter(
            "You should always set the Memory limit when using Memoryswap limit, "
            "see usage"
        )
    swappiness = resources.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise InvalidParameter(
            f"Invalid value: {swappiness}, valid memory swappiness range is 0-100"
        )
    if 0 < reservation < MIN_MEMORY:
        raise InvalidParameter("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidParameter(
            "Minimum memory limit can not be less than memory reservation limit, "
            "see usage"
        )
    kernel = resources.get("KernelMemory") or 0
    if kernel != 0 and kernel < MIN_MEMORY:
        raise InvalidParameter("Minimum kernel memory limit allowed is 6MB")


def _cpu(resources: Settings) -> None:
    nano = resources.get("NanoCpus") or 0
    period = resources.get("CpuPeriod") or 0
    quota = resources.get("CpuQuota") or 0
    if nano > 0 and period > 0:
        raise InvalidParameter(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set"
        )
    if nano > 0 and quota > 0:
        raise InvalidParameter(
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        )
    cpus = os.cpu_count() or 1
    if nano != 0 and not 0 < nano <= cpus * 1_000_000_000:
        raise InvalidParameter(
            f"Range of CPUs is from 0.01 to {cpus}.00, as there are only "
            f"{cpus} CPUs available"
        )
    shares = resources.get("CpuShares") or 0
    if shares < 0:
        raise InvalidParameter(
            f"invalid CPU shares ({shares}): value must be a positive integer"
        )
    if period != 0 and not 1000 <= period <= 1_000_000:
        raise InvalidParameter(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than "
            "1s (i.e. 1000000)"
        )
    if 0 < quota < 1000:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")


def _online(path: str, default: str) -> str:
    """A kernel CPU or node list (C{0-3,6}); C{default} where there is none."""
    try:
        return Path(path).read_text().strip() or default
    except OSError:
        return default


def online_cpus() -> str:
    """The CPUs a container may be given (C{0-1}), as C{cpuset.cpus} lists."""
    return _online("/sys/devices/system/cpu/online", f"0-{(os.cpu_count() or 1) - 1}")


def online_mems() -> str:
    """The memory nodes a container may be given, as C{cpuset.mems} lists."""
    return _online("/sys/devices/system/node/online", "0")


def _uint_list(value: str) -> list[tuple[int, int]] | None:
    """C{0-2,4} as ranges, as moby's C{parsers.ParseUintList}; None if bad."""
    if value == "":
        return []
    ranges = []
    for item in value.split(","):
        low, dash, high = item.partition("-")
        if not (low.isdigit() and (not dash or high.isdigit())):
            return None
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            return None
        ranges.append((first, last))
    return ranges


def _cpuset(resources: Settings) -> None:
    for key, what, available, noun in (
        ("CpusetCpus", "cpus", online_cpus(), "CPUs"),
        ("CpusetMems", "mems", online_mems(), "memory nodes"),
    ):
        value = resources.get(key) or ""
        wanted = _uint_list(value)
        if wanted is None:
            raise InvalidParameter(
                f"Invalid value {value} for cpuset {what}: invalid format: {value}"
            )
        have = _uint_list(available) or []
        if not all(_covered(r, have) for r in wanted):
            raise InvalidParameter(
                f"Requested {noun} are not available - requested {value}, "
                f"available: {available}"
            )


def _covered(wanted: tuple[int, int], have: list[tuple[int, int]]) -> bool:
    """Whether the range C{wanted} lies in the union of C{have}."""
    first, last = wanted
    for low, high in sorted(have):
        if low <= first <= high:
            first = high + 1
        if first > last:
            return True
    return False


def _blkio(resources: Settings) -> None:
    weight = resources.get("BlkioWeight") or 0
    if weight > 0 and not 10 <= weight <= 1000:
        raise InvalidParameter("Range of blkio weight is from 10 to 1000")


def _pids(resources: Settings) -> None:
    if (resources.get("PidsLimit") or 0) < -1:
        raise InvalidParameter("invalid PidsLimit")


def check_resources(resources: Settings, *, update: bool = False) -> None:
    """
    C{Resources}, in a create's C{HostConfig} or an update body, as
    dockerd's C{verifyPlatformContainerResources} checks them.

    @param update: An update: C{MemorySwap} may come without C{Memory}.
    @raise InvalidParameter: With dockerd's message.
    """
    _memory(resources, update=update)
    _cpu(resources)
    _cpuset(resources)
    _blkio(resources)
    _pids(resources)


def _resources(host: Settings) -> None:
    check_resources(host)


def _oom_and_shm(host: Settings) -> None:
    score = host.get("OomScoreAdj") or 0
    if not -1000 <= score <= 1000:
        raise InvalidParameter(
            f"Invalid value {score}, range for oom score adj is [-1000, 1000]"
        )
    if (host.get("ShmSize") or 0) < 0:
        raise InvalidParameter("SHM size can not be less than 0")


# --- HostConfig: validateHostConfig ----------------------------------------


def _restart_policy(host: Settings) -> None:
    policy = restart.parse(host)
    if host.get("AutoRemove") and policy.name != "no":
        raise InvalidParameter(
            "can't create 'AutoRemove' container with restart policy"
        )


def _mounts(host: Settings) -> None:
    for mount in host.get("Mounts") or []:
        check_mount(mount or {})


def _extra_hosts(host: Settings) -> None:
    for entry in host.get("ExtraHosts") or []:
        separator = "=" if "=" in entry else ":"
        name, found, address = entry.partition(separator)
        if not found or not name:
            raise InvalidParameter(f"bad format for add-host: {go_quote(entry)}")
        if address.startswith("[") and address.endswith("]"):
            address = address[1:-1]
        if address != "host-gateway" and not _ip(address):
            raise InvalidParameter(
                f"invalid IP address in add-host: {go_quote(address)}"
            )


def _ip(address: str) -> bool:
    import ipaddress  # noqa: PLC0415

    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _port_bindings(host: Settings) -> None:
    for port, bindings in (host.get("PortBindings") or {}).items():
        number = port.partition("/")[0]
        single = _port_range(number)
        if number and (single is None or single[0] != single[1]):
            raise InvalidParameter(f"invalid port specification: {go_quote(number)}")
        for binding in bindings or []:
            host_port = (binding or {}).get("HostPort") or ""
            if host_port and _port_range(host_port.partition("/")[0]) is None:
                raise InvalidParameter(
                    f"invalid port specification: {go_quote(host_port)}"
                )


def _port_range(value: str) -> tuple[int, int] | None:
    """C{80} or C{8000-8010}, as Go's C{nat.ParsePortRange}; None if bad."""
    low, dash, high = value.partition("-")
    try:
        first = _port(low)
        last = _port(high) if dash else first
    except ValueError:
        return None
    return (first, last) if first <= last else None


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(text)
    return int(text)


def _capabilities(host: Settings) -> None:
    for key in ("CapAdd", "CapDrop"):
        for name in host.get(key) or []:
            capability = name.upper()
            if not capability.startswith("CAP_"):
                capability = "CAP_" + capability
            if capability != "CAP_ALL" and capability not in ALL_CAPABILITIES:
                raise InvalidParameter(
                    f"invalid {key}: unknown capability: {go_quote(capability)}"
                )


def _annotations(host: Settings) -> None:
    if "" in (host.get("Annotations") or {}):
        raise InvalidParameter(
            "invalid Annotations: the empty string is not permitted as an "
            "annotation key"
        )


# --- HostConfig: verifyPlatformContainerSettings ---------------------------


def _namespaces(host: Settings) -> None:
    for key, label, valid in (
        ("IpcMode", "IPC", {"", "none", "private", "shareable", "host"}),
        ("PidMode", "PID", {"", "host"}),
        ("UTSMode", "UTS", {"", "host"}),
        ("UsernsMode", "userns", {"", "host"}),
        ("CgroupnsMode", "cgroup namespace", {"", "private", "host"}),
    ):
        mode = host.get(key) or ""
        if mode in valid:
            continue
        joining = mode.startswith("container:") and mode != "container:"
        if joining and key in {"IpcMode", "PidMode"}:
            continue  # The container is looked for as the record is made.
        raise InvalidParameter(f"invalid {label} mode: {mode}")


def _cgroup_parent(host: Settings) -> None:
    parent = host.get("CgroupParent") or ""
    if ".." in parent.split("/"):
        raise InvalidParameter(
            f"invalid CgroupParent {go_quote(parent)}: it may not name a parent "
            "directory (..)"
        )


def _runtime(host: Settings) -> None:
    name = host.get("Runtime") or ""
    if name not in RUNTIMES:
        raise InvalidParameter(f"unknown or invalid runtime name: {name}")


def _tmpfs(host: Settings) -> None:
    for destination in host.get("Tmpfs") or {}:
        problem = _destination_problem(destination)
        if problem:
            raise InvalidParameter(problem)


def _ulimits(host: Settings) -> None:
    for each in host.get("Ulimits") or []:
        ulimit = each or {}
        name = ulimit.get("Name") or ""
        if name.lower() not in ULIMITS:
            raise InvalidParameter(f"invalid ulimit type: {name}")
        soft, hard = ulimit.get("Soft") or 0, ulimit.get("Hard") or 0
        if soft > hard:
            raise InvalidParameter(
                "ulimit soft limit must be less than or equal to hard limit: "
                f"{soft} > {hard}"
            )


def _sysctls(host: Settings) -> None:
    for name in host.get("Sysctls") or {}:
        if name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
            if host.get("IpcMode") == "host":
                raise InvalidParameter(
                    f"sysctl {go_quote(name)} is not allowed in the hosts ipc namespace"
                )
        elif name.startswith("net."):
            if host.get("NetworkMode") == "host":
                raise InvalidParameter(
                    f"sysctl {go_quote(name)} is not allowed in the hosts network "
                    "namespace"
                )
        elif name == "kernel.hostname" and host.get("UTSMode") != "host":
            raise InvalidParameter(
                f"sysctl {go_quote(name)} is not allowed as it conflicts with the "
                'OCI "hostname" field'
            )
        elif name != "kernel.domainname" or host.get("UTSMode") == "host":
            raise InvalidParameter(
                f"sysctl {go_quote(name)} is not in a separate kernel namespace"
            )


def _not_here(host: Settings) -> None:
    """Settings dockerd has and this daemon cannot give: refused, not dropped."""
    for each in host.get("DeviceRequests") or []:
        request = each or {}
        capabilities = request.get("Capabilities") or []
        shown = "[" + " ".join("[" + " ".join(c or []) + "]" for c in capabilities)
        raise InvalidParameter(
            f"could not select device driver {go_quote(request.get('Driver') or '')}"
            f" with capabilities: {shown}]"
        )
    if host.get("StorageOpt"):
        raise InvalidParameter(
            "--storage-opt is supported only for overlay over xfs with 'pquota' "
            "mount option"
        )


# --- volumes: registerMountPoints ------------------------------------------


def _destination_problem(target: str) -> str | None:
    """What dockerd says of a mount destination, or C{None} when it is fine."""
    if target == "/":
        return "invalid specification: destination can't be '/'"
    if not _absolute(target):
        return f"invalid mount path: '{target}' mount path must be absolute"
    return None


def _mount_error(kind: str, problem: str) -> InvalidParameter:
    return InvalidParameter(f'invalid mount config for type "{kind}": {problem}')


def check_mount(mount: Settings, *, bind_source_must_exist: bool = True) -> None:
    """
    One C{HostConfig.Mounts} entry, as dockerd's C{ValidateMountConfig}.

    @raise InvalidParameter: C{invalid mount config for type "T": ...}.
    """
    kind = mount.get("Type") or ""
    target = mount.get("Target") or ""
    source = mount.get("Source") or ""
    if not target:
        raise _mount_error(kind, "field Target must not be empty")
    problem = _destination_problem(target)
    if problem:
        raise _mount_error(kind, problem)
    extra = [
        name
        for name in ("BindOptions", "VolumeOptions", "ImageOptions", "TmpfsOptions")
        if mount.get(name) is not None
    ]
    checks = {"bind": _bind_mount, "volume": _volume_mount, "tmpfs": _tmpfs_mount}
    if kind not in checks:
        raise _mount_error(kind, "mount type unknown")
    checks[kind](mount, source, extra, bind_source_must_exist)


def _bind_mount(mount: Settings, source: str, extra: list[str], exist: bool) -> None:
    if not source:
        raise _mount_error("bind", "field Source must not be empty")
    propagation = (mount.get("BindOptions") or {}).get("Propagation") or ""
    if propagation and propagation not in _PROPAGATIONS:
        raise _mount_error("bind", f"invalid propagation mode: {propagation}")
    for name in ("VolumeOptions", "ImageOptions"):
        if name in extra:
            raise _mount_error("bind", f"field {name} must not be specified")
    if not _absolute(source):
        raise _mount_error(
            "bind", f"invalid mount path: '{source}' mount path must be absolute"
        )
    create = bool((mount.get("BindOptions") or {}).get("CreateMountpoint"))
    if exist and not create and not os.path.lexists(source):
        raise _mount_error("bind", f"bind source path does not exist: {source}")


def _volume_mount(mount: Settings, source: str, extra: list[str], _: bool) -> None:
    for name in ("BindOptions", "ImageOptions"):
        if name in extra:
            raise _mount_error("volume", f"field {name} must not be specified")
    subpath = (mount.get("VolumeOptions") or {}).get("Subpath") or ""
    if subpath and not source:
        raise _mount_error(
            "volume", "must not set Subpath when using anonymous volumes"
        )
    if subpath and (_absolute(subpath) or ".." in subpath.split("/")):
        raise _mount_error(
            "volume", "subpath must be a relative path within the volume"
        )
    if mount.get("ReadOnly") and not source:
        raise _mount_error(
            "volume", "must not set ReadOnly mode when using anonymous volumes"
        )
    if subpath:
        # dockerd mounts the subpath through a descriptor held inside the
        # volume; a path handed to runc could be swapped for a link by a
        # container that shares the volume. Refused, not dropped.
        raise InvalidParameter(
            "volume subpaths (--mount volume-subpath) are not supported by "
            "this daemon yet"
        )
    if source:
        check_volume_name(source)


#: The C{TmpfsOptions.Options} dockerd takes (its C{validTmpfsOptions}).
_TMPFS_OPTIONS = frozenset({"exec", "noexec"})


def _tmpfs_mount(mount: Settings, source: str, extra: list[str], _: bool) -> None:
    for name in ("BindOptions", "ImageOptions"):
        if name in extra:
            raise _mount_error("tmpfs", f"field {name} must not be specified")
    if source:
        raise _mount_error("tmpfs", "field Source must not be specified")
    for option in (mount.get("TmpfsOptions") or {}).get("Options") or []:
        if not 1 <= len(option or []) <= 2:  # a name, and maybe a value
            raise _mount_error("tmpfs", "invalid option array length")
        if option[0] not in _TMPFS_OPTIONS:
            raise _mount_error("tmpfs", f"invalid option: {option[0]}")


def _bind_spec_error(bind: str, problem: str = "") -> InvalidParameter:
    suffix = f": {problem}" if problem else ""
    return InvalidParameter(f"invalid volume specification: '{bind}'{suffix}")


def _bind_mode_valid(mode: str) -> bool:
    """Moby's C{ValidateMountMode}: known options, one of each class."""
    if mode == "":
        return True
    counts = [0] * len(_BIND_MODE_CLASSES)
    for option in mode.split(","):
        classes = [i for i, c in enumerate(_BIND_MODE_CLASSES) if option in c]
        if not classes:
            return False
        counts[classes[0]] += 1
    return max(counts) <= 1


def check_bind(bind: str) -> str:
    """
    One C{HostConfig.Binds} entry (C{src:dst[:mode]}), as dockerd's
    C{ParseMountRaw}; a C{src} that is not absolute names a volume.

    @return: Its destination.
    @raise InvalidParameter: With dockerd's message.
    """
    parts = bind.split(":")
    if len(parts) > 3 or not parts[0]:
        raise _bind_spec_error(bind)
    pair = len(parts) == 2
    if len(parts) == 1:
        # Only a destination: an anonymous volume there (the Docker SDK's
        # volumes=["/data"]).
        parts = ["", *parts]
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    if pair and _bind_mode_valid(target):
        raise _bind_spec_error(bind)
    if not _bind_mode_valid(mode):
        raise InvalidParameter(f"invalid mode: {mode}")
    kind = "bind" if _absolute(source) else "volume"
    options = set(mode.split(","))
    problem = (
        _destination_problem(target) if target else "field Target must not be empty"
    )
    if problem is None and kind == "volume" and options & _PROPAGATIONS:
        problem = "field BindOptions must not be specified"
    if problem is None and kind == "bind" and "nocopy" in options:
        problem = "field VolumeOptions must not be specified"
    if problem is not None:
        raise _bind_spec_error(
            bind, f'invalid mount config for type "{kind}": {problem}'
        )
    if kind == "volume" and source:
        check_volume_name(source)
    return target


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """
    One C{HostConfig.VolumesFrom} entry (C{CONTAINER[:MODE]}), as dockerd's
    C{ParseVolumesFrom}: the container and the mode (C{rw} unless given);
    the mode takes C{ro}/C{rw}, a label and a consistency, but no
    propagation and no C{nocopy} (the other container's mounts keep
    theirs).

    @raise InvalidParameter: With dockerd's message.
    """
    if not spec:
        raise InvalidParameter("volumes-from specification cannot be an empty string")
    container, _, mode = spec.partition(":")
    if not mode:
        return container, "rw"
    options = set(mode.split(","))
    if not _bind_mode_valid(mode) or options & (_PROPAGATIONS | {"nocopy"}):
        raise InvalidParameter(f"invalid mode: {mode}")
    return container, mode


def _volumes_from(host: Settings) -> None:
    for spec in host.get("VolumesFrom") or []:
        parse_volumes_from(spec)


def _mount_points(host: Settings) -> None:
    """
    C{Binds}, then C{Mounts}: one mount per destination; a C{Tmpfs} may not
    take one of theirs either (two C{Tmpfs} keys may clean to the same path:
    dockerd lets them).
    """
    seen: set[str] = set()

    def claim(destination: str, *, keep: bool = True, shown: str = "") -> None:
        clean = posixpath.normpath(destination)
        if clean in seen:
            raise InvalidParameter(f"Duplicate mount point: {shown or clean}")
        if keep:
            seen.add(clean)

    for bind in host.get("Binds") or []:
        claim(check_bind(bind))
    for mount in host.get("Mounts") or []:
        # dockerd names a mount's Target as it was written (a bind's cleaned).
        target = (mount or {}).get("Target") or ""
        claim(target, shown=target)
    for destination in host.get("Tmpfs") or {}:
        claim(destination, keep=False)


def _log_config(host: Settings) -> None:
    log_config = host.get("LogConfig") or {}
    driver = log_config.get("Type") or ""
    known = LOG_DRIVERS.get(driver or "json-file", ())
    if driver in OTHER_LOG_DRIVERS:
        raise InvalidParameter(
            f"log driver {driver} is not supported by this daemon yet: it keeps "
            "logs with json-file, local or none"
        )
    if known == ():
        raise InvalidParameter(
            f"error looking up logging plugin {driver}: plugin {go_quote(driver)} "
            "not found"
        )
    for option in log_config.get("Config") or {}:
        if known is not None and option not in known:
            where = (
                f"for log driver {driver}"
                if driver == "local"
                else ("for json-file log driver")
            )
            raise InvalidParameter(f"unknown log opt '{option}' {where}")


def _security_options(host: Settings) -> None:
    security.parse(host.get("SecurityOpt"))


# --- NetworkingConfig ------------------------------------------------------


def _endpoints(networking: Settings) -> None:
    # Several endpoints are fine: from API 1.44 clients (compose) send
    # every network of a container at its create.
    endpoints = networking.get("EndpointsConfig") or {}
    for endpoint in endpoints.values():
        ipam = (endpoint or {}).get("IPAMConfig") or {}
        for key, version in (("IPv4Address", 4), ("IPv6Address", 6)):
            address = ipam.get(key) or ""
            if address and not _ip_version(address, version):
                raise InvalidParameter(f"invalid IPv{version} address: {address}")


def _ip_version(address: str, version: int) -> bool:
    import ipaddress  # noqa: PLC0415

    try:
        return ipaddress.ip_address(address).version == version
    except ValueError:
        return False


# --- the whole body --------------------------------------------------------


def _conflicts(config: Settings, host: Settings) -> None:
    if host.get("UTSMode") == "host" and config.get("Hostname"):
        raise InvalidParameter("conflicting options: hostname and the UTS mode")
    if host.get("NetworkMode") == "host" and host.get("Links"):
        raise InvalidParameter(
            "conflicting options: host type networking can't be used with links. "
            "This would result in undefined behavior"
        )
    if host.get("NetworkMode") == "host" and config.get("MacAddress"):
        raise InvalidParameter("conflicting options: mac-address and the network mode")


@frozen
class Body:
    """A create body's three parts, each decoded (never C{None})."""

    config: Settings
    host: Settings
    networking: Settings


BodyCheck = Callable[[Body], None]


def _config(check: Check) -> BodyCheck:
    return lambda body: check(body.config)


def _host(check: Check) -> BodyCheck:
    return lambda body: check(body.host)


#: Every check of a create body, in the order dockerd makes them: its
#: decoder's, C{validateContainerConfig}, C{validateHostConfig},
#: C{verifyPlatformContainerSettings}, the networks', the volumes', and the
#: log driver's as the container is made.
CREATE_CHECKS: tuple[BodyCheck, ...] = (
    _host(_network_mode),
    lambda body: _conflicts(body.config, body.host),
    _host(_isolation),
    _host(_qos),
    _config(_working_dir),
    _config(_stop_signal),
    _config(_env),
    _config(_healthcheck),
    _config(_exposed_ports),
    _host(_restart_policy),
    _host(_mounts),
    _host(_extra_hosts),
    _host(_port_bindings),
    _host(_capabilities),
    _host(_annotations),
    _host(_resources),
    _host(_namespaces),
    _host(_oom_and_shm),
    _host(_cgroup_parent),
    _host(_runtime),
    _host(_tmpfs),
    _host(_ulimits),
    _host(_sysctls),
    _host(_not_here),
    lambda body: _endpoints(body.networking),
    _host(_volumes_from),
    _host(_mount_points),
    _host(_log_config),
    _host(_security_options),
)


def check_create(body: Body) -> None:
    """
    A decoded create body's settings, as dockerd checks them before 201.

    @raise InvalidParameter: The first fault, with dockerd's message.
    """
    for check in CREATE_CHECKS:
        check(body)


def check_update(update: Settings) -> None:
    """
    A decoded update body (C{Resources} and C{RestartPolicy}), as dockerd
    checks it.

    @raise InvalidParameter: The first fault, with dockerd's message.
    """
    check_resources(update, update=True)
    if update.get("RestartPolicy") is not None:
        restart.parse(update)
