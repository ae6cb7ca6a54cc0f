"""
Image throughput: load, save, import, push and pull of a large image.

    .venv/bin/python bench/images_bench.py [--size-mb 200] [--peer unix:///var/run/docker.sock]
        [--peer-pid PID] [--host unix:///path/to/dockserve.sock --pid PID]
    .venv/bin/python bench/images_bench.py --start-peer   # the usual run

--start-peer starts a dockerd of our own as the peer (bench/peer.py) and
stops it at the end; its memory figure is dockerd's (20.10 keeps images
itself, not in containerd).

Without --host a dockserve is started on a temporary socket and data root
(the full daemon via twistd when dockserve.tap exists, else the images-only
server from tests/integration/images.py). A docker-registry is started on
loopback for push and pull. For every daemon the script prints MB/s per
operation (image bytes / wall time, measured through the docker CLI) and
the daemon's resident memory before and at its peak (VmHWM), when its pid
is known. Results go to stdout as a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peer import answers, ratio, start_dockerd  # noqa: E402
from tests.integration.images import busybox_rootfs_tar, busybox_save_archive  # noqa: E402

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak(pid: int) -> None:
    # Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS.
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _docker(host: str, *args: str) -> float:
    env = {**os.environ, "DOCKER_HOST": host}
    start = time.monotonic()
    subprocess.run(
        [DOCKER, *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return time.monotonic() - start


def _payload(size_mb: int) -> dict[str, bytes]:
    # Half incompressible, half compressible: push/pull see realistic gzip work.
    half = (size_mb << 20) // 2
    text = (
        b"dockserve benchmark line of fairly compressible text 0123456789\n"
        * (half // 64 + 1)
    )[:half]
    return {"data/random.bin": os.urandom(half), "data/text.txt": text}


def run(  # noqa: PLR0917 - a benchmark's knobs
    host: str, pid: int | None, registry: str, work: Path, size_mb: int, label: str
) -> dict[str, str]:
    payload = _payload(size_mb)
    archive = busybox_save_archive(work / "image.tar", f"bench/{label}:1", payload)
    rootfs = busybox_rootfs_tar(work / "rootfs.tar", payload)
    del payload
    mb = archive.stat().st_size / 1e6
    results: dict[str, str] = {}
    rss_start = _status_kb(pid, "VmRSS") if pid else 0
    if pid:
        _reset_peak(pid)
    t = _docker(host, "load", "-i", str(archive))
    results["load"] = f"{mb / t:.0f}"
    t = _docker(host, "save", "-o", str(work / "saved.tar"), f"bench/{label}:1")
    results["save"] = f"{mb / t:.0f}"
    (work / "saved.tar").unlink()
    t = _docker(host, "import", str(rootfs), f"bench/{label}-imported:1")
    results["import"] = f"{rootfs.stat().st_size / 1e6 / t:.0f}"
    remote = f"{registry}/bench/{label}:1"
    _docker(host, "tag", f"bench/{label}:1", remote)
    t = _docker(host, "push", remote)
    results["push"] = f"{mb / t:.0f}"
    _docker(host, "rmi", remote, f"bench/{label}:1", f"bench/{label}-imported:1")
    t = _docker(host, "pull", remote)
    results["pull"] = f"{mb / t:.0f}"
    _docker(host, "rmi", remote)
    if pid:
        peak = _status_kb(pid, "VmHWM")
        results["rss"] = (
            f"{rss_start / 1024:.0f} -> {peak / 1024:.0f} MB"
            f" (+{(peak - rss_start) / 1024:.0f})"
        )
    else:
        results["rss"] = "n/a (no --pid)"
    archive.unlink()
    rootfs.unlink()
    return results


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _start_dockserve(work: Path) -> tuple[str, subprocess.Popen[bytes]]:
    sock = work / "dockserve.sock"
    data = work / "data"
    twistd = [
        str(ROOT / ".venv/bin/twistd"), "--pidfile=", "-n", "dockserve",
        "-H", f"unix://{sock}", "--data-root", str(data),
        "--exec-root", str(work / "exec"), "--bridge", "none",
    ]  # fmt: skip
    images_only = [
        sys.executable,
        "-m",
        "tests.integration.images",
        str(sock),
        str(data),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in (twistd, images_only):
        log = (work / "daemon.log").open("ab")
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 20
        while not answers(sock) and process.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if process.poll() is None and answers(sock):
            print(f"dockserve: {' '.join(argv[:4])}...", file=sys.stderr)
            return f"unix://{sock}", process
        _stop(process)
        sock.unlink(missing_ok=True)
    raise SystemExit("dockserve did not start: " + (work / "daemon.log").read_text())


def _start_registry(work: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = _free_port()
    config = work / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {work / 'registry'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return f"127.0.0.1:{port}", process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument(
        "--host", help="a running dockserve's DOCKER_HOST (else one is started)"
    )
    parser.add_argument("--pid", type=int, help="its pid, for memory figures")
    parser.add_argument(
        "--peer", help="DOCKER_HOST of another daemon (dockerd, podman) to compare"
    )
    parser.add_argument("--peer-pid", type=int)
    parser.add_argument(
        "--start-peer",
        action="store_true",
        help="start a dockerd of our own as the peer (bench/peer.py)",
    )
    options = parser.parse_args()
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="images-bench-"))
    started: list[subprocess.Popen[bytes]] = []
    stack = contextlib.ExitStack()
    try:
        registry, reg_process = _start_registry(work)
        started.append(reg_process)
        if options.host:
            host, pid = options.host, options.pid
        else:
            host, process = _start_dockserve(work)
            started.append(process)
            pid = process.pid
        rows = [
            ("dockserve", run(host, pid, registry, work, options.size_mb, "dockserve"))
        ]
        if options.peer:
            rows.append(
                (
                    "peer",
                    run(
                        options.peer,
                        options.peer_pid,
                        registry,
                        work,
                        options.size_mb,
                        "peer",
                    ),
                )
            )
        if options.start_peer:
            peer = stack.enter_context(start_dockerd(busybox=False))
            rows.append(
                (
                    peer.name,
                    run(peer.host, peer.pid, registry, work, options.size_mb, "peer"),
                )
            )
        print(
            f"Image of {options.size_mb} MB payload (busybox + half random, "
            "half text); MB/s through the docker CLI.\n"
        )
        print(
            "| daemon | load | save | import | push | pull "
            "| daemon RSS (start -> peak) |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        columns = ("load", "save", "import", "push", "pull")
        for name, r in rows:
            print(
                f"| {name} | " + " | ".join(r[c] for c in columns) + f" | {r['rss']} |"
            )
        if len(rows) > 1:
            (ours, a), (theirs, b) = rows[0], rows[1]
            print(
                f"| ratio {ours} / {theirs} | "
                + " | ".join(ratio(a[c], b[c]) for c in columns)
                + " | |"
            )
    finally:
        stack.close()
        for process in reversed(started):
            _stop(process)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n(bench took {time.monotonic() - began:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
