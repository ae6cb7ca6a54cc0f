"""
The cost of C{--metrics-addr} on C{GET /_ping}: two daemons started side by
side, one with metrics, measured in alternating cells by the same client
(C{bench/api_bench.py}'s C{measure}), reporting wall-clock requests per
second and, steadier on a loaded machine, requests per CPU-second of each
daemon (from C{/proc/PID/stat}).

    .venv/bin/python bench/metrics_bench.py              # no scrapes
    .venv/bin/python bench/metrics_bench.py --scrape 1   # and a scrape every second

Numbers go to stdout; docs/performance.md ("Metrics") has a run.
"""

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api_bench import free_port, measure, wait_answer  # noqa: E402
from bench.peer import stop  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of C{pid} so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@contextlib.contextmanager
def dockserve(metrics_port: int | None) -> Iterator[tuple[tuple[str, int], int]]:
    """A daemon on a loopback port (and metrics at C{metrics_port}); stopped by PID."""
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="metrics-bench-"))
    argv = [
        str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "dockserve",
        "-H", f"tcp://127.0.0.1:{port}", "--data-root", str(directory / "data"),
        "--exec-root", str(directory / "exec"), "--bridge", "none",
    ]  # fmt: skip
    if metrics_port is not None:
        argv += ["--metrics-addr", f"127.0.0.1:{metrics_port}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with (directory / "log").open("wb") as log:
        process = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=directory
        )
    try:
        wait_answer(("127.0.0.1", port), time.monotonic(), 60)
        yield ("127.0.0.1", port), process.pid
    finally:
        stop(process)
        shutil.rmtree(directory, ignore_errors=True)


def scraper(
    port: int, every: float, stopping: threading.Event, done: list[int]
) -> None:
    while not stopping.is_set():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
            response.read()
        done.append(1)
        stopping.wait(every)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="per cell")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--scrape", type=float, help="scrape every this many s")
    args = parser.parse_args()
    metrics_port = free_port()
    per_cpu: dict[str, list[float]] = {"off": [], "on": []}
    wall: dict[str, list[float]] = {"off": [], "on": []}
    ratios = []
    stopping = threading.Event()
    scrapes: list[int] = []
    with dockserve(None) as (off, off_pid), dockserve(metrics_port) as (on, on_pid):
        time.sleep(1)
        if args.scrape:
            threading.Thread(
                target=scraper,
                args=(metrics_port, args.scrape, stopping, scrapes),
                daemon=True,
            ).start()
        for round_ in range(args.rounds):
            order = [("off", off, off_pid), ("on", on, on_pid)]
            if round_ % 2:
                order.reverse()
            got = {}
            for name, address, pid in order:
                before = cpu_seconds(pid)
                cell = asyncio.run(
                    measure(address, "/_ping", args.connections, args.seconds)
                )
                got[name] = cell.requests / max(cpu_seconds(pid) - before, 1e-9)
                per_cpu[name].append(got[name])
                wall[name].append(cell.rate)
            ratios.append(got["on"] / got["off"])
            print(f"round {round_}: {got} ratio {ratios[-1]:.3f}", file=sys.stderr)
        stopping.set()
    print(f"/_ping x{args.connections}, {args.rounds} rounds of {args.seconds} s,"
          f" scrapes: {len(scrapes)}")  # fmt: skip
    print(
        "requests per daemon CPU-second: without"
        f" {statistics.median(per_cpu['off']):.0f}, with"
        f" {statistics.median(per_cpu['on']):.0f}; median paired ratio"
        f" {statistics.median(ratios):.3f}"
    )
    print(
        f"wall requests/s: without {statistics.median(wall['off']):.0f},"
        f" with {statistics.median(wall['on']):.0f}"
    )


if __name__ == "__main__":
    main()
