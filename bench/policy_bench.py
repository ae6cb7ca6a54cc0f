# -*- test-case-name: tests.api.policy.test_door -*-
"""
What the policy front door costs: C{GET /_ping}, C{GET /containers/json} and
C{POST /containers/create} on a dockserve without a policy, one with a
policy of 50 rules (the caller's principal scoped to its own objects, so
creates are labelled and lists narrowed), and one with that policy and the
audit log, all three measured in one run, round after round in turn, so
that the machine's drift falls on each alike.

    .venv/bin/python bench/policy_bench.py            # ~2 min
    .venv/bin/python bench/policy_bench.py --write    # and into docs/performance.md

Targets (issue 13): with the 50-rule policy, list and create cost at most
10% more than without, and C{/_ping}'s throughput is the same within noise
(the door lets it through before anything else). Cost is measured two
ways: the daemon's CPU time per request (from C{/proc/PID/task/*/schedstat},
every thread: what the policy adds, little moved by other load on the
machine), and 1 / throughput (what a client sees, moved by everything).
The table goes between the C{policy_bench} markers of docs/performance.md.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api_bench import free_port, read_response, wait_answer  # noqa: E402
from bench.peer import stop  # noqa: E402

DOC = ROOT / "docs" / "performance.md"
BEGIN = "<!-- policy_bench: begin (written by bench/policy_bench.py) -->"
END = "<!-- policy_bench: end -->"

#: What each cell sends, its expected status, and its connections.
CELLS = (
    ("GET /_ping", 1),
    ("GET /_ping", 16),
    ("GET /containers/json", 1),
    ("POST /containers/create", 1),
)
LISTED = 20
CREATE_BODY = json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode()

#: Route patterns for the 49 rules that come before the one that allows the
#: measured routes: every other area, by name, pattern and method.
_OTHER_ROUTES = (
    "images.push", "images.delete", "images.tag", "images.load", "images.save",
    "images.import", "images.prune", "images.search", "images.history",
    "images.commit", "images.build", "build.prune", "networks.create",
    "networks.delete", "networks.prune", "networks.connect", "networks.disconnect",
    "volumes.create", "volumes.delete", "volumes.prune", "exec.create",
    "exec.start", "exec.resize", "containers.export", "containers.archive",
    "containers.put_archive", "containers.copy", "containers.update",
    "containers.rename", "containers.pause", "containers.unpause",
    "containers.kill", "containers.restart", "containers.stop",
    "containers.prune", "containers.attach", "containers.resize", "debug.*",
    "system.df", "system.events", "system.info", "exec.inspect",
    "containers.changes", "containers.top", "containers.stats",
    "containers.archive_info", "networks.inspect", "volumes.inspect",
    "volumes.list",
)  # fmt: skip


def fifty_rules(tcp: str, unix: str) -> str:
    """The policy: 49 deny rules, then one allow, for the TCP listener."""
    lines = [
        f'[listener."{tcp}"]',
        'policy = "bench"',
        'name = "bench"',
        f'[listener."{unix}"]',
        'policy = "full"',
        "[policy.bench]",
        'scope = "own"',
        "[policy.bench.limits]",
        "requests_per_second = 1000000",
        "burst = 1000000",
    ]
    for index, route in enumerate(_OTHER_ROUTES):
        lines += ["[[policy.bench.rule]]", f'name = "r{index}"', f'deny = ["{route}"]']
        if index % 3 == 0:
            lines.append('methods = ["POST", "DELETE", "PUT", "GET", "HEAD"]')
    lines += [
        "[[policy.bench.rule]]",
        'allow = ["containers.*", "images.*", "system.*"]',
    ]
    assert lines.count("[[policy.bench.rule]]") == 50
    return "\n".join(lines) + "\n"


class Daemon:
    """A C{twistd -n dockserve} of this bench's, on TCP and a unix socket."""

    def __init__(self, name: str, *, policy: bool, audit: bool) -> None:
        self.name = name
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="policy-bench-"))
        self.socket = str(self.directory / "d.sock")
        self.address = ("127.0.0.1", self.port)
        self.args: list[str] = []
        if policy:
            path = self.directory / "policy.toml"
            path.write_text(
                fifty_rules(f"tcp://127.0.0.1:{self.port}", f"unix://{self.socket}")
            )
            self.args += ["--policy", str(path)]
        if audit:
            self.args += ["--audit-log", str(self.directory / "audit.jsonl")]
        self.process: subprocess.Popen[bytes] | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator["Daemon"]:
        argv = [
            str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=",
            "dockserve", "-H", f"tcp://127.0.0.1:{self.port}",
            "-H", f"unix://{self.socket}",
            "--data-root", str(self.directory / "data"),
            "--exec-root", str(self.directory / "exec"),
            "--bridge", "none", "--log-level", "warn", *self.args,
        ]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with (self.directory / "log").open("wb") as log:
            self.process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory
            )
        try:
            wait_answer(self.address, time.monotonic(), 60)
            yield self
        finally:
            stop(self.process)
            shutil.rmtree(self.directory, ignore_errors=True)

    def setup(self) -> None:
        """busybox imported (as root on the unix socket)."""
        from tests.integration.images import import_busybox  # noqa: PLC0415

        import_busybox(f"unix://{self.socket}")

    def prune(self) -> None:
        """Remove every container (as root on the unix socket)."""
        import docker  # noqa: PLC0415

        client = docker.APIClient(base_url=f"unix://{self.socket}", version="1.50")
        with contextlib.closing(client):
            client.prune_containers()


async def _connection(
    address: tuple[str, int], request: bytes, stop_at: float, counts: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(*address)
    try:
        while time.perf_counter() < stop_at:
            writer.write(request)
            status = await read_response(reader)
            counts[0 if status < 300 else 1] += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def request_bytes(cell: str) -> bytes:
    method, path = cell.split(" ", 1)
    if method == "POST":
        return (
            f"POST /v1.50{path} HTTP/1.1\r\nHost: bench\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(CREATE_BODY)}\r\n\r\n"
        ).encode() + CREATE_BODY
    query = "?all=1" if path == "/containers/json" else ""
    prefix = "" if path == "/_ping" else "/v1.50"
    return f"GET {prefix}{path}{query} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()


def cpu_ns(pid: int) -> int:
    """Nanoseconds on a CPU, all threads of C{pid} together."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(stat.read_text().split()[0])
    return total


def measure(
    daemon: Daemon, cell: str, connections: int, seconds: float
) -> tuple[float, float]:
    """
    Requests per second of C{cell} on C{daemon}, and the daemon's CPU
    microseconds per request; errors are fatal.
    """
    request = request_bytes(cell)
    counts = [0, 0]
    assert daemon.process is not None
    cpu_before = cpu_ns(daemon.process.pid)

    async def run() -> float:
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(
            *(
                _connection(daemon.address, request, stop_at, counts)
                for _ in range(connections)
            )
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    cpu = cpu_ns(daemon.process.pid) - cpu_before
    if counts[1]:
        message = f"{daemon.name}: {counts[1]} errors on {cell}"
        raise SystemExit(message)
    return counts[0] / elapsed, cpu / 1000 / max(1, counts[0])


#: (cell, connections) -> daemon -> [(req/s, CPU us per request)] per round.
Results = dict[tuple[str, int], dict[str, list[tuple[float, float]]]]


def bench(seconds: float, rounds: int) -> Results:
    """Every cell, round after round, each daemon in turn within a round."""
    daemons = [
        Daemon("no policy", policy=False, audit=False),
        Daemon("50-rule policy", policy=True, audit=False),
        Daemon("50-rule policy + audit log", policy=True, audit=True),
    ]
    results: Results = {}
    with contextlib.ExitStack() as stack:
        for daemon in daemons:
            stack.enter_context(daemon.running())
            daemon.setup()
        for daemon in daemons:  # warm-up, and the containers the list shows
            measure(daemon, "GET /_ping", 1, 0.5)
            for _ in range(LISTED):
                measure(daemon, "POST /containers/create", 1, 0.0)
            measure(daemon, "GET /containers/json", 1, 0.5)
        for cell, connections in CELLS:
            rates = results.setdefault((cell, connections), {})
            for index in range(rounds):
                order = daemons if index % 2 == 0 else daemons[::-1]
                for daemon in order:
                    measured = measure(daemon, cell, connections, seconds)
                    rates.setdefault(daemon.name, []).append(measured)
                    if cell.startswith("POST"):
                        daemon.prune()
            line = ", ".join(
                f"{name} {statistics.median(r for r, _ in m):.0f}/s"
                f" {statistics.median(c for _, c in m):.0f} us"
                for name, m in rates.items()
            )
            print(f"  {cell} x{connections}: {line}", file=sys.stderr)
    return results


def table(results: Results, seconds: float, rounds: int) -> str:
    """The Markdown section for docs/performance.md."""
    cpus = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        load = Path("/proc/loadavg").read_text().split()[0]
    lines = [
        BEGIN,
        "## Policy: what the front door costs",
        "",
        (
            f"Measured with `bench/policy_bench.py` ({rounds} rounds of {seconds:g} s"
            " per cell; in each round the three daemons in turn, the order reversed"
            " every other round; medians of the rounds; one asyncio client,"
            " HTTP/1.1 keep-alive over loopback TCP;"
            f" {cpus} CPUs shared by client and daemons, load average {load} at the"
            f" end; {platform.platform()}). The policy has 50 rules (49 deny rules"
            " for other routes, then the allow); the caller is a listener's"
            ' principal with `scope = "own"`, so each create gets the owner label'
            " and each list is narrowed to its own. The list shows"
            f" {LISTED} containers; a create round's containers are pruned after"
            " it. CPU is the daemon's"
            " (all its threads) per request; cost is CPU per request, and"
            " 1 / throughput, against no policy."
        ),
        "",
        (
            "| cell | conns | no policy: req/s, CPU | 50-rule policy | + audit log"
            " | cost: CPU | cost: 1/throughput | + audit: CPU | + audit:"
            " 1/throughput |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (cell, connections), measured in results.items():
        rate = {n: statistics.median(r for r, _ in m) for n, m in measured.items()}
        cpu = {n: statistics.median(c for _, c in m) for n, m in measured.items()}
        names = list(measured)
        shown = [f"{rate[n]:.0f}/s, {cpu[n]:.0f} us" for n in names]
        base, policy, audited = names
        lines.append(
            f"| `{cell}` | {connections} | {shown[0]} | {shown[1]} | {shown[2]}"
            f" | {cpu[policy] / cpu[base] - 1:+.1%}"
            f" | {rate[base] / rate[policy] - 1:+.1%}"
            f" | {cpu[audited] / cpu[base] - 1:+.1%}"
            f" | {rate[base] / rate[audited] - 1:+.1%} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_doc(section: str) -> None:
    """Put C{section} between the markers, or append it, leaving the rest."""
    text = DOC.read_text()
    if BEGIN in text and END in text:
        before = text[: text.index(BEGIN)]
        after = text[text.index(END) + len(END) :].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per cell")
    parser.add_argument("--rounds", type=int, default=5, help="per cell and daemon")
    parser.add_argument(
        "--write", action="store_true", help="write the table into docs/performance.md"
    )
    options = parser.parse_args(argv)
    began = time.monotonic()
    results = bench(options.seconds, options.rounds)
    section = table(results, options.seconds, options.rounds)
    print(section)
    if options.write:
        write_doc(section)
    print(f"\n(bench took {time.monotonic() - began:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
