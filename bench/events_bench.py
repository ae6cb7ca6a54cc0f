"""
The events benchmark (issue 11): --subscribers clients on C{GET /events}
while --containers containers are created and removed through the API;
every subscriber must get every event, in the same order, and the daemon's
resident set must not grow by more than --target-mb.

    .venv/bin/python bench/events_bench.py                 # dockserve alone
    .venv/bin/python bench/events_bench.py --start-peer    # and a dockerd 20.10
    .venv/bin/python bench/events_bench.py --start         # also start each one

Each daemon is started by the script: dockserve (twistd, temporary socket,
data root and exec root, C{--bridge none}, busybox:latest imported from
Debian's busybox-static) and, with --start-peer, a dockerd of its own
(bench/peer.py, C{--bridge none}). Both are spoken to at API 1.41, the
highest dockerd 20.10 knows.

The subscribers are raw HTTP/1.0 connections read by one thread through a
selector (no chunking: a line is an event); --workers threads create and
remove the containers meanwhile, each on its own connection
(C{POST /containers/create}, with --start C{POST .../start} and
C{POST .../wait}, then C{DELETE}). Checked, and the run fails if not:

 - every subscriber got exactly the events of our containers the daemon
   published (create, destroy; with --start also start and die), each
   container's in its life's order;
 - every subscriber's list is the same list, in the same order (Type,
   Action, ID and timeNano compared), and timeNano never goes back;
 - no subscriber was dropped (its stream would end).

With --stalled N, N more subscribers connect and never read: the daemon
must drop each once it falls 1,024 events behind (its stream ends), and
its memory must stay bounded meanwhile.

Measured: wall time, events per second published and delivered, the lag
from an event's timeNano to its arrival at the reader (p50, p99; the
reader is one Python thread, so this includes its own delay), and the
daemon's RSS (VmRSS of the daemon process alone: for dockerd its
containerd is not counted) before the subscribers connect, at its peak
during the run (sampled every 20 ms) and after they go.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peer import start_dockerd, stop  # noqa: E402
from tests.integration.images import import_busybox  # noqa: E402

#: The API version both daemons speak.
API = "/v1.41"


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _call(
    conn: http.client.HTTPConnection, method: str, url: str, body: Any = None
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, API + url, body=data, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    if response.status >= 300:
        raise RuntimeError(f"{method} {url}: {response.status} {payload[:200]!r}")
    return json.loads(payload) if payload.strip() else None


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def rss_kb(pid: int, key: str = "VmRSS") -> int:
    """A process's C{VmRSS} (or C{VmHWM}...) in KiB, 0 when gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


@dataclass
class Subscriber:
    """One C{GET /events} connection and what came on it."""

    sock: socket.socket
    head: bytes = b""
    body: bytes = b""
    lines: list[tuple[int, bytes]] = field(default_factory=list)
    closed: bool = False

    def feed(self, data: bytes, now_ns: int) -> None:
        if not data:
            self.closed = True
            return
        if not self.head:
            self.body += data
            end = self.body.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head, self.body = self.body[: end + 4], self.body[end + 4 :]
        else:
            self.body += data
        *complete, self.body = self.body.split(b"\n")
        self.lines.extend((now_ns, line) for line in complete if line)


class Reader(threading.Thread):
    """Reads every subscriber's socket as data comes."""

    def __init__(self, subscribers: list[Subscriber]) -> None:
        super().__init__(daemon=True)
        self.subscribers = subscribers
        self.selector = selectors.DefaultSelector()
        for s in subscribers:
            s.sock.setblocking(False)
            self.selector.register(s.sock, selectors.EVENT_READ, s)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for key, _ in self.selector.select(0.05):
                sub: Subscriber = key.data
                try:
                    data = sub.sock.recv(1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                sub.feed(data, time.time_ns())
                if not data:
                    self.selector.unregister(sub.sock)

    def received(self) -> int:
        return min((len(s.lines) for s in self.subscribers), default=0)


class Sampler(threading.Thread):
    """The peak of a process's VmRSS, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss_kb(pid)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss_kb(self.pid))


def subscribe(path: str, count: int, filters: dict[str, list[str]]) -> list[Subscriber]:
    """C{count} connections streaming C{/events} (headers received)."""
    query = ""
    if filters:
        from urllib.parse import quote  # noqa: PLC0415

        query = "?filters=" + quote(json.dumps(filters))
    subscribers = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        sock.sendall(f"GET {API}/events{query} HTTP/1.0\r\nHost: d\r\n\r\n".encode())
        subscribers.append(Subscriber(sock))
    # The subscription exists once the headers are sent (the daemon
    # subscribes before it writes them, dockerd too): wait for them all.
    for sub in subscribers:
        sub.sock.settimeout(30)
        while b"\r\n\r\n" not in sub.body:
            data = sub.sock.recv(4096)
            if not data:
                raise RuntimeError("an /events connection closed before its head")
            sub.body += data
        end = sub.body.find(b"\r\n\r\n")
        sub.head, sub.body = sub.body[: end + 4], sub.body[end + 4 :]
        if b" 200 " not in sub.head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"/events answered {sub.head[:200]!r}")
    return subscribers


def _drain(sub: Subscriber) -> bool:
    """
    Read what a stalled subscriber was sent: whether its stream had ended
    (the daemon dropped it) rather than still being open.
    """
    sub.sock.settimeout(2)
    try:
        while data := sub.sock.recv(1 << 16):
            sub.body += data
    except TimeoutError:
        return False
    finally:
        sub.sock.close()
    return True


def churn(path: str, count: int, workers: int, start: bool) -> list[str]:
    """Create (and start) and remove C{count} containers: their IDs."""
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    shares = [count // workers + (i < count % workers) for i in range(workers)]

    def work(n: int) -> None:
        conn = _UnixHTTP(path)
        try:
            for _ in range(n):
                made = _call(
                    conn,
                    "POST",
                    "/containers/create",
                    {"Image": "busybox", "Cmd": ["true"]},
                )
                cid = made["Id"]
                with lock:
                    ids.append(cid)
                if start:
                    _call(conn, "POST", f"/containers/{cid}/start")
                    _call(conn, "POST", f"/containers/{cid}/wait")
                _call(conn, "DELETE", f"/containers/{cid}?force=1")
        except BaseException as e:
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return ids


def check(
    subscribers: list[Subscriber], ids: list[str], start: bool
) -> tuple[list[str], list[str], list[int]]:
    """
    What was lost (a subscriber dropped, events missing, a container's
    events out of its life's order), what came in different orders (one
    subscriber's list not another's, timeNano going back), each empty when
    all is well; and the delivery lags in ns.
    """
    problems: list[str] = []
    disorder: list[str] = []
    ours = set(ids)
    life = ["create", "start", "die", "destroy"] if start else ["create", "destroy"]
    reference: list[tuple[str, str, str, int]] | None = None
    lags: list[int] = []
    for n, sub in enumerate(subscribers):
        got = []
        for arrived, line in sub.lines:
            message = json.loads(line)
            actor = message["Actor"]["ID"]
            if message["Type"] != "container" or actor not in ours:
                continue
            got.append((message["Type"], message["Action"], actor, message["timeNano"]))
            lags.append(arrived - message["timeNano"])
        if sub.closed:
            problems.append(f"subscriber {n}: its stream ended (dropped?)")
        if len(got) != len(ids) * len(life):
            problems.append(
                f"subscriber {n}: {len(got)} events, {len(ids) * len(life)} expected"
            )
        if any(a[3] > b[3] for a, b in itertools.pairwise(got)):
            disorder.append(f"subscriber {n}: timeNano goes back")
        per: dict[str, list[str]] = {}
        for _, action, actor, _ in got:
            per.setdefault(actor, []).append(action)
        wrong = [i for i in ids if per.get(i) != life]
        if wrong:
            problems.append(
                f"subscriber {n}: {len(wrong)} containers' events not "
                f"{life} (first: {per.get(wrong[0])})"
            )
        if reference is None:
            reference = got
        elif got != reference:
            disorder.append(f"subscriber {n}: not the same list as subscriber 0")
    return problems, disorder, lags


def run(path: str, pid: int, args: argparse.Namespace, label: str) -> dict[str, str]:
    """One daemon's run: its row."""
    conn = _UnixHTTP(path)
    # Warm up: the first create and removal load code the run then uses.
    for _ in range(3):
        made = _call(conn, "POST", "/containers/create", {"Image": "busybox"})
        _call(conn, "DELETE", f"/containers/{made['Id']}?force=1")
    conn.close()
    time.sleep(1)
    before = rss_kb(pid)
    filters = {"type": ["container"]} if args.filter else {}
    subscribers = subscribe(path, args.subscribers, filters)
    stalled = subscribe(path, args.stalled, filters) if args.stalled else []
    reader = Reader(subscribers)
    sampler = Sampler(pid)
    reader.start()
    sampler.start()
    began, cpu_began = time.monotonic(), cpu_seconds(pid)
    ids = churn(path, args.containers, args.workers, args.start)
    published = time.monotonic() - began
    per_sub = args.containers * (4 if args.start else 2)
    deadline = time.monotonic() + 120
    while subscribers and reader.received() < per_sub and time.monotonic() < deadline:
        if all(s.closed for s in subscribers):
            break
        time.sleep(0.05)
    delivered = time.monotonic() - began
    cpu = cpu_seconds(pid) - cpu_began
    time.sleep(0.5)
    peak = max(sampler.peak, rss_kb(pid))
    reader.done.set()
    reader.join()
    for sub in subscribers:
        sub.sock.close()
    dropped = sum(_drain(sub) for sub in stalled)
    time.sleep(1)
    sampler.done.set()
    sampler.join()
    after = rss_kb(pid)
    problems, disorder, lags = check(subscribers, ids, args.start)
    for problem in (problems + disorder)[:20]:
        print(f"{label}: {problem}", file=sys.stderr)
    lags.sort()

    def ms(q: float) -> str:
        return f"{lags[int(q * (len(lags) - 1))] / 1e6:.0f}" if lags else "n/a"

    mb = 1024
    return {
        "events per subscriber": str(per_sub),
        **(
            {f"stalled subscribers dropped (of {args.stalled})": str(dropped)}
            if args.stalled
            else {}
        ),
        "every event to every subscriber, each container's in order": (
            "yes" if not problems else "NO"
        ),
        "one order for all subscribers, timeNano never back": (
            "yes" if not disorder else "NO"
        ),
        "churn wall time (s)": f"{published:.1f}",
        "events published per second": f"{per_sub / published:.0f}",
        "deliveries per second (all subscribers)": (
            f"{per_sub * args.subscribers / delivered:.0f}"
        ),
        "daemon CPU for the churn and its delivery (s)": f"{cpu:.1f}",
        "lag to the reader, p50 / p99 (ms)": f"{ms(0.5)} / {ms(0.99)}",
        "RSS before (MB)": f"{before / mb:.1f}",
        "RSS peak during (MB)": f"{peak / mb:.1f}",
        "RSS growth at peak (MB)": f"{(peak - before) / mb:+.1f}",
        "RSS at the end, subscribers gone (MB)": f"{after / mb:.1f}",
        "RSS still held at the end (MB)": f"{(after - before) / mb:+.1f}",
    }


def _start_dockserve(work: Path) -> tuple[str, subprocess.Popen[bytes]]:
    sock = work / "d.sock"
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
            stop(process)
            raise SystemExit(
                "dockserve did not start: " + (work / "daemon.log").read_text()
            )
        time.sleep(0.05)
    import_busybox(f"unix://{sock}")
    return str(sock), process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--stalled",
        type=int,
        default=0,
        help="more subscribers that never read (the daemon must drop them)",
    )
    parser.add_argument(
        "--start", action="store_true", help="also start each container (true)"
    )
    parser.add_argument(
        "--filter",
        action="store_true",
        help="subscribe with filters={type: [container]}",
    )
    parser.add_argument("--start-peer", action="store_true")
    parser.add_argument("--target-mb", type=float, default=32)
    args = parser.parse_args()
    began = time.monotonic()
    table: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="events-bench-") as tmp:
        path, process = _start_dockserve(Path(tmp))
        try:
            table["dockserve"] = run(path, process.pid, args, "dockserve")
        finally:
            stop(process)
            subprocess.run(
                ["umount", "-R", "--lazy", tmp], capture_output=True, check=False
            )
    if args.start_peer:
        with start_dockerd(network="none") as peer:
            table[peer.name] = run(
                peer.host.removeprefix("unix://"), peer.pid, args, peer.name
            )
    names = list(table)
    print(
        f"{args.subscribers} subscribers, {args.containers} containers "
        f"{'created, started, removed' if args.start else 'created and removed'}"
        f" by {args.workers} clients\n"
    )
    print("| measure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in table[names[0]]:
        print(f"| {row} | " + " | ".join(table[n].get(row, "") for n in names) + " |")
    print(f"\n(bench took {time.monotonic() - began:.0f} s)", file=sys.stderr)
    ours = table["dockserve"]
    growth = float(ours["RSS growth at peak (MB)"])
    checks = [v for k, v in ours.items() if k.startswith(("every", "one order"))]
    if "NO" in checks or growth >= args.target_mb:
        print(
            f"dockserve FAILED: checks {checks}, growth {growth:+.1f} MB "
            f"(target < {args.target_mb} MB)",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
