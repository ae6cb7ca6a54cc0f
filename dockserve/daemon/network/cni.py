# -*- test-case-name: tests.daemon.network.test_cni -*-
"""
A small libcni: the Debian C{containernetworking-plugins} (1.1.1, in
C{/usr/lib/cni}) run as the CNI spec says, for one bridge network at a
time.

Each network is a conflist of one plugin, C{bridge} (the bridge device is
the gateway, hairpin on, no masquerade: NAT, published ports and isolation
are the daemon's own nftables table), with C{host-local} addresses kept
under the exec root, so a reboot, which empties it, also frees them. A
container's C{lo} is brought up by the C{loopback} plugin: runc does not
for a namespace given by path.

Spec version 1.0.0, the newest the 1.1.1 plugins speak. A static address
(C{--ip}) and a MAC address (C{--mac-address}) travel as the C{ips} and
C{mac} capabilities in C{runtimeConfig} (host-local and bridge 1.1.1
honour both, as they do the C{IP=}/C{MAC=} CNI_ARGS, which would need
their own escaping). ADD's result is cached beside the addresses, with
the exact configuration it was made with, because DEL must be given both;
DEL works without the namespace (a restore after a crash, the container's
namespace gone with it) and then still frees the address.

Every plugin run, of any network, waits its turn on one lock: concurrent
DELs of the CNI plugins were measured to leave state behind, and only
host-local locks anything (its own directory). A turn costs about 20 ms
(ADD) or 40 ms (DEL, most of it the kernel deleting the veth).
"""

from __future__ import annotations

import json
import os
from contextlib import suppress
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from attrs import frozen

from twisted.internet import defer
from twisted.internet.defer import DeferredLock

from dockserve.daemon import store
from dockserve.daemon.network import commands, netns
from dockserve.daemon.network.commands import Result
from dockserve.daemon.network.model import Endpoint, NetworkSpec
from dockserve.errors import SystemError_

#: The spec version the configurations are written in: the newest that
#: Debian's 1.1.1 plugins support (they list 0.1.0 to 1.0.0).
CNI_VERSION = "1.0.0"

#: A plugin that has not answered in this long is given up on (its lock
#: turn is released; the process, which the runner does not let us kill,
#: is left to end on its own).
TIMEOUT = 30.0

#: host-local's words when a container and interface hold an address already.
_DUPLICATE = "duplicate allocation is not allowed"

#: The bridge plugin's words when the bridge's MAC is all zeros (the kernel
#: leaves it so when the only port of a bridge it never set goes).
_ZERO_MAC = "could not set bridge's mac"


def _bridge_mac(network: NetworkSpec) -> list[str]:
    """
    The C{ip} command that gives C{network}'s bridge a MAC of its own,
    locally administered and made of its gateway (no container has that
    address, so no container's MAC is the same).
    """
    octets = ":".join(f"{b:02x}" for b in network.gateway.packed)
    return ["ip", "link", "set", "dev", network.bridge, "address", f"02:42:{octets}"]


#: What the CNI environment carries besides the CNI_ variables.
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@frozen
class Attachment:
    """
    A cached ADD: a container's interface on a network, which a DEL must
    undo; read back at restore to find what a crash left plumbed.

    @ivar network_id: The network's ID.
    @ivar container_id: The container's ID.
    @ivar ifname: The interface's name in the container.
    @ivar endpoint: What ADD made.
    """

    network_id: str
    container_id: str
    ifname: str
    endpoint: Endpoint


@frozen
class Allocation:
    """
    An address host-local has given: to whom, on which network.

    @ivar network_id: The network's ID (host-local's directory).
    @ivar container_id: The container's ID, as the ADD gave it.
    @ivar ifname: The interface's name in the container.
    @ivar ip: The address.
    """

    network_id: str
    container_id: str
    ifname: str
    ip: IPv4Address


class CNI:
    """
    The CNI plugins, run one at a time.

    @ivar state_dir: Where host-local keeps its addresses (C{ipam/}) and
        ADD results are cached (C{results/}): under the exec root.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        state_dir: Path,
        plugin_dir: Path = Path("/usr/lib/cni"),
        lock: DeferredLock | None = None,
        run: netns.Runner = commands.run,
    ) -> None:
        """
        @param lock: The lock to take turns on; give the firewall's to
            serialise with its C{nft} runs as well.
        @param run: How commands are run (tests give a fake one).
        """
        self._reactor = reactor
        self.state_dir = state_dir
        self._plugin_dir = plugin_dir
        self._lock = lock if lock is not None else DeferredLock()
        self._run = run

    # --- the public operations ----------------------------------------------

    async def loopback(self, namespace: Path) -> None:
        """
        Bring C{lo} up in C{namespace} (the C{loopback} plugin), which a
        new namespace has down; its container ID is the file's name.

        @raise SystemError_: With the plugin's message.
        """
        config = {"cniVersion": CNI_VERSION, "name": "lo", "type": "loopback"}
        env = self._env("ADD", namespace.name, str(namespace), "lo")
        async with self._lock:
            await self._plugin(config, env, f"namespace {namespace}")

    async def add(
        self,
        namespace: Path,
        container_id: str,
        ifname: str,
        network: NetworkSpec,
        *,
        ip: str | None = None,
        mac: str | None = None,
        default_route: bool | None = None,
    ) -> Endpoint:
        """
        Plug C{namespace} into C{network} as C{ifname}: a veth pair, its
        host end on the network's bridge (made, with the gateway address,
        by the first ADD), its container end with an address from
        host-local.

        @param ip: A static address (C{--ip}), anywhere in the subnet,
            even outside C{ip_range} (as dockerd allows).
        @param mac: The container end's MAC address (C{--mac-address}).
        @param default_route: Whether the container's default route goes
            through this network's gateway. By default: unless the network
            is internal or another of the container's interfaces has it
            (the 1.1.1 bridge plugin would add a second default route).
        @return: The container end's address, prefix, gateway and MAC.
        @raise SystemError_: With the plugin's message. What a failed ADD
            made (a veth, an address) is undone first.
        """
        runtime = runtime_config(ip, mac)
        env = self._env("ADD", container_id, str(namespace), ifname)
        async with self._lock:
            # A cached ADD never deleted (a DEL that failed, a crash): host-local
            # refuses a second address to the same container and interface.
            cached = self._cache_path(network.id, container_id, ifname)
            if cached.exists():
                with suppress(SystemError_):
                    await self._delete(namespace, container_id, ifname, network)
            if default_route is None:
                default_route = not network.internal and not self._routed(
                    container_id, ifname
                )
            conflist = network_conflist(
                network,
                self.state_dir,
                static=ip is not None,
                default_route=default_route,
            )
            try:
                endpoint, result = await self._add(conflist, runtime, env, network)
            except SystemError_ as e:
                if _ZERO_MAC in e.message:
                    # A first ADD that failed left the bridge with no port
                    # and an all-zero MAC the plugin cannot set again: give
                    # it one of its own (as dockerd sets its bridges').
                    await self._command(_bridge_mac(network))
                elif _DUPLICATE not in e.message:
                    raise
                # Reserved, but not cached: the undoing DEL freed it.
                endpoint, result = await self._add(conflist, runtime, env, network)
            self._cache(endpoint, conflist, runtime, result)
        return endpoint

    async def _add(
        self,
        conflist: dict[str, Any],
        runtime: dict[str, Any],
        env: dict[str, str],
        network: NetworkSpec,
    ) -> tuple[Endpoint, dict[str, Any]]:
        """One ADD of C{conflist}; undone (DEL) if it, or its result, fails."""
        label = f"network {network.name}"
        result: dict[str, Any] | None = None
        try:
            result = await self._chain_add(conflist, runtime, env, label)
            endpoint = parse_result(
                result, network, env["CNI_CONTAINERID"], env["CNI_IFNAME"]
            )
        except SystemError_ as e:
            undo = {**env, "CNI_COMMAND": "DEL"}
            with suppress(SystemError_):
                await self._chain_del(conflist, runtime, undo, result, label)
            if _EXHAUSTED in e.message:
                # dockerd's words for a network with no address left.
                raise SystemError_(
                    "no available IPv4 addresses on this network's address "
                    f"pools: {network.name} ({network.id})"
                ) from e
            raise
        return endpoint, result

    async def delete(
        self,
        namespace: Path | None,
        container_id: str,
        ifname: str,
        network: NetworkSpec,
    ) -> None:
        """
        Undo the ADD of C{container_id}'s C{ifname} on C{network}: its
        address freed, its veth deleted. Given the cached ADD (its
        configuration and result); without one (never added, or deleted
        already) the network's configuration, which host-local still frees
        by container and interface. A namespace that is gone, or not one
        any more, is not given to the plugin: the kernel took the veth
        with it.

        @raise SystemError_: With the plugin's message; the cache is kept
            for another try.
        """
        async with self._lock:
            await self._delete(namespace, container_id, ifname, network)

    async def _delete(
        self,
        namespace: Path | None,
        container_id: str,
        ifname: str,
        network: NetworkSpec,
    ) -> None:
        cache = self._cache_path(network.id, container_id, ifname)
        cached = _read_cache(cache)
        if cached is not None:
            conflist, runtime, result = (
                cached["config"],
                cached["runtimeConfig"],
                cached["result"],
            )
        else:
            conflist = network_conflist(
                network, self.state_dir, static=False, default_route=False
            )
            runtime, result = {}, None
        path = (
            str(namespace)
            if namespace is not None and netns.is_namespace(namespace)
            else ""
        )
        env = self._env("DEL", container_id, path, ifname)
        label = f"network {network.name}"
        await self._chain_del(conflist, runtime, env, result, label)
        cache.unlink(missing_ok=True)

    async def remove_bridge(self, network: NetworkSpec) -> None:
        """
        Delete C{network}'s bridge device (CNI never does) and its empty
        address book, when the network is removed; a bridge that is not
        there (never used, or a reboot) is no error.

        @raise SystemError_: When C{ip} refuses for another reason.
        """
        argv = ["ip", "link", "del", "dev", network.bridge]
        async with self._lock:
            result = await self._command(argv)
        text = result.err.decode(errors="replace").strip()
        if result.code != 0 and "Cannot find device" not in text:
            raise SystemError_(
                f"cannot remove bridge {network.bridge}: "
                f"{text or f'ip exited {result.code}'}"
            )
        ipam = self.state_dir / "ipam" / network.id
        for entry in _files(ipam):
            if entry.name == "lock" or entry.name.startswith("last_reserved_ip"):
                entry.unlink(missing_ok=True)
        with suppress(OSError):
            ipam.rmdir()

    def attachments(self) -> list[Attachment]:
        """
        Every cached ADD not yet deleted: at restore, the ones whose
        container is no longer running are DEL'd (their addresses freed).
        """
        found = []
        for path in sorted(_files(self.state_dir / "results")):
            cached = _read_cache(path)
            if cached is None:
                continue
            with suppress(KeyError, TypeError, ValueError):
                found.append(
                    Attachment(
                        cached["networkId"],
                        cached["containerId"],
                        cached["ifName"],
                        _endpoint(cached["endpoint"]),
                    )
                )
        return found

    def allocations(self) -> list[Allocation]:
        """
        Every address host-local holds, and for whom: at restore, the ones
        of containers no longer running are freed, the ones a crash in the
        middle of an ADD left (no cached result names them) included.
        """
        found = []
        for directory in _directories(self.state_dir / "ipam"):
            for path in sorted(_files(directory)):
                try:
                    IPv4Address(path.name)
                    # host-local's record: "<container id>\r\n<ifname>".
                    text = path.read_text(encoding="utf-8", errors="replace")
                except (OSError, ValueError):
                    continue
                container_id, _, ifname = text.partition("\n")
                found.append(
                    Allocation(
                        directory.name,
                        container_id.strip(),
                        ifname.strip(),
                        IPv4Address(path.name),
                    )
                )
        return found

    # --- running plugins -----------------------------------------------------

    def _env(
        self, command: str, container_id: str, namespace: str, ifname: str
    ) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", _PATH),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": namespace,
            "CNI_IFNAME": ifname,
            "CNI_PATH": str(self._plugin_dir),
            "CNI_ARGS": "",
        }

    async def _chain_add(
        self,
        conflist: dict[str, Any],
        runtime: dict[str, Any],
        env: dict[str, str],
        label: str,
    ) -> dict[str, Any]:
        """ADD each plugin in order, each given the result so far."""
        result: dict[str, Any] | None = None
        for plugin in conflist["plugins"]:
            config = plugin_config(conflist, plugin, runtime, result)
            result = await self._plugin(config, env, label)
        if result is None:
            raise SystemError_(f"CNI ({label}): no plugin")
        return result

    async def _chain_del(
        self,
        conflist: dict[str, Any],
        runtime: dict[str, Any],
        env: dict[str, str],
        result: dict[str, Any] | None,
        label: str,
    ) -> None:
        """DEL each plugin in reverse order, each given the ADD's result."""
        for plugin in reversed(conflist["plugins"]):
            config = plugin_config(conflist, plugin, runtime, result)
            await self._plugin(config, env, label)

    async def _plugin(
        self, config: dict[str, Any], env: dict[str, str], label: str
    ) -> dict[str, Any]:
        """
        Run the plugin C{config} names with C{env}, the configuration on
        stdin: its result (ADD) or C{{}} (DEL).

        @param label: What the plugin works on, for messages (C{network
            appnet}).
        """
        binary = self._plugin_dir / config["type"]
        stdin = json.dumps(config).encode()
        result = await self._command([str(binary)], stdin, env)
        if result.code != 0:
            raise SystemError_(plugin_error(config["type"], env, label, result))
        if env["CNI_COMMAND"] != "ADD":
            return {}
        try:
            value = json.loads(result.out)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise SystemError_(
                f"CNI {config['type']} ADD ({label}): its result is not JSON"
            )
        return value

    async def _command(
        self,
        argv: list[str],
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
    ) -> Result:
        """C{argv} run with a time limit; a tool that cannot start is a L{Result}."""
        try:
            running = self._run(self._reactor, argv, stdin, env)
            running.addTimeout(TIMEOUT, self._reactor)
            return await running
        except defer.TimeoutError:
            return Result(-1, b"", f"no answer in {TIMEOUT:g} s".encode())
        except OSError as e:
            return Result(127, b"", f"{argv[0]}: {e.strerror}".encode())

    # --- the result cache ----------------------------------------------------

    def _routed(self, container_id: str, ifname: str) -> bool:
        """Whether another of the container's interfaces has its default route."""
        for path in _files(self.state_dir / "results"):
            if f"-{container_id}-" not in path.name:
                continue
            cached = _read_cache(path)
            if cached is None or cached.get("containerId") != container_id:
                continue
            if cached.get("ifName") == ifname:
                continue
            plugins = cached["config"].get("plugins") or []
            if any(p.get("isDefaultGateway") for p in plugins):
                return True
        return False

    def _cache_path(self, network_id: str, container_id: str, ifname: str) -> Path:
        return self.state_dir / "results" / f"{network_id}-{container_id}-{ifname}"

    def _cache(
        self,
        endpoint: Endpoint,
        conflist: dict[str, Any],
        runtime: dict[str, Any],
        result: dict[str, Any],
    ) -> None:
        """
        Keep what DEL needs (the configuration as ADD ran it, its result)
        and the endpoint, for restore. The exec root does not outlive a
        reboot, nor need to: no fsync.
        """
        value = {
            "kind": "dockserve-cni-cache-v1",
            "networkId": endpoint.network_id,
            "containerId": endpoint.container_id,
            "ifName": endpoint.ifname,
            "config": conflist,
            "runtimeConfig": runtime,
            "result": result,
            "endpoint": {
                "ip": str(endpoint.ip),
                "prefix": endpoint.prefix,
                "gateway": str(endpoint.gateway),
                "mac": endpoint.mac,
                "network_id": endpoint.network_id,
                "container_id": endpoint.container_id,
                "ifname": endpoint.ifname,
            },
        }
        path = self._cache_path(
            endpoint.network_id, endpoint.container_id, endpoint.ifname
        )
        store.atomic_write(path, json.dumps(value).encode(), durable=False)


# --- configuration, results, errors: plain functions -------------------------


def network_conflist(
    network: NetworkSpec, state_dir: Path, *, static: bool, default_route: bool
) -> dict[str, Any]:
    """
    The conflist of C{network}: named by its ID (host-local's directory of
    addresses is named after it; names can be reused, IDs cannot).

    @param static: A static address is asked for: the range is then the
        whole subnet, which dockerd also allows outside C{--ip-range}.
    """
    bridge: dict[str, Any] = {
        "type": "bridge",
        "bridge": network.bridge,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "capabilities": {"ips": True, "mac": True},
        "ipam": {
            "type": "host-local",
            "ranges": [address_ranges(network, static=static)],
            "dataDir": str(state_dir / "ipam"),
        },
    }
    if default_route:
        bridge["isDefaultGateway"] = True
    if network.mtu:
        bridge["mtu"] = network.mtu
    return {"cniVersion": CNI_VERSION, "name": network.id, "plugins": [bridge]}


def address_ranges(network: NetworkSpec, *, static: bool) -> list[dict[str, str]]:
    """
    host-local's range set for C{network}: the subnet and gateway, and the
    part of C{ip_range} that lies inside the subnet's usable addresses
    (dockerd hands out an ip-range's first address too, unless it is the
    subnet's own), split around the reserved (auxiliary) addresses so that
    none is handed out: host-local has no list of exclusions, but takes
    several ranges of one subnet.
    """
    found = {"subnet": str(network.subnet), "gateway": str(network.gateway)}
    if static:
        return [found]
    first = network.subnet.network_address + 1
    last = network.subnet.broadcast_address - 1
    if network.ip_range is not None:
        first = max(network.ip_range.network_address, first)
        last = min(network.ip_range.broadcast_address, last)
    elif not network.reserved:
        return [found]
    pieces = []
    start = first
    for held in sorted(a for a in network.reserved if first <= a <= last):
        if start < held:
            pieces.append((start, held - 1))
        start = held + 1
    if start <= last:
        pieces.append((start, last))
    if not pieces:
        # Every address reserved: the gateway alone, which host-local never
        # hands out, so that it says the range is full.
        pieces = [(network.gateway, network.gateway)]
    return [
        {**found, "rangeStart": str(low), "rangeEnd": str(high)} for low, high in pieces
    ]


def runtime_config(ip: str | None, mac: str | None) -> dict[str, Any]:
    """The C{runtimeConfig} of the C{ips} and C{mac} capabilities asked for."""
    runtime: dict[str, Any] = {}
    if ip is not None:
        runtime["ips"] = [ip]
    if mac is not None:
        runtime["mac"] = mac
    return runtime


def plugin_config(
    conflist: dict[str, Any],
    plugin: dict[str, Any],
    runtime: dict[str, Any],
    prev_result: dict[str, Any] | None,
) -> dict[str, Any]:
    """
    What one plugin of C{conflist} reads on stdin, as the spec and libcni
    make it: its own keys, the list's C{name} and C{cniVersion}, the
    C{runtimeConfig} of the capabilities it declares (no other), and the
    previous result.
    """
    config = {key: value for key, value in plugin.items() if key != "runtimeConfig"}
    config["cniVersion"] = conflist["cniVersion"]
    config["name"] = conflist["name"]
    declared = plugin.get("capabilities", {})
    wanted = {key: value for key, value in runtime.items() if declared.get(key)}
    if wanted:
        config["runtimeConfig"] = wanted
    if prev_result is not None:
        config["prevResult"] = prev_result
    return config


def parse_result(
    result: dict[str, Any], network: NetworkSpec, container_id: str, ifname: str
) -> Endpoint:
    """
    The L{Endpoint} in a 1.0.0 (or 0.3/0.4) result: the IPv4 address
    assigned to the container's interface C{ifname} (the one with a
    C{sandbox}), its gateway, and that interface's MAC.

    @raise SystemError_: When the result has no such address.
    """
    interfaces = result.get("interfaces") or []
    for entry in result.get("ips") or []:
        index = entry.get("interface")
        if not isinstance(index, int) or not 0 <= index < len(interfaces):
            continue
        interface = interfaces[index]
        if interface.get("name") != ifname or not interface.get("sandbox"):
            continue
        try:
            address = IPv4Interface(entry["address"])
            gateway = IPv4Address(entry.get("gateway") or network.gateway)
        except (KeyError, ValueError):
            continue
        return Endpoint(
            network_id=network.id,
            container_id=container_id,
            ifname=ifname,
            ip=address.ip,
            prefix=address.network.prefixlen,
            gateway=gateway,
            mac=str(interface.get("mac", "")).lower(),
        )
    raise SystemError_(f"CNI ADD (network {network.name}): no IPv4 address on {ifname}")


#: What host-local says when its range set has no address left.
_EXHAUSTED = "no IP addresses available in range set"


def plugin_error(plugin: str, env: dict[str, str], label: str, result: Result) -> str:
    """
    The message of a plugin's failure: its CNI error's C{msg} and
    C{details} (the JSON it writes on stdout), else what it wrote on
    stderr.
    """
    what = f"CNI {plugin} {env['CNI_COMMAND']} ({label})"
    try:
        error = json.loads(result.out)
    except ValueError:
        error = None
    if isinstance(error, dict) and error.get("msg"):
        text = str(error["msg"])
        if error.get("details"):
            text += f": {error['details']}"
        return f"{what}: {text}"
    text = result.err.decode(errors="replace").strip()
    return f"{what}: {text or f'exited {result.code}'}"


def _endpoint(value: dict[str, Any]) -> Endpoint:
    return Endpoint(
        network_id=value["network_id"],
        container_id=value["container_id"],
        ifname=value["ifname"],
        ip=IPv4Address(value["ip"]),
        prefix=int(value["prefix"]),
        gateway=IPv4Address(value["gateway"]),
        mac=value["mac"],
    )


def _read_cache(path: Path) -> dict[str, Any] | None:
    """A cached ADD, or C{None} if missing or unreadable (then DEL without it)."""
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("config"), dict):
        return None
    return value


def _directories(directory: Path) -> list[Path]:
    try:
        return sorted(entry for entry in directory.iterdir() if entry.is_dir())
    except OSError:
        return []


def _files(directory: Path) -> list[Path]:
    try:
        return [entry for entry in directory.iterdir() if entry.is_file()]
    except OSError:
        return []
