# -*- test-case-name: tests.integration.test_network_options -*-
"""
The options of C{docker run} and C{docker network create/connect} around
bridge networking, through the real docker CLI in a L{NetworkLab}, each as
dockerd 20.10 answers it (compared side by side with one in a network
namespace of its own): published port ranges, UDP and loopback-only
ports, hairpin, C{/etc/hosts} and C{resolv.conf} options, user networks'
addressing options, and the refusals with dockerd's status and words.

The basic cases (C{-p 18080:80}, C{-P}, names resolving, connect and
disconnect, the port-in-use error) are in L{tests.integration.test_networking}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.integration.harness import NetworkLab, unix_request
from tests.integration.test_networking import _GET, _PEER_SERVER, _LabCase

#: Three web servers (ports 80, 81 and 82) that answer "hello".
_WEB3 = (
    "mkdir -p /w; echo hello > /w/index.html; httpd -p 80 -h /w; "
    "httpd -p 81 -h /w; exec httpd -f -p 82 -h /w"
)
WEB3 = ["sh", "-c", _WEB3]

#: A UDP echo server on port 90: busybox has none, so the host's python
#: runs in the container's namespaces (chroot into the host's root, read
#: only).
_UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", 90))
while True:
    data, peer = s.recvfrom(512)
    s.sendto(b"echo " + data, peer)
"""

#: A DNS server for the world namespace that knows one name.
_OUTSIDE = "198.51.100.77"


#: The daemon's twistd, for the world's DNS server.
TWISTD = str(Path(sys.executable).parent / "twistd")


class PublishTests(_LabCase):
    def test_ranges_and_loopback(self) -> None:
        """
        C{-p 8000-8001:80-81} publishes two ports; C{-p 127.0.0.1:9001:82}
        is reachable on the host's loopback only; C{-p 127.0.0.1::83} gets a
        random port on loopback. C{docker port}, C{NetworkSettings.Ports}
        and C{HostConfig.PortBindings} say so exactly as dockerd (its IPv4
        half: this daemon binds no C{::}).
        """
        self.cleanup_container("web")
        self.ok("run", "-d", "--name", "web", "-p", "8000-8001:80-81",
                "-p", "127.0.0.1:9001:82", "-p", "127.0.0.1::83",
                "busybox", *WEB3)  # fmt: skip
        host = NetworkLab.HOST_IP
        self.assertEqual(self.wait_http(f"http://{host}:8000/"), "hello\n")
        self.assertEqual(self.curl(f"http://{host}:8001/", "world"), "hello\n")
        self.assertEqual(self.curl("http://127.0.0.1:9001/"), "hello\n")
        # Bound on loopback only: not through the host's other address.
        self.assertEqual(self.curl(f"http://{host}:9001/"), "")
        self.assertEqual(self.curl(f"http://{host}:9001/", "world"), "")

        bindings = json.loads(self.inspect("web", "{{json .HostConfig.PortBindings}}"))
        self.assertEqual(
            bindings,
            {
                "80/tcp": [{"HostIp": "", "HostPort": "8000"}],
                "81/tcp": [{"HostIp": "", "HostPort": "8001"}],
                "82/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9001"}],
                "83/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
            },
        )
        ports = json.loads(self.inspect("web", "{{json .NetworkSettings.Ports}}"))
        random = ports["83/tcp"][0]["HostPort"]
        # dockerd's allocator: the first of the (fresh) namespace's range.
        self.assertEqual(random, "32768")
        self.assertEqual(
            ports,
            {
                "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8000"}],
                "81/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8001"}],
                "82/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9001"}],
                "83/tcp": [{"HostIp": "127.0.0.1", "HostPort": random}],
            },
        )
        self.assertEqual(
            self.ok("port", "web").splitlines(),
            [
                "80/tcp -> 0.0.0.0:8000",
                "81/tcp -> 0.0.0.0:8001",
                "82/tcp -> 127.0.0.1:9001",
                f"83/tcp -> 127.0.0.1:{random}",
            ],
        )
        self.assertEqual(self.ok("port", "web", "82"), "127.0.0.1:9001\n")
        self.assertIn(
            "No public port '84' published for web",
            self.fails("port", "web", "84"),
        )
        listed = self.ok("ps", "--filter", "name=web", "--format", "{{.Ports}}")
        for shown in (
            "0.0.0.0:8000",
            "->80",
            "0.0.0.0:8001",
            "->81",
            "127.0.0.1:9001->82/tcp",
            f"127.0.0.1:{random}->83/tcp",
        ):
            self.assertIn(shown, listed)  # fmt: skip

    def test_udp(self) -> None:
        """
        C{-p 9000:90/udp}: a datagram to the published port, from the
        host's loopback, its own address and the world, reaches the
        container's UDP server and its answer comes back.
        """
        python = "/usr/bin/python3"
        if not Path(python).exists():  # pragma: no cover - Debian has it
            self.skipTest("no /usr/bin/python3 for the UDP server")
        self.cleanup_container("echo")
        self.ok("run", "-d", "--name", "echo", "-p", "9000:90/udp",
                "-v", "/:/h:ro", "busybox", "chroot", "/h", python, "-c",
                _UDP_ECHO)  # fmt: skip
        probe = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.settimeout(2)\n"
            "s.sendto(b'ping', (sys.argv[1], 9000))\n"
            "print(s.recvfrom(512)[0].decode())\n"
        )

        def probe_from(where: str, address: str) -> str:
            result = self.lab.run(
                [python, "-c", probe, address], where=where, timeout=10
            )
            return result.stdout.decode().strip()

        self.assertEqual(
            self.until(lambda: probe_from("host", "127.0.0.1"), "the UDP echo"),
            "echo ping",
        )
        self.assertEqual(probe_from("host", NetworkLab.HOST_IP), "echo ping")
        self.assertEqual(probe_from("world", NetworkLab.HOST_IP), "echo ping")
        self.assertEqual(self.ok("port", "echo", "90/udp"), "0.0.0.0:9000\n")
        self.assertEqual(
            json.loads(self.inspect("echo", "{{json .NetworkSettings.Ports}}")),
            {"90/udp": [{"HostIp": "0.0.0.0", "HostPort": "9000"}]},
        )

    def test_hairpin(self) -> None:
        """
        A container reaches another's published port through the host's
        address, from the default bridge and from a user network, and
        through the host-gateway name (how testcontainers' containers
        reach a port published by another).
        """
        self.serving("pub", "-p", "18090:80")
        self.wait_http("http://127.0.0.1:18090/")
        self.ok("network", "create", "hairnet")
        self.addCleanup(self.docker, "network", "rm", "hairnet")
        for network in ("bridge", "hairnet"):
            for host in (NetworkLab.HOST_IP, "dockerhost"):
                get = _GET.replace(" 80 ", " 18090 ").format(ip=host)
                out = self.ok("run", "--rm", "--network", network,
                              "--add-host", "dockerhost:host-gateway",
                              "busybox", "sh", "-c", get)  # fmt: skip
                self.assertEqual(out, "hello\n", f"{host} from {network}")


class ContainerOptionTests(_LabCase):
    def test_default_bridge(self) -> None:
        """
        On the default bridge: C{--add-host} (and C{host-gateway}, the
        bridge's gateway), C{--mac-address}, C{--dns}, C{--dns-search},
        C{--dns-option}, C{--hostname} and C{--domainname} in the files
        and interfaces a process sees, as dockerd writes them.
        """
        mac = "02:42:ac:11:00:99"
        out = self.ok(
            "run", "--rm", "--add-host", "gw:host-gateway",
            "--add-host", "db.local:10.1.2.3", "--mac-address", mac,
            "--dns", "198.51.100.1", "--dns-search", "example.com",
            "--dns-option", "ndots:3", "--hostname", "myhost",
            "--domainname", "mydom.org", "busybox", "sh", "-c",
            "cat /etc/resolv.conf; echo ==; cat /etc/hosts; echo ==; hostname;"
            " cat /etc/hostname; ip -o link show eth0; echo ==; ip -o addr",
        )  # fmt: skip
        resolv, hosts, rest, addresses = out.split("==\n")
        # IPv6 is off in the container, as dockerd 20.10 has it.
        self.assertNotIn("inet6", addresses)
        self.assertIn("inet 172.17.", addresses)
        self.assertEqual(
            resolv.splitlines(),
            ["search example.com", "nameserver 198.51.100.1", "options ndots:3"],
        )
        self.assertEqual(
            hosts.splitlines()[:6],
            ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix",
             "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"],
        )  # fmt: skip
        lines = [line.split() for line in hosts.splitlines()]
        self.assertIn(["172.17.0.1", "gw"], lines)
        self.assertIn(["10.1.2.3", "db.local"], lines)
        own = [line for line in lines if line[1:] == ["myhost.mydom.org", "myhost"]]
        self.assertEqual(len(own), 1)
        self.assertTrue(own[0][0].startswith("172.17."))
        rest_lines = rest.splitlines()
        self.assertEqual(rest_lines[:2], ["myhost", "myhost"])
        self.assertIn(f"link/ether {mac} ", rest_lines[2])

    def test_user_network_dns(self) -> None:
        """
        On a user network C{resolv.conf} names 127.0.0.11 with the user's
        search and options, and the user's C{--dns} servers answer the
        names the network does not know (the world's server here).
        """
        hosts = Path(self.mktemp())
        hosts.write_text(f"{_OUTSIDE} outside.example\n")
        server = self.lab.spawn(
            [TWISTD, "-n", "--pidfile=", "dns",
             f"--hosts-file={hosts}", "-p", "53",
             f"--interface={NetworkLab.WORLD_IP}"],
        )  # fmt: skip
        self.addCleanup(server.wait)
        self.addCleanup(server.kill)
        self.ok("network", "create", "dnsnet")
        self.addCleanup(self.docker, "network", "rm", "dnsnet")
        self.serving("inside", "--network", "dnsnet")
        # busybox nslookup exits 1 when its AAAA query finds nothing, and
        # tries the search domain alone when ndots says so: inside. is whole.
        script = (
            "cat /etc/resolv.conf; echo ==; tail -1 /etc/hosts; hostname; echo ==;"
            " nslookup outside.example; nslookup inside.; true"
        )

        def resolved() -> str | None:
            out = self.ok("run", "--rm", "--network", "dnsnet",
                          "--dns", NetworkLab.WORLD_IP, "--dns-search", "example.com",
                          "--dns-option", "ndots:3", "--hostname", "h2",
                          "--domainname", "d2.org", "busybox", "sh", "-c",
                          script)  # fmt: skip
            return out if _OUTSIDE in out else None

        out = self.until(resolved, "the world's DNS server to answer", timeout=30)
        resolv, names, _ = out.split("==\n")
        self.assertEqual(
            resolv.splitlines(),
            ["search example.com", "nameserver 127.0.0.11", "options ndots:3"],
        )
        own, hostname = names.splitlines()
        self.assertEqual(own.split()[1:], ["h2.d2.org", "h2"])
        self.assertTrue(own.startswith("172.18."), own)
        self.assertEqual(hostname, "h2")
        inside = self.inspect(
            "inside", "{{.NetworkSettings.Networks.dnsnet.IPAddress}}"
        )
        self.assertIn(inside, out)


class UserNetworkOptionTests(_LabCase):
    def network(self, name: str, *args: str) -> str:
        net = self.ok("network", "create", *args, name).strip()
        self.addCleanup(self.docker, "network", "rm", name)
        return net

    def test_addressing_options(self) -> None:
        """
        C{--subnet}, C{--gateway}, C{--ip-range}, C{--label},
        C{--attachable} and C{--opt com.docker.network.bridge.name} as
        inspect shows them and the host has them; addresses come from the
        range; C{--ip} on run and on connect; C{--network-alias}.
        """
        self.network(
            "addrnet", "--subnet", "10.50.0.0/24", "--gateway", "10.50.0.254",
            "--ip-range", "10.50.0.128/25", "--label", "team=net",
            "--attachable", "--opt", "com.docker.network.bridge.name=addrbr0",
        )  # fmt: skip
        [net] = json.loads(self.ok("network", "inspect", "addrnet"))
        self.assertEqual(
            net["IPAM"],
            {
                "Driver": "default",
                "Options": {},
                "Config": [
                    {
                        "Subnet": "10.50.0.0/24",
                        "IPRange": "10.50.0.128/25",
                        "Gateway": "10.50.0.254",
                    }
                ],
            },
        )
        self.assertEqual(net["Labels"], {"team": "net"})
        self.assertEqual(net["Options"], {"com.docker.network.bridge.name": "addrbr0"})
        self.assertTrue(net["Attachable"])
        self.assertFalse(net["Internal"])

        self.serving("ranged", "--network", "addrnet", "--network-alias", "web")
        ranged = self.inspect(
            "ranged", "{{.NetworkSettings.Networks.addrnet.IPAddress}}"
        )
        self.assertGreaterEqual(int(ranged.rsplit(".", 1)[1]), 128)
        self.assertEqual(
            self.inspect("ranged", "{{.NetworkSettings.Networks.addrnet.Gateway}}"),
            "10.50.0.254",
        )
        device = self.lab.run(["ip", "-o", "-4", "addr", "show", "dev", "addrbr0"])
        self.assertIn("inet 10.50.0.254/24", device.stdout.decode())

        # --ip outside the range, but in the subnet, as dockerd allows.
        out = self.ok("run", "--rm", "--network", "addrnet", "--ip", "10.50.0.10",
                      "busybox", "sh", "-c",
                      "ip -o -4 addr show eth0; nslookup web")  # fmt: skip
        self.assertIn("inet 10.50.0.10/24", out)
        self.assertIn(ranged, out)

        self.cleanup_container("joiner")
        self.ok("run", "-d", "--name", "joiner", "busybox", "sleep", "300")
        self.ok("network", "connect", "--ip", "10.50.0.20", "--alias", "j",
                "addrnet", "joiner")  # fmt: skip
        self.assertIn(
            "inet 10.50.0.20/24", self.ok("exec", "joiner", "ip", "-o", "-4", "addr")
        )
        endpoint = json.loads(
            self.inspect("joiner", "{{json .NetworkSettings.Networks.addrnet}}")
        )
        self.assertEqual(endpoint["IPAMConfig"], {"IPv4Address": "10.50.0.20"})
        self.assertEqual(endpoint["IPAddress"], "10.50.0.20")
        self.assertEqual(endpoint["Aliases"], ["j"])
        self.assertIn("j", endpoint["DNSNames"])
        self.assertIn("10.50.0.20", self.ok("exec", "ranged", "nslookup", "j"))

    def test_aux_addresses_and_full(self) -> None:
        """
        C{--aux-address}es are never handed out (nor taken by C{--ip});
        a network with no address left says so in dockerd's words.
        """
        self.network("auxnet", "--subnet", "10.51.0.0/24",
                           "--aux-address", "router=10.51.0.2",
                           "--aux-address", "printer=10.51.0.4")  # fmt: skip
        got = []
        for n in range(3):
            self.cleanup_container(f"aux{n}")
            self.ok("run", "-d", "--name", f"aux{n}", "--network", "auxnet",
                    "busybox", "sleep", "300")  # fmt: skip
            got.append(
                self.inspect(
                    f"aux{n}", "{{.NetworkSettings.Networks.auxnet.IPAddress}}"
                )
            )
        self.assertEqual(got, ["10.51.0.3", "10.51.0.5", "10.51.0.6"])
        taken = self.docker("run", "--rm", "--network", "auxnet", "--ip", "10.51.0.4",
                            "busybox", "true")  # fmt: skip
        self.assertIn("Address already in use", taken.stderr.decode())
        # A /30 has two addresses: the gateway's and one container's.
        small = self.network("smallnet", "--subnet", "10.52.0.0/30")
        self.cleanup_container("only")
        self.ok("run", "-d", "--name", "only", "--network", "smallnet",
                "busybox", "sleep", "300")  # fmt: skip
        full = self.docker("run", "--rm", "--network", "smallnet", "busybox", "true")
        self.assertEqual(full.returncode, 125)
        self.assertIn(
            "no available IPv4 addresses on this network's address pools: "
            f"smallnet ({small})",
            full.stderr.decode(),
        )

    def test_internal_and_isolation(self) -> None:
        """
        C{--internal}: its members reach each other but not the world;
        two user networks do not reach each other.
        """
        self.network("inner", "--internal")
        self.network("other")
        self.serving("in1", "--network", "inner")
        self.serving("out1", "--network", "other")
        inner_ip = self.inspect("in1", "{{.NetworkSettings.Networks.inner.IPAddress}}")
        other_ip = self.inspect("out1", "{{.NetworkSettings.Networks.other.IPAddress}}")
        server = self.lab.spawn([sys.executable, "-c", _PEER_SERVER])
        self.addCleanup(server.wait)
        self.addCleanup(server.kill)
        assert server.stdout is not None
        self.assertEqual(server.stdout.readline(), b"listening\n")
        world = f"nc -w 2 {NetworkLab.WORLD_IP} 8000 </dev/null"
        # The world answers a container on an ordinary network...
        self.assertIn(
            "from", self.ok("run", "--rm", "--network", "other", "busybox", "sh",
                            "-c", world)
        )  # fmt: skip
        self.assertEqual(
            self.ok("run", "--rm", "--network", "inner", "busybox", "sh", "-c",
                    _GET.format(ip=inner_ip)),
            "hello\n",
        )  # fmt: skip
        # ...and never one on an internal network.
        out = self.docker("run", "--rm", "--network", "inner", "busybox", "sh", "-c",
                          world).stdout.decode()  # fmt: skip
        self.assertEqual(out, "")
        for network, ip in (("inner", other_ip), ("other", inner_ip)):
            out = self.ok("run", "--rm", "--network", network, "busybox", "sh", "-c",
                          _GET.format(ip=ip))  # fmt: skip
            self.assertEqual(out, "", f"{network} reached {ip}")
        [net] = json.loads(self.ok("network", "inspect", "inner"))
        self.assertTrue(net["Internal"])


#: runconfig's ErrConflictNoNetwork.
NO_NETWORK = (
    "container cannot be connected to multiple networks with one of the "
    "networks in private (none) mode"
)


#: dockerd's refusal of an alias on the default bridge.
USER_ALIAS = (
    "network-scoped alias is supported only for containers in user defined networks"
)


class RefusalTests(_LabCase):
    def api(self, method: str, url: str, body: Any = None) -> tuple[int, str]:
        """The daemon's status and C{message} for a raw API call."""
        data = json.dumps(body).encode() if body is not None else None
        status, answer = unix_request(self.daemon.socket_path, method, url, data)
        message = json.loads(answer).get("message", "") if answer else ""
        return status, message

    def test_network_errors(self) -> None:
        """
        Overlapping and invalid subnets, unknown networks, a network in
        use, a duplicate name: dockerd's statuses and words.
        """
        self.ok("network", "create", "--subnet", "10.60.0.0/24", "first")
        self.addCleanup(self.docker, "network", "rm", "first")
        self.assertIn(
            "Pool overlaps with other one on this address space",
            self.fails("network", "create", "--subnet", "10.60.0.0/16", "second"),
        )
        bad = {"Name": "bad", "IPAM": {"Config": [{"Subnet": "foo"}]}}
        status, message = self.api("POST", "/networks/create", bad)
        self.assertEqual(
            (status, message), (400, "Invalid subnet foo : invalid CIDR address: foo")
        )
        self.assertEqual(
            self.api("POST", "/networks/create", {"Name": "first"}),
            (409, "network with name first already exists"),
        )
        self.assertIn(
            "network with name first already exists",
            self.fails("network", "create", "first"),
        )
        self.assertEqual(
            self.api("GET", "/networks/nosuch"), (404, "network nosuch not found")
        )
        self.assertEqual(
            self.api("DELETE", "/networks/nosuch"), (404, "network nosuch not found")
        )
        self.assertIn(
            "network nosuch not found", self.fails("network", "inspect", "nosuch")
        )
        self.assertIn(
            "network nosuch not found",
            self.fails("run", "--rm", "--network", "nosuch", "busybox", "true"),
        )
        self.serving("member", "--network", "first")
        status, message = self.api("DELETE", "/networks/first")
        # dockerd 20.10's ActiveEndpointsError is a Forbidden: 403.
        self.assertEqual(status, 403)
        self.assertIn("error while removing network: network first id ", message)
        self.assertIn("has active endpoints", message)
        self.assertEqual(
            self.api("POST", "/networks/first/connect", {"Container": "member"}),
            (403, "endpoint with name member already exists in network first"),
        )
        self.assertEqual(
            self.api("POST", "/networks/none/connect", {"Container": "member"}),
            (400, NO_NETWORK),
        )
        self.assertIn(
            "failed to allocate gateway (10.64.0.0): Address already in use",
            self.fails("network", "create", "--subnet", "10.64.0.0/24",
                       "--gateway", "10.64.0.0", "zero"),
        )  # fmt: skip
        self.assertIn(
            "bridge driver doesn't support multiple subnets",
            self.fails("network", "create", "--subnet", "10.65.0.0/24",
                       "--subnet", "10.66.0.0/24", "two"),
        )  # fmt: skip

    def test_static_address_errors(self) -> None:
        """
        C{--ip} on the default bridge, on a network whose subnet is not
        the user's, outside the subnet, or taken: refused as dockerd does,
        on run and on connect.
        """
        self.ok("network", "create", "--subnet", "10.61.0.0/24", "fixed")
        self.addCleanup(self.docker, "network", "rm", "fixed")
        self.ok("network", "create", "pooled")
        self.addCleanup(self.docker, "network", "rm", "pooled")
        bridge_only = (
            "user specified IP address is supported on user defined networks only"
        )
        self.assertIn(
            bridge_only,
            self.fails("run", "--name", "nostart", "--ip", "172.17.0.50",
                       "busybox", "true"),
        )  # fmt: skip
        # Refused at create, as dockerd: no container is left behind.
        self.assertEqual(self.ok("ps", "-aq", "--filter", "name=nostart"), "")
        self.assertIn(
            "user specified IP address is supported only when connecting to "
            "networks with user configured subnets",
            self.fails("run", "--rm", "--network", "pooled", "--ip", "172.18.0.50",
                       "busybox", "true"),
        )  # fmt: skip
        self.assertIn(
            "Invalid address 10.62.0.10: It does not belong to any of this "
            "network's subnets",
            self.fails("run", "--rm", "--network", "fixed", "--ip", "10.62.0.10",
                       "busybox", "true"),
        )  # fmt: skip
        self.cleanup_container("holder")
        self.ok("run", "-d", "--name", "holder", "--network", "fixed",
                "--ip", "10.61.0.7", "busybox", "sleep", "300")  # fmt: skip
        self.assertIn(
            "Address already in use",
            self.fails("run", "--rm", "--network", "fixed", "--ip", "10.61.0.7",
                       "busybox", "true"),
        )  # fmt: skip
        self.cleanup_container("plain")
        self.ok("run", "-d", "--name", "plain", "busybox", "sleep", "300")
        ipam = {"IPAMConfig": {"IPv4Address": "10.61.0.1"}}
        self.assertEqual(
            self.api("POST", "/networks/fixed/connect",
                     {"Container": "plain", "EndpointConfig": ipam}),
            (403, "Address already in use"),
        )  # fmt: skip
        self.assertEqual(
            self.api("POST", "/networks/bridge/connect",
                     {"Container": "holder", "EndpointConfig": ipam}),
            (400, bridge_only),
        )  # fmt: skip
        aliased = {"Container": "holder", "EndpointConfig": {"Aliases": ["x"]}}
        self.assertEqual(
            self.api("POST", "/networks/bridge/connect", aliased),
            (400, USER_ALIAS),
        )
        self.assertIn(
            bridge_only,
            self.fails("run", "--rm", "--network", "none", "--ip", "10.61.0.9",
                       "busybox", "true"),
        )  # fmt: skip
        # Refused before anything was plumbed: the network still works.
        self.ok("network", "connect", "fixed", "plain")
        self.assertIn(
            "inet 10.61.0.", self.ok("exec", "plain", "ip", "-o", "-4", "addr")
        )

    def test_ipv6_refused(self) -> None:
        """
        IPv6 is not offered: C{--ipv6}, an IPv6 C{--subnet} and C{--ip6}
        each get a 400 that says so, never a silent acceptance.
        """
        status, message = self.api("POST", "/networks/create",
                                   {"Name": "v6", "EnableIPv6": True})  # fmt: skip
        self.assertEqual(status, 400)
        self.assertIn("IPv6", message)
        self.assertIn("not supported", message)
        self.assertIn("not supported", self.fails("network", "create", "--ipv6", "v6"))
        error = self.fails("network", "create", "--subnet", "fd00:1::/64", "v6b")
        self.assertIn("IPv6 subnets are not supported", error)
        self.assertNotIn("v6", self.ok("network", "ls", "--format", "{{.Name}}"))

        self.ok("network", "create", "--subnet", "10.63.0.0/24", "four")
        self.addCleanup(self.docker, "network", "rm", "four")
        error = self.fails("run", "--rm", "--network", "four", "--ip6", "fd00:1::5",
                           "busybox", "true")  # fmt: skip
        self.assertIn("IPv6 is not supported by this daemon", error)
        self.cleanup_container("v4only")
        self.ok("run", "-d", "--name", "v4only", "busybox", "sleep", "300")
        status, message = self.api(
            "POST", "/networks/four/connect",
            {"Container": "v4only",
             "EndpointConfig": {"IPAMConfig": {"IPv6Address": "fd00:1::6"}}},
        )  # fmt: skip
        self.assertEqual(status, 400)
        self.assertIn("IPv6 is not supported by this daemon", message)
