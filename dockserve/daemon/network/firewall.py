# -*- test-case-name: tests.daemon.network.test_firewall -*-
"""
The daemon's one nftables table, C{table ip dockserve}: NAT for published
ports, masquerade, hairpin, and isolation between bridge networks.

The table is rendered whole from the daemon's state (the bridge networks
and the port bindings) and replaced in one C{nft -f -} transaction, so
there are no per-container chains to leak, a restart renders the very
same table, and a crash leaves nothing a re-render does not fix. The
shapes are dockerd's (its nftables firewaller, C{--userland-proxy=false},
since nothing here proxies): DNAT on C{fib daddr type local} from
prerouting and output, masquerade of each subnet leaving its bridge, the
hairpin masquerade of a container reaching a port published by its own
network, and of the host reaching a port through 127.0.0.1.

Rules are written one per port binding, never as map elements: C{nft
list} prints a map's elements in the kernel's hash order, rules in ours,
so the listing stays byte-identical across daemon restarts. NAT chains
see only a connection's first packet, so their length costs nothing on
the data path; the forward chain accepts established traffic first.

Another firewall on the host can still drop what this table accepts: a
packet must pass every base chain on a hook, so a C{FORWARD} chain with
policy C{drop} (ufw, a real dockerd, an C{iptables -P FORWARD DROP})
stops forwarded container traffic whatever is here. The daemon does not
edit other tables; L{Firewall.apply} looks for such chains when the set of
bridges changes and logs what to allow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger

from dockserve.daemon import store
from dockserve.daemon.network import commands
from dockserve.daemon.network.commands import Result
from dockserve.errors import SystemError_

if TYPE_CHECKING:
    from dockserve.daemon.network.model import NetworkSpec, PortBinding

_log = Logger()

#: The table's family and name: C{ip} (IPv4) only for now.
TABLE = "ip dockserve"

#: The protocols a binding may have.
PROTOCOLS = ("tcp", "udp")

#: Bridge names the table can name safely: a Linux interface name (at most
#: 15 bytes) of characters that nft takes in a chain name and in a quoted
#: string alike.
_BRIDGE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")

#: A binding on this host address is on all of them.
_ANY = IPv4Address("0.0.0.0")

#: How a command is run: C{commands.run}'s signature.
Runner = Callable[
    [Any, list[str], bytes | None, Mapping[str, str] | None], Deferred[Result]
]


def valid_bridge_name(name: str) -> bool:
    """
    Whether the table can name bridge C{name}: the network service should
    refuse any other at network create (C{com.docker.network.bridge.name}).
    """
    return _BRIDGE_NAME.fullmatch(name) is not None and name not in {".", "..", "lo"}


# --- rendering ---------------------------------------------------------------


def render(networks: Sequence[NetworkSpec], bindings: Sequence[PortBinding]) -> str:
    """
    The whole table as an nft script that replaces the one in place, or
    makes it when there is none (C{table} first declares it, so that the
    C{delete} in the same transaction always has something to delete).

    The same networks and bindings in any order give the same text.

    @param networks: The bridge networks (every one, internal or not).
    @param bindings: The published ports of running containers; those to a
        container address on an internal network are left out, as dockerd
        does not publish ports there.
    @raise ValueError: For a bridge name L{valid_bridge_name} refuses, a
        protocol other than C{tcp}/C{udp}, a port out of range or an
        address that is not IPv4: the text would not be a safe script.
    """
    nets = sorted(networks, key=lambda n: n.bridge)
    for net in nets:
        _check_bridge(net.bridge)
    internal = [n.subnet for n in nets if n.internal]
    published = sorted({d for d in map(_dnat_of, bindings) if not _on(d, internal)})
    lines = [f"table {TABLE}", f"delete table {TABLE}", f"table {TABLE} {{"]
    chains = [
        _nat_chains(published),
        _postrouting(nets),
        _guard(nets),
        _forward(nets),
        *(_into(net) for net in nets),
    ]
    for chain in chains:
        lines.extend(chain)
    lines.append("}")
    return "\n".join(lines) + "\n"


def removal() -> str:
    """An nft script that deletes the table, and does nothing without it."""
    return f"table {TABLE}\ndelete table {TABLE}\n"


def _check_bridge(name: str) -> None:
    if not valid_bridge_name(name):
        raise ValueError(f"bridge name {name!r} cannot be used in the firewall")


class _Dnat(NamedTuple):
    """
    A binding as the table needs it, ordered as the rules are: specific
    host addresses first (by address), then the wildcard ones.
    """

    wildcard: bool
    host: IPv4Address
    proto: str
    host_port: int
    container: IPv4Address
    container_port: int

    def rule(self) -> str:
        match = f"{self.proto} dport {self.host_port}"
        if not self.wildcard:
            match = f"ip daddr {self.host} {match}"
        return f"\t\t{match} dnat to {self.container}:{self.container_port}"


def _dnat_of(binding: PortBinding) -> _Dnat:
    """C{binding} with its addresses parsed; refused when unsafe."""
    if binding.proto not in PROTOCOLS:
        raise ValueError(f"unknown protocol {binding.proto!r}")
    for port in (binding.host_port, binding.container_port):
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range")
    host = IPv4Address(binding.host_ip or "0.0.0.0")
    return _Dnat(
        wildcard=host == _ANY,
        host=host,
        proto=binding.proto,
        host_port=binding.host_port,
        container=IPv4Address(binding.container_ip),
        container_port=binding.container_port,
    )


def _on(dnat: _Dnat, subnets: Iterable[IPv4Network]) -> bool:
    return any(dnat.container in subnet for subnet in subnets)


def _nat_chains(published: Sequence[_Dnat]) -> list[str]:
    """
    DNAT for every published port. Packets from elsewhere (prerouting)
    jump to C{published}; the host's own (output) to C{published-local}
    first, which alone has the bindings on loopback addresses: a packet
    that arrives on an interface for 127.0.0.1 is never translated (it
    would reach the container, dockerd's C{DROP REMOTE LOOPBACK}).
    """
    loopback = [d.rule() for d in published if d.host.is_loopback]
    others = [d.rule() for d in published if not d.host.is_loopback]
    return [
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        "\t\tfib daddr type local jump published",
        "\t}",
        "\tchain output {",
        "\t\ttype nat hook output priority -100; policy accept;",
        "\t\tfib daddr type local jump published-local",
        "\t}",
        "\tchain published-local {",
        *loopback,
        "\t\tjump published",
        "\t}",
        "\tchain published {",
        *others,
        "\t}",
    ]


def _postrouting(nets: Sequence[NetworkSpec]) -> list[str]:
    """
    Source NAT, per network that is not internal: the host reaching a
    port through 127.0.0.1 (the container cannot answer 127.0.0.1; needs
    C{route_localnet=1} on the bridge), a container reaching a port its
    own network publishes (the hairpin: the answer must come back through
    the host to be un-DNATed), and, with masquerade on, everything that
    leaves the bridge. The first two are the host's own DNAT undone, so
    they stay when masquerade is off.
    """
    rules = []
    for net in nets:
        if net.internal:
            continue
        br, subnet = net.bridge, net.subnet
        rules.append(
            f'\t\toifname "{br}" ip saddr 127.0.0.0/8 ct status dnat masquerade'
        )
        rules.append(
            f"\t\tct status dnat ip saddr {subnet} ip daddr {subnet} masquerade"
        )
        if net.masquerade:
            rules.append(f'\t\tip saddr {subnet} oifname != "{br}" masquerade')
    return [
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        *rules,
        "\t}",
    ]


def _guard(nets: Sequence[NetworkSpec]) -> list[str]:
    """
    Drop what a container sends to 127.0.0.0/8 through its bridge: with
    C{route_localnet=1} the host would take it as its own loopback
    traffic, reaching services bound to 127.0.0.1. Replies to the host's
    127.0.0.1 connections are still addressed to the gateway here (raw
    priority, before the masquerade is undone).
    """
    drops = [f'\t\tiifname "{n.bridge}" drop' for n in nets]
    return [
        "\tchain guard {",
        "\t\ttype filter hook prerouting priority raw; policy accept;",
        *(["\t\tip daddr 127.0.0.0/8 jump guard-loopback"] if drops else []),
        "\t}",
        "\tchain guard-loopback {",
        *drops,
        "\t}",
    ]


def _forward(nets: Sequence[NetworkSpec]) -> list[str]:
    """
    Forwarded traffic: established first (one rule for most packets),
    then what enters each of our bridges (its own chain decides), then
    what leaves an internal bridge for anywhere else (dropped). The rest
    is not ours to judge: the policy accepts it, and other tables still
    have their say.
    """
    return [
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        "\t\tct state established,related accept",
        *(f'\t\toifname "{n.bridge}" jump into-{n.bridge}' for n in nets),
        *(f'\t\tiifname "{n.bridge}" drop' for n in nets if n.internal),
        "\t}",
    ]


def _into(net: NetworkSpec) -> list[str]:
    """
    A new connection into C{net}'s bridge. From the bridge itself (seen
    here with br_netfilter): C{icc}. Published ports (DNATed by this
    table) from anywhere, unless the network is internal. Anything else
    (another bridge: dockerd's isolation; the uplink to a container
    address: dockerd 28's direct-access drop) is dropped.
    """
    icc = "accept" if net.icc else "drop"
    return [
        f"\tchain into-{net.bridge} {{",
        f'\t\tiifname "{net.bridge}" {icc}',
        *([] if net.internal else ["\t\tct status dnat accept"]),
        "\t\tdrop",
        "\t}",
    ]


# --- applying ----------------------------------------------------------------


def nft_message(result: Result) -> str:
    """
    What nft said went wrong: its C{Error:} lines (each with the place in
    the script), or all it wrote, or its exit code.
    """
    text = result.err.decode("utf-8", "replace").strip()
    errors = [line.strip() for line in text.splitlines() if "Error:" in line]
    if errors:
        return "; ".join(errors)
    return text or f"nft exited with code {result.code}"


def forward_blockers(listing: bytes) -> list[str]:
    """
    From C{nft -j list chains}: the base chains of other tables on the
    IPv4 forward hook whose policy is drop, as C{"<family> <table>
    <chain>"}.
    """
    try:
        items = json.loads(listing)["nftables"]
    except (ValueError, KeyError, TypeError):
        return []
    found = []
    for item in items:
        chain = item.get("chain") if isinstance(item, dict) else None
        if not isinstance(chain, dict):
            continue
        family, table = chain.get("family"), chain.get("table")
        if (
            family in {"ip", "inet"}
            and f"{family} {table}" != TABLE
            and chain.get("hook") == "forward"
            and chain.get("policy") == "drop"
        ):
            found.append(f"{family} {table} {chain.get('name')}")
    return sorted(found)


class Firewall:
    """
    The table on this host, and the sysctls it needs.

    Host state it changes, all undone by L{remove} (what it found is kept
    in C{state_file}, so a restarted daemon still knows):
      - C{table ip dockserve};
      - C{net.ipv4.ip_forward=1} (L{enable_forwarding});
      - C{net.ipv4.conf.<bridge>.route_localnet=1} per bridge
        (L{enable_route_localnet});
      - C{net.bridge.bridge-nf-call-iptables=1} when a network has
        C{icc} off (L{enable_bridge_netfilter}).

    @ivar lock: Every C{nft} run takes its turn here; give it to the CNI
        runner too, so plugin runs and table replacements never overlap.
    @ivar applied: The script last applied, or C{None}.
    @ivar blockers: The other firewalls' forward chains last found to
        drop by policy (see L{forward_blockers}).
    """

    def __init__(
        self,
        reactor: Any,
        *,
        nft: Sequence[str] = ("nft",),
        proc_sys: Path = Path("/proc/sys"),
        state_file: Path | None = None,
        lock: DeferredLock | None = None,
        run: Runner = commands.run,
    ) -> None:
        """
        @param nft: The command that is nft (tests run it inside a network
            namespace of their own: C{ip netns exec <ns> nft}).
        @param proc_sys: Where the sysctls are written (tests give a
            directory of their own).
        @param state_file: Where the sysctls' values before the daemon
            changed them are kept (in the exec root: a reboot resets both);
            C{None} keeps them in memory only.
        """
        self._reactor = reactor
        self._nft = list(nft)
        self._proc_sys = proc_sys
        self._state_file = state_file
        self.lock = lock if lock is not None else DeferredLock()
        self._run = run
        self.applied: str | None = None
        self.blockers: list[str] = []
        self._bridges: tuple[str, ...] | None = None
        self._saved: dict[str, str] = self._read_saved()

    # --- the table -------------------------------------------------------------

    def apply(
        self, networks: Sequence[NetworkSpec], bindings: Sequence[PortBinding]
    ) -> Deferred[None]:
        """
        Make the table say C{networks} and C{bindings}; nothing is run when
        the text is what was last applied. Calls take turns on L{lock}, so
        the last call's state is what stays.

        @raise SystemError_: With nft's message; the table is then as it
            was (the transaction is all or nothing), and the next call
            tries again.
        """
        return Deferred.fromCoroutine(self._apply(networks, bindings))

    async def _apply(
        self, networks: Sequence[NetworkSpec], bindings: Sequence[PortBinding]
    ) -> None:
        try:
            script = render(networks, bindings)
        except ValueError as e:
            raise SystemError_(f"firewall: {e}") from None
        if any(not n.icc for n in networks):
            self._enable_bridge_netfilter_logged()
        bridges = tuple(sorted(n.bridge for n in networks))
        async with self.lock:
            if script != self.applied:
                await self._nft_script(script)
                self.applied = script
            if bridges != self._bridges and bridges:
                await self._look_for_blockers(bridges)
            self._bridges = bridges

    def remove(self) -> Deferred[None]:
        """
        At a clean stop: delete the table (there may be none) and put back
        the sysctls this daemon changed.

        @raise SystemError_: With nft's message.
        """
        return Deferred.fromCoroutine(self._remove())

    async def _remove(self) -> None:
        async with self.lock:
            await self._nft_script(removal())
            self.applied = None
            self._bridges = None
        self._restore_sysctls()

    async def _nft_script(self, script: str) -> None:
        result = await self._nft_run(["-f", "-"], script.encode())
        if result.code != 0:
            raise SystemError_(f"failed to program the firewall: {nft_message(result)}")

    async def _nft_run(self, args: list[str], stdin: bytes | None = None) -> Result:
        argv = [*self._nft, *args]
        try:
            return await self._run(self._reactor, argv, stdin, None)
        except OSError as e:
            return Result(127, b"", f"Error: {argv[0]}: {e.strerror}".encode())

    async def _look_for_blockers(self, bridges: Sequence[str]) -> None:
        """Log other tables' forward chains that would drop our traffic."""
        result = await self._nft_run(["-j", "list", "chains"])
        found = forward_blockers(result.out) if result.code == 0 else []
        if found and found != self.blockers:
            _log.warn(
                "Forwarded traffic of the bridges {bridges} is dropped by the "
                "policy of {chains}, whatever table {table} accepts: allow it "
                "there, e.g. iptables -I FORWARD -i <bridge> -j ACCEPT and "
                "iptables -I FORWARD -o <bridge> -m conntrack --ctstate "
                "RELATED,ESTABLISHED -j ACCEPT for each bridge",
                bridges=" ".join(bridges),
                chains=", ".join(found),
                table=TABLE,
            )
        self.blockers = found

    # --- sysctls ---------------------------------------------------------------

    def enable_forwarding(self) -> None:
        """
        C{net.ipv4.ip_forward=1}: call it once at start, before any CNI
        run (the bridge plugin turns it on too, and the value found first
        is the one L{remove} puts back).

        @raise SystemError_: When it cannot be written.
        """
        self._set("net/ipv4/ip_forward", "1")

    def enable_route_localnet(self, bridge: str) -> None:
        """
        C{net.ipv4.conf.<bridge>.route_localnet=1}, so the host's
        connections from 127.0.0.1 can be DNATed out of the bridge: call
        it when the bridge exists (after the network's first CNI ADD).

        @raise SystemError_: When it cannot be written (no such bridge).
        """
        if not valid_bridge_name(bridge):
            raise SystemError_(f"invalid bridge name {bridge!r}")
        self._set(f"net/ipv4/conf/{bridge}/route_localnet", "1")

    def enable_bridge_netfilter(self) -> None:
        """
        C{net.bridge.bridge-nf-call-iptables=1}: traffic between two
        containers on one bridge then passes the forward chain, where
        C{icc=false} drops it. Done by L{apply} when a network needs it;
        the network service may call it at C{network create} to refuse
        C{enable_icc=false} where it cannot work.

        @raise SystemError_: Without br_netfilter in the kernel.
        """
        self._set("net/bridge/bridge-nf-call-iptables", "1")

    def _enable_bridge_netfilter_logged(self) -> None:
        try:
            self.enable_bridge_netfilter()
        except SystemError_ as e:
            _log.error("enable_icc=false is not enforced: {message}", message=e.message)

    def _set(self, key: str, value: str) -> None:
        path = self._proc_sys / key
        name = key.replace("/", ".")
        try:
            current = path.read_text().strip()
            if current != value:
                if key not in self._saved:
                    self._saved[key] = current
                    self._write_saved()
                path.write_text(value + "\n")
        except OSError as e:
            raise SystemError_(f"cannot set {name}={value}: {e.strerror}") from None

    def _restore_sysctls(self) -> None:
        for key, value in sorted(self._saved.items()):
            try:
                (self._proc_sys / key).write_text(value + "\n")
            except OSError as e:
                # A bridge that is gone took its setting with it.
                _log.debug("Not restored: {key}: {error}", key=key, error=e.strerror)
        self._saved = {}
        if self._state_file is not None:
            self._state_file.unlink(missing_ok=True)

    def _read_saved(self) -> dict[str, str]:
        if self._state_file is None:
            return {}
        try:
            saved = store.read_json(self._state_file)
        except (OSError, ValueError):
            return {}
        if not isinstance(saved, dict):
            return {}
        return {str(k): str(v) for k, v in saved.items()}

    def _write_saved(self) -> None:
        if self._state_file is not None:
            store.write_json(self._state_file, self._saved)
