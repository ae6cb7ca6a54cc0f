# -*- test-case-name: tests.daemon.test_system -*-
"""
Facts about this machine and daemon for C{GET /info} and C{GET /version}.

The facts come from where dockerd takes them: C{uname}, C{/etc/os-release},
C{/proc/meminfo}, the CPU affinity mask, the cgroup filesystem, the mount
table, and the runtimes' own C{--version}. Counts of containers and images
come from a callable, since those areas are built elsewhere.
"""

import os
import platform
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from twisted.internet.defer import Deferred, succeed

from dockserve import API_VERSION, MIN_API_VERSION, __version__
from dockserve.daemon.config import DaemonConfig
from dockserve.errors import InvalidParameter

#: The keys the counts callable returns.
COUNT_KEYS: Final = (
    "Containers",
    "ContainersRunning",
    "ContainersPaused",
    "ContainersStopped",
    "Images",
)

#: Go's C{GOARCH} for C{uname -m}: clients compare it with image platforms.
_GOARCH: Final = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}

#: Always insecure, as in dockerd: the loopback registries.
_LOOPBACK_CIDRS: Final = ("::1/128", "127.0.0.0/8")

_PROXY_ENV: Final = (
    ("HttpProxy", ("HTTP_PROXY", "http_proxy")),
    ("HttpsProxy", ("HTTPS_PROXY", "https_proxy")),
    ("NoProxy", ("NO_PROXY", "no_proxy")),
)


def no_counts() -> dict[str, int]:
    """The counts when nobody said how to count: all zero."""
    return dict.fromkeys(COUNT_KEYS, 0)


def area_counts(images: Any, containers: Any) -> dict[str, int]:
    """
    Count C{containers} by state and C{images}, through the same listings
    C{GET /containers/json?all=1} and C{GET /images/json?all=1} use
    (dockerd counts every image, a build's intermediate ones too).
    """
    states = [c.get("State") for c in containers.list_containers(all=True)]
    running = states.count("running")
    paused = states.count("paused")
    return {
        "Containers": len(states),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": len(states) - running - paused,
        "Images": len(images.list_images(all_images=True)),
    }


#: The parts C{GET /system/df?type=} may ask for.
DF_TYPES = ("container", "image", "volume", "build-cache")


async def disk_usage(
    images: Any, containers: Any, types: Sequence[str], build: Any = None
) -> dict[str, Any]:
    """
    C{GET /system/df}: what images, containers, volumes and the build cache
    (the images the classic builder made, C{build.cache_usage()}) take,
    only the parts in C{types} when it names any. The walks of containers'
    and volumes' files run in the thread pool.
    """
    wanted = set(types) or set(DF_TYPES)
    usage: dict[str, Any] = {}
    if "image" in wanted:
        layers_size, summaries = images.disk_usage()
        users: dict[str, int] = {}
        for container in containers.list_containers(all=True):
            users[container["ImageID"]] = users.get(container["ImageID"], 0) + 1
        for summary in summaries:
            summary["Containers"] = users.get(summary["Id"], 0)
        usage["LayersSize"] = layers_size
        usage["Images"] = summaries
    if "container" in wanted:
        usage["Containers"] = await containers.container_usage()
    if "volume" in wanted:
        usage["Volumes"] = await containers.volume_usage()
    if "build-cache" in wanted:
        usage["BuildCache"] = build.cache_usage() if build is not None else []
    return usage


class _Nothing:
    """No images, containers or volumes: what L{no_usage} measures."""

    def disk_usage(self) -> tuple[int, list[dict[str, Any]]]:
        return 0, []

    def list_containers(self, **_: object) -> list[dict[str, Any]]:
        return []

    def container_usage(self) -> "Deferred[list[dict[str, Any]]]":
        return succeed([])

    def volume_usage(self) -> "Deferred[list[dict[str, Any]]]":
        return succeed([])


def no_usage(types: Sequence[str]) -> "Deferred[dict[str, Any]]":
    """L{disk_usage} of a daemon with nothing in it."""
    return Deferred.fromCoroutine(disk_usage(_Nothing(), _Nothing(), types))


def run_version(argv: list[str]) -> str:
    """
    The output of C{argv} (a runtime's C{--version}), or C{""} when it is
    missing or fails. Called once, at start-up, before the reactor runs.
    """
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def parse_runtime_version(output: str) -> tuple[str, str]:
    r"""
    C{(version, commit)} from C{runc --version} or C{conmon --version}:
    C{"runc version 1.1.5\\ncommit: v1.1.5-0-gf19387a\\n..."}.
    """
    version = commit = ""
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 3 and words[1] == "version" and not version:
            version = words[2]
        elif line.startswith("commit:"):
            commit = line.split(":", 1)[1].strip()
    return version, commit


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def os_release(text: str) -> dict[str, str]:
    """The C{KEY=value} pairs of C{/etc/os-release}, unquoted."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            result[key.strip()] = value.strip().strip("\"'")
    return result


def mem_total(meminfo: str) -> int:
    """C{MemTotal} of C{/proc/meminfo}, in bytes."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def backing_filesystem(mounts: str, path: str) -> str:
    """
    The filesystem type of the mount that holds C{path}: the longest mount
    point in C{/proc/mounts} that is C{path} or an ancestor of it.
    """
    best, best_type = "", ""
    target = str(Path(path).absolute())
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fields[2]
    return best_type


def _git_commit(package: Path) -> str:
    """The commit the code runs from when it is a git checkout, else C{""}."""
    git = package.parent / ".git"
    head = _read(git / "HEAD").strip()
    if not head.startswith("ref: "):
        return head[:7]
    ref = head[5:]
    commit = _read(git / ref).strip()
    if not commit:
        for line in _read(git / "packed-refs").splitlines():
            if line.endswith(" " + ref):
                commit = line.split()[0]
    return commit[:7]


class Machine:
    """
    Where the facts are read from: the root of the files C{/info} looks at,
    and how a runtime's version is asked. Tests point it at a fake tree.
    """

    def __init__(
        self,
        root: Path = Path("/"),
        *,
        run: Callable[[list[str]], str] = run_version,
        uname: Callable[[], os.uname_result] = os.uname,
        cpus: Callable[[], int] = lambda: len(os.sched_getaffinity(0)),
        hostname: Callable[[], str] = platform.node,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.root = root
        self.run = run
        self.uname = uname
        self.cpus = cpus
        self.hostname = hostname
        self.environ = environ

    def file(self, path: str) -> str:
        """The text of C{path} under the root, or C{""}."""
        return _read(self.root / path.lstrip("/"))

    def exists(self, path: str) -> bool:
        """Whether C{path} exists under the root."""
        return (self.root / path.lstrip("/")).exists()


class SystemService:
    """
    The daemon's answer to C{GET /info} and C{GET /version}.

    What cannot change while the daemon runs (kernel, OS, runtime versions,
    the engine's ID) is read once here; counts, file descriptors and the
    time are read per request.
    """

    def __init__(
        self,
        config: DaemonConfig,
        counts: Callable[[], dict[str, int]] = no_counts,
        *,
        machine: Machine | None = None,
        usage: Callable[[Sequence[str]], "Deferred[dict[str, Any]]"] = no_usage,
    ) -> None:
        """
        @param counts: Returns the containers and images counts, keyed by
            L{COUNT_KEYS}; all zero by default.
        @param usage: L{disk_usage} of the daemon's areas, given the parts
            asked for; L{no_usage} by default.
        @param machine: Where facts are read from; this machine by default.
        """
        self._config = config
        self._counts = counts
        self._usage = usage
        self._machine = machine = machine if machine is not None else Machine()
        uname = machine.uname()
        self._kernel = uname.release
        self._arch = _GOARCH.get(uname.machine, uname.machine)
        self._machine_arch = uname.machine
        release = os_release(machine.file("/etc/os-release"))
        self._os_name = release.get("PRETTY_NAME", "Linux")
        self._os_version = release.get("VERSION_ID", "")
        self._ncpu = machine.cpus()
        self._mem_total = mem_total(machine.file("/proc/meminfo"))
        self._cgroup_version = (
            "2" if machine.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
        )
        runc = shutil.which(config.runtime) or config.runtime
        self._runtime_path = runc
        self._runc = parse_runtime_version(machine.run([runc, "--version"]))
        conmon = shutil.which("conmon") or "conmon"
        self._conmon = parse_runtime_version(machine.run([conmon, "--version"]))
        package = Path(__file__).resolve().parent.parent
        self._git_commit = _git_commit(package)
        self._build_time = datetime.fromtimestamp(
            (package / "__init__.py").stat().st_mtime, UTC
        ).isoformat()
        self._id = self._engine_id()
        self._version: dict[str, Any] | None = None

    def _engine_id(self) -> str:
        """
        The engine's ID, kept in C{<data-root>/engine-id} as dockerd keeps
        it, so it stays the same across restarts.
        """
        path = Path(self._config.data_root) / "engine-id"
        try:
            existing = path.read_text(encoding="ascii").strip()
        except OSError:
            existing = ""
        if existing:
            return existing
        new = str(uuid.uuid4())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new + "\n", encoding="ascii")
        except OSError:
            # A read-only data root still gets an ID, just not a lasting one.
            return new
        return new

    def _cgroup(self, controller: str, name: str = "") -> bool:
        """Whether cgroup v1 C{controller} (and its file C{name}) exists."""
        if self._cgroup_version == "2":
            controllers = self._machine.file("/sys/fs/cgroup/cgroup.controllers")
            return controller in controllers.split()
        path = f"/sys/fs/cgroup/{controller}"
        return self._machine.exists(f"{path}/{name}" if name else path)

    def _registry_config(self) -> dict[str, Any]:
        cidrs = list(_LOOPBACK_CIDRS)
        mirrors = [
            m if m.endswith("/") else m + "/" for m in self._config.registry_mirrors
        ]
        index: dict[str, Any] = {
            "docker.io": {
                "Name": "docker.io",
                "Mirrors": mirrors,
                "Secure": True,
                "Official": True,
            }
        }
        for registry in self._config.insecure_registries:
            if "/" in registry:
                cidrs.append(registry)
            else:
                index[registry] = {
                    "Name": registry,
                    "Mirrors": [],
                    "Secure": False,
                    "Official": False,
                }
        return {
            "InsecureRegistryCIDRs": cidrs,
            "IndexConfigs": index,
            "Mirrors": mirrors,
        }

    def _warnings(self, facts: Mapping[str, Any]) -> list[str]:
        """The warnings dockerd gives for what the cgroups cannot limit."""
        checks = (
            ("MemoryLimit", "WARNING: No memory limit support"),
            ("SwapLimit", "WARNING: No swap limit support"),
            ("CpuCfsPeriod", "WARNING: No cpu cfs period support"),
            ("CpuCfsQuota", "WARNING: No cpu cfs quota support"),
            ("CPUShares", "WARNING: No cpu shares support"),
            ("CPUSet", "WARNING: No cpuset support"),
            ("PidsLimit", "WARNING: No pids limit support"),
        )
        warnings = [text for key, text in checks if not facts[key]]
        if not facts["IPv4Forwarding"]:
            warnings.append("WARNING: IPv4 forwarding is disabled")
        return warnings

    def disk_usage(self, types: Sequence[str] = ()) -> "Deferred[dict[str, Any]]":
        """
        C{GET /system/df}, the parts in C{types} (all when empty).

        @raise InvalidParameter: For a part that does not exist.
        """
        for kind in types:
            if kind not in DF_TYPES:
                raise InvalidParameter(f"unknown object type: {kind}")
        return self._usage(types)

    def info(self) -> dict[str, Any]:
        """The body of C{GET /info}: every field of the spec's C{SystemInfo}."""
        counts = no_counts()
        counts.update(self._counts())
        machine = self._machine
        v1 = self._cgroup_version == "1"
        limits = {
            "MemoryLimit": self._cgroup("memory"),
            "SwapLimit": self._cgroup("memory", "memory.memsw.limit_in_bytes")
            if v1
            else machine.exists("/sys/fs/cgroup/memory.swap.max")
            or self._cgroup("memory"),
            "KernelMemoryTCP": v1
            and self._cgroup("memory", "memory.kmem.tcp.limit_in_bytes"),
            "CpuCfsPeriod": self._cgroup("cpu", "cpu.cfs_period_us" if v1 else ""),
            "CpuCfsQuota": self._cgroup("cpu", "cpu.cfs_quota_us" if v1 else ""),
            "CPUShares": self._cgroup("cpu", "cpu.shares" if v1 else ""),
            "CPUSet": self._cgroup("cpuset"),
            "PidsLimit": self._cgroup("pids"),
            "OomKillDisable": v1 and self._cgroup("memory", "memory.oom_control"),
            "IPv4Forwarding": machine.file("/proc/sys/net/ipv4/ip_forward").strip()
            == "1",
        }
        data_root = self._config.data_root
        backing = backing_filesystem(machine.file("/proc/mounts"), data_root)
        environ = machine.environ
        proxies = {
            key: next((environ[n] for n in names if environ.get(n)), "")
            for key, names in _PROXY_ENV
        }
        # Every container gets the built-in seccomp profile unless it opts out.
        security = ["name=seccomp,profile=builtin"]
        security += ["name=cgroupns"] if not v1 else []
        if os.geteuid() != 0:
            security.append("name=rootless")
        info: dict[str, Any] = {
            "ID": self._id,
            **counts,
            "Driver": "overlay2",
            "DriverStatus": [
                ["Backing Filesystem", backing or "unknown"],
                ["Supports d_type", "true"],
                ["Using metacopy", "false"],
                ["Native Overlay Diff", "true"],
                ["userxattr", "false"],
            ],
            "DockerRootDir": data_root,
            "Plugins": {
                "Volume": ["local"],
                "Network": ["bridge", "host", "none"],
                "Authorization": None,
                "Log": ["json-file"],
            },
            **limits,
            "Debug": self._config.debug,
            "NFd": self._open_fds(),
            "NGoroutines": threading.active_count(),
            "SystemTime": datetime.now()
            .astimezone()
            .isoformat(timespec="microseconds"),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": self._cgroup_version,
            "NEventsListener": 0,
            "KernelVersion": self._kernel,
            "OperatingSystem": self._os_name,
            "OSVersion": self._os_version,
            "OSType": "linux",
            "Architecture": self._machine_arch,
            "NCPU": self._ncpu,
            "MemTotal": self._mem_total,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": self._registry_config(),
            "GenericResources": None,
            **proxies,
            "Name": machine.hostname(),
            "Labels": [],
            "ExperimentalBuild": False,
            "ServerVersion": __version__,
            "Runtimes": {self._config.runtime: {"path": self._runtime_path}},
            "DefaultRuntime": self._config.runtime,
            "Swarm": {
                "NodeID": "",
                "NodeAddr": "",
                "LocalNodeState": "inactive",
                "ControlAvailable": False,
                "Error": "",
                "RemoteManagers": None,
            },
            # Containers run under conmon and outlive the daemon.
            "LiveRestoreEnabled": True,
            "Isolation": "",
            "InitBinary": "",
            "ContainerdCommit": {"ID": ""},
            "RuncCommit": {"ID": self._runc[1]},
            "InitCommit": {"ID": ""},
            "SecurityOptions": security,
            "ProductLicense": "",
            "DefaultAddressPools": [],
            "DiscoveredDevices": [],
            "CDISpecDirs": [],
            "Containerd": None,
        }
        info["Warnings"] = self._warnings(info)
        return info

    def _open_fds(self) -> int:
        try:
            return sum(1 for _ in Path("/proc/self/fd").iterdir())
        except OSError:
            return 0

    def version(self) -> dict[str, Any]:
        """The body of C{GET /version}: fixed while the daemon runs."""
        if self._version is None:
            self._version = self._make_version()
        return self._version

    def _make_version(self) -> dict[str, Any]:
        """The body of C{GET /version}, with the runtimes as components."""
        engine = {
            "Version": __version__,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": self._git_commit,
            # Not Go: clients print it; none parses it.
            "GoVersion": f"python{platform.python_version()}",
            "Os": "linux",
            "Arch": self._arch,
            "KernelVersion": self._kernel,
            "BuildTime": self._build_time,
        }
        components: list[dict[str, Any]] = [
            {
                "Name": "Engine",
                "Version": __version__,
                "Details": {
                    key: value for key, value in engine.items() if key != "Version"
                }
                | {"Experimental": "false"},
            }
        ]
        for name, (version, commit) in (("runc", self._runc), ("conmon", self._conmon)):
            if version:
                components.append(
                    {"Name": name, "Version": version, "Details": {"GitCommit": commit}}
                )
        return {"Platform": {"Name": "dockserve"}, "Components": components, **engine}
