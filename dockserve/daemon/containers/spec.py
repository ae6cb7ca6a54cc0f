# -*- test-case-name: tests.daemon.containers.test_spec -*-
"""
The OCI runtime C{config.json} of a Docker container.

Docker's container C{Config} and C{HostConfig}, over the image's config,
become one runtime-spec document for runc: the process (command, env,
user, TTY), the mounts (Docker's defaults, the generated C{/etc/hosts},
C{/etc/hostname} and C{/etc/resolv.conf}, binds, volumes, tmpfs), the
namespaces, the capabilities and the cgroup limits. It is built where the
bundle is prepared (in a thread: it reads the container's C{/etc/passwd}).
"""

import json
import socket
from pathlib import Path
from typing import Any

from dockserve.daemon.containers import devices, joins, links, security
from dockserve.daemon.containers.execs import (
    ALL_CAPABILITIES,
    GROUP_ADD_ANNOTATION,
    grantable_capabilities,
    resolve_user,
)
from dockserve.daemon.network.model import NetPlan
from dockserve.errors import InvalidParameter, SystemError_

#: Docker's default capability set (moby oci/caps/defaults.go).
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

#: Paths dockerd hides from unprivileged containers.
MASKED_PATHS = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]

#: Paths dockerd makes read-only in unprivileged containers.
READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Where C{--init} finds its init on the host, and where it appears inside.
INIT_BINARY = "/usr/bin/catatonit"
INIT_PATH = "/sbin/docker-init"

_DEFAULT_SHM = 64 * 1024 * 1024

#: Where the kernel's IPv6 settings are (absent when it has no IPv6).
_IPV6 = Path("/proc/sys/net/ipv6")
#: The sysctls that turn IPv6 off in a network namespace, for the
#: interfaces it has and the ones it will get (network connect).
_NO_IPV6 = ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6")

_RLIMITS = {
    "core": "RLIMIT_CORE",
    "cpu": "RLIMIT_CPU",
    "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS",
    "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE",
    "nice": "RLIMIT_NICE",
    "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC",
    "rss": "RLIMIT_RSS",
    "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME",
    "sigpending": "RLIMIT_SIGPENDING",
    "stack": "RLIMIT_STACK",
    "as": "RLIMIT_AS",
}


def _default_mounts(
    shm_size: int, shm_source: str, privileged: bool, *, shm: bool = True
) -> list[dict[str, Any]]:
    """
    Docker's default mounts: C{/dev/shm} is bound from C{shm_source} when
    there is one (a shareable one, another container's, the host's), a
    private tmpfs otherwise, and absent without C{shm} (C{--ipc none}).
    """
    sys_options = ["nosuid", "noexec", "nodev"] + ([] if privileged else ["ro"])
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666",
                     "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": sys_options},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
    ]  # fmt: skip
    if shm and shm_source:
        mounts.append(
            {"destination": "/dev/shm", "type": "bind", "source": shm_source,
             "options": ["rbind", "rprivate"]}
        )  # fmt: skip
    elif shm:
        mounts.append(
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777",
                         f"size={shm_size}"]}
        )  # fmt: skip
    return mounts


def _console_size(host_config: dict[str, Any]) -> dict[str, int] | None:
    """
    The terminal's size from the start (C{HostConfig.ConsoleSize}, which
    the CLI sends from API 1.42): a program that asks at once (C{docker
    run -it img stty size}) must not see 0x0 before the first resize.
    """
    size = host_config.get("ConsoleSize") or [0, 0]
    height, width = (int(v or 0) for v in [*list(size), 0, 0][:2])
    if height <= 0 or width <= 0:
        return None
    return {"height": height, "width": width}


def _capabilities(host_config: dict[str, Any]) -> list[str]:
    if host_config.get("Privileged"):
        return list(grantable_capabilities())

    def normal(name: str) -> str:
        name = name.upper()
        return name if name.startswith("CAP_") or name == "ALL" else f"CAP_{name}"

    caps = list(DEFAULT_CAPABILITIES)
    adds = [normal(c) for c in host_config.get("CapAdd") or []]
    drops = [normal(c) for c in host_config.get("CapDrop") or []]
    for cap in adds + drops:
        if cap != "ALL" and cap not in ALL_CAPABILITIES:
            msg = f"unknown capability: {cap!r}"
            raise InvalidParameter(msg)
    caps = [] if "ALL" in drops else [c for c in caps if c not in drops]
    if "ALL" in adds:
        caps = list(grantable_capabilities())
    else:
        caps += [c for c in adds if c not in caps]
    return caps


def _merge_env(image_env: list[str], env: list[str]) -> list[str]:
    """
    C{env} over C{image_env}, as moby's C{ReplaceOrAppendEnvValues}: a
    name without C{=} unsets that variable (runc would refuse it).
    """
    merged: dict[str, str] = {}
    for item in [*image_env, *env]:
        key, equals, _ = item.partition("=")
        if not equals:
            merged.pop(key, None)
            continue
        merged[key] = item
    return list(merged.values())


def _args(image: dict[str, Any], config: dict[str, Any]) -> list[str]:
    entrypoint = config.get("Entrypoint")
    cmd = config.get("Cmd")
    if entrypoint is None:
        entrypoint = image.get("Entrypoint") or []
        if not cmd:
            cmd = image.get("Cmd") or []
    args = [*(entrypoint or []), *(cmd or [])]
    if not args:
        msg = "No command specified"
        raise InvalidParameter(msg)
    return [str(a) for a in args]


def _bind_mount(source: str, destination: str, options: list[str]) -> dict[str, Any]:
    readonly = "ro" in options
    propagation = [
        o for o in options
        if o in {"shared", "rshared", "slave", "rslave", "private", "rprivate"}
    ]  # fmt: skip
    return {
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": [
            "rbind",
            "ro" if readonly else "rw",
            *(propagation or ["rprivate"]),
        ],
    }


def _tmpfs_mount(destination: str, options: str) -> dict[str, Any]:
    opts = ["nosuid", "nodev", "noexec"]
    for option in (o for o in options.split(",") if o):
        if option in {"exec", "dev", "suid"}:
            opts = [o for o in opts if o != f"no{option}"]
        else:
            opts.append(option)
    return {
        "destination": destination,
        "type": "tmpfs",
        "source": "tmpfs",
        "options": opts,
    }


def _make_bind_source(source: str) -> None:
    """
    Make a C{Binds} source that is not there a directory, as dockerd does.

    Whatever is there (a directory, a file, a socket, a device) is bound as
    it is: runc makes the destination a file when the source is not a
    directory. A source under a file is left for runc to refuse, as dockerd
    leaves it; anything else that cannot be made is dockerd's error.

    @raise SystemError_: The source cannot be made (a dangling symbolic
        link, a read-only file system...).
    """
    path = Path(source)
    if path.exists():
        return
    try:
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    except NotADirectoryError:
        return
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
        msg = (
            f"error while creating mount source path '{source}': "
            f"mkdir {source}: {reason}"
        )
        raise SystemError_(msg) from None


def _user_mounts(
    host_config: dict[str, Any], container_dir: Path
) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = []
    for bind in host_config.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) < 2 or not parts[1].startswith("/"):
            msg = f"invalid volume specification: '{bind}'"
            raise InvalidParameter(msg)
        options = parts[2].split(",") if len(parts) > 2 else []
        _make_bind_source(parts[0])
        mounts.append(_bind_mount(parts[0], parts[1], options))
    volumes_root = container_dir.parent.parent / "volumes"
    for mount in host_config.get("Mounts") or []:
        kind = mount.get("Type", "volume")
        target = mount.get("Target", "")
        if not target.startswith("/"):
            msg = (
                f'invalid mount config for type "{kind}": invalid mount path: '
                f"'{target}' mount path must be absolute"
            )
            raise InvalidParameter(msg)
        options = ["ro"] if mount.get("ReadOnly") else []
        if kind == "tmpfs":
            tmpfs = mount.get("TmpfsOptions") or {}
            extra = []
            if tmpfs.get("SizeBytes"):
                extra.append(f"size={tmpfs['SizeBytes']}")
            if tmpfs.get("Mode"):
                extra.append(f"mode={tmpfs['Mode']:o}")
            mounts.append(_tmpfs_mount(target, ",".join(extra)))
            continue
        source = mount.get("Source") or ""
        if kind == "volume" and not source.startswith("/"):
            if not source:
                msg = "anonymous volumes in Mounts are not supported"
                raise InvalidParameter(msg)
            data = volumes_root / source / "_data"
            data.mkdir(parents=True, exist_ok=True)
            source = str(data)
        elif kind == "bind":
            if not Path(source).exists():
                msg = (
                    'invalid mount config for type "bind": '
                    f"bind source path does not exist: {source}"
                )
                raise InvalidParameter(msg)
            propagation = (mount.get("BindOptions") or {}).get("Propagation")
            if propagation:
                options.append(propagation)
        elif kind != "volume":
            msg = f"mount type unknown: {kind!r}"
            raise InvalidParameter(msg)
        mounts.append(_bind_mount(source, target, options))
    for destination, options in (host_config.get("Tmpfs") or {}).items():
        mounts.append(_tmpfs_mount(destination, options or ""))
    return mounts


def _host_resolv() -> list[str]:
    try:
        return Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return []


def write_etc_files(
    container_dir: Path,
    *,
    hostname: str,
    domainname: str = "",
    extra_hosts: list[str] | None = None,
    dns: list[str] | None = None,
    dns_search: list[str] | None = None,
    dns_options: list[str] | None = None,
    host_network: bool = False,
    plan: NetPlan | None = None,
) -> list[dict[str, Any]]:
    """
    Write the container's C{hosts}, C{hostname} and C{resolv.conf} into
    C{container_dir} and return the OCI bind mounts that put them at
    C{/etc/...} inside. Nameservers on the host's loopback mean nothing in
    a container of its own network, so they give way to Google's, as in
    dockerd. On a user-defined network the resolver is the embedded one at
    127.0.0.11 (with C{ndots:0}, as dockerd's), and C{/etc/hosts} names
    the container's own address (C{plan}).
    """
    plan = plan or NetPlan()
    fqdn = f"{hostname}.{domainname}" if domainname else hostname
    hosts = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    for entry in extra_hosts or []:
        name, sep, address = entry.partition(":")
        if not sep:
            name, sep, address = entry.partition("=")
        if not sep or not name:
            msg = f"invalid IP address in add-host: {address!r}"
            raise InvalidParameter(msg)
        if address == "host-gateway":
            address = plan.host_gateway or "127.0.0.1"
        hosts.append(f"{address}\t{name}")
    for address, names in plan.links:
        hosts.append(f"{address}\t{names}")
    if not host_network:
        own = plan.ip or "127.0.1.1"
        hosts.append(f"{own}\t{fqdn}" + (f" {hostname}" if fqdn != hostname else ""))
    host_lines = _host_resolv()
    servers = list(dns or [])
    if not servers:
        servers = [
            line.split()[1] for line in host_lines
            if line.startswith("nameserver") and len(line.split()) > 1
        ]  # fmt: skip
        if not host_network:
            servers = [s for s in servers if not s.startswith("127.") and s != "::1"]
        servers = servers or ["8.8.8.8", "8.8.4.4"]
    search = list(dns_search or [])
    if not search:
        for line in host_lines:
            if line.startswith(("search", "domain")):
                search = line.split()[1:]
    options = list(dns_options or [])
    if plan.internal_dns:
        # The embedded server forwards to the --dns servers or the host's.
        servers = ["127.0.0.11"]
        options = [*options, "ndots:0"] if "ndots" not in " ".join(options) else options
    # dockerd 20.10's order: search, then the servers, then the options.
    resolv = ["search " + " ".join(search)] if search else []
    resolv += [f"nameserver {s}" for s in servers]
    if options:
        resolv.append("options " + " ".join(options))
    files = {
        "hosts": "\n".join(hosts) + "\n",
        "hostname": hostname + "\n",
        "resolv.conf": "\n".join(resolv) + "\n",
    }
    for name, text in files.items():
        (container_dir / name).write_text(text)
    return _etc_mounts(container_dir)


def _etc_mounts(directory: Path) -> list[dict[str, Any]]:
    """The binds that put C{directory}'s hosts, hostname and resolv.conf in /etc."""
    return [
        {"destination": f"/etc/{name}", "type": "bind",
         "source": str(directory / name), "options": ["rbind", "rprivate"]}
        for name in ("hosts", "hostname", "resolv.conf")
    ]  # fmt: skip


def _resources(
    host_config: dict[str, Any], joined: joins.Joins | None = None
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if joined is not None and joined.device_rules:
        resources["devices"] = [dict(r) for r in joined.device_rules]
    elif host_config.get("Privileged"):
        resources["devices"] = [devices.ALLOW_ALL]
    else:
        resources["devices"] = [dict(r) for r in devices.DEFAULT_RULES]
    memory: dict[str, Any] = {}
    if host_config.get("Memory"):
        memory["limit"] = int(host_config["Memory"])
        swap = host_config.get("MemorySwap")
        if swap:
            memory["swap"] = int(swap)
    if host_config.get("MemoryReservation"):
        memory["reservation"] = int(host_config["MemoryReservation"])
    if memory:
        resources["memory"] = memory
    cpu: dict[str, Any] = {}
    if host_config.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = int(host_config["NanoCpus"]) * 100000 // 1_000_000_000
    if host_config.get("CpuQuota"):
        cpu["quota"] = int(host_config["CpuQuota"])
    if host_config.get("CpuPeriod"):
        cpu["period"] = int(host_config["CpuPeriod"])
    if host_config.get("CpuShares"):
        cpu["shares"] = int(host_config["CpuShares"])
    if host_config.get("CpusetCpus"):
        cpu["cpus"] = host_config["CpusetCpus"]
    if host_config.get("CpusetMems"):
        cpu["mems"] = host_config["CpusetMems"]
    if cpu:
        resources["cpu"] = cpu
    pids = host_config.get("PidsLimit")
    if pids:
        resources["pids"] = {"limit": int(pids)}
    return resources


def build_spec(
    *,
    container_id: str,
    image_config: dict[str, Any],
    config: dict[str, Any],
    host_config: dict[str, Any],
    rootfs: Path,
    container_dir: Path,
    network: NetPlan | None = None,
) -> dict[str, Any]:
    """
    The OCI runtime spec of a container; also writes its C{/etc} files
    into C{container_dir}.

    @param network: Its plumbed networking (L{NetPlan}): the namespace to
        join, its address and resolver; C{None} is a namespace of its own
        with loopback only (or the host's for C{--network host}).

    @param image_config: The image config JSON (its C{config} member is used).
    @param config: The container's Docker C{Config}.
    @param host_config: Its C{HostConfig}, named volumes already host paths;
        for a start, with what the start found of other containers and of
        the host's devices (L{joins.of}: namespaces to join, the host
        directory of its C{/dev/shm}, devices, its links' variables).
    @param rootfs: The mounted root, where C{User} is looked up.
    @raise InvalidParameter: No command, an unknown capability, a bad mount.
    @raise dockserve.errors.NotFound: An unknown user or group.
    """
    image = image_config.get("config") or {}
    rootfs = Path(rootfs)
    container_dir = Path(container_dir)
    privileged = bool(host_config.get("Privileged"))
    network_mode = host_config.get("NetworkMode") or "default"
    plan = network or NetPlan(kind="host" if network_mode == "host" else "none")
    host_network = plan.kind == "host"
    hostname = config.get("Hostname") or (
        socket.gethostname() if host_network else container_id[:12]
    )
    if plan.kind == "container" and plan.hostname:
        hostname = plan.hostname
    domainname = config.get("Domainname") or ""
    tty = bool(config.get("Tty"))

    joined = joins.of(host_config)
    own_env = list(config.get("Env") or [])
    if joined is not None and joined.link_env:
        own_env = links.with_env(own_env, joined.link_env)
    env = _merge_env(list(image.get("Env") or []), own_env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    env.insert(1, f"HOSTNAME={hostname}")
    if tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    args = _args(image, config)

    ipc_mode = str(host_config.get("IpcMode") or "")
    shm_source = joined.shm if joined is not None else ""
    if ipc_mode == "host":
        shm_source = "/dev/shm"
    mounts = _default_mounts(
        int(host_config.get("ShmSize") or _DEFAULT_SHM),
        shm_source,
        privileged,
        shm=ipc_mode != "none",
    )
    if plan.kind == "container" and plan.share_from:
        # --network container:X: X's hostname, hosts and resolv.conf, as dockerd.
        mounts += _etc_mounts(Path(plan.share_from))
    else:
        mounts += write_etc_files(
            container_dir,
            hostname=hostname,
            domainname=domainname,
            extra_hosts=list(host_config.get("ExtraHosts") or []),
            dns=list(host_config.get("Dns") or []),
            dns_search=list(host_config.get("DnsSearch") or []),
            dns_options=list(host_config.get("DnsOptions") or []),
            host_network=host_network,
            plan=plan,
        )
    pid_mode = str(host_config.get("PidMode") or "")
    if host_config.get("Init") and not pid_mode:
        # Only in a PID namespace of its own: the host's or another
        # container's has an init already (as dockerd).
        mounts.append(
            {"destination": INIT_PATH, "type": "bind", "source": INIT_BINARY,
             "options": ["bind", "ro"]}
        )  # fmt: skip
        args = [INIT_PATH, "--", *args]
    user_mounts = _user_mounts(host_config, container_dir)
    taken = {m["destination"].rstrip("/") for m in user_mounts}
    mounts = [m for m in mounts if m["destination"] not in taken] + user_mounts

    user_name = config.get("User") or image.get("User") or ""
    group_add = [str(g) for g in host_config.get("GroupAdd") or []]
    user = resolve_user(rootfs, user_name, group_add)
    caps = _capabilities(host_config)
    options = security.parse(list(host_config.get("SecurityOpt") or []))

    rlimits = []
    for ulimit in host_config.get("Ulimits") or []:
        kind = _RLIMITS.get(str(ulimit.get("Name", "")).lower())
        if kind is None:
            msg = f"invalid ulimit type: {ulimit.get('Name')}"
            raise InvalidParameter(msg)
        rlimits.append(
            {"type": kind, "hard": int(ulimit["Hard"]), "soft": int(ulimit["Soft"])}
        )

    process: dict[str, Any] = {
        "terminal": tty,
        "user": user,
        "args": args,
        "env": env,
        "cwd": config.get("WorkingDir") or image.get("WorkingDir") or "/",
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
        },
        "noNewPrivileges": options.no_new_privileges,
    }
    if rlimits:
        process["rlimits"] = rlimits
    size = _console_size(host_config) if tty else None
    if size is not None:
        process["consoleSize"] = size

    namespaces: list[dict[str, Any]] = [{"type": "mount"}]
    for kind, mode_key in (("pid", "PidMode"), ("ipc", "IpcMode"), ("uts", "UTSMode")):
        if host_config.get(mode_key) != "host":
            namespaces.append({"type": kind})
    for namespace in namespaces:
        # --ipc container:X, --pid container:X: X's, by the path the start found.
        path = {
            "ipc": joined.ipc_namespace if joined is not None else "",
            "pid": joined.pid_namespace if joined is not None else "",
        }.get(namespace["type"], "")
        if path:
            namespace["path"] = path
    if plan.kind in {"netns", "container"}:
        namespaces.append({"type": "network", "path": plan.netns})
    elif not host_network:
        namespaces.append({"type": "network"})
    uts_host = host_config.get("UTSMode") == "host"

    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": _resources(host_config, joined),
        "cgroupsPath": f"/dockserve/{container_id}",
    }
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        seccomp = security.seccomp_for(options, caps)
        if seccomp is not None:
            linux["seccomp"] = seccomp
    if joined is not None and joined.devices:
        linux["devices"] = [dict(d) for d in joined.devices]
    elif privileged:
        linux["devices"] = devices.host_devices()
    sysctls = dict(host_config.get("Sysctls") or {})
    if plan.kind in {"none", "netns"} and _IPV6.exists():
        # As dockerd 20.10 (no network of a container has IPv6): no IPv6
        # in a network namespace of its own, so no link-local address
        # reaches the host or other members past the IPv4-only firewall.
        # A --sysctl of the user's wins.
        for key in _NO_IPV6:
            sysctls.setdefault(key, "1")
    if sysctls:
        linux["sysctl"] = sysctls

    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {
            "path": str(rootfs),
            "readonly": bool(host_config.get("ReadonlyRootfs")),
        },
        "mounts": mounts,
        "linux": linux,
        "annotations": {
            str(k): str(v) for k, v in (config.get("Labels") or {}).items()
        },
    }
    if group_add:
        spec["annotations"][GROUP_ADD_ANNOTATION] = json.dumps(group_add)
    if not uts_host:
        spec["hostname"] = hostname
        if domainname:
            spec["domainname"] = domainname
    return spec
