# -*- test-case-name: tests.integration.test_networking -*-
"""
The real parts of networking, put together for a daemon: the namespace
files, the CNI plugins, the firewall, the port reservations and the
embedded DNS, sharing one lock (no CNI plugin and C{nft} run overlap).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredLock, succeed

from dockserve.daemon.network import netns
from dockserve.daemon.network.attach import Attachments
from dockserve.daemon.network.cni import CNI
from dockserve.daemon.network.dns import EmbeddedDNS
from dockserve.daemon.network.firewall import Firewall
from dockserve.daemon.network.ports import PortReservations, flush_udp_conntrack

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from dockserve.daemon.network.commands import Result
    from dockserve.daemon.network.service import NetworkService


class NamespaceFiles:
    """L{netns} as L{Attachments} calls it: both ways Deferreds."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def create(self, path: Path) -> Deferred[None]:
        """A namespace at C{path} (C{unshare --net})."""
        return netns.create(self._reactor, path)

    def remove(self, path: Path) -> Deferred[None]:
        """The namespace at C{path} gone (two system calls: done at once)."""
        netns.remove(path)
        return succeed(None)

    def run(self, path: Path, argv: list[str]) -> Deferred[Result]:
        """C{argv} run inside the namespace at C{path}."""
        return netns.run_in(self._reactor, path, argv)


def attachments(
    exec_root: Path,
    networks: NetworkService,
    reactor: Any,
    *,
    publish: Callable[..., Any] | None = None,
) -> Attachments:
    """The plumbing of a daemon whose exec root is C{exec_root}."""
    lock = DeferredLock()
    state = exec_root / "network"
    firewall = Firewall(reactor, state_file=state / "sysctls.json", lock=lock)
    holder: list[Attachments] = []
    # The resolver asks the attachments, made next: bound late through holder.
    dns = EmbeddedDNS(
        reactor,
        lookup=lambda asker, name: holder[0].lookup(asker, name),  # noqa: PLW0108
        upstreams=lambda asker: holder[0].upstreams(asker),  # noqa: PLW0108
    )
    made = Attachments(
        exec_root,
        networks,
        netns=NamespaceFiles(reactor),
        cni=CNI(reactor, state_dir=exec_root / "cni", lock=lock),
        firewall=firewall,
        ports=PortReservations(),
        dns=dns,
        publish=publish,
        flush_udp=lambda bindings: flush_udp_conntrack(reactor, bindings),
        # The container service restores it at the daemon's start.
        restoring=True,
        clock=reactor,
    )
    holder.append(made)
    return made
