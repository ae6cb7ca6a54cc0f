# -*- test-case-name: tests.daemon.test_system -*-
"""Tests for L{dockserve.daemon.system}: facts from a fake machine tree."""

import os
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.config import DaemonConfig
from dockserve.daemon.system import (
    Machine,
    SystemService,
    area_counts,
    backing_filesystem,
    os_release,
    parse_runtime_version,
)
from dockserve.errors import InvalidParameter

#: Every field of the v1.50 spec's SystemInfo.
SYSTEM_INFO_FIELDS = [
    "ID",
    "Containers",
    "ContainersRunning",
    "ContainersPaused",
    "ContainersStopped",
    "Images",
    "Driver",
    "DriverStatus",
    "DockerRootDir",
    "Plugins",
    "MemoryLimit",
    "SwapLimit",
    "KernelMemoryTCP",
    "CpuCfsPeriod",
    "CpuCfsQuota",
    "CPUShares",
    "CPUSet",
    "PidsLimit",
    "OomKillDisable",
    "IPv4Forwarding",
    "Debug",
    "NFd",
    "NGoroutines",
    "SystemTime",
    "LoggingDriver",
    "CgroupDriver",
    "CgroupVersion",
    "NEventsListener",
    "KernelVersion",
    "OperatingSystem",
    "OSVersion",
    "OSType",
    "Architecture",
    "NCPU",
    "MemTotal",
    "IndexServerAddress",
    "RegistryConfig",
    "GenericResources",
    "HttpProxy",
    "HttpsProxy",
    "NoProxy",
    "Name",
    "Labels",
    "ExperimentalBuild",
    "ServerVersion",
    "Runtimes",
    "DefaultRuntime",
    "Swarm",
    "LiveRestoreEnabled",
    "Isolation",
    "InitBinary",
    "ContainerdCommit",
    "RuncCommit",
    "InitCommit",
    "SecurityOptions",
    "ProductLicense",
    "DefaultAddressPools",
    "DiscoveredDevices",
    "Warnings",
    "CDISpecDirs",
    "Containerd",
]

#: Every field of the v1.50 spec's SystemVersion but the optional Experimental.
SYSTEM_VERSION_FIELDS = [
    "Platform",
    "Components",
    "Version",
    "ApiVersion",
    "MinAPIVersion",
    "GitCommit",
    "GoVersion",
    "Os",
    "Arch",
    "KernelVersion",
    "BuildTime",
]

RUNC = "runc version 1.1.5\ncommit: v1.1.5-0-gf19387a\nspec: 1.0.2-dev\n"


def uname() -> os.uname_result:
    return os.uname_result(("Linux", "box", "6.1.0-test", "#1 SMP", "aarch64"))


def write(root: Path, path: str, text: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


class SystemServiceTests(SynchronousTestCase):
    """L{SystemService} on a fake machine with cgroup v1 memory only."""

    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        write(self.root, "/etc/os-release", 'PRETTY_NAME="Test OS 9"\nVERSION_ID="9"\n')
        write(self.root, "/proc/meminfo", "MemTotal:  2048 kB\nMemFree: 1 kB\n")
        write(self.root, "/proc/sys/net/ipv4/ip_forward", "1\n")
        write(
            self.root,
            "/proc/mounts",
            "/dev/sda1 / ext4 rw 0 0\ntmpfs /data tmpfs rw 0 0\n",
        )
        write(self.root, "/sys/fs/cgroup/memory/memory.oom_control", "")
        self.argv: list[list[str]] = []

        def run(argv: list[str]) -> str:
            self.argv.append(argv)
            return RUNC if "runc" in argv[0] else ""

        self.machine = Machine(
            self.root,
            run=run,
            uname=uname,
            cpus=lambda: 3,
            hostname=lambda: "box",
            environ={"https_proxy": "http://proxy:3128"},
        )
        self.data = Path(self.mktemp())

    def service(self, **kwargs: Any) -> SystemService:
        config = DaemonConfig(
            data_root=str(self.data),
            exec_root="/run/x",
            insecure_registries=("10.0.0.0/8", "reg.local:5000"),
            registry_mirrors=("https://mirror.example",),
        )
        return SystemService(config, machine=self.machine, **kwargs)

    def test_disk_usage_parts(self) -> None:
        """
        system df of an empty daemon: every part, empty; type= picks parts;
        an unknown part is dockerd's bad parameter.
        """
        service = self.service()
        self.assertEqual(
            self.successResultOf(service.disk_usage()),
            {
                "LayersSize": 0,
                "Images": [],
                "Containers": [],
                "Volumes": [],
                "BuildCache": [],
            },
        )
        self.assertEqual(
            self.successResultOf(service.disk_usage(["volume", "build-cache"])),
            {"Volumes": [], "BuildCache": []},
        )
        e = self.assertRaises(InvalidParameter, service.disk_usage, ["nope"])
        self.assertEqual(e.message, "unknown object type: nope")

    def test_every_field(self) -> None:
        """C{info()} has every field the spec lists; C{version()} too."""
        service = self.service()
        self.assertEqual(sorted(set(SYSTEM_INFO_FIELDS) - set(service.info())), [])
        self.assertEqual(
            sorted(set(SYSTEM_VERSION_FIELDS) - set(service.version())), []
        )

    def test_machine_facts(self) -> None:
        """Kernel, OS, CPUs, memory, architecture come from the machine."""
        info = self.service().info()
        self.assertEqual(
            {
                k: info[k]
                for k in (
                    "KernelVersion",
                    "OperatingSystem",
                    "OSVersion",
                    "NCPU",
                    "MemTotal",
                    "Architecture",
                    "Name",
                    "IPv4Forwarding",
                    "HttpsProxy",
                    "DockerRootDir",
                    "CgroupVersion",
                )
            },
            {
                "KernelVersion": "6.1.0-test",
                "OperatingSystem": "Test OS 9",
                "OSVersion": "9",
                "NCPU": 3,
                "MemTotal": 2048 * 1024,
                "Architecture": "aarch64",
                "Name": "box",
                "IPv4Forwarding": True,
                "HttpsProxy": "http://proxy:3128",
                "DockerRootDir": str(self.data),
                "CgroupVersion": "1",
            },
        )

    def test_cgroup_limits(self) -> None:
        """What the cgroup tree lacks is false, with dockerd's warnings."""
        info = self.service().info()
        self.assertEqual(
            (info["MemoryLimit"], info["OomKillDisable"], info["SwapLimit"]),
            (True, True, False),
        )
        self.assertEqual((info["PidsLimit"], info["CPUShares"]), (False, False))
        self.assertIn("WARNING: No swap limit support", info["Warnings"])
        self.assertNotIn("WARNING: No memory limit support", info["Warnings"])

    def test_counts(self) -> None:
        """Counts come from the callable; zero without one."""
        self.assertEqual(self.service().info()["Containers"], 0)
        counts = {
            "Containers": 3,
            "ContainersRunning": 1,
            "ContainersPaused": 1,
            "ContainersStopped": 1,
            "Images": 7,
        }
        info = self.service(counts=lambda: counts).info()
        self.assertEqual({k: info[k] for k in counts}, counts)

    def test_registries(self) -> None:
        """Insecure CIDRs and names, and mirrors, as dockerd reports them."""
        config = self.service().info()["RegistryConfig"]
        self.assertEqual(
            config["InsecureRegistryCIDRs"], ["::1/128", "127.0.0.0/8", "10.0.0.0/8"]
        )
        self.assertEqual(config["IndexConfigs"]["reg.local:5000"]["Secure"], False)
        self.assertEqual(config["Mirrors"], ["https://mirror.example/"])
        self.assertEqual(
            config["IndexConfigs"]["docker.io"]["Mirrors"], ["https://mirror.example/"]
        )

    def test_engine_id_kept(self) -> None:
        """The engine ID is written to the data root and read back."""
        first = self.service().info()["ID"]
        self.assertEqual((self.data / "engine-id").read_text().strip(), first)
        self.assertEqual(self.service().info()["ID"], first)

    def test_version(self) -> None:
        """C{version()}: API versions, Go's arch name, runc as a component."""
        version = self.service().version()
        self.assertEqual(
            (version["ApiVersion"], version["MinAPIVersion"], version["Arch"]),
            ("1.50", "1.24", "arm64"),
        )
        self.assertEqual(version["KernelVersion"], "6.1.0-test")
        names = [c["Name"] for c in version["Components"]]
        self.assertEqual(names, ["Engine", "runc"])
        self.assertEqual(
            version["Components"][1],
            {
                "Name": "runc",
                "Version": "1.1.5",
                "Details": {"GitCommit": "v1.1.5-0-gf19387a"},
            },
        )
        self.assertEqual(version["Components"][0]["Details"]["ApiVersion"], "1.50")
        self.assertEqual(
            self.service().info()["RuncCommit"], {"ID": "v1.1.5-0-gf19387a"}
        )


class ParseTests(SynchronousTestCase):
    """The small parsers."""

    def test_runtime_version(self) -> None:
        """Version and commit of C{runc --version}; nothing from nothing."""
        self.assertEqual(parse_runtime_version(RUNC), ("1.1.5", "v1.1.5-0-gf19387a"))
        self.assertEqual(parse_runtime_version(""), ("", ""))

    def test_os_release(self) -> None:
        """Quotes and comments of C{/etc/os-release}."""
        self.assertEqual(
            os_release("# c\nNAME='Debian'\nID=debian\n"),
            {"NAME": "Debian", "ID": "debian"},
        )

    def test_backing_filesystem(self) -> None:
        """The deepest mount that holds the path."""
        mounts = "/dev/a / ext4 rw 0 0\n/dev/b /var/lib xfs rw 0 0\n"
        self.assertEqual(backing_filesystem(mounts, "/var/lib/dockserve"), "xfs")
        self.assertEqual(backing_filesystem(mounts, "/var/libx"), "ext4")


class AreaCountsTests(SynchronousTestCase):
    """L{area_counts} from the areas' listings."""

    def test_counts(self) -> None:
        """Stopped is everything neither running nor paused."""

        class Containers:
            def list_containers(self, *, all: bool) -> list[dict[str, str]]:  # noqa: A002
                assert all
                return [
                    {"State": s} for s in ("running", "paused", "exited", "created")
                ]

        class Images:
            def list_images(self, *, all_images: bool) -> list[dict[str, str]]:
                assert all_images
                return [{}, {}]

        self.assertEqual(
            area_counts(Images(), Containers()),
            {
                "Containers": 4,
                "ContainersRunning": 1,
                "ContainersPaused": 1,
                "ContainersStopped": 2,
                "Images": 2,
            },
        )
