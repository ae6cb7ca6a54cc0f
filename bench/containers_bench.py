"""
Container benchmarks: run latency, create/start/remove throughput, logs
throughput, memory per idle container.

    .venv/bin/python bench/containers_bench.py [--runs 20] [--batch 100]
        [--log-mb 100] [--idle 10] [--peer unix:///var/run/docker.sock]
        [--peer-pids PID,...] [--host unix:///path/to/dockserve.sock --pid PID]
    .venv/bin/python bench/containers_bench.py --start-peer   # the usual run

--start-peer starts dockerds of our own as peers (bench/peer.py: own
socket, data root and exec root, busybox imported), one after the other,
each stopped before the next: by default two, one with --bridge none (a
container has loopback only, like dockserve's default network) and one with
dockerd's default bridge network in a network namespace of its own (what a
user of dockerd has); --peer-network picks one.

Without --host a dockserve is started (twistd) on a temporary socket and
data root, with --bridge none (never bridges or nftables in the machine's
own namespace; bridge networking is measured by the tests' network labs),
and busybox:latest is imported into it from Debian's
busybox-static. A --peer daemon must already have busybox:latest. For every
daemon the script prints, as a Markdown table:

 - C{docker run --rm busybox true}: median and p90 wall time of --runs runs;
 - create + start + remove of --batch containers (sequential CLI calls):
   containers per second;
 - logs: MB/s of C{docker logs} of a container that wrote --log-mb MB;
 - memory per idle running container: the growth of the summed RSS of the
   daemon and its monitor processes (conmon for dockserve; pass
   --peer-pids for the peer's dockerd/containerd) with --idle containers
   running C{sleep}, divided by --idle.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peer import ratio, start_dockerd  # noqa: E402
from tests.integration.images import import_busybox  # noqa: E402

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"


def _docker(host: str, *args: str, out: int | None = subprocess.DEVNULL) -> float:
    env = {**os.environ, "DOCKER_HOST": host}
    start = time.monotonic()
    subprocess.run(
        [DOCKER, *args], env=env, check=True, stdout=out, stderr=subprocess.PIPE
    )
    return time.monotonic() - start


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


MONITORS = {"conmon", "containerd-shim", "containerd-shim-runc-v2"}


def _monitors(marker: str) -> list[int]:
    """
    The monitor processes (conmon; containerd's shims) of one daemon: they
    re-parent to init, so they are found by name and by C{marker}, a path
    of that daemon's (its exec root) that their command lines carry.
    Other daemons' monitors on the machine are not counted.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if comm in MONITORS and marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _memory_kb(pids: list[int], marker: str) -> int:
    return sum(_rss_kb(p) for p in pids) + sum(_rss_kb(p) for p in _monitors(marker))


def run(
    host: str, pids: list[int], marker: str, args: argparse.Namespace
) -> dict[str, str]:
    results: dict[str, str] = {}
    _docker(host, "run", "--rm", "busybox", "true")  # warm up
    times = sorted(
        _docker(host, "run", "--rm", "busybox", "true") for _ in range(args.runs)
    )
    p90 = times[int(len(times) * 0.9) - 1]
    results["run --rm true (median / p90 ms)"] = (
        f"{statistics.median(times) * 1000:.0f} / {p90 * 1000:.0f}"
    )

    start = time.monotonic()
    for i in range(args.batch):
        name = f"bench-{os.getpid()}-{i}"
        _docker(host, "create", "--name", name, "busybox", "true")
        _docker(host, "start", name)
        _docker(host, "rm", "-f", name)
    elapsed = time.monotonic() - start
    results[f"create+start+rm x{args.batch} (containers/s)"] = (
        f"{args.batch / elapsed:.1f}"
    )

    name = f"bench-logs-{os.getpid()}"
    lines = args.log_mb * 1024 * 1024 // 64
    _docker(host, "run", "--name", name, "busybox", "sh", "-c",
            f"yes 0123456789012345678901234567890123456789012345678901234567890 "
            f"| head -n {lines}")  # fmt: skip
    with tempfile.TemporaryFile() as sink:
        seconds = _docker(host, "logs", name, out=sink.fileno())
        size = sink.tell()
    _docker(host, "rm", "-f", name)
    results[f"logs of {args.log_mb} MB (MB/s)"] = f"{size / seconds / 1e6:.0f}"

    if pids:
        before = _memory_kb(pids, marker)
        names = [f"bench-idle-{os.getpid()}-{i}" for i in range(args.idle)]
        for idle in names:
            _docker(host, "run", "-d", "--name", idle, "busybox", "sleep", "600")
        time.sleep(1)
        after = _memory_kb(pids, marker)
        for idle in names:
            _docker(host, "rm", "-f", idle)
        results["memory per idle container (KiB)"] = (
            f"{(after - before) / args.idle:.0f}"
        )
    else:
        results["memory per idle container (KiB)"] = "n/a (no pid)"
    return results


def _start_dockserve(work: Path) -> tuple[str, subprocess.Popen[bytes]]:
    sock = work / "dockserve.sock"
    argv = [
        str(ROOT / ".venv/bin/twistd"), "--pidfile=", "-n", "dockserve",
        "-H", f"unix://{sock}", "--data-root", str(work / "data"),
        "--exec-root", str(work / "exec"), "--bridge", "none",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (work / "daemon.log").open("ab") as log:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while not sock.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(
                "dockserve did not start: " + (work / "daemon.log").read_text()
            )
        time.sleep(0.05)
    host = f"unix://{sock}"
    import_busybox(host)
    return host, process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--log-mb", type=int, default=100)
    parser.add_argument("--idle", type=int, default=10)
    parser.add_argument("--host")
    parser.add_argument("--pid", type=int)
    parser.add_argument("--peer")
    parser.add_argument("--peer-pids", default="")
    parser.add_argument(
        "--start-peer",
        action="store_true",
        help="start a dockerd of our own as the peer (bench/peer.py)",
    )
    parser.add_argument(
        "--peer-network",
        choices=["none", "bridge", "both"],
        default="both",
        help="with --start-peer: the peer's network (bench/peer.py)",
    )
    parser.add_argument(
        "--peer-root",
        help="a path in the peer's shim command lines (its exec root); default:"
        " the directory of the --peer unix socket",
    )
    args = parser.parse_args()
    began = time.monotonic()
    table: dict[str, dict[str, str]] = {}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="containers-bench-")
        )
        process = None
        if args.host:
            host, pids = args.host, [args.pid] if args.pid else []
            marker = str(Path(host.removeprefix("unix://")).parent)
        else:
            host, process = _start_dockserve(Path(tmp))
            pids, marker = [process.pid], tmp
        try:
            table["dockserve"] = run(host, pids, marker, args)
            if args.peer:
                peer_pids = [int(p) for p in args.peer_pids.split(",") if p]
                peer_root = args.peer_root or str(
                    Path(args.peer.removeprefix("unix://")).parent
                )
                table["peer"] = run(args.peer, peer_pids, peer_root, args)
            if args.start_peer:
                networks = (
                    ["none", "bridge"]
                    if args.peer_network == "both"
                    else [args.peer_network]
                )
                for network in networks:
                    with start_dockerd(network=network) as peer:
                        table[peer.label] = run(
                            peer.host, peer.pids(), str(peer.exec_root), args
                        )
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    rows = list(next(iter(table.values())))
    names = list(table)
    peers = names[1:]
    headers = names + [f"ratio {names[0]} / {peer}" for peer in peers]
    print("| measure | " + " | ".join(headers) + " |")
    print("|---|" + "---|" * len(headers))
    for row in rows:
        cells = [table[d].get(row, "") for d in names]
        cells += [ratio(cells[0], table[peer].get(row, "")) for peer in peers]
        print(f"| {row} | " + " | ".join(cells) + " |")
    print(f"\n(bench took {time.monotonic() - began:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
