# -*- test-case-name: tests.integration.test_network_crash -*-
"""
Networking across daemon crashes, in a L{NetworkLab}: a SIGKILL of the
daemon in the middle of many starts with published ports, on the default
bridge and on a user network, leaves nothing behind once the containers
are removed (no veth, namespace file, address, rule or held port); a
container restarted by its restart policy, before or after a crash, gets
its address, its name and its published port back; connect, disconnect,
stop and start work on a container the crashed daemon left running.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.integration.test_containers import DOCKER
from tests.integration.test_networking import WEB, _LabCase

#: A web server that exits 3 when C{/tmp/stop} appears (removed first, so
#: a restart does not find the last one's).
_STOPPABLE = (
    "rm -f /tmp/stop; mkdir -p /w; echo hello > /w/index.html; httpd -p 80 -h /w; "
    "while [ ! -e /tmp/stop ]; do sleep 0.1; done; exit 3"
)

#: The storm: this many containers on the user network, then on the bridge.
_ON_NET = 12
_ON_BRIDGE = 8
_BASE_PORT = 18100


class _CrashCase(_LabCase):
    maxDiff = None

    def table(self) -> str:
        """C{nft list table ip dockserve} in the lab's host."""
        return self.lab.run(["nft", "list", "table", "ip", "dockserve"]).stdout.decode()

    def sysctl(self, name: str) -> str:
        """A sysctl's value in the lab's host."""
        return self.lab.run(["sysctl", "-n", name]).stdout.decode().strip()

    def veths(self) -> list[str]:
        links = self.lab.run(["ip", "-br", "link"]).stdout.decode().splitlines()
        return [line.split()[0] for line in links if line.startswith("veth")]

    def leftovers(self) -> dict[str, list[str]]:
        """What networking keeps per container, which must all be gone."""
        exec_root = Path(self.daemon.exec_root)
        cni = exec_root / "cni"
        return {
            "veth": self.veths(),
            "netns": sorted(p.name for p in (exec_root / "netns").glob("*")),
            "addresses": sorted(
                str(p.relative_to(cni))
                for p in (cni / "ipam").rglob("*")
                if p.is_file() and p.name[0].isdigit()
            ),
            "cni results": sorted(p.name for p in (cni / "results").glob("*")),
            "state": sorted(
                p.name
                for p in (exec_root / "network").glob("*.json")
                if p.name != "sysctls.json"
            ),
        }

    def nothing_left(self) -> None:
        empty: dict[str, list[str]] = {k: [] for k in self.leftovers()}
        # rm -f answers once the record is gone; the rest goes right after.
        deadline = time.monotonic() + 10
        while self.leftovers() != empty and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.leftovers(), empty)

    def resolve(self, client: str, name: str) -> list[str]:
        """The addresses C{nslookup name} gives in container C{client}."""
        result = self.docker("exec", client, "nslookup", name)
        out = result.stdout.decode().split("Name:", 1)
        if result.returncode != 0 or len(out) < 2:
            return []
        return [
            line.split()[-1]
            for line in out[1].splitlines()
            if line.startswith("Address") and "." in line
        ]

    def network_ip(self, name: str, network: str) -> str:
        template = (
            '{{range $k, $v := .NetworkSettings.Networks}}{{if eq $k "'
            + network
            + '"}}{{$v.IPAddress}}{{end}}{{end}}'
        )
        return self.inspect(name, template)

    def baseline(self) -> str:
        """The table of a daemon whose bridge has had a container and has none."""
        self.ok("run", "--rm", "-p", "18099:80", "busybox", "true")
        # run --rm answers once the record is gone; the rest goes after.
        self.until(lambda: "18099" not in self.table(), "the baseline's port to go")
        return self.table()


class StartStormTests(_CrashCase):
    def storm(self, kill_when: int) -> None:
        """
        20 concurrent C{docker run -d -p} (12 on a user network, 8 on the
        default bridge); SIGKILL of the daemon once C{kill_when} of them
        are running (0: at once); restart; every container then started
        answers on its port and by name; removing them all leaves nothing.
        """
        forwarding = self.sysctl("net.ipv4.ip_forward")
        baseline = self.baseline()
        self.ok("network", "create", "stormnet")
        runs = []
        names = []
        for n in range(_ON_NET + _ON_BRIDGE):
            name = f"s{n}"
            network = "stormnet" if n < _ON_NET else "bridge"
            names.append(name)
            self.cleanup_container(name)
            argv = [DOCKER, "run", "-d", "--name", name, "--network", network,
                    "-p", f"{_BASE_PORT + n}:80", "busybox", *WEB]  # fmt: skip
            runs.append(
                subprocess.Popen(
                    argv,
                    env=self.daemon.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        if kill_when:
            self.until(
                lambda: len(self.ok("ps", "-q").split()) >= kill_when,
                f"{kill_when} containers running",
                timeout=60,
            )
        else:
            time.sleep(0.3)
        self.daemon.kill()
        for run in runs:
            run.wait(30)
        self.daemon.start()
        running = set(self.ok("ps", "--format", "{{.Names}}").split())
        # What the starts cut short had made is gone already: the running
        # ones alone hold a namespace, an address and a cached ADD.
        left = self.leftovers()
        for kind in ("netns", "addresses", "cni results", "state", "veth"):
            self.assertEqual(len(left[kind]), len(running), (kind, left, running))
        # The ones the crash cut short: some started over what it left,
        # some removed and run anew.
        for n, name in enumerate(names):
            if name in running:
                continue
            exists = self.docker("inspect", name).returncode == 0
            if exists and n % 2 == 0:
                self.ok("start", name)
            else:
                if exists:
                    self.ok("rm", "-f", name)
                network = "stormnet" if n < _ON_NET else "bridge"
                self.ok("run", "-d", "--name", name, "--network", network,
                        "-p", f"{_BASE_PORT + n}:80", "busybox", *WEB)  # fmt: skip
        self.cleanup_container("client")
        self.ok("run", "-d", "--name", "client", "--network", "stormnet",
                "busybox", "sleep", "300")  # fmt: skip
        for n, name in enumerate(names):
            url = f"http://127.0.0.1:{_BASE_PORT + n}/"
            self.assertEqual(self.wait_http(url), "hello\n", name)
            if n < _ON_NET:
                self.assertEqual(
                    self.resolve("client", name), [self.network_ip(name, "stormnet")]
                )
        self.ok("rm", "-f", "client", *names)
        self.ok("network", "rm", "stormnet")
        self.nothing_left()
        self.assertEqual(self.table(), baseline)
        # Every port can be published again.
        ports = [
            arg for n in range(len(names)) for arg in ("-p", f"{_BASE_PORT + n}:80")
        ]
        self.ok("run", "-d", "--name", "again", *ports, "busybox", *WEB)
        for n in range(len(names)):
            self.assertEqual(self.wait_http(f"http://127.0.0.1:{_BASE_PORT + n}/"),
                             "hello\n")  # fmt: skip
        self.ok("rm", "-f", "again")
        self.nothing_left()
        self.assertEqual(self.table(), baseline)
        # A clean stop then gives the host back all networking changed.
        self.daemon.stop()
        self.assertEqual(self.table(), "")
        links = self.lab.run(["ip", "-br", "link"]).stdout.decode()
        self.assertEqual(sorted(line.split()[0] for line in links.splitlines()),
                         ["lo", "up0@if2"])  # fmt: skip
        self.assertEqual(self.sysctl("net.ipv4.ip_forward"), forwarding)

    def test_kill_at_once(self) -> None:
        """The daemon is killed 0.3 s after the 20 runs begin."""
        self.storm(0)

    def test_kill_after_first(self) -> None:
        """The daemon is killed once the first of the 20 runs."""
        self.storm(1)

    def test_kill_midway(self) -> None:
        """The daemon is killed once 6 of the 20 are running."""
        self.storm(6)


class RemoveStormTests(_CrashCase):
    def test_kill_during_removals(self) -> None:
        """
        SIGKILL of the daemon while 10 containers with ports on a user
        network and the bridge are being removed with rm -f and 4 connected
        to a second network: after the restart, removing what is left and
        the networks leaves nothing.
        """
        baseline = self.baseline()
        self.ok("network", "create", "gonenet")
        self.ok("network", "create", "joinnet")
        names = [f"g{n}" for n in range(10)]
        for n, name in enumerate(names):
            self.serving(name, "--network", "gonenet" if n % 2 else "bridge",
                         "-p", f"{_BASE_PORT + n}:80")  # fmt: skip
        work = [
            subprocess.Popen(
                [DOCKER, *argv], env=self.daemon.env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for argv in [
                *(["rm", "-f", name] for name in names[:6]),
                *(["network", "connect", "joinnet", name] for name in names[6:]),
            ]
        ]  # fmt: skip
        time.sleep(0.2)
        self.daemon.kill()
        for process in work:
            process.wait(30)
        self.daemon.start()
        left = set(self.ok("ps", "-a", "--format", "{{.Names}}").split())
        for n, name in enumerate(names):
            if name in left and self.inspect(name, "{{.State.Running}}") == "true":
                url = f"http://127.0.0.1:{_BASE_PORT + n}/"
                self.assertEqual(self.wait_http(url), "hello\n", name)
        if left:
            self.ok("rm", "-f", *left)
        self.ok("network", "rm", "gonenet", "joinnet")
        self.nothing_left()
        self.assertEqual(self.table(), baseline)

    def test_network_rm_right_after_rm(self) -> None:
        """
        No crash: docker rm -f answers before its container's network is
        undone, and a network rm right after (compose down) waits for it
        and leaves nothing, three times over.
        """
        baseline = self.baseline()
        for _ in range(3):
            self.ok("network", "create", "quicknet")
            self.ok("network", "create", "othernet")
            names = [f"q{n}" for n in range(4)]
            for n, name in enumerate(names):
                self.serving(name, "--network", "quicknet",
                             "-p", f"{_BASE_PORT + n}:80")  # fmt: skip
                self.ok("network", "connect", "othernet", name)
            self.ok("rm", "-f", *names)
            self.ok("network", "rm", "quicknet", "othernet")
            self.nothing_left()
            self.assertEqual(self.table(), baseline)

    def test_kill_during_network_rm(self) -> None:
        """
        SIGKILL of the daemon in the middle of C{docker network rm}, at
        several points of it: after the restart the network is either
        gone with its bridge and route, or still there and removable;
        a network then created gets a subnet and works, and nothing is
        left of either.
        """
        baseline = self.baseline()
        for n in range(8):
            net = self.ok("network", "create", "killnet").strip()
            bridge = f"br-{net[:12]}"
            self.ok("run", "--rm", "--network", "killnet", "busybox", "true")
            self.assertIn(bridge, self.links())
            removal = self.background("network", "rm", "killnet")
            time.sleep(0.004 * n)
            self.daemon.kill()
            removal.communicate(timeout=30)
            self.daemon.start()
            if self.docker("network", "inspect", "killnet").returncode == 0:
                self.ok("network", "rm", "killnet")
            self.assertNotIn(bridge, self.links(), n)
            routes = self.lab.run(["ip", "-4", "route"]).stdout.decode()
            self.assertNotIn(bridge, routes, n)
            self.ok("network", "create", "nextnet")
            out = self.ok("run", "--rm", "--network", "nextnet", "busybox",
                          "ping", "-c", "1", "-W", "2",
                          self.inspect_network("nextnet"))  # fmt: skip
            self.assertIn("1 packets received", out)
            self.ok("network", "rm", "nextnet")
            self.nothing_left()
            self.assertEqual(self.table(), baseline)
        links = self.lab.run(["ip", "-br", "link"]).stdout.decode()
        self.assertEqual([n for n in links.split() if n.startswith("br-")], [])

    def test_kill_during_stops(self) -> None:
        """
        SIGKILL of the daemon while 6 containers with published ports are
        being stopped: three with C{-t 0} (done, or nearly), three in the
        middle of a 5 s grace (their httpd, as PID 1, ignores SIGTERM).
        After the restart those three still run and answer on their ports,
        and a stop then ends them; every one starts again with its port
        answering; removing them leaves nothing.
        """
        baseline = self.baseline()
        self.ok("network", "create", "stopnet")
        names = [f"st{n}" for n in range(6)]
        for n, name in enumerate(names):
            self.serving(name, "--network", "stopnet" if n % 2 else "bridge",
                         "-p", f"{_BASE_PORT + n}:80")  # fmt: skip
        graces = ["0" if n < 3 else "5" for n in range(len(names))]
        stops = [
            self.background("stop", "-t", grace, name)
            for name, grace in zip(names, graces, strict=True)
        ]
        time.sleep(1.0)
        self.daemon.kill()
        for stop in stops:
            stop.communicate(timeout=30)
        self.daemon.start()
        for n, name in enumerate(names):
            url = f"http://127.0.0.1:{_BASE_PORT + n}/"
            running = self.inspect(name, "{{.State.Running}}") == "true"
            if graces[n] == "5":
                self.assertTrue(running, name)
                self.assertEqual(self.wait_http(url), "hello\n", name)
            if running:
                self.ok("stop", "-t", "0", name)
            self.assertEqual(self.inspect(name, "{{.State.Running}}"), "false")
            self.ok("start", name)
            self.assertEqual(self.wait_http(url), "hello\n", name)
        self.ok("rm", "-f", *names)
        self.ok("network", "rm", "stopnet")
        self.nothing_left()
        self.assertEqual(self.table(), baseline)

    def links(self) -> list[str]:
        """The lab host's link names."""
        out = self.lab.run(["ip", "-br", "link"]).stdout.decode()
        return [line.split()[0].split("@")[0] for line in out.splitlines()]

    def inspect_network(self, name: str) -> str:
        """A network's gateway."""
        return self.ok(
            "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", name
        ).strip()

    def background(self, *args: str) -> subprocess.Popen[bytes]:
        """C{docker args}, not waited for; its output kept."""
        pipe = subprocess.PIPE
        return subprocess.Popen(
            [DOCKER, *args], env=self.daemon.env, stdout=pipe, stderr=pipe
        )

    def test_rm_during_start(self) -> None:
        """
        No crash: C{docker rm -f} while its container's start (with a
        published port, on a user network) is under way waits for the
        start, then removes it: both answer, the container is gone for
        good (its directory too, and it is not back after a restart of
        the daemon), nothing of its networking is left, and the daemon
        logs no failure.
        """
        baseline = self.baseline()
        self.ok("network", "create", "racenet")
        names = [f"r{n}" for n in range(8)]
        for n, name in enumerate(names):
            self.cleanup_container(name)
            self.ok("create", "--name", name, "--network", "racenet",
                    "-p", f"{_BASE_PORT + n}:80", "busybox", *WEB)  # fmt: skip
        starts = []
        removals = []
        for n, name in enumerate(names):
            starts.append(self.background("start", name))
            # From at once to well into the start (CNI ADD, runc create).
            time.sleep(0.005 * n)
            removals.append(self.background("rm", "-f", name))
        for start in starts:
            start.communicate(timeout=30)
        for name, removal in zip(names, removals, strict=True):
            out, err = removal.communicate(timeout=30)
            self.assertEqual((removal.returncode, out.decode(), err.decode()),
                             (0, name + "\n", ""))  # fmt: skip
        self.assertEqual(self.ok("ps", "-aq"), "")
        self.ok("network", "rm", "racenet")
        self.nothing_left()
        self.assertEqual(self.table(), baseline)
        containers = Path(self.daemon.data_root) / "containers"
        self.until(lambda: not any(containers.iterdir()), "the directories to go")
        self.daemon.stop()
        self.daemon.start()
        self.assertEqual(self.ok("ps", "-aq"), "")
        log = Path(self.daemon.log_path).read_text()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)


class RestartPolicyTests(_CrashCase):
    def stop_process(self, name: str) -> None:
        """Make C{name}'s process exit 3 (L{_STOPPABLE})."""
        self.ok("exec", name, "touch", "/tmp/stop")

    def restarted(self, name: str, count: int) -> None:
        """Wait until C{name} runs again after C{count} restarts."""
        wanted = f"{count} running"
        self.until(
            lambda: self.inspect(name, "{{.RestartCount}} {{.State.Status}}") == wanted,
            f"{name} restarted {count} times",
        )

    def works(self, name: str) -> None:
        """Its address, its name from another container and its port answer."""
        ip = self.network_ip(name, "polnet")
        self.assertTrue(ip)
        self.assertEqual(self.wait_http("http://127.0.0.1:18300/"), "hello\n")
        self.assertEqual(self.resolve("peer", name), [ip])
        get = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 80 | tail -1"
        self.assertEqual(self.ok("exec", "peer", "sh", "-c", get), "hello\n")

    def test_restart_policy(self) -> None:
        """
        A container with --restart always on a user network and -p gets its
        network back when its policy restarts it: after its process exits,
        after a daemon SIGKILL while it runs (and an exit after that), and
        after an exit while the daemon is down.
        """
        self.ok("network", "create", "polnet")
        self.cleanup_container("peer")
        self.ok("run", "-d", "--name", "peer", "--network", "polnet",
                "busybox", "sleep", "300")  # fmt: skip
        self.cleanup_container("pol")
        self.ok("run", "-d", "--name", "pol", "--restart", "always",
                "--network", "polnet", "-p", "18300:80",
                "busybox", "sh", "-c", _STOPPABLE)  # fmt: skip
        self.works("pol")
        self.stop_process("pol")
        self.restarted("pol", 1)
        self.works("pol")
        # A crash while it runs: it keeps its network, and its policy
        # still gives it back after the next exit.
        self.daemon.kill()
        self.daemon.start()
        self.works("pol")
        self.stop_process("pol")
        self.restarted("pol", 2)
        self.works("pol")
        # Its process ends while the daemon is down: the daemon's start
        # restarts it (its count begins anew, as dockerd's).
        pid = int(self.inspect("pol", "{{.State.Pid}}"))
        self.daemon.kill()
        subprocess.run(["kill", "-9", str(pid)], check=True)
        self.daemon.start()
        self.until(
            lambda: (
                self.inspect("pol", "{{.State.Status}} {{.State.Pid}}")
                not in {"exited 0", f"running {pid}", "restarting 0"}
            ),
            "pol started again by the daemon",
        )
        self.assertEqual(self.inspect("pol", "{{.State.Status}}"), "running")
        self.works("pol")
        self.ok("rm", "-f", "pol", "peer")
        self.ok("network", "rm", "polnet")
        self.nothing_left()

    def test_kill_while_restarting(self) -> None:
        """
        SIGKILL of the daemon while 6 containers with -p on a user network
        and the bridge keep exiting and being restarted by their policy:
        after the restart each run still gets an address on eth0 (each
        run logs it), and removing them all leaves nothing.
        """
        baseline = self.baseline()
        self.ok("network", "create", "loopnet")
        names = [f"r{n}" for n in range(6)]
        script = "ip -4 -o addr show eth0 | grep -o 'inet [0-9.]*'; sleep 0.3"
        for n, name in enumerate(names):
            self.cleanup_container(name)
            self.ok("run", "-d", "--name", name, "--restart", "always",
                    "--network", "loopnet" if n % 2 else "bridge",
                    "-p", f"{_BASE_PORT + n}:80", "busybox", "sh", "-c",
                    script)  # fmt: skip
        self.until(
            lambda: all(
                self.inspect(name, "{{.RestartCount}}") >= "2" for name in names
            ),
            "every container restarted twice",
        )
        self.daemon.kill()
        self.daemon.start()
        runs = {name: self.ok("logs", name).count("inet ") for name in names}
        self.until(
            lambda: all(
                self.ok("logs", name).count("inet ") >= runs[name] + 2 for name in names
            ),
            "two more runs of each with an address",
        )
        for name in names:
            self.assertNotIn("inet\n", self.ok("logs", name))
        self.ok("rm", "-f", *names)
        self.ok("network", "rm", "loopnet")
        self.nothing_left()
        self.assertEqual(self.table(), baseline)

    def test_rm_while_restarting(self) -> None:
        """
        No crash: rm -f of containers their policy keeps restarting (one
        may be in the middle of a start) frees their ports, addresses and
        namespaces: the same ports are published again, three times over.
        """
        self.ok("network", "create", "loopnet")
        names = [f"r{n}" for n in range(6)]
        for _ in range(3):
            for n, name in enumerate(names):
                self.cleanup_container(name)
                self.ok("run", "-d", "--name", name, "--restart", "always",
                        "--network", "loopnet", "-p", f"{_BASE_PORT + n}:80",
                        "busybox", "sh", "-c", "sleep 0.2; exit 1")  # fmt: skip
            self.until(
                lambda: all(self.inspect(n, "{{.RestartCount}}") >= "2" for n in names),
                "every container restarted twice",
            )
            self.ok("rm", "-f", *names)
            self.nothing_left()
        self.ok("network", "rm", "loopnet")


class AfterCrashTests(_CrashCase):
    def test_connect_stop_start_after_crash(self) -> None:
        """
        A container on a user network that the killed daemon left running
        keeps its address (inspect's and its interface's), and can be
        disconnected, connected again, stopped and started.
        """
        self.ok("network", "create", "oldnet")
        self.ok("network", "create", "newnet")
        self.serving("left", "--network", "oldnet", "-p", "18400:80")
        self.cleanup_container("peer")
        self.ok("run", "-d", "--name", "peer", "--network", "newnet",
                "busybox", "sleep", "300")  # fmt: skip
        address = self.network_ip("left", "oldnet")
        self.daemon.kill()
        self.daemon.start()
        self.assertEqual(self.network_ip("left", "oldnet"), address)
        self.assertIn(f"inet {address}/", self.ok("exec", "left", "ip", "addr"))
        self.assertEqual(self.wait_http("http://127.0.0.1:18400/"), "hello\n")
        self.ok("network", "connect", "newnet", "left")
        self.assertEqual(
            self.resolve("peer", "left"), [self.network_ip("left", "newnet")]
        )
        self.ok("network", "disconnect", "oldnet", "left")
        self.assertEqual(
            self.resolve("peer", "left"), [self.network_ip("left", "newnet")]
        )
        self.ok("stop", "-t", "1", "left")
        self.assertEqual(self.resolve("peer", "left"), [])
        self.ok("start", "left")
        self.assertEqual(self.wait_http("http://127.0.0.1:18400/"), "hello\n")
        self.assertEqual(
            self.resolve("peer", "left"), [self.network_ip("left", "newnet")]
        )
        self.ok("network", "connect", "oldnet", "left")
        self.ok("rm", "-f", "left", "peer")
        self.ok("network", "rm", "oldnet", "newnet")
        self.nothing_left()
