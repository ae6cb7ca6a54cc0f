# -*- test-case-name: tests.integration.test_networking -*-
"""
Bridge networking through the real docker CLI, with the daemon in network
namespaces the test makes for itself (L{NetworkLab}): the machine's own
network, routes and rules are never touched. A "world" namespace at
198.51.100.1 stands for everything outside the daemon's host.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from twisted.trial.unittest import SkipTest

from tests.integration.harness import NetworkLab, start_daemon
from tests.integration.images import import_busybox
from tests.integration.test_containers import DOCKER, _DaemonCase

#: A web server in busybox that answers "hello" (the study's W).
WEB = [
    "sh", "-c", "mkdir -p /w; echo hello > /w/index.html; exec httpd -f -p 80 -h /w"
]  # fmt: skip


#: An HTTP GET of the index at {ip}:80, its body's last line (busybox nc).
_GET = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 80 | tail -1"

#: A world server that tells each client the address it came from.
_PEER_SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8000))
s.listen()
print("listening", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(("from " + peer[0] + "\\n").encode())
    c.close()
"""


def _missing() -> str | None:
    for tool in ("ip", "nsenter", "nft", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


class _LabCase(_DaemonCase):
    skip = _missing()

    def setUp(self) -> None:
        self.lab = NetworkLab(self)
        self.daemon = start_daemon(self, lab=self.lab)
        import_busybox(self.daemon.docker_host)

    def curl(self, url: str, where: str = "host") -> str:
        """What C{url} answers from the lab's host (or world) namespace."""
        result = self.lab.run(["curl", "-s", "-m", "5", url], where=where, timeout=20)
        return result.stdout.decode()

    def serving(self, name: str, *args: str) -> str:
        """C{docker run -d --name name args busybox WEB}: its ID."""
        self.cleanup_container(name)
        return self.ok("run", "-d", "--name", name, *args, "busybox", *WEB).strip()

    def wait_http(self, url: str, where: str = "host") -> str:
        return str(self.until(lambda: self.curl(url, where), f"{url} to answer"))


class PublishedPortTests(_LabCase):
    def test_publish(self) -> None:
        """
        -p 18080:80 reaches httpd from the host's loopback, its own address
        and the world; docker port and inspect say so as dockerd does.
        """
        self.serving("web", "-p", "18080:80")
        self.assertEqual(self.wait_http("http://127.0.0.1:18080/"), "hello\n")
        self.assertEqual(self.curl(f"http://{NetworkLab.HOST_IP}:18080/"), "hello\n")
        self.assertEqual(
            self.curl(f"http://{NetworkLab.HOST_IP}:18080/", where="world"), "hello\n"
        )
        self.assertEqual(self.ok("port", "web"), "80/tcp -> 0.0.0.0:18080\n")
        ports = json.loads(self.inspect("web", "{{json .NetworkSettings.Ports}}"))
        wanted = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}]}
        self.assertEqual(ports, wanted)
        settings = json.loads(self.inspect("web", "{{json .NetworkSettings}}"))
        bridge = settings["Networks"]["bridge"]
        self.assertTrue(bridge["IPAddress"].startswith("172.17."))
        self.assertEqual(bridge["Gateway"], "172.17.0.1")
        self.assertEqual(settings["IPAddress"], bridge["IPAddress"])
        self.assertRegex(bridge["MacAddress"], "^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
        self.assertIn("0.0.0.0:18080->80/tcp", self.ok("ps", "--format", "{{.Ports}}"))

    def test_random_ports(self) -> None:
        """-P with EXPOSE, and -p 0:80, take ports from the kernel's range."""
        self.serving("any", "-p", "0:80")
        self.serving("all", "-P", "--expose", "80")
        for name in ("any", "all"):
            port = self.ok("port", name, "80").strip().rsplit(":", 1)[-1]
            self.assertGreater(int(port), 1024)
            self.assertEqual(self.wait_http(f"http://127.0.0.1:{port}/"), "hello\n")

    def test_port_in_use(self) -> None:
        """A second -p 18081:80 gets dockerd's 'port is already allocated'."""
        self.serving("first", "-p", "18081:80")
        self.cleanup_container("second")
        error = self.fails("run", "-d", "--name", "second", "-p", "18081:80",
                           "busybox", *WEB)  # fmt: skip
        self.assertIn("driver failed programming external connectivity", error)
        self.assertIn("Bind for 0.0.0.0:18081 failed: port is already allocated", error)
        self.assertEqual(self.inspect("second", "{{.State.Running}}"), "false")

    def test_outbound_nat(self) -> None:
        """
        A container reaches the world through the host's uplink address
        (masquerade): the world's server sees 198.51.100.2.
        """
        server = self.lab.spawn([sys.executable, "-c", _PEER_SERVER])
        self.addCleanup(server.wait)
        self.addCleanup(server.kill)
        assert server.stdout is not None
        self.assertEqual(server.stdout.readline(), b"listening\n")
        out = self.ok("run", "--rm", "busybox", "sh", "-c",
                      f"nc {NetworkLab.WORLD_IP} 8000 </dev/null")  # fmt: skip
        self.assertIn(NetworkLab.HOST_IP, out)


class UserNetworkTests(_LabCase):
    def network(self, name: str, *args: str) -> str:
        net = self.ok("network", "create", *args, name).strip()
        self.addCleanup(self.docker, "network", "rm", name)
        return net

    def test_names_resolve(self) -> None:
        """
        On a user network, containers find each other by name and alias
        through 127.0.0.11 (ndots:0 in resolv.conf), and reach each other.
        """
        self.network("appnet")
        self.serving("db", "--network", "appnet", "--network-alias", "database")
        script = "cat /etc/resolv.conf; nslookup db; wget -qO- http://database/"
        out = self.ok("run", "--rm", "--network", "appnet", "busybox", "sh", "-c",
                      script)  # fmt: skip
        self.assertIn("nameserver 127.0.0.11", out)
        self.assertIn("ndots:0", out)
        self.assertIn("hello", out)
        ip = self.inspect("db", "{{.NetworkSettings.Networks.appnet.IPAddress}}")
        self.assertIn(ip, out)
        [net] = json.loads(self.ok("network", "inspect", "appnet"))
        self.assertIn(self.inspect("db", "{{.Id}}"), net["Containers"])
        self.assertEqual(net["IPAM"]["Config"][0]["Subnet"], "172.18.0.0/16")

    def test_connect_disconnect(self) -> None:
        """
        A container connected to a network resolves its names and reaches
        its members; disconnected, it no longer does; isolation between
        networks holds meanwhile.
        """
        self.network("backnet")
        self.serving("svc", "--network", "backnet")
        svc_ip = self.inspect("svc", "{{.NetworkSettings.Networks.backnet.IPAddress}}")
        self.cleanup_container("client")
        self.ok("run", "-d", "--name", "client", "busybox", "sleep", "300")

        def fetch() -> bytes:
            # nc: busybox-static's wget crashes on an address in its URL.
            return self.docker("exec", "client", "sh", "-c",
                               _GET.format(ip=svc_ip)).stdout  # fmt: skip

        self.assertEqual(fetch(), b"")  # isolated from the default bridge
        self.ok("network", "connect", "backnet", "client")
        self.assertEqual(fetch(), b"hello\n")
        networks = self.inspect("client", "{{json .NetworkSettings.Networks}}")
        self.assertIn("backnet", json.loads(networks))

        def on_backnet() -> list[str]:
            return self.ok("ps", "--filter", "network=backnet",
                           "--format", "{{.Names}}").split()  # fmt: skip

        self.assertEqual(sorted(on_backnet()), ["client", "svc"])
        self.ok("network", "disconnect", "backnet", "client")
        self.assertEqual(fetch(), b"")
        self.assertEqual(on_backnet(), ["svc"])

    def test_default_route_follows_disconnect(self) -> None:
        """
        Disconnected from the network of its default route, a container
        gets one through its other network (as dockerd moves its gateway);
        connected back, it still has exactly one.
        """
        self.network("routenet")
        gateway = self.ok("network", "inspect", "routenet", "--format",
                          "{{(index .IPAM.Config 0).Gateway}}").strip()  # fmt: skip
        self.cleanup_container("roamer")
        self.ok("run", "-d", "--name", "roamer", "busybox", "sleep", "300")
        self.ok("network", "connect", "routenet", "roamer")

        def defaults() -> list[str]:
            routes = self.ok("exec", "roamer", "ip", "-4", "route")
            return [r for r in routes.splitlines() if r.startswith("default")]

        self.assertEqual(len(defaults()), 1)
        self.ok("network", "disconnect", "bridge", "roamer")
        self.assertEqual(
            [r.split()[:5] for r in defaults()],
            [["default", "via", gateway, "dev", "eth1"]],
        )
        self.ok("network", "connect", "bridge", "roamer")
        self.assertEqual(len(defaults()), 1)

    def test_remove_in_use_and_prune(self) -> None:
        """rm while a container is on it: dockerd's 403; prune takes unused ones."""
        self.network("busy")
        self.network("idle")
        self.serving("on", "--network", "busy")
        error = self.fails("network", "rm", "busy")
        self.assertIn("has active endpoints", error)
        self.assertIn("pre-defined", self.fails("network", "rm", "bridge"))
        self.ok("network", "prune", "-f")
        names = self.ok("network", "ls", "--format", "{{.Name}}").split()
        self.assertIn("busy", names)
        self.assertNotIn("idle", names)

    def test_container_network(self) -> None:
        """--network container:X shares X's address, hostname and /etc/hosts."""
        self.network("sharenet")
        self.serving("xx", "--network", "sharenet")
        out = self.ok("run", "--rm", "--network", "container:xx", "busybox",
                      "sh", "-c", "hostname; wget -qO- http://127.0.0.1/")  # fmt: skip
        short = self.inspect("xx", "{{.Id}}")[:12]
        self.assertEqual(out.splitlines(), [short, "hello"])
        self.ok("stop", "-t", "0", "xx")
        self.assertIn(
            "cannot join network of a non running container",
            self.fails("run", "--rm", "--network", "container:xx", "busybox", "true"),
        )


class RestartTests(_LabCase):
    def test_daemon_restart_keeps_networking(self) -> None:
        """
        A daemon restart keeps running containers' published ports and
        names; removing them afterwards leaves no veth, netns or rule.
        """
        self.ok("network", "create", "keepnet")
        self.serving("kept", "-p", "18082:80", "--network", "keepnet")
        self.assertEqual(self.wait_http("http://127.0.0.1:18082/"), "hello\n")
        before = self.lab.run(["nft", "list", "table", "ip", "dockserve"]).stdout
        self.daemon.restart()
        self.assertEqual(self.wait_http("http://127.0.0.1:18082/"), "hello\n")
        after = self.lab.run(["nft", "list", "table", "ip", "dockserve"]).stdout
        self.assertEqual(before, after)
        out = self.ok("run", "--rm", "--network", "keepnet", "busybox",
                      "wget", "-qO-", "http://kept/")  # fmt: skip
        self.assertEqual(out, "hello\n")
        self.ok("rm", "-f", "kept")
        self.ok("network", "rm", "keepnet")
        links = self.lab.run(["ip", "-br", "link"]).stdout.decode()
        self.assertNotIn("veth", links)
        netns = Path(self.daemon.exec_root) / "netns"
        self.assertEqual(list(netns.iterdir()), [])

    def test_cycles_leave_nothing(self) -> None:
        """200 run --rm on the default bridge with a port: no veth, netns, IP leaks."""
        if DOCKER is None:  # pragma: no cover - the class skips first
            raise SkipTest("no docker CLI")
        for n in range(200):
            self.ok("run", "--rm", "-p", f"{19000 + n % 10}:80", "busybox", "true")
        # run --rm answers once the record is gone; the rest goes after.
        self.until(
            lambda: "veth" not in self.lab.run(["ip", "-br", "link"]).stdout.decode(),
            "the last veth to go",
        )
        exec_root = Path(self.daemon.exec_root)
        self.until(
            lambda: not list((exec_root / "netns").iterdir()), "the last netns to go"
        )
        ipam = exec_root / "cni" / "ipam"
        leftovers = [p for p in ipam.rglob("*") if p.is_file() and p.name[0].isdigit()]
        self.assertEqual(leftovers, [])
