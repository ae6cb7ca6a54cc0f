"""
docker build with the classic builder, dockserve beside a dockerd of its own.

    .venv/bin/python bench/build_bench.py [--runs 3] [--size-mb 50] [--files 1000]

Both daemons get busybox:latest (built offline from busybox-static) and are
driven by the docker CLI 28 with DOCKER_BUILDKIT=0 (the classic builder, what
both speak). The context holds --files files of --size-mb in all (random
bytes, so nothing compresses) and a 10-step Dockerfile: FROM, ENV, WORKDIR,
COPY of the data, five RUNs, CMD. Timed through the CLI (wall time, tarring
the context included), the median of --runs:

  - cold: C{docker build --no-cache .} (every step runs, every layer made);
  - rebuild: C{docker build .} again, nothing changed (all cache hits).

dockserve runs with --bridge none and the peer with --bridge none
--iptables=false (loopback-only containers on both sides). Results go to
stdout as a Markdown table with the ratios dockserve/dockerd.
"""

from __future__ import annotations

import argparse
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

from bench.peer import start_dockerd  # noqa: E402
from tests.integration.harness import RunningDaemon  # noqa: E402
from tests.integration.images import import_busybox  # noqa: E402

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"

DOCKERFILE = """\
FROM busybox
ENV APP=/app
WORKDIR /app
COPY data /app/data
RUN find /app/data -type f | wc -l > /count
RUN du -s /app/data > /size
RUN echo one > /one
RUN echo two > /two && cat /one /two
RUN ls /app > /listing
CMD ["cat", "/count"]
"""


def make_context(directory: Path, size_mb: int, files: int) -> None:
    data = directory / "data"
    each = size_mb * 1_000_000 // files
    for n in range(files):
        sub = data / f"d{n % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{n:04d}.bin").write_bytes(os.urandom(each))
    (directory / "Dockerfile").write_text(DOCKERFILE)


def timed_build(host: str, context: Path, *args: str) -> float:
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"}
    started = time.monotonic()
    result = subprocess.run(
        [DOCKER, "build", "-q", *args, "."],
        cwd=context,
        env=env,
        capture_output=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"build failed on {host}: {result.stderr.decode()}")
    return elapsed


def measure(host: str, context: Path, runs: int) -> tuple[float, float]:
    """Median cold (--no-cache) and rebuild (all cache hits) seconds."""
    cold = [timed_build(host, context, "--no-cache") for _ in range(runs)]
    timed_build(host, context)
    warm = [timed_build(host, context) for _ in range(runs)]
    return statistics.median(cold), statistics.median(warm)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--files", type=int, default=1000)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="build-bench-"))
    try:
        context = work / "ctx"
        context.mkdir()
        make_context(context, options.size_mb, options.files)
        ours_dir = work / "dockserve"
        ours_dir.mkdir()
        ours = RunningDaemon(ours_dir, [])
        ours.start()
        try:
            import_busybox(ours.docker_host)
            mine = measure(ours.docker_host, context, options.runs)
        finally:
            ours.stop()
        with start_dockerd() as peer:
            theirs = measure(peer.host, context, options.runs)
            peer_name = peer.name
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n10-step Dockerfile, COPY of {options.size_mb} MB in {options.files} "
        f"files, five RUNs; median of {options.runs}, seconds (docker CLI 28, "
        "DOCKER_BUILDKIT=0)\n"
    )
    print(f"| build | dockserve | {peer_name} | ratio |")
    print("| --- | --- | --- | --- |")
    for label, a, b in (
        ("cold (--no-cache)", mine[0], theirs[0]),
        ("rebuild, all cache hits", mine[1], theirs[1]),
    ):
        print(f"| {label} | {a:.2f} | {b:.2f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
