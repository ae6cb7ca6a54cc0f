"""
A dockerd peer of our own for the benchmarks.

    with start_dockerd() as peer:
        peer.host         # unix:///tmp/dpeer-XXXX/d.sock (busybox:latest imported)
        peer.pid          # dockerd
        peer.pids()       # dockerd and the containerd it started
        peer.exec_root    # carried by its containerd shims' command lines

The dockerd runs on its own socket, data root and exec root, starts its own
containerd as a child, and is stopped at the end by its PID (SIGTERM, then
SIGKILL after 20 s), its containerd by its PID if it outlived dockerd; its
mounts are undone and its directory removed.

Its network is one of two:

 - C{network="none"} (the default): C{--bridge none --iptables=false}, so a
   container has loopback only, as in dockserve's default network; the
   host's network is not touched.
 - C{network="bridge"}: dockerd's own default (docker0, a veth pair and
   iptables rules for every container), what a user of dockerd has. So that
   it changes nothing on this host, dockerd and its containerd run in a
   network namespace of their own (C{unshare --net}); the namespace goes
   with them.

Run alone it starts one, prints how to reach it and waits for Ctrl-C:

    .venv/bin/python bench/peer.py
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.images import import_busybox  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The peer's networks, as the tables name them.
NETWORKS = {
    "none": "--bridge none",
    "bridge": "default bridge, own netns",
}


@dataclass
class Peer:
    """A running dockerd started by L{start_dockerd}."""

    host: str
    pid: int
    directory: Path
    version: str
    startup: float
    network: str = "none"

    @property
    def name(self) -> str:
        """C{dockerd 20.10.24+dfsg1}, for the tables."""
        words = self.version.replace(",", "").split()
        return f"dockerd {words[2]}" if len(words) > 2 else "dockerd"

    @property
    def label(self) -> str:
        """L{name} and its network, where the network matters."""
        return f"{self.name} ({NETWORKS[self.network]})"

    @property
    def exec_root(self) -> Path:
        return self.directory / "exec"

    def pids(self) -> list[int]:
        """dockerd and its direct children (its containerd)."""
        return [self.pid, *children(self.pid)]


def ratio(ours: str, theirs: str) -> str:
    """
    C{ours / theirs} for each number of a cell (C{"140 / 150"} and
    C{"154 / 176"} give C{"0.91 / 0.85"}); empty when they do not parse.
    """
    try:
        pairs = zip(ours.split(" / "), theirs.split(" / "), strict=True)
        return " / ".join(f"{float(a) / float(b):.2f}" for a, b in pairs)
    except (ValueError, ZeroDivisionError):
        return ""


def children(pid: int) -> list[int]:
    """The PIDs whose parent is C{pid}."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, split after ')'.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def answers(sock: Path) -> bool:
    """Whether a daemon answers C{GET /_ping} on C{sock}."""
    if not sock.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            head = b""
            while len(head) < 12:
                chunk = s.recv(12 - len(head))
                if not chunk:
                    break
                head += chunk
            # dockerd answers an HTTP/1.0 request in HTTP/1.0.
            return head.startswith(b"HTTP/1.") and head[8:12] == b" 200"
    except OSError:
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process we started, then SIGKILL it after 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _stop_pid(pid: int) -> None:
    """SIGTERM a process we started (not our child), then SIGKILL after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def start_dockerd(
    busybox: bool = True, timeout: float = 60, network: str = "none"
) -> Iterator[Peer]:
    """
    Start a dockerd of our own; yield a L{Peer}; stop it by its PID.

    @param network: C{"none"} or C{"bridge"} (see the module's docstring).
    """
    if network not in NETWORKS:
        raise ValueError(f"network: one of {', '.join(NETWORKS)}, not {network!r}")
    binary = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not Path(binary).exists():
        raise SystemExit("no dockerd on this machine (apt-get install docker.io)")
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    # Short: containerd's sockets live under the exec root (108-byte limit).
    directory = Path(tempfile.mkdtemp(prefix="dpeer-"))
    sock = directory / "d.sock"
    argv = [
        binary, "--data-root", str(directory / "root"),
        "--exec-root", str(directory / "exec"), "-H", f"unix://{sock}",
        "--pidfile", str(directory / "d.pid"),
    ]  # fmt: skip
    if network == "none":
        argv += ["--bridge", "none", "--iptables=false", "--ip6tables=false"]
    else:
        # unshare execs dockerd (no --fork): the PID is dockerd's.
        argv = ["unshare", "--net", "--", *argv]
    started = time.monotonic()
    with (directory / "log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    containerd: list[int] = []
    try:
        while not answers(sock):
            if process.poll() is not None or time.monotonic() - started > timeout:
                raise SystemExit(
                    "dockerd did not start: " + (directory / "log").read_text()[-2000:]
                )
            time.sleep(0.05)
        startup = time.monotonic() - started
        containerd = children(process.pid)
        peer = Peer(f"unix://{sock}", process.pid, directory, version, startup, network)
        print(
            f"peer: {version}, dockerd PID {process.pid}, containerd PID "
            f"{','.join(map(str, containerd)) or '?'}, {peer.host}",
            file=sys.stderr,
        )
        if busybox:
            import docker  # noqa: PLC0415

            # dockerd 20.10 speaks API 1.41 at most: negotiate.
            api = docker.APIClient(base_url=peer.host, version="auto")
            import_busybox(api)
            api.close()
        yield peer
    finally:
        stop(process)
        for pid in containerd:
            _stop_pid(pid)
        subprocess.run(
            ["umount", "-R", "--lazy", str(directory / "root")],
            capture_output=True,
            check=False,
        )
        subprocess.run(
            ["umount", "-R", "--lazy", str(directory / "exec")],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    with start_dockerd() as peer:
        print(f"DOCKER_HOST={peer.host}  pids={','.join(map(str, peer.pids()))}")
        print("Ctrl-C (or SIGTERM) stops it.")
        # SIGTERM too goes through the cleanup (dockerd stopped by its PID).
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
