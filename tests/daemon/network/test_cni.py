# -*- test-case-name: tests.daemon.network.test_cni -*-
"""
Tests for L{dockserve.daemon.network.cni}.

The unit tests run a fake command runner: the configuration, environment
and stdin each plugin gets, the result parsed, the errors, the cache, the
lock. The real tests run Debian's plugins from C{/usr/lib/cni}, always in
a child process inside a scratch namespace of the test's own
(L{ScratchHost}): the bridge is made, and forwarding turned on, in the
namespace the plugin runs in, which must never be the machine's.
"""

from __future__ import annotations

import json
import os
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import attrs

from twisted.internet.defer import Deferred, DeferredLock, gatherResults, succeed
from twisted.internet.task import Clock, deferLater
from twisted.python import log
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from dockserve.daemon.network import commands, netns
from dockserve.daemon.network.cni import (
    CNI,
    CNI_VERSION,
    TIMEOUT,
    Attachment,
    address_ranges,
    network_conflist,
    parse_result,
    plugin_config,
)
from dockserve.daemon.network.commands import Result
from dockserve.daemon.network.model import Endpoint, NetworkSpec
from dockserve.errors import SystemError_
from tests.daemon.network.test_netns import ScratchHost

PLUGINS = Path("/usr/lib/cni")

NET = NetworkSpec(
    id="f" * 64,
    name="appnet",
    bridge="br-ffffffffffff",
    subnet=IPv4Network("198.51.100.0/24"),
    gateway=IPv4Address("198.51.100.1"),
)
CID = "c" * 64

#: What the bridge plugin 1.1.1 printed for an ADD (cniVersion 1.0.0).
RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "br-ffffffffffff", "mac": "f6:da:f1:37:0f:62"},
        {"name": "veth824964a0", "mac": "8e:fe:6b:97:38:f5"},
        {"name": "eth0", "mac": "C6:49:83:9B:73:FD", "sandbox": "/run/ns/c1"},
    ],
    "ips": [{"interface": 2, "address": "198.51.100.2/24", "gateway": "198.51.100.1"}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "198.51.100.1"}],
    "dns": {},
}

ENDPOINT = Endpoint(
    network_id=NET.id,
    container_id=CID,
    ifname="eth0",
    ip=IPv4Address("198.51.100.2"),
    prefix=24,
    gateway=IPv4Address("198.51.100.1"),
    mac="c6:49:83:9b:73:fd",
)


def _result_for(ifname: str) -> dict[str, Any]:
    """L{RESULT} for another interface of the container."""
    interfaces = [
        *RESULT["interfaces"][:2],
        {**RESULT["interfaces"][2], "name": ifname},
    ]
    return {**RESULT, "interfaces": interfaces}


def ok(value: Any = None) -> Result:
    """A plugin that succeeded, printing C{value}."""
    return Result(0, json.dumps(value).encode() if value is not None else b"", b"")


class FakeRun:
    """
    A command runner that records each call and answers from a list;
    an answer that is a L{Deferred} is returned as it is (to hold a call
    open), an exception is raised.
    """

    def __init__(self, *answers: Result | Exception | Deferred[Result]) -> None:
        self.calls: list[tuple[list[str], Any, dict[str, str] | None]] = []
        self.answers = list(answers)

    def __call__(
        self,
        _reactor: Any,
        argv: list[str],
        stdin: bytes | None,
        env: Any,
    ) -> Deferred[Result]:
        self.calls.append((argv, json.loads(stdin) if stdin else None, env))
        answer = self.answers.pop(0) if self.answers else ok()
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, Deferred):
            return answer
        return succeed(answer)

    def commands(self) -> list[str]:
        """Each call's plugin (or tool) and CNI command."""
        return [
            f"{Path(argv[0]).name} {(env or {}).get('CNI_COMMAND', '')}".strip()
            for argv, _, env in self.calls
        ]


def _bridge_config(**extra: Any) -> dict[str, Any]:
    """The bridge plugin's stdin for L{NET} under C{/state}."""
    config = {
        "type": "bridge",
        "bridge": "br-ffffffffffff",
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "capabilities": {"ips": True, "mac": True},
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "198.51.100.0/24", "gateway": "198.51.100.1"}]],
            "dataDir": "/state/ipam",
        },
        "isDefaultGateway": True,
        "cniVersion": "1.0.0",
        "name": NET.id,
    }
    config.update(extra)
    return config


class ConfigTests(SynchronousTestCase):
    """The conflist and each plugin's configuration."""

    def test_conflist(self) -> None:
        """
        One bridge plugin: gateway, no masquerade (our nft table NATs),
        hairpin, the ips and mac capabilities, host-local under the state
        directory; named by the network's ID; MTU when set.
        """
        net = NetworkSpec(**{**_fields(NET), "mtu": 1400})
        conflist = network_conflist(
            net, Path("/state"), static=False, default_route=True
        )
        self.assertEqual(
            conflist,
            {
                "cniVersion": CNI_VERSION,
                "name": NET.id,
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": "br-ffffffffffff",
                        "isGateway": True,
                        "ipMasq": False,
                        "hairpinMode": True,
                        "capabilities": {"ips": True, "mac": True},
                        "ipam": {
                            "type": "host-local",
                            "ranges": [
                                [
                                    {
                                        "subnet": "198.51.100.0/24",
                                        "gateway": "198.51.100.1",
                                    }
                                ]
                            ],
                            "dataDir": "/state/ipam",
                        },
                        "isDefaultGateway": True,
                        "mtu": 1400,
                    }
                ],
            },
        )
        self.assertEqual(CNI_VERSION, "1.0.0")

    def test_no_default_route(self) -> None:
        """Without a default route the bridge is still the gateway."""
        conflist = network_conflist(
            NET, Path("/state"), static=False, default_route=False
        )
        self.assertNotIn("isDefaultGateway", conflist["plugins"][0])
        self.assertTrue(conflist["plugins"][0]["isGateway"])

    def test_ip_range(self) -> None:
        """
        An ip-range narrows the range to its addresses, its first one
        included, but never the subnet's network or broadcast address.
        """
        inner = NetworkSpec(
            **{**_fields(NET), "ip_range": IPv4Network("198.51.100.128/25")}
        )
        self.assertEqual(
            address_ranges(inner, static=False),
            [
                {
                    "subnet": "198.51.100.0/24",
                    "gateway": "198.51.100.1",
                    "rangeStart": "198.51.100.128",
                    "rangeEnd": "198.51.100.254",
                }
            ],
        )
        whole = NetworkSpec(**{**_fields(NET), "ip_range": NET.subnet})
        [found] = address_ranges(whole, static=False)
        self.assertEqual(
            (found["rangeStart"], found["rangeEnd"]), ("198.51.100.1", "198.51.100.254")
        )

    def test_static_whole_subnet(self) -> None:
        """A static address may be anywhere in the subnet, as with dockerd."""
        inner = NetworkSpec(
            **{**_fields(NET), "ip_range": IPv4Network("198.51.100.128/25")}
        )
        self.assertEqual(
            address_ranges(inner, static=True),
            [{"subnet": "198.51.100.0/24", "gateway": "198.51.100.1"}],
        )

    def test_reserved_addresses_left_out(self) -> None:
        """
        Auxiliary addresses split the range so host-local never hands them
        out: around them in the whole subnet or in an ip-range; one at the
        range's edge only moves the edge; a static address may still be
        anywhere (the service refuses a reserved one itself).
        """
        reserved = frozenset(
            IPv4Address(a) for a in ("198.51.100.2", "198.51.100.4", "198.51.100.254")
        )
        net = NetworkSpec(**{**_fields(NET), "reserved": reserved})
        bounds = [(r["rangeStart"], r["rangeEnd"])
                  for r in address_ranges(net, static=False)]  # fmt: skip
        self.assertEqual(bounds, [("198.51.100.1", "198.51.100.1"),
                                  ("198.51.100.3", "198.51.100.3"),
                                  ("198.51.100.5", "198.51.100.253")])  # fmt: skip
        inner = NetworkSpec(
            **{**_fields(net), "ip_range": IPv4Network("198.51.100.0/29")}
        )
        bounds = [(r["rangeStart"], r["rangeEnd"])
                  for r in address_ranges(inner, static=False)]  # fmt: skip
        self.assertEqual(bounds, [("198.51.100.1", "198.51.100.1"),
                                  ("198.51.100.3", "198.51.100.3"),
                                  ("198.51.100.5", "198.51.100.7")])  # fmt: skip
        self.assertEqual(
            address_ranges(net, static=True),
            [{"subnet": "198.51.100.0/24", "gateway": "198.51.100.1"}],
        )
        tiny = NetworkSpec(
            **{**_fields(net), "ip_range": IPv4Network("198.51.100.4/32")}
        )
        [full] = address_ranges(tiny, static=False)
        self.assertEqual((full["rangeStart"], full["rangeEnd"]),
                         ("198.51.100.1", "198.51.100.1"))  # fmt: skip

    def test_plugin_config(self) -> None:
        """
        The spec's plugin configuration: the list's name and version, the
        runtimeConfig of declared capabilities only, the previous result.
        """
        conflist = {
            "cniVersion": "1.0.0",
            "name": "n",
            "plugins": [{"type": "x", "capabilities": {"ips": True}, "k": 1}],
        }
        config = plugin_config(
            conflist,
            conflist["plugins"][0],
            {"ips": ["10.0.0.2"], "mac": "02:00:00:00:00:01"},
            {"cniVersion": "1.0.0"},
        )
        self.assertEqual(
            config,
            {
                "type": "x",
                "capabilities": {"ips": True},
                "k": 1,
                "cniVersion": "1.0.0",
                "name": "n",
                "runtimeConfig": {"ips": ["10.0.0.2"]},
                "prevResult": {"cniVersion": "1.0.0"},
            },
        )
        bare = plugin_config(conflist, conflist["plugins"][0], {}, None)
        self.assertNotIn("runtimeConfig", bare)
        self.assertNotIn("prevResult", bare)


def _fields(spec: NetworkSpec) -> dict[str, Any]:
    return attrs.asdict(spec, recurse=False)


class ParseResultTests(SynchronousTestCase):
    """L{parse_result}: the container side of a 1.0.0 result."""

    def test_endpoint(self) -> None:
        """Address, prefix, gateway, and the container end's MAC (lower case)."""
        self.assertEqual(parse_result(RESULT, NET, CID, "eth0"), ENDPOINT)

    def test_skips_others(self) -> None:
        """
        IPv6, host-side or out-of-range entries are skipped; no gateway in
        the result: the network's.
        """
        result = {
            **RESULT,
            "ips": [
                {"interface": 1, "address": "198.51.100.9/24"},
                {"interface": 7, "address": "198.51.100.8/24"},
                {"address": "198.51.100.7/24"},
                {"interface": 2, "address": "2001:db8::2/64"},
                {"interface": 2, "address": "198.51.100.2/24"},
            ],
        }
        self.assertEqual(parse_result(result, NET, CID, "eth0"), ENDPOINT)

    def test_nothing(self) -> None:
        """No IPv4 address on the interface: an error naming it."""
        with self.assertRaises(SystemError_) as caught:
            parse_result({**RESULT, "ips": []}, NET, CID, "eth0")
        self.assertEqual(
            caught.exception.message,
            "CNI ADD (network appnet): no IPv4 address on eth0",
        )


class CNITests(SynchronousTestCase):
    """L{CNI} with a fake runner: what each plugin is given, and errors."""

    def setUp(self) -> None:
        self.state = Path(self.mktemp()).resolve()
        self.clock = Clock()

    def cni(self, run: FakeRun, lock: DeferredLock | None = None) -> CNI:
        return CNI(
            self.clock, state_dir=self.state, plugin_dir=Path("/p"), lock=lock, run=run
        )

    def add(self, cni: CNI, **kwargs: Any) -> Deferred[Endpoint]:
        return Deferred.fromCoroutine(
            cni.add(Path("/run/ns/c1"), CID, "eth0", NET, **kwargs)
        )

    def env(self, command: str, netns: str = "/run/ns/c1") -> dict[str, str]:
        return {
            "PATH": self.env_path,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": CID,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": "/p",
            "CNI_ARGS": "",
        }

    @property
    def env_path(self) -> str:
        return os.environ.get("PATH", "")

    def test_add(self) -> None:
        """
        ADD runs the bridge plugin with the CNI environment and its
        configuration on stdin; the endpoint comes from the result, which
        is cached with the configuration for DEL.
        """
        run = FakeRun(ok(RESULT))
        cni = self.cni(run)
        endpoint = self.successResultOf(self.add(cni))
        self.assertEqual(endpoint, ENDPOINT)
        config = _bridge_config()
        config["ipam"]["dataDir"] = str(self.state / "ipam")
        self.assertEqual(run.calls, [(["/p/bridge"], config, self.env("ADD"))])
        self.assertEqual(cni.attachments(), [Attachment(NET.id, CID, "eth0", ENDPOINT)])
        cached = json.loads(
            (self.state / "results" / f"{NET.id}-{CID}-eth0").read_text()
        )
        self.assertEqual(cached["result"], RESULT)
        self.assertEqual(
            cached["config"]["plugins"][0]["ipam"]["dataDir"], config["ipam"]["dataDir"]
        )

    def test_static_ip_and_mac(self) -> None:
        """C{--ip} and C{--mac-address} go as the ips and mac capabilities."""
        run = FakeRun(ok(RESULT))
        self.successResultOf(
            self.add(self.cni(run), ip="198.51.100.2", mac="02:42:c6:33:64:02")
        )
        stdin = run.calls[0][1]
        self.assertEqual(
            stdin["runtimeConfig"],
            {"ips": ["198.51.100.2"], "mac": "02:42:c6:33:64:02"},
        )

    def test_internal(self) -> None:
        """An internal network gives no default route unless asked."""
        internal = NetworkSpec(**{**_fields(NET), "internal": True})
        run = FakeRun(ok(RESULT), ok(RESULT), ok(RESULT))
        cni = self.cni(run)
        for container, kwargs in (("a", {}), ("b", {"default_route": True})):
            self.successResultOf(
                Deferred.fromCoroutine(
                    cni.add(Path("/run/ns/c1"), container, "eth0", internal, **kwargs)
                )
            )
        self.successResultOf(self.add(cni, default_route=False))
        flags = [call[1].get("isDefaultGateway", False) for call in run.calls]
        self.assertEqual(flags, [False, True, False])

    def test_one_default_route(self) -> None:
        """
        A container's second interface gets no default route of its own,
        unless asked; once the first is deleted, a new one does again.
        """
        run = FakeRun(
            ok(RESULT),
            ok(_result_for("eth1")),
            ok(_result_for("eth2")),
            ok(),
            ok(),
            ok(),
            ok(_result_for("eth3")),
        )
        cni = self.cni(run)
        self.successResultOf(self.add(cni))
        for ifname, kwargs in (("eth1", {}), ("eth2", {"default_route": True})):
            self.successResultOf(
                Deferred.fromCoroutine(
                    cni.add(Path("/run/ns/c1"), CID, ifname, NET, **kwargs)
                )
            )
        for ifname in ("eth1", "eth2"):
            self.successResultOf(
                Deferred.fromCoroutine(cni.delete(None, CID, ifname, NET))
            )
        self.successResultOf(Deferred.fromCoroutine(cni.delete(None, CID, "eth0", NET)))
        self.successResultOf(
            Deferred.fromCoroutine(cni.add(Path("/run/ns/c1"), CID, "eth3", NET))
        )
        adds = [call[1] for call in run.calls if call[2]["CNI_COMMAND"] == "ADD"]
        self.assertEqual(
            [config.get("isDefaultGateway", False) for config in adds],
            [True, False, True, True],
        )

    def test_add_fails(self) -> None:
        """
        The plugin's CNI error (msg and details) is the message; what it
        may have half made is DEL'd.
        """
        error = {"code": 999, "msg": "failed to allocate for range 0", "details": "x"}
        run = FakeRun(Result(1, json.dumps(error).encode(), b""), ok())
        failure = self.failureResultOf(self.add(self.cni(run)))
        failure.trap(SystemError_)
        self.assertEqual(
            failure.value.message,
            "CNI bridge ADD (network appnet): failed to allocate for range 0: x",
        )
        self.assertEqual(run.commands(), ["bridge ADD", "bridge DEL"])
        self.assertNotIn("prevResult", run.calls[1][1])
        self.assertEqual(run.calls[1][2], self.env("DEL"))
        self.assertEqual(self.cni(FakeRun()).attachments(), [])

    def test_add_exhausted(self) -> None:
        """A network with no address left: dockerd's words, with its ID."""
        error = {
            "code": 999,
            "msg": "failed to allocate for range 0",
            "details": "no IP addresses available in range set: 10.8.0.1-10.8.0.1",
        }
        run = FakeRun(Result(1, json.dumps(error).encode(), b""), ok())
        failure = self.failureResultOf(self.add(self.cni(run)))
        failure.trap(SystemError_)
        self.assertEqual(
            failure.value.message,
            "no available IPv4 addresses on this network's address pools: "
            f"appnet ({NET.id})",
        )
        self.assertEqual(run.commands(), ["bridge ADD", "bridge DEL"])

    def test_stale_cache(self) -> None:
        """
        An ADD never deleted (a failed DEL, a crash) is DEL'd before the
        new ADD: host-local gives a container and interface one address.
        """
        run = FakeRun(ok(RESULT), ok(), ok(RESULT))
        cni = self.cni(run)
        self.successResultOf(self.add(cni))
        self.successResultOf(self.add(cni))
        self.assertEqual(run.commands(), ["bridge ADD", "bridge DEL", "bridge ADD"])
        self.assertEqual(run.calls[1][1]["prevResult"], RESULT)
        self.assertEqual(len(cni.attachments()), 1)

    def test_duplicate(self) -> None:
        """
        An address held but not cached (a crash before the cache was
        written): the undoing DEL frees it, and the ADD is tried once more.
        """
        duplicate = Result(
            1,
            b'{"code":999,"msg":"failed to allocate for range 0: 198.51.100.2 '
            b'has been allocated to c, duplicate allocation is not allowed"}',
            b"",
        )
        run = FakeRun(duplicate, ok(), ok(RESULT))
        self.assertEqual(self.successResultOf(self.add(self.cni(run))), ENDPOINT)
        self.assertEqual(run.commands(), ["bridge ADD", "bridge DEL", "bridge ADD"])
        run = FakeRun(duplicate, ok(), duplicate, ok())
        self.state = self.state / "other"
        failure = self.failureResultOf(self.add(self.cni(run)))
        self.assertIn("duplicate allocation", failure.value.message)
        self.assertEqual(len(run.calls), 4)

    def test_zero_mac_bridge(self) -> None:
        """
        A bridge the plugin cannot give its own MAC again (all zeros, left
        so by a failed first ADD): it gets one made of the gateway, and the
        ADD is tried once more.
        """
        zero = Result(
            1,
            b'{"code":999,"msg":"failed to set bridge addr: could not set '
            b"bridge's mac: invalid argument\"}",
            b"",
        )
        run = FakeRun(zero, ok(), ok(), ok(RESULT))
        self.assertEqual(self.successResultOf(self.add(self.cni(run))), ENDPOINT)
        self.assertEqual(
            run.commands(), ["bridge ADD", "bridge DEL", "ip", "bridge ADD"]
        )
        self.assertEqual(
            run.calls[2][0],
            ["ip", "link", "set", "dev", "br-ffffffffffff", "address",
             "02:42:c6:33:64:01"],
        )  # fmt: skip

    def test_add_fails_plain(self) -> None:
        """A plugin that prints no CNI error: its stderr, else its code."""
        run = FakeRun(Result(2, b"panic", b"goroutine 1\n"), ok())
        failure = self.failureResultOf(self.add(self.cni(run)))
        self.assertEqual(
            failure.value.message, "CNI bridge ADD (network appnet): goroutine 1"
        )
        run = FakeRun(Result(2, b"", b""), Result(1, b"", b""))
        failure = self.failureResultOf(self.add(self.cni(run)))
        self.assertEqual(
            failure.value.message, "CNI bridge ADD (network appnet): exited 2"
        )

    def test_bad_result(self) -> None:
        """A result without the address: an error, and the ADD undone with it."""
        run = FakeRun(ok({**RESULT, "ips": []}), ok())
        failure = self.failureResultOf(self.add(self.cni(run)))
        failure.trap(SystemError_)
        self.assertEqual(run.commands(), ["bridge ADD", "bridge DEL"])
        self.assertEqual(run.calls[1][1]["prevResult"]["ips"], [])
        run = FakeRun(Result(0, b"not json", b""), ok())
        failure = self.failureResultOf(self.add(self.cni(run)))
        self.assertEqual(
            failure.value.message,
            "CNI bridge ADD (network appnet): its result is not JSON",
        )

    def test_no_plugin(self) -> None:
        """A plugin that cannot be run: said so."""
        run = FakeRun(FileNotFoundError(2, "No such file or directory"), ok())
        failure = self.failureResultOf(self.add(self.cni(run)))
        self.assertEqual(
            failure.value.message,
            "CNI bridge ADD (network appnet): /p/bridge: No such file or directory",
        )

    def test_delete_cached(self) -> None:
        """
        DEL is given ADD's own configuration and its result; a namespace
        that is gone is not named (the bridge plugin would fail on it);
        the cache goes.
        """
        run = FakeRun(ok(RESULT), ok())
        cni = self.cni(run)
        self.successResultOf(self.add(cni, ip="198.51.100.2"))
        self.successResultOf(
            Deferred.fromCoroutine(cni.delete(Path("/run/ns/c1"), CID, "eth0", NET))
        )
        added, deleted = run.calls[0][1], run.calls[1][1]
        self.assertEqual(deleted, {**added, "prevResult": RESULT})
        self.assertEqual(run.calls[1][2], self.env("DEL", netns=""))
        self.assertEqual(cni.attachments(), [])

    def test_delete_in_namespace(self) -> None:
        """A namespace still there is named, for the plugin to delete the veth."""
        link = Path(self.mktemp())
        link.symlink_to("/proc/self/ns/net")
        run = FakeRun()
        self.successResultOf(
            Deferred.fromCoroutine(self.cni(run).delete(link, CID, "eth0", NET))
        )
        self.assertEqual(run.calls[0][2], self.env("DEL", netns=str(link)))

    def test_delete_uncached(self) -> None:
        """
        No cache (a DEL repeated, or a crash before it was written): the
        network's configuration, no previous result; host-local still frees
        by container and interface.
        """
        run = FakeRun()
        self.successResultOf(
            Deferred.fromCoroutine(self.cni(run).delete(None, CID, "eth0", NET))
        )
        config = _bridge_config()
        del config["isDefaultGateway"]
        config["ipam"]["dataDir"] = str(self.state / "ipam")
        self.assertEqual(
            run.calls, [(["/p/bridge"], config, self.env("DEL", netns=""))]
        )

    def test_delete_fails(self) -> None:
        """A DEL that fails keeps the cache for another try."""
        run = FakeRun(ok(RESULT), Result(1, b'{"code":7,"msg":"busy"}', b""))
        cni = self.cni(run)
        self.successResultOf(self.add(cni))
        failure = self.failureResultOf(
            Deferred.fromCoroutine(cni.delete(None, CID, "eth0", NET))
        )
        self.assertEqual(failure.value.message, "CNI bridge DEL (network appnet): busy")
        self.assertEqual(len(cni.attachments()), 1)

    def test_loopback(self) -> None:
        """The loopback plugin on C{lo}, the namespace file's name as the ID."""
        run = FakeRun(ok({"cniVersion": "1.0.0"}))
        self.successResultOf(
            Deferred.fromCoroutine(self.cni(run).loopback(Path("/run/ns/" + CID)))
        )
        self.assertEqual(
            run.calls,
            [
                (
                    ["/p/loopback"],
                    {"cniVersion": "1.0.0", "name": "lo", "type": "loopback"},
                    {
                        **self.env("ADD", netns="/run/ns/" + CID),
                        "CNI_IFNAME": "lo",
                    },
                )
            ],
        )

    def test_one_at_a_time(self) -> None:
        """
        Plugins run one at a time, whatever the network or operation: the
        second waits for the first's answer.
        """
        first: Deferred[Result] = Deferred()
        run = FakeRun(first, ok(RESULT), ok())
        cni = self.cni(run)
        one = self.add(cni)
        two = Deferred.fromCoroutine(cni.loopback(Path("/run/ns/c2")))
        three = Deferred.fromCoroutine(cni.remove_bridge(NET))
        self.assertEqual(run.commands(), ["bridge ADD"])
        first.callback(ok(RESULT))
        self.successResultOf(one)
        self.successResultOf(two)
        self.successResultOf(three)
        self.assertEqual(run.commands(), ["bridge ADD", "loopback ADD", "ip"])

    def test_shared_lock(self) -> None:
        """The lock may be another part's (the firewall's)."""
        lock = DeferredLock()
        self.successResultOf(lock.acquire())
        run = FakeRun(ok(RESULT))
        adding = self.add(self.cni(run, lock))
        self.assertEqual(run.calls, [])
        lock.release()
        self.successResultOf(adding)

    def test_timeout(self) -> None:
        """A plugin that never answers is given up on; the lock is freed."""
        run = FakeRun(Deferred(), Deferred(), ok())
        cni = self.cni(run)
        adding = self.add(cni)
        self.clock.advance(TIMEOUT)
        self.assertNoResult(adding)  # the undoing DEL hangs too
        self.clock.advance(TIMEOUT)
        failure = self.failureResultOf(adding)
        self.assertEqual(
            failure.value.message,
            f"CNI bridge ADD (network appnet): no answer in {TIMEOUT:g} s",
        )
        self.successResultOf(Deferred.fromCoroutine(cni.remove_bridge(NET)))

    def test_remove_bridge(self) -> None:
        """
        C{ip link del} of the bridge; one that is not there is no error;
        host-local's bookkeeping for the network goes, addresses never.
        """
        ipam = self.state / "ipam" / NET.id
        ipam.mkdir(parents=True)
        for name in ("lock", "last_reserved_ip.0"):
            (ipam / name).write_text("")
        missing = Result(1, b"", b'Cannot find device "br-ffffffffffff"\n')
        run = FakeRun(ok(), missing)
        cni = self.cni(run)
        self.successResultOf(Deferred.fromCoroutine(cni.remove_bridge(NET)))
        self.assertFalse(ipam.exists())
        self.successResultOf(Deferred.fromCoroutine(cni.remove_bridge(NET)))
        self.assertEqual(
            [call[0] for call in run.calls],
            [["ip", "link", "del", "dev", "br-ffffffffffff"]] * 2,
        )
        ipam.mkdir(parents=True)
        (ipam / "198.51.100.2").write_text(CID)
        self.successResultOf(Deferred.fromCoroutine(cni.remove_bridge(NET)))
        self.assertTrue((ipam / "198.51.100.2").exists())

    def test_remove_bridge_fails(self) -> None:
        """Another refusal is an error with C{ip}'s words."""
        run = FakeRun(Result(2, b"", b"RTNETLINK answers: Operation not permitted\n"))
        failure = self.failureResultOf(
            Deferred.fromCoroutine(self.cni(run).remove_bridge(NET))
        )
        self.assertEqual(
            failure.value.message,
            "cannot remove bridge br-ffffffffffff: "
            "RTNETLINK answers: Operation not permitted",
        )

    def test_attachments_unreadable(self) -> None:
        """A cache file that does not parse is skipped."""
        results = self.state / "results"
        results.mkdir(parents=True)
        (results / "x").write_text("{")
        (results / "y").write_text('{"config": {}}')
        self.assertEqual(self.cni(FakeRun()).attachments(), [])


# --- real plugins, in a child inside a scratch namespace ---------------------

#: An ICMP echo from the namespace it runs in: exit 0 on a reply.
_PING = r"""
import os, socket, struct, sys
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
ident = os.getpid() & 0xFFFF
packet = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"dockserve"
packet = packet[:2] + struct.pack("!H", checksum(packet + b"\0")) + packet[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(2)
s.sendto(packet, (sys.argv[1], 0))
while True:
    data, peer = s.recvfrom(1024)
    icmp = data[(data[0] & 0xF) * 4:]
    echoed = struct.unpack("!H", icmp[4:6])[0]
    if peer[0] == sys.argv[1] and icmp[0] == 0 and echoed == ident:
        sys.exit(0)
"""


def _network(index: int = 0, **fields: Any) -> NetworkSpec:
    """A test network: 198.51.100.0/24 on bridge C{dstbr<index>}."""
    values: dict[str, Any] = {
        "id": f"{index:x}" * 64,
        "name": f"net{index}",
        "bridge": f"dstbr{index}",
        "subnet": IPv4Network("198.51.100.0/24"),
        "gateway": IPv4Address("198.51.100.1"),
    }
    values.update(fields)
    return NetworkSpec(**values)


async def _ping(reactor: Any, namespace: Path, address: str) -> bool:
    result = await netns.run_in(
        reactor, namespace, [sys.executable, "-c", _PING, address]
    )
    return result.code == 0


async def _link_names(reactor: Any, namespace: Path | None = None) -> list[str]:
    """The links of C{namespace} (or of this process's), by name."""
    argv = ["ip", "-br", "link"]
    if namespace is None:
        result = await commands.run(reactor, argv)
    else:
        result = await netns.run_in(reactor, namespace, argv)
    return [line.split()[0].split("@")[0] for line in result.out.decode().splitlines()]


async def _mac(reactor: Any, namespace: Path) -> str:
    """C{eth0}'s MAC address in C{namespace}, as the kernel has it."""
    shown = await netns.run_in(
        reactor, namespace, ["ip", "-br", "link", "show", "eth0"]
    )
    return shown.out.decode().split()[2]


def _ipam_files(state: Path, network: NetworkSpec) -> list[str]:
    directory = state / "ipam" / network.id
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir())


async def _namespaces(reactor: Any, work: str, count: int) -> list[Path]:
    made = []
    for index in range(count):
        path = Path(work) / "netns" / f"c{index}"
        await netns.create(reactor, path)
        made.append(path)
    return made


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def _two_containers(reactor: Any, work: str) -> dict[str, Any]:
    """Two containers on one network: addresses, pings, loopback, teardown."""
    state = Path(work) / "state"
    network = _network()
    cni = CNI(reactor, state_dir=state, plugin_dir=PLUGINS)
    one, two = await _namespaces(reactor, work, 2)
    timings: dict[str, list[float]] = {"add": [], "del": [], "loopback": []}
    endpoints = []
    for index, path in enumerate((one, two)):
        started = time.perf_counter()
        await cni.loopback(path)
        timings["loopback"].append(_ms(started))
        started = time.perf_counter()
        endpoints.append(await cni.add(path, f"c{index}", "eth0", network))
        timings["add"].append(_ms(started))
    first, second = (str(e.ip) for e in endpoints)
    lo = await netns.run_in(reactor, one, ["ip", "-br", "addr", "show", "lo"])
    route = await netns.run_in(reactor, one, ["ip", "route", "show", "default"])
    facts: dict[str, Any] = {
        "endpoints": [
            [str(e.ip), e.prefix, str(e.gateway), e.mac, e.ifname, e.container_id]
            for e in endpoints
        ],
        "macs_in_ns": [await _mac(reactor, p) for p in (one, two)],
        "ping": {
            "one_two": await _ping(reactor, one, second),
            "two_one": await _ping(reactor, two, first),
            "one_gateway": await _ping(reactor, one, "198.51.100.1"),
            "one_lo": await _ping(reactor, one, "127.0.0.1"),
            "nobody": await _ping(reactor, one, "198.51.100.250"),
        },
        "lo": lo.out.decode().split()[:3],
        "default_route": route.out.decode().strip(),
        "host_links": await _link_names(reactor),
        "ipam": _ipam_files(state, network),
        "cached": len(cni.attachments()),
    }
    for index, path in enumerate((one, two)):
        started = time.perf_counter()
        await cni.delete(path, f"c{index}", "eth0", network)
        timings["del"].append(_ms(started))
    facts["after_del"] = {
        "host_links": await _link_names(reactor),
        "ns_links": await _link_names(reactor, one),
        "ipam": _ipam_files(state, network),
        "cached": len(cni.attachments()),
    }
    for path in (one, two):
        netns.remove(path)
    await cni.remove_bridge(network)
    await cni.remove_bridge(network)
    facts["after_bridge"] = {
        "host_links": await _link_names(reactor),
        "ipam_dir": (state / "ipam" / network.id).exists(),
    }
    facts["timings"] = timings
    return facts


async def _two_networks(reactor: Any, work: str) -> dict[str, Any]:
    """
    A container on two networks (eth0, eth1), another on the second; then
    the first leaves the second (a disconnect).
    """
    state = Path(work) / "state"
    net0 = _network()
    net1 = _network(
        1,
        subnet=IPv4Network("10.213.1.0/24"),
        gateway=IPv4Address("10.213.1.1"),
        mtu=1400,
    )
    cni = CNI(reactor, state_dir=state, plugin_dir=PLUGINS)
    one, two = await _namespaces(reactor, work, 2)
    await cni.add(one, "c0", "eth0", net0)
    second = await cni.add(one, "c0", "eth1", net1)
    other = await cni.add(two, "c1", "eth0", net1)
    routes = await netns.run_in(reactor, one, ["ip", "route", "show", "default"])
    eth1 = await netns.run_in(reactor, one, ["ip", "-o", "link", "show", "eth1"])
    facts: dict[str, Any] = {
        "second": [str(second.ip), second.ifname, str(second.gateway)],
        "default_routes": routes.out.decode().strip().splitlines(),
        "eth1_mtu": eth1.out.decode().split("mtu ")[1].split()[0],
        "one_other": await _ping(reactor, one, str(other.ip)),
        "other_one": await _ping(reactor, two, str(second.ip)),
    }
    await cni.delete(one, "c0", "eth1", net1)
    facts["after_disconnect"] = {
        "links": await _link_names(reactor, one),
        "gateway": await _ping(reactor, one, "198.51.100.1"),
        "cached": sorted(a.ifname for a in cni.attachments()),
    }
    await cni.delete(one, "c0", "eth0", net0)
    await cni.delete(two, "c1", "eth0", net1)
    for path in (one, two):
        netns.remove(path)
    for network in (net0, net1):
        await cni.remove_bridge(network)
    facts["links_end"] = await _link_names(reactor)
    return facts


async def _readd(reactor: Any, work: str) -> dict[str, Any]:
    """
    ADD again after a crash: once with the cache left (the namespace
    gone), once with the address held but no cache.
    """
    state = Path(work) / "state"
    network = _network()
    cni = CNI(reactor, state_dir=state, plugin_dir=PLUGINS)
    (path,) = await _namespaces(reactor, work, 1)
    first = await cni.add(path, "c0", "eth0", network)
    netns.remove(path)
    await netns.create(reactor, path)
    second = await cni.add(path, "c0", "eth0", network)
    facts: dict[str, Any] = {
        "first": str(first.ip),
        "second": str(second.ip),
        "ipam_after_second": _ipam_files(state, network),
    }
    for cache in (state / "results").iterdir():
        cache.unlink()
    netns.remove(path)
    await netns.create(reactor, path)
    third = await cni.add(path, "c0", "eth0", network)
    facts["third"] = str(third.ip)
    facts["ipam_after_third"] = _ipam_files(state, network)
    facts["reaches_gateway"] = await _ping(reactor, path, "198.51.100.1")
    await cni.delete(path, "c0", "eth0", network)
    netns.remove(path)
    facts["ipam_end"] = _ipam_files(state, network)
    facts["veths_end"] = [n for n in await _link_names(reactor) if n.startswith("veth")]
    await cni.remove_bridge(network)
    return facts


async def _static(reactor: Any, work: str) -> dict[str, Any]:
    """Static address and MAC; a taken address; an ip-range."""
    state = Path(work) / "state"
    network = _network(ip_range=IPv4Network("198.51.100.128/25"))
    cni = CNI(reactor, state_dir=state, plugin_dir=PLUGINS)
    one, two, three = await _namespaces(reactor, work, 3)
    static = await cni.add(
        one, "c0", "eth0", network, ip="198.51.100.20", mac="02:42:c6:33:64:14"
    )
    facts: dict[str, Any] = {
        "static": [str(static.ip), static.mac],
        "in_ns": (
            await netns.run_in(reactor, one, ["ip", "-br", "addr", "show", "eth0"])
        )
        .out.decode()
        .split()[2:3],
        "mac_in_ns": await _mac(reactor, one),
    }
    try:
        await cni.add(two, "c1", "eth0", network, ip="198.51.100.20")
    except SystemError_ as e:
        facts["taken"] = e.message
    facts["two_links_after_failure"] = await _link_names(reactor, two)
    dynamic = await cni.add(two, "c1", "eth0", network)
    facts["dynamic"] = str(dynamic.ip)
    facts["two_one"] = await _ping(reactor, two, str(static.ip))
    try:
        await cni.add(three, "c2", "eth0", network, ip="203.0.113.5")
    except SystemError_ as e:
        facts["outside"] = e.message
    for index, path in enumerate((one, two, three)):
        await cni.delete(path, f"c{index}", "eth0", network)
        netns.remove(path)
    facts["ipam"] = _ipam_files(state, network)
    await cni.remove_bridge(network)
    return facts


async def _frees(reactor: Any, work: str) -> dict[str, Any]:
    """
    A network with room for one container: a second ADD fails until the
    first is DEL'd, whose namespace is gone by then.
    """
    state = Path(work) / "state"
    network = _network(
        subnet=IPv4Network("10.213.0.0/30"), gateway=IPv4Address("10.213.0.1")
    )
    cni = CNI(reactor, state_dir=state, plugin_dir=PLUGINS)
    one, two = await _namespaces(reactor, work, 2)
    first = await cni.add(one, "c0", "eth0", network)
    facts: dict[str, Any] = {"first": str(first.ip)}
    try:
        await cni.add(two, "c1", "eth0", network)
    except SystemError_ as e:
        facts["full"] = e.message
    netns.remove(one)
    facts["veths_with_ns_gone"] = await _wait_no_veth(reactor)
    started = time.perf_counter()
    await cni.delete(one, "c0", "eth0", network)
    facts["del_gone_ms"] = _ms(started)
    facts["ipam_after_del"] = _ipam_files(state, network)
    second = await cni.add(two, "c1", "eth0", network)
    facts["second"] = str(second.ip)
    # Deleting again, with no cache and no namespace, is no error.
    await cni.delete(None, "c0", "eth0", network)
    await cni.delete(None, "c1", "eth0", network)
    facts["ipam_end"] = _ipam_files(state, network)
    netns.remove(two)
    await cni.remove_bridge(network)
    return facts


async def _wait_no_veth(reactor: Any) -> list[str]:
    """The host's veths, once the kernel has torn down a gone namespace's."""
    for _ in range(50):
        veths = [n for n in await _link_names(reactor) if n.startswith("veth")]
        if not veths:
            break
        await _sleep(reactor, 0.02)
    return veths


def _sleep(reactor: Any, seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


async def _concurrent(reactor: Any, work: str, count: int) -> dict[str, Any]:
    """C{count} concurrent ADDs, then as many concurrent DELs."""
    state = Path(work) / "state"
    network = _network()
    cni = CNI(reactor, state_dir=state, plugin_dir=PLUGINS)
    paths = await _namespaces(reactor, work, count)
    started = time.perf_counter()
    endpoints = await gatherResults(
        [
            Deferred.fromCoroutine(cni.add(p, f"c{i}", "eth0", network))
            for i, p in enumerate(paths)
        ]
    )
    add_ms = _ms(started)
    links = await _link_names(reactor)
    pings = [await _ping(reactor, paths[0], str(e.ip)) for e in endpoints[1:3]]
    started = time.perf_counter()
    await gatherResults(
        [
            Deferred.fromCoroutine(cni.delete(p, f"c{i}", "eth0", network))
            for i, p in enumerate(paths)
        ]
    )
    del_ms = _ms(started)
    for path in paths:
        netns.remove(path)
    facts = {
        "ips": sorted(str(e.ip) for e in endpoints),
        "veths_during": len([n for n in links if n.startswith("veth")]),
        "pings": pings,
        "add_ms": add_ms,
        "del_ms": del_ms,
        "after": {
            "veths": [n for n in await _link_names(reactor) if n.startswith("veth")],
            "ipam": _ipam_files(state, network),
            "results": sorted(p.name for p in (state / "results").iterdir()),
            "namespaces": netns.list_namespaces(Path(work) / "netns"),
        },
    }
    await cni.remove_bridge(network)
    facts["links_end"] = await _link_names(reactor)
    return facts


async def _timing(reactor: Any, work: str, rounds: int) -> dict[str, Any]:
    """ADD and DEL times over C{rounds} sequential containers (ms)."""
    state = Path(work) / "state"
    network = _network()
    cni = CNI(reactor, state_dir=state, plugin_dir=PLUGINS)
    times: dict[str, list[float]] = {
        "netns": [], "loopback": [], "add": [], "del": [], "remove": []
    }  # fmt: skip
    for index in range(rounds):
        path = Path(work) / "netns" / f"t{index}"
        started = time.perf_counter()
        await netns.create(reactor, path)
        times["netns"].append(_ms(started))
        started = time.perf_counter()
        await cni.loopback(path)
        times["loopback"].append(_ms(started))
        started = time.perf_counter()
        await cni.add(path, f"t{index}", "eth0", network)
        times["add"].append(_ms(started))
        started = time.perf_counter()
        await cni.delete(path, f"t{index}", "eth0", network)
        times["del"].append(_ms(started))
        started = time.perf_counter()
        netns.remove(path)
        times["remove"].append(_ms(started))
    await cni.remove_bridge(network)
    return {key: sorted(values) for key, values in times.items()}


def _require_plugins() -> None:
    for plugin in ("bridge", "host-local", "loopback"):
        if not (PLUGINS / plugin).exists():
            raise SkipTest(f"{PLUGINS / plugin} is missing (make run installs it)")


class RealPluginTests(SynchronousTestCase):
    """Debian's plugins, in a scratch namespace."""

    def setUp(self) -> None:
        _require_plugins()
        self.host = ScratchHost(self)

    def run_child(self, function: str, *args: Any) -> Any:
        return self.host.run(__name__, function, str(self.host.work), *args)

    def test_two_containers(self) -> None:
        """
        Two containers on one network get distinct addresses in its
        subnet, with the default route through the gateway; they reach
        each other and the gateway; lo is up. DEL takes the veths and the
        addresses; removing the bridge (twice) leaves nothing.
        """
        facts = self.run_child("_two_containers")
        (ip1, prefix1, gw1, mac1, if1, c1), (ip2, *_rest, mac2, _if2, _c2) = facts[
            "endpoints"
        ]
        self.assertNotEqual(ip1, ip2)
        for ip in (ip1, ip2):
            self.assertIn(IPv4Address(ip), IPv4Network("198.51.100.0/24"))
            self.assertNotEqual(ip, "198.51.100.1")
        self.assertEqual((prefix1, gw1, if1, c1), (24, "198.51.100.1", "eth0", "c0"))
        self.assertEqual(facts["macs_in_ns"], [mac1, mac2])
        self.assertEqual(
            facts["ping"],
            {
                "one_two": True,
                "two_one": True,
                "one_gateway": True,
                "one_lo": True,
                "nobody": False,
            },
        )
        self.assertEqual(facts["lo"], ["lo", "UNKNOWN", "127.0.0.1/8"])
        self.assertEqual(facts["default_route"], "default via 198.51.100.1 dev eth0")
        self.assertIn("dstbr0", facts["host_links"])
        self.assertEqual(
            len([n for n in facts["host_links"] if n.startswith("veth")]), 2
        )
        self.assertEqual(
            sorted(facts["ipam"]), sorted([ip1, ip2, "last_reserved_ip.0", "lock"])
        )
        self.assertEqual(facts["cached"], 2)
        after = facts["after_del"]
        self.assertEqual([n for n in after["host_links"] if n.startswith("veth")], [])
        self.assertEqual(after["ns_links"], ["lo"])
        self.assertEqual(after["ipam"], ["last_reserved_ip.0", "lock"])
        self.assertEqual(after["cached"], 0)
        self.assertEqual(
            facts["after_bridge"], {"host_links": ["lo"], "ipam_dir": False}
        )
        log.msg(f"two containers, ms: {json.dumps(facts['timings'])}")

    def test_two_networks(self) -> None:
        """
        A second network is a second interface with its own address and
        MTU; the default route stays on the first (the plugin keeps the
        first default route); leaving a network takes only its interface.
        """
        facts = self.run_child("_two_networks")
        ip, ifname, gateway = facts["second"]
        self.assertIn(IPv4Address(ip), IPv4Network("10.213.1.0/24"))
        self.assertEqual((ifname, gateway), ("eth1", "10.213.1.1"))
        self.assertEqual(facts["default_routes"], ["default via 198.51.100.1 dev eth0"])
        self.assertEqual(facts["eth1_mtu"], "1400")
        self.assertTrue(facts["one_other"])
        self.assertTrue(facts["other_one"])
        self.assertEqual(
            facts["after_disconnect"],
            {"links": ["lo", "eth0"], "gateway": True, "cached": ["eth0", "eth0"]},
        )
        self.assertEqual(facts["links_end"], ["lo"])

    def test_readd_after_crash(self) -> None:
        """
        A container plugged again after a crash (its namespace gone, the
        cache there or not) gets one address, never two, and works.
        """
        facts = self.run_child("_readd")
        self.assertEqual(
            facts["ipam_after_second"],
            sorted([facts["second"], "last_reserved_ip.0", "lock"]),
        )
        self.assertEqual(
            facts["ipam_after_third"],
            sorted([facts["third"], "last_reserved_ip.0", "lock"]),
        )
        self.assertTrue(facts["reaches_gateway"])
        self.assertEqual(facts["ipam_end"], ["last_reserved_ip.0", "lock"])
        self.assertEqual(facts["veths_end"], [])

    def test_static(self) -> None:
        """
        C{--ip} and C{--mac-address} are honoured, even outside the
        ip-range; the same address again fails with host-local's words and
        leaves no interface behind; dynamic addresses come from the
        ip-range; an address outside the subnet is refused.
        """
        facts = self.run_child("_static")
        self.assertEqual(facts["static"], ["198.51.100.20", "02:42:c6:33:64:14"])
        self.assertEqual(facts["in_ns"], ["198.51.100.20/24"])
        self.assertEqual(facts["mac_in_ns"], "02:42:c6:33:64:14")
        self.assertEqual(
            facts["taken"],
            "CNI bridge ADD (network net0): failed to allocate for range 0: "
            "requested IP address 198.51.100.20 is not available in range set "
            "198.51.100.1-198.51.100.254",
        )
        self.assertEqual(facts["two_links_after_failure"], ["lo"])
        self.assertEqual(facts["dynamic"], "198.51.100.128")
        self.assertTrue(facts["two_one"])
        self.assertIn("203.0.113.5", facts["outside"])
        self.assertEqual(facts["ipam"], ["last_reserved_ip.0", "lock"])

    def test_delete_frees(self) -> None:
        """
        DEL frees the address (the next ADD takes it), also when the
        container's namespace is already gone (its veth went with it);
        DEL again, uncached, is no error.
        """
        facts = self.run_child("_frees")
        self.assertEqual(facts["first"], "10.213.0.2")
        self.assertIn(
            "no available IPv4 addresses on this network's address pools: net0 (",
            facts["full"],
        )
        self.assertEqual(facts["veths_with_ns_gone"], [])
        self.assertEqual(facts["ipam_after_del"], ["last_reserved_ip.0", "lock"])
        self.assertEqual(facts["second"], "10.213.0.2")
        self.assertEqual(facts["ipam_end"], ["last_reserved_ip.0", "lock"])
        log.msg(f"DEL with the namespace gone: {facts['del_gone_ms']:.1f} ms")

    def test_concurrent(self) -> None:
        """
        10 concurrent ADDs get 10 distinct addresses and veths; 10
        concurrent DELs leave no veth, address, cache or namespace.
        """
        facts = self.run_child("_concurrent", 10)
        self.assertEqual(len(set(facts["ips"])), 10)
        self.assertEqual(facts["veths_during"], 10)
        self.assertEqual(facts["pings"], [True, True])
        self.assertEqual(
            facts["after"],
            {
                "veths": [],
                "ipam": ["last_reserved_ip.0", "lock"],
                "results": [],
                "namespaces": [],
            },
        )
        self.assertEqual(facts["links_end"], ["lo"])
        log.msg(f"10 ADDs {facts['add_ms']:.0f} ms, 10 DELs {facts['del_ms']:.0f} ms")

    def test_timing(self) -> None:
        """ADD and DEL take milliseconds, not the iptables plugins' 100s."""
        times = self.run_child("_timing", 10)
        medians = {key: values[len(values) // 2] for key, values in times.items()}
        log.msg(f"median ms over 10: {json.dumps(medians)}")
        self.assertLess(medians["add"], 500)
        self.assertLess(medians["del"], 500)
