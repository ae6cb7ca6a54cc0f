# -*- test-case-name: tests.integration.test_sdk_networks -*-
"""
The Docker SDK for Python's network API against a daemon in a
L{NetworkLab}: the shapes its own integration tests exercise (create with
IPAM pools, labels, internal, attachable and options; list filters;
inspect; connect with aliases and an address; disconnect, forced too;
remove; prune), and what testcontainers reads of a container with a random
published port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.integration.test_networking import WEB, _LabCase

try:
    import docker
    from docker.errors import APIError, NotFound
    from docker.types import IPAMConfig, IPAMPool
except ImportError:  # pragma: no cover - the SDK is a test dependency
    docker = None

if TYPE_CHECKING:
    from docker import DockerClient


class _SDKCase(_LabCase):
    if docker is None:  # pragma: no cover
        skip = "the Docker SDK for Python is not installed"

    def setUp(self) -> None:
        super().setUp()
        self.client: DockerClient = docker.DockerClient(
            base_url=self.daemon.docker_host, version="1.50"
        )
        self.addCleanup(self.client.close)

    def network(self, name: str, **options: Any) -> Any:
        """C{client.networks.create(name, **options)}, removed at the end."""
        net = self.client.networks.create(name, **options)
        self.addCleanup(self.docker, "network", "rm", net.id)
        return net

    def sleeper(self, name: str, **options: Any) -> Any:
        """A started busybox that sleeps, removed at the end."""
        self.cleanup_container(name)
        return self.client.containers.run(
            "busybox", ["sleep", "300"], name=name, detach=True, **options
        )


class CreateInspectTests(_SDKCase):
    def test_ipam_and_options(self) -> None:
        """
        An IPAM pool with a range, a gateway and auxiliary addresses,
        labels, internal, attachable and a driver option come back in
        inspect as the SDK sent them (IPAM Options null when none sent).
        """
        pool = IPAMPool(
            subnet="10.40.0.0/16",
            iprange="10.40.5.0/24",
            gateway="10.40.5.254",
            aux_addresses={"router": "10.40.1.5", "printer": "10.40.1.6"},
        )
        net = self.network(
            "ipamnet",
            driver="bridge",
            ipam=IPAMConfig(driver="default", pool_configs=[pool]),
            labels={"org.example.tier": "back"},
            internal=True,
            attachable=True,
            options={"com.docker.network.bridge.name": "sdkbr0"},
        )
        info = self.client.api.inspect_network(net.id)
        self.assertEqual(info["Id"], net.id)
        self.assertEqual(info["Name"], "ipamnet")
        self.assertEqual((info["Driver"], info["Scope"]), ("bridge", "local"))
        self.assertEqual(
            info["IPAM"],
            {
                "Driver": "default",
                "Options": None,
                "Config": [
                    {
                        "Subnet": "10.40.0.0/16",
                        "IPRange": "10.40.5.0/24",
                        "Gateway": "10.40.5.254",
                        "AuxiliaryAddresses": {
                            "router": "10.40.1.5",
                            "printer": "10.40.1.6",
                        },
                    }
                ],
            },
        )
        self.assertEqual(info["Labels"], {"org.example.tier": "back"})
        self.assertIs(info["Internal"], True)
        self.assertIs(info["Attachable"], True)
        self.assertIs(info["EnableIPv6"], False)
        self.assertEqual(info["Options"], {"com.docker.network.bridge.name": "sdkbr0"})
        self.assertEqual(info["Containers"], {})
        # The models: get by ID and by name, reload, attrs.
        self.assertEqual(self.client.networks.get("ipamnet").id, net.id)
        self.assertEqual(self.client.networks.get(net.id[:12]).name, "ipamnet")
        self.assertEqual(net.attrs["Labels"]["org.example.tier"], "back")
        # An auxiliary address is never a container's.
        self.sleeper("aux")
        with self.assertRaises(APIError) as caught:
            self.client.api.connect_container_to_network(
                "aux", "ipamnet", ipv4_address="10.40.1.5"
            )
        self.assertEqual(caught.exception.explanation, "Address already in use")

    def test_aux_addresses_skipped(self) -> None:
        """Containers the SDK runs on a network never get its aux addresses."""
        pool = IPAMPool(
            subnet="10.41.0.0/24",
            aux_addresses={"router": "10.41.0.2", "printer": "10.41.0.3"},
        )
        self.network("auxsdk", ipam=IPAMConfig(pool_configs=[pool]))
        got = []
        for n in range(2):
            c = self.sleeper(f"auxsdk{n}", network="auxsdk")
            c.reload()
            got.append(c.attrs["NetworkSettings"]["Networks"]["auxsdk"]["IPAddress"])
        self.assertEqual(got, ["10.41.0.4", "10.41.0.5"])

    def test_refusals(self) -> None:
        """
        A second network of the same name (409), a host-driver network, an
        unknown one (NotFound), an overlapping subnet and IPv6 are refused
        with APIErrors that say why.
        """
        self.network(
            "once", ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.41.0.0/24")])
        )
        with self.assertRaises(APIError) as caught:
            self.client.networks.create("once", check_duplicate=True)
        self.assertEqual(caught.exception.status_code, 409)
        with self.assertRaises(APIError) as caught:
            self.client.api.create_network("hostly", driver="host")
        self.assertEqual(caught.exception.status_code, 403)
        with self.assertRaises(NotFound):
            self.client.networks.get("nosuchnet")
        with self.assertRaises(APIError) as caught:
            self.client.networks.create(
                "overlap",
                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.41.0.0/16")]),
            )
        self.assertIn("Pool overlaps", caught.exception.explanation)
        v6 = IPAMConfig(pool_configs=[IPAMPool(subnet="2001:389::/64")])
        for options in ({"enable_ipv6": True}, {"ipam": v6}):
            with self.assertRaises(APIError) as caught:
                self.client.networks.create("six", **options)
            self.assertEqual(caught.exception.status_code, 400)
            self.assertIn("IPv6", caught.exception.explanation)
            self.assertIn("not supported", caught.exception.explanation)
        self.assertEqual(self.client.networks.list(names=["six"]), [])


class ListTests(_SDKCase):
    def test_filters(self) -> None:
        """
        names, ids (also a prefix), label (key and key=value), driver,
        type custom/builtin and dangling filter as dockerd's do.
        """
        front = self.network("front", labels={"tier": "front", "team": "a"})
        back = self.network("back", labels={"tier": "back"})

        def names(**options: Any) -> list[str]:
            return sorted(n.name for n in self.client.networks.list(**options))

        self.assertEqual(names(), ["back", "bridge", "front", "host", "none"])
        self.assertEqual(names(names=["front"]), ["front"])
        self.assertEqual(names(names=["nosuch"]), [])
        self.assertEqual(names(ids=[back.id]), ["back"])
        self.assertEqual(names(ids=[back.id[:10]]), ["back"])
        self.assertEqual(names(filters={"label": "tier"}), ["back", "front"])
        self.assertEqual(names(filters={"label": "tier=front"}), ["front"])
        self.assertEqual(names(filters={"label": ["tier", "team=a"]}), ["front"])
        self.assertEqual(
            names(filters={"driver": "bridge"}), ["back", "bridge", "front"]
        )
        self.assertEqual(names(filters={"driver": "null"}), ["none"])
        self.assertEqual(names(filters={"type": "custom"}), ["back", "front"])
        self.assertEqual(names(filters={"type": "builtin"}), ["bridge", "host", "none"])
        self.sleeper("user", network="front")
        self.assertEqual(names(filters={"dangling": True}), ["back"])
        self.assertEqual(
            names(filters={"dangling": False}), ["bridge", "front", "host", "none"]
        )
        # greedy: each network inspected, its members as models.
        [listed] = self.client.networks.list(ids=[front.id], greedy=True)
        self.assertEqual([c.name for c in listed.containers], ["user"])
        with self.assertRaises(APIError) as caught:
            self.client.networks.list(filters={"type": "odd"})
        self.assertEqual(caught.exception.status_code, 400)


class ConnectTests(_SDKCase):
    def test_create_with_endpoint_config(self) -> None:
        """
        A container created on a network with aliases, an address and a
        link: inspect's endpoint carries them, and the link's alias
        resolves inside.
        """
        pool = IPAMPool(subnet="10.42.0.0/16")
        self.network("epnet", ipam=IPAMConfig(pool_configs=[pool]))
        api = self.client.api
        self.cleanup_container("upstream")
        self.client.containers.run("busybox", WEB, name="upstream", detach=True,
                                   network="epnet")  # fmt: skip
        self.cleanup_container("endpointed")
        container = api.create_container(
            "busybox", ["sleep", "300"], name="endpointed",
            host_config=api.create_host_config(network_mode="epnet"),
            networking_config=api.create_networking_config({
                "epnet": api.create_endpoint_config(
                    aliases=["foo", "bar"], ipv4_address="10.42.0.23",
                    links=[("upstream", "up")],
                )
            }),
        )  # fmt: skip
        api.start(container)
        endpoint = api.inspect_container(container)["NetworkSettings"]["Networks"][
            "epnet"
        ]
        self.assertEqual(endpoint["IPAMConfig"], {"IPv4Address": "10.42.0.23"})
        self.assertEqual(endpoint["IPAddress"], "10.42.0.23")
        self.assertEqual(endpoint["IPPrefixLen"], 16)
        self.assertEqual(endpoint["Gateway"], "10.42.0.1")
        self.assertEqual(endpoint["Links"], ["upstream:up"])
        self.assertEqual(endpoint["Aliases"], ["foo", "bar"])
        for name in ("endpointed", "foo", "bar"):
            self.assertIn(name, endpoint["DNSNames"])
        self.assertRegex(endpoint["MacAddress"], "^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
        self.assertEqual(len(endpoint["EndpointID"]), 64)
        upstream = self.client.containers.get("upstream")
        upstream_ip = upstream.attrs["NetworkSettings"]["Networks"]["epnet"][
            "IPAddress"
        ]
        _, out = self.client.containers.get("endpointed").exec_run(["nslookup", "up"])
        self.assertIn(upstream_ip, out.decode())

    def test_connect_disconnect(self) -> None:
        """
        Connect (with aliases and an address) puts a running container on
        the network's members; connecting twice or disconnecting what is
        not connected is an APIError; a forced disconnect takes it off; a
        container connected before its start is a member once started.
        """
        pool = IPAMPool(subnet="10.43.0.0/16", iprange="10.43.5.0/24",
                        gateway="10.43.5.254")  # fmt: skip
        net = self.network("connet", ipam=IPAMConfig(pool_configs=[pool]))
        runner = self.sleeper("runner")
        self.assertEqual(net.containers, [])
        net.connect(runner, aliases=["alpha", "beta"], ipv4_address="10.43.5.24")
        net.reload()
        self.assertEqual([c.id for c in net.containers], [runner.id])
        members = self.client.api.inspect_network(net.id)["Containers"]
        self.assertEqual(list(members), [runner.id])
        member = members[runner.id]
        self.assertEqual(member["Name"], "runner")
        self.assertEqual(member["IPv4Address"], "10.43.5.24/16")
        runner.reload()
        endpoint = runner.attrs["NetworkSettings"]["Networks"]["connet"]
        self.assertEqual(endpoint["IPAMConfig"]["IPv4Address"], "10.43.5.24")
        self.assertEqual(endpoint["Aliases"], ["alpha", "beta"])
        self.assertEqual(endpoint["NetworkID"], net.id)
        self.assertEqual(member["EndpointID"], endpoint["EndpointID"])
        with self.assertRaises(APIError):
            net.connect(runner)
        net.disconnect(runner)
        net.reload()
        self.assertEqual(net.containers, [])
        with self.assertRaises(APIError):
            net.disconnect(runner)
        net.connect(runner)
        net.disconnect(runner, force=True)
        self.assertEqual(self.client.api.inspect_network(net.id)["Containers"], {})
        with self.assertRaises(APIError):
            net.disconnect(runner, force=True)

        self.cleanup_container("later")
        later = self.client.containers.create("busybox", ["sleep", "300"], name="later")
        net.connect(later)
        self.assertEqual(self.client.networks.get(net.id).containers, [])
        later.start()
        self.assertEqual(
            [c.id for c in self.client.networks.get(net.id).containers], [later.id]
        )


class RemovePruneTests(_SDKCase):
    def test_remove_and_prune(self) -> None:
        """
        remove takes an unused network (a used one is refused); prune
        takes the unused custom ones, by label when asked, and says which.
        """
        gone = self.client.networks.create("gone")
        gone.remove()
        self.assertNotIn("gone", [n.name for n in self.client.networks.list()])
        with self.assertRaises(NotFound):
            self.client.networks.get(gone.id)
        kept = self.network("kept")
        self.sleeper("holder", network="kept")
        with self.assertRaises(APIError) as caught:
            kept.remove()
        self.assertIn("has active endpoints", caught.exception.explanation)
        self.client.networks.create("idle1", labels={"purge": "yes"})
        self.client.networks.create("idle2")
        self.addCleanup(self.docker, "network", "rm", "idle2")
        pruned = self.client.networks.prune(filters={"label": "purge=yes"})
        self.assertEqual(pruned, {"NetworksDeleted": ["idle1"]})
        pruned = self.client.networks.prune()
        self.assertEqual(pruned, {"NetworksDeleted": ["idle2"]})
        self.assertEqual(self.client.networks.prune(), {"NetworksDeleted": None})
        self.assertEqual(
            sorted(n.name for n in self.client.networks.list()),
            ["bridge", "host", "kept", "none"],
        )


class PublishedPortTests(_SDKCase):
    def test_random_port_as_testcontainers_reads_it(self) -> None:
        """
        containers.run(ports={'80/tcp': None}): the host port testcontainers
        reads from NetworkSettings.Ports answers on the host; the bridge
        address and gateway it reads for container-to-container use are
        there; the API's port() agrees.
        """
        self.cleanup_container("tc")
        container = self.client.containers.run(
            "busybox", WEB, name="tc", detach=True, ports={"80/tcp": None}
        )
        container.reload()
        settings = container.attrs["NetworkSettings"]
        [binding] = settings["Ports"]["80/tcp"]
        self.assertEqual(binding["HostIp"], "0.0.0.0")
        port = int(binding["HostPort"])
        self.assertGreater(port, 1024)
        self.assertEqual(container.ports, settings["Ports"])
        self.assertEqual(
            container.attrs["HostConfig"]["PortBindings"],
            {"80/tcp": [{"HostIp": "", "HostPort": ""}]},
        )
        self.assertEqual(self.client.api.port(container.id, 80), [binding])
        self.assertEqual(self.wait_http(f"http://127.0.0.1:{port}/"), "hello\n")
        bridge = settings["Networks"]["bridge"]
        self.assertEqual(settings["IPAddress"], bridge["IPAddress"])
        self.assertEqual(settings["Gateway"], "172.17.0.1")
        self.assertEqual(bridge["Gateway"], "172.17.0.1")
        self.assertEqual(self.curl(f"http://{bridge['IPAddress']}:80/"), "hello\n")
