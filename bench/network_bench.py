"""
Networking benchmarks (issue 10), dockserve and dockerd with their bridges
measured in the same run:

    .venv/bin/python bench/network_bench.py            # all three, ~5 min
    .venv/bin/python bench/network_bench.py --only run,copy --runs 30

 - C{run}: C{docker run --rm busybox true} on the default bridge network,
   median and p90 of --runs runs (after one warm-up), in blocks of five
   runs per daemon, the daemons taking turns, so that a change in the
   machine's load falls on both.
 - C{copy}: throughput through a published port: a container publishes
   port 80 as 18080 and answers each connection with --gb GiB of zeros
   (C{nc -ll -e dd}: dd writes into the socket itself); a client in the
   daemon's own network namespace (a Python C{recv_into} loop, 1 MiB
   buffer, nothing sent) reads them from the host's own address and from
   127.0.0.1, --rounds times each, the daemons taking turns; MB/s, median.
 - C{dns}: --containers containers on one user network (C{sleep}); in
   each, one C{docker exec} looks up every other by name (busybox
   nslookup, through 127.0.0.11) and each answer is checked against the
   network's inspect; the RSS growth of the daemon process per container
   from before the network to after the lookups.

Neither daemon touches this machine's network: dockserve runs with its
default bridge in the C{host} namespace of a L{NetworkLab} (as the
integration tests run it), dockerd with its default bridge in a namespace
of its own (C{bench/peer.py}, C{network="bridge"}). So that the copy has
the same route in both, the dockerd namespace gets C{lo} up and a veth
pair (both ends inside it), one end with the lab's host address
(198.51.100.2); clients reach each through C{ip netns exec} or
C{nsenter --net}.

dockerd 20.10 runs as it does by default, C{--userland-proxy=true}: a
connection to a port published on 0.0.0.0 from the host's own non-loopback
address is DNATed by its iptables rules (the kernel's path, as dockserve's
nftables table for every address), and one to 127.0.0.1 goes through its
C{docker-proxy} process (dockerd's OUTPUT rule leaves 127.0.0.0/8 out).
The table says which path each row took; the script checks that a
docker-proxy runs for the port.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.peer import Peer, children, start_dockerd  # noqa: E402
from tests.integration.harness import NetworkLab, RunningDaemon  # noqa: E402
from tests.integration.images import import_busybox  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"

#: The published port of the copy.
PORT = 18080

#: The copy's server: every connection gets the zeros from dd itself.
SERVER = "exec nc -ll -p 80 -e dd if=/dev/zero bs=1M count={count}"

#: The copy's client, run in the daemon's namespace: bytes and seconds.
CLIENT = """
import socket, sys, time
buf = memoryview(bytearray(1 << 20))
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
start, n = time.monotonic(), 0
while k := s.recv_into(buf):
    n += k
print(n, time.monotonic() - start)
"""

#: In one container: every name given, and the address it resolves to.
LOOKUPS = (
    'for n in "$@"; do '
    "a=$(nslookup $n 2>/dev/null | sed -n 's/^Address: *//p' | grep -v ':53$' "
    "| tail -n 1); "
    'echo "$n ${a:-none}"; done'
)


class _Cleanups:
    """What L{NetworkLab} asks of a test case: C{addCleanup}, run in reverse."""

    def __init__(self) -> None:
        self._calls: list[tuple[Callable[..., object], tuple[Any, ...], Any]] = []

    def addCleanup(self, call: Callable[..., object], *args: Any, **kw: Any) -> None:
        self._calls.append((call, args, kw))

    def run(self) -> None:
        while self._calls:
            call, args, kw = self._calls.pop()
            try:
                call(*args, **kw)
            except Exception as e:
                print(f"cleanup: {e}", file=sys.stderr)


@dataclass
class Side:
    """
    One daemon as the benchmarks use it.

    @ivar inside: The prefix that runs a command in its network namespace.
    @ivar pids: The daemon's process first, then its helpers (containerd).
    @ivar host_ip: The host address clients reach published ports on.
    """

    name: str
    host: str
    inside: list[str]
    pids: list[int]
    host_ip: str = NetworkLab.HOST_IP
    results: dict[str, str] = field(default_factory=dict)

    def docker(self, *args: str, check: bool = True) -> str:
        env = {**os.environ, "DOCKER_HOST": self.host}
        result = subprocess.run(
            [DOCKER, *args], env=env, capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {result.stderr}")
        return result.stdout

    def timed(self, *args: str) -> float:
        start = time.monotonic()
        self.docker(*args)
        return time.monotonic() - start

    def run_inside(
        self, argv: Sequence[str], timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.inside, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def rss_kb(self, all_pids: bool = False) -> int:
        return sum(_rss_kb(p) for p in (self.pids if all_pids else self.pids[:1]))


def _rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@contextlib.contextmanager
def dockserve_in_lab() -> Iterator[Side]:
    """A dockserve with its default bridge in a lab's C{host} namespace."""
    cleanups = _Cleanups()
    try:
        lab = NetworkLab(cleanups)
        directory = Path(tempfile.mkdtemp(prefix="network-bench-"))
        cleanups.addCleanup(shutil.rmtree, str(directory), True)
        daemon = RunningDaemon(directory, [], lab)
        cleanups.addCleanup(daemon.stop)
        daemon.start()
        import_busybox(daemon.docker_host)
        yield Side(
            "dockserve",
            daemon.docker_host,
            ["ip", "netns", "exec", lab.host],
            [daemon.pid],
        )
    finally:
        cleanups.run()


@contextlib.contextmanager
def dockerd_with_bridge() -> Iterator[Side]:
    """
    dockerd 20.10 with its default bridge in a namespace of its own
    (bench/peer.py), given C{lo} and the lab's host address on a veth.
    """
    with start_dockerd(network="bridge") as peer:
        inside = ["nsenter", f"--net=/proc/{peer.pid}/ns/net", "--"]
        for argv in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "add", "up0", "type", "veth", "peer", "name", "w0"],
            ["ip", "addr", "add", f"{NetworkLab.HOST_IP}/24", "dev", "up0"],
            ["ip", "link", "set", "w0", "up"],
            ["ip", "link", "set", "up0", "up"],
        ):
            subprocess.run([*inside, *argv], check=True, capture_output=True)
        yield Side(_peer_name(peer), peer.host, inside, peer.pids())


def _peer_name(peer: Peer) -> str:
    return f"{peer.name} (default bridge, own netns)"


# --- run latency -----------------------------------------------------------------


def bench_run(sides: Sequence[Side], runs: int) -> None:
    times: dict[str, list[float]] = {s.name: [] for s in sides}
    for side in sides:
        side.timed("run", "--rm", "busybox", "true")  # warm up
    while any(len(t) < runs for t in times.values()):
        for side in sides:
            block = min(5, runs - len(times[side.name]))
            times[side.name] += [
                side.timed("run", "--rm", "busybox", "true") for _ in range(block)
            ]
    for side in sides:
        ordered = sorted(times[side.name])
        p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
        side.results["`run --rm busybox true`, median / p90 ms"] = (
            f"{statistics.median(ordered) * 1000:.0f} / {p90 * 1000:.0f}"
        )


# --- copy through a published port --------------------------------------------------


def _copy_once(side: Side, address: str) -> float:
    result = side.run_inside(
        [sys.executable, "-c", CLIENT, address, str(PORT)], timeout=300
    )
    try:
        size, seconds = result.stdout.split()
        return int(size) / float(seconds) / 1e6
    except ValueError:
        raise RuntimeError(f"{side.name}: copy from {address}: {result}") from None


def _proxy_running(side: Side) -> bool:
    """Whether the daemon runs a docker-proxy for L{PORT} (its userland proxy)."""
    for pid in children(side.pids[0]):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if Path(argv[0].decode()).name == "docker-proxy" and (
                str(PORT).encode() in argv
            ):
                return True
    return False


def bench_copy(sides: Sequence[Side], gib: int, rounds: int) -> None:
    server = SERVER.format(count=gib * 1024)
    name = f"nb-copy-{os.getpid()}"
    for side in sides:
        side.docker("run", "-d", "--name", name, "-p", f"{PORT}:80",
                    "busybox", "sh", "-c", server)  # fmt: skip
    speeds: dict[tuple[str, str], list[float]] = {}
    try:
        for side in sides:
            deadline = time.monotonic() + 30
            while True:  # the first copy also waits for nc to listen
                try:
                    _copy_once(side, "127.0.0.1")
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        for _ in range(rounds):
            for side in sides:
                for address in (side.host_ip, "127.0.0.1"):
                    speed = _copy_once(side, address)
                    speeds.setdefault((side.name, address), []).append(speed)
        for side in sides:
            proxy = _proxy_running(side)
            direct = speeds[side.name, side.host_ip]
            loop = speeds[side.name, "127.0.0.1"]
            side.results[f"copy {gib} GiB from the host's address (MB/s)"] = (
                f"{statistics.median(direct):.0f}"
            )
            side.results["  path"] = "kernel DNAT"
            side.results[f"copy {gib} GiB from 127.0.0.1 (MB/s)"] = (
                f"{statistics.median(loop):.0f}"
            )
            side.results["  path "] = "docker-proxy" if proxy else "kernel DNAT"
            side.results["  rounds, host address / 127.0.0.1 (MB/s)"] = (
                " ".join(f"{s:.0f}" for s in direct)
                + " / "
                + " ".join(f"{s:.0f}" for s in loop)
            )
    finally:
        for side in sides:
            side.docker("rm", "-f", name, check=False)


# --- names on one user network -------------------------------------------------------


def bench_dns(sides: Sequence[Side], count: int) -> None:
    for side in sides:
        _dns_one(side, count)


def _dns_one(side: Side, count: int) -> None:
    tag = f"nb{os.getpid()}"
    network = f"{tag}-net"
    names = [f"{tag}-c{i}" for i in range(count)]
    # Warm the paths once (a container on a user network, its resolver),
    # so that first-use imports and caches do not count as growth.
    side.docker("network", "create", f"{network}-warm")
    side.docker("run", "--rm", "--network", f"{network}-warm", "--name",
                f"{tag}-warm", "busybox", "nslookup", f"{tag}-warm")  # fmt: skip
    side.docker("network", "rm", f"{network}-warm")
    time.sleep(1)
    before, before_all = side.rss_kb(), side.rss_kb(all_pids=True)
    side.docker("network", "create", network)
    try:
        start = time.monotonic()
        for name in names:
            side.docker("run", "-d", "--name", name, "--network", network,
                        "busybox", "sleep", "3600")  # fmt: skip
        started = time.monotonic() - start
        after_start = side.rss_kb()
        [net] = json.loads(side.docker("network", "inspect", network))
        wanted = {
            c["Name"]: c["IPv4Address"].split("/")[0]
            for c in net["Containers"].values()
        }
        start = time.monotonic()
        wrong: list[str] = []
        for name in names:
            others = [n for n in names if n != name]
            out = side.docker("exec", name, "sh", "-c", LOOKUPS, "sh", *others)
            got = dict(line.split(" ", 1) for line in out.splitlines() if line)
            wrong += [f"{name}->{o}" for o in others if got.get(o) != wanted.get(o)]
        looked = time.monotonic() - start
        time.sleep(1)
        after, after_all = side.rss_kb(), side.rss_kb(all_pids=True)
    finally:
        for i in range(0, len(names), 20):
            side.docker("rm", "-f", *names[i : i + 20], check=False)
        side.docker("network", "rm", network, check=False)
    lookups = count * (count - 1)
    side.results[f"{count} containers started on one user network (s)"] = (
        f"{started:.1f}"
    )
    side.results[f"{lookups} lookups by name, right / total"] = (
        f"{lookups - len(wrong)} / {lookups}"
    )
    if wrong:
        print(f"{side.name}: wrong answers, e.g. {wrong[:5]}", file=sys.stderr)
    side.results[f"{count} execs of {count - 1} lookups (s)"] = f"{looked:.1f}"
    side.results["daemon RSS growth per container after start (KiB)"] = (
        f"{(after_start - before) / count:.0f}"
    )
    side.results["daemon RSS growth per container after lookups (KiB)"] = (
        f"{(after - before) / count:.0f}"
    )
    if len(side.pids) > 1:
        growth = (after_all - before_all) / count
        side.results["  with containerd (KiB)"] = f"{growth:.0f}"


# --- the table -----------------------------------------------------------------------


def _ratio(ours: str, theirs: str) -> str:
    try:
        pairs = zip(ours.split(" / "), theirs.split(" / "), strict=True)
        return " / ".join(f"{float(a) / float(b):.2f}" for a, b in pairs)
    except (ValueError, ZeroDivisionError):
        return ""


def table(sides: Sequence[Side]) -> str:
    rows: list[str] = []
    for side in sides:
        rows += [r for r in side.results if r not in rows]
    names = [s.name for s in sides]
    lines = [
        "| measure | " + " | ".join(names) + " | ratio |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for row in rows:
        cells = [s.results.get(row, "") for s in sides]
        ratio = _ratio(cells[0], cells[1]) if len(cells) > 1 else ""
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--gb", type=int, default=1, help="GiB per copy")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--only", default="run,copy,dns")
    parser.add_argument(
        "--no-peer", action="store_true", help="dockserve alone (no dockerd)"
    )
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    began = time.monotonic()
    load = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        sides = [stack.enter_context(dockserve_in_lab())]
        if not args.no_peer:
            sides.append(stack.enter_context(dockerd_with_bridge()))
        if "run" in wanted:
            bench_run(sides, args.runs)
        if "copy" in wanted:
            bench_copy(sides, args.gb, args.rounds)
        if "dns" in wanted:
            bench_dns(sides, args.containers)
        print(table(sides))
    print(
        f"\n(load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the "
        f"end; bench took {time.monotonic() - began:.0f} s)"
    )


if __name__ == "__main__":
    main()
