# -*- test-case-name: tests.api.test_router -*-
"""
The API core's benchmark: C{GET /_ping} and C{GET /version} throughput and
p50/p99 latency at 1, 16 and 64 keep-alive connections, start-up time to the
first answered request, and idle RSS; for a dockserve it starts itself and,
optionally, a peer daemon measured by the same client in the same run.

    .venv/bin/python bench/api_bench.py                       # dockserve alone
    .venv/bin/python bench/api_bench.py --start-dockerd       # and a dockerd it starts
    .venv/bin/python bench/api_bench.py --peer tcp://127.0.0.1:2375 --peer-pid PID

The table goes to stdout and, with C{--write}, into docs/performance.md
between the C{api_bench} markers (the rest of the file is left alone).

The load generator is one asyncio process speaking raw HTTP/1.1, so both
daemons meet the same client; on a small machine client and daemon share
the CPUs, which caps the numbers for both alike.
"""

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peer import stop  # noqa: E402

DOC = ROOT / "docs" / "performance.md"
BEGIN = "<!-- api_bench: begin (written by bench/api_bench.py) -->"
END = "<!-- api_bench: end -->"
ENDPOINTS = ("/_ping", "/version")
CONNECTIONS = (1, 16, 64)


@attrs.frozen
class Cell:
    """One measurement: an endpoint at a number of connections."""

    endpoint: str
    connections: int
    requests: int
    seconds: float
    latencies: tuple[float, ...]
    errors: int

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """The latency at C{fraction} (0.5, 0.99), in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, int(fraction * len(ordered)))
        return ordered[index] * 1000


@attrs.frozen
class Result:
    """Everything measured for one daemon."""

    name: str
    startup: float | None
    idle_rss: int | None
    cells: tuple[Cell, ...]


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss(pid: int) -> int | None:
    """The resident set (bytes) of C{pid} and its children, from /proc."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids.extend(int(c) for c in children)
    for each in pids:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            if each == pid:
                return None
    return total


def tcp_address(docker_host: str) -> tuple[str, int]:
    """C{tcp://HOST:PORT} as C{(host, port)}."""
    parsed = urllib.parse.urlparse(docker_host)
    if parsed.scheme != "tcp" or parsed.hostname is None or parsed.port is None:
        message = f"--peer must be tcp://HOST:PORT, not {docker_host!r}"
        raise SystemExit(message)
    return parsed.hostname, parsed.port


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response; return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def one_connection(
    address: tuple[str, int], path: str, stop_at: float, latencies: list[float]
) -> int:
    """Send C{GET path} back to back until C{stop_at}; return the errors."""
    errors = 0
    reader, writer = await asyncio.open_connection(*address)
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: api-bench\r\n\r\n"
    data = request.encode()
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(data)
            status = await read_response(reader)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return errors


async def measure(
    address: tuple[str, int], path: str, connections: int, seconds: float
) -> Cell:
    """Load C{path} from C{connections} connections for C{seconds}."""
    # A short warm-up on the same number of connections first.
    warm: list[float] = []
    warm_stop = time.perf_counter() + min(0.5, seconds / 4)
    await asyncio.gather(
        *(one_connection(address, path, warm_stop, warm) for _ in range(connections))
    )
    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + seconds
    errors = await asyncio.gather(
        *(one_connection(address, path, stop_at, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    return Cell(
        path, connections, len(latencies), elapsed, tuple(latencies), sum(errors)
    )


def wait_answer(address: tuple[str, int], started: float, timeout: float) -> float:
    """Poll C{/_ping} until it answers 200; the seconds since C{started}."""
    deadline = started + timeout
    request = b"GET /_ping HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(address, 1) as s:
            s.sendall(request)
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                return time.monotonic() - started
        time.sleep(0.005)
    message = f"no answer from {address} in {timeout}s"
    raise SystemExit(message)


@contextlib.contextmanager
def dockserve() -> Iterator[tuple[tuple[str, int], int, float]]:
    """Start C{twistd -n dockserve} on a loopback port; stop it by PID."""
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="api-bench-"))
    twistd = Path(sys.executable).parent / "twistd"
    argv = [
        str(twistd),
        "-n",
        "--pidfile=",
        "dockserve",
        "-H",
        f"tcp://127.0.0.1:{port}",
        "--data-root",
        str(directory / "data"),
        "--exec-root",
        str(directory / "exec"),
        "--bridge",
        "none",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.monotonic()
    with (directory / "log").open("wb") as log:
        process = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=directory
        )
    try:
        startup = wait_answer(("127.0.0.1", port), started, 60)
        yield ("127.0.0.1", port), process.pid, startup
    finally:
        stop(process)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def dockerd() -> Iterator[tuple[tuple[str, int], int, float]]:
    """Start a dockerd on its own socket, port and directories; stop it by PID."""
    binary = shutil.which("dockerd")
    if binary is None:
        message = "--start-dockerd: no dockerd (apt-get install -y docker.io)"
        raise SystemExit(message)
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="api-bench-dockerd-"))
    argv = [
        binary,
        "-H",
        f"tcp://127.0.0.1:{port}",
        "-H",
        f"unix://{directory}/docker.sock",
        "--data-root",
        str(directory / "data"),
        "--exec-root",
        str(directory / "exec"),
        "--pidfile",
        str(directory / "docker.pid"),
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
    ]
    started = time.monotonic()
    with (directory / "log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        startup = wait_answer(("127.0.0.1", port), started, 60)
        yield ("127.0.0.1", port), process.pid, startup
    finally:
        stop(process)
        with contextlib.suppress(OSError):
            subprocess.run(
                ["umount", "-R", str(directory)],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(directory, ignore_errors=True)


def run_cells(address: tuple[str, int], seconds: float) -> tuple[Cell, ...]:
    """Every endpoint at every connection count, in order."""
    cells = []
    for path in ENDPOINTS:
        for connections in CONNECTIONS:
            cell = asyncio.run(measure(address, path, connections, seconds))
            print(
                f"  {path} x{connections}: {cell.rate:.0f} req/s, "
                f"p50 {cell.percentile(0.5):.2f} ms, "
                f"p99 {cell.percentile(0.99):.2f} ms",
                file=sys.stderr,
            )
            cells.append(cell)
    return tuple(cells)


def bench_daemon(
    name: str,
    started: contextlib.AbstractContextManager[tuple[tuple[str, int], int, float]],
    seconds: float,
) -> Result:
    """Start a daemon, measure it idle, then under load."""
    print(f"{name}:", file=sys.stderr)
    with started as (address, pid, startup):
        time.sleep(1)
        idle = rss(pid)
        cells = run_cells(address, seconds)
    return Result(name, startup, idle, cells)


def table(results: list[Result], seconds: float) -> str:
    """The Markdown section for docs/performance.md."""
    cpus = len(os.sched_getaffinity(0))
    lines = [
        BEGIN,
        "## API core: ping and version",
        "",
        (
            f"Measured with `bench/api_bench.py` ({seconds:g} s per cell after a"
            " warm-up;"
            f" one asyncio client process, HTTP/1.1 keep-alive over loopback TCP;"
            f" {cpus} CPUs shared by client and daemon; {platform.platform()})."
        ),
        (
            "Start-up is from exec to the first answered `GET /_ping`; idle RSS is the"
            " daemon's resident set (with its children) one second later."
        ),
        "",
        "| daemon | start-up | idle RSS | endpoint | conns | req/s | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        startup = f"{result.startup:.2f} s" if result.startup is not None else "n/a"
        idle = f"{result.idle_rss / 2**20:.0f} MB" if result.idle_rss else "n/a"
        for index, cell in enumerate(result.cells):
            first = index == 0
            errors = f" ({cell.errors} errors)" if cell.errors else ""
            lines.append(
                f"| {result.name if first else ''} | {startup if first else ''}"
                f" | {idle if first else ''} | `{cell.endpoint}` | {cell.connections}"
                f" | {cell.rate:.0f}{errors} | {cell.percentile(0.5):.2f}"
                f" | {cell.percentile(0.99):.2f} |"
            )
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_doc(section: str) -> None:
    """Put C{section} between the markers, or append it, leaving the rest."""
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
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
    parser.add_argument("--seconds", type=float, default=3.0, help="per cell")
    parser.add_argument("--peer", help="another daemon to measure: tcp://HOST:PORT")
    parser.add_argument("--peer-name", default="peer", help="its name in the table")
    parser.add_argument("--peer-pid", type=int, help="its PID, for the idle RSS")
    parser.add_argument(
        "--start-dockerd",
        "--start-peer",
        action="store_true",
        help="start a dockerd on its own port and directories as the peer",
    )
    parser.add_argument(
        "--write", action="store_true", help="write the table into docs/performance.md"
    )
    options = parser.parse_args(argv)
    began = time.monotonic()
    results = [bench_daemon("dockserve", dockserve(), options.seconds)]
    if options.start_dockerd:
        version = subprocess.run(
            ["dockerd", "--version"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split(",")[0]
        results.append(bench_daemon(version or "dockerd", dockerd(), options.seconds))
    if options.peer:
        address = tcp_address(options.peer)
        print(f"{options.peer_name}:", file=sys.stderr)
        idle = rss(options.peer_pid) if options.peer_pid else None
        cells = run_cells(address, options.seconds)
        results.append(Result(options.peer_name, None, idle, cells))
    section = table(results, options.seconds)
    print(section)
    if options.write:
        write_doc(section)
    print(f"\n(bench took {time.monotonic() - began:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
