# -*- test-case-name: tests.daemon.test_cgroups -*-
"""
Container resource use from this machine's cgroup v1 hierarchy.

Each controller is mounted at C{/sys/fs/cgroup/<controller>}; a container's
group is C{<controller>/<path>}. The result is shaped as the stats body's
C{cpu_stats}, C{memory_stats}, C{pids_stats} and C{blkio_stats}.
"""

from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _int(path: Path) -> int:
    text = _read(path).strip()
    try:
        return int(text)
    except ValueError:
        return 0


def _table(path: Path) -> dict[str, int]:
    table = {}
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            table[parts[0]] = int(parts[1])
    return table


def _meminfo_total() -> int:
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def stats(group: str, root: Path = CGROUP_ROOT) -> dict[str, Any]:
    """
    The counters of cgroup C{group} (a path relative to each controller).
    Missing files read as zero: a container that just ended has none.
    """
    cpu = root / "cpuacct" / group
    if not cpu.exists():
        cpu = root / "cpu,cpuacct" / group
    percpu = [
        int(v) for v in _read(cpu / "cpuacct.usage_percpu").split() if v.isdigit()
    ]
    user_system = _table(cpu / "cpuacct.stat")
    hz = 100
    throttling = _table(root / "cpu" / group / "cpu.stat")
    memory = root / "memory" / group
    memory_table = _table(memory / "memory.stat")
    limit = _int(memory / "memory.limit_in_bytes")
    host_total = _meminfo_total()
    if host_total and (not limit or limit > host_total):
        # No limit reads as a huge number; dockerd shows the host's memory.
        limit = host_total
    blkio = root / "blkio" / group
    io = []
    for line in _read(blkio / "blkio.throttle.io_service_bytes").splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            io.append(
                {
                    "major": int(major),
                    "minor": int(minor),
                    "op": parts[1],
                    "value": int(parts[2]),
                }
            )
    return {
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": _int(cpu / "cpuacct.usage"),
                "percpu_usage": percpu,
                "usage_in_kernelmode": user_system.get("system", 0) * 10**9 // hz,
                "usage_in_usermode": user_system.get("user", 0) * 10**9 // hz,
            },
            "throttling_data": {
                "periods": throttling.get("nr_periods", 0),
                "throttled_periods": throttling.get("nr_throttled", 0),
                "throttled_time": throttling.get("throttled_time", 0),
            },
        },
        "memory_stats": {
            "usage": _int(memory / "memory.usage_in_bytes"),
            "max_usage": _int(memory / "memory.max_usage_in_bytes"),
            "failcnt": _int(memory / "memory.failcnt"),
            "limit": limit,
            "stats": memory_table,
        },
        "pids_stats": {
            "current": _int(root / "pids" / group / "pids.current"),
            **(
                {"limit": int(text)}
                if (text := _read(root / "pids" / group / "pids.max").strip()).isdigit()
                else {}
            ),
        },
        "blkio_stats": {"io_service_bytes_recursive": io or None},
    }
