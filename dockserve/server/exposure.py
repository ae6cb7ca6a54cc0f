# -*- test-case-name: tests.server.test_exposure -*-
"""
TCP listeners that let unverified clients in: refused on the network, warned about.

Whoever can talk to the API is root on this machine.  A TCP listener whose
clients are not verified (no C{--tlsverify}, or an C{ssl:} description,
which cannot name a CA) is therefore refused on any address but loopback,
unless C{--insecure-tcp} says the risk is taken; then dockerd's warning is
logged at start and every hour after, so it is not lost at the top of a
long log.  On loopback dockerd's warnings are logged once, at start.
"""

from collections.abc import Sequence

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from dockserve.server.hosts import HostDescription

#: The flag that accepts an unverified listener on the network.
INSECURE_FLAG = "--insecure-tcp"

#: dockerd's warning for a TCP listener without client verification.
NETWORK_WARNING = (
    "Binding to IP address without --tlsverify is insecure and gives root access"
    " on this machine to everyone who has access to your network."
)

#: dockerd's second warning: loopback is reachable from web pages too.
BROWSER_WARNING = (
    "Binding to an IP address, even on localhost, can also give access to scripts"
    " run in a browser. Be safe out there!"
)

#: Seconds between two repeats of the warning for a network listener.
REPEAT = 3600.0

_log = Logger()


class RefusedListener(ValueError):
    """A network listener without client verification, not allowed."""


def unverified(host: HostDescription, *, verify: bool) -> bool:
    """
    Whether C{host} is a TCP listener that lets clients in unverified.

    @param verify: C{--tlsverify} is in force (client certificates are
        required on C{tcp://} and strports C{tcp:} listeners).
    """
    if not host.is_tcp:
        return False
    return host.encrypted or not verify


def check(hosts: Sequence[HostDescription], *, verify: bool, insecure: bool) -> None:
    """
    Refuse the first unverified listener on a non-loopback address, unless
    C{insecure} (C{--insecure-tcp}).

    @raise RefusedListener: Saying why, and naming the flags that fix it.
    """
    if insecure:
        return
    for host in hosts:
        if unverified(host, verify=verify) and not host.is_loopback:
            raise RefusedListener(_refusal(host))


def _refusal(host: HostDescription) -> str:
    if host.encrypted:
        why = "ssl: descriptions do not verify client certificates"
        fix = "use -H tcp://HOST:PORT with --tlsverify"
    else:
        why = "clients are not verified (no --tlsverify)"
        fix = "use --tlsverify with client certificates"
    return (
        f"{host.text} is reachable from the network and {why}: anyone who can"
        f" connect is root on this machine; {fix}, listen on 127.0.0.1 or a"
        f" unix socket, or give {INSECURE_FLAG} to take that risk"
    )


class ExposureWarning(Service):
    """
    Log dockerd's warnings for unverified TCP listeners: both at start for
    all of them, and the network one every L{REPEAT} seconds for those on
    the network.

    @param network: The unverified listeners on non-loopback addresses.
    @param local: The unverified listeners on loopback.
    """

    def __init__(
        self,
        network: Sequence[str],
        local: Sequence[str],
        clock: IReactorTime,
        interval: float = REPEAT,
    ) -> None:
        self.network = tuple(network)
        self.local = tuple(local)
        self._interval = interval
        self._repeat = LoopingCall(self._warn_network)
        self._repeat.clock = clock

    def startService(self) -> None:
        """Warn about every listener now; repeat for the network ones."""
        super().startService()  # type: ignore[no-untyped-call]
        for host in (*self.network, *self.local):
            _log.warn("{text} host={host}", text=NETWORK_WARNING, host=host)
            _log.warn("{text} host={host}", text=BROWSER_WARNING, host=host)
        if self.network:
            self._repeat.start(self._interval, now=False)

    def stopService(self) -> None:
        """Stop repeating."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._repeat.running:
            self._repeat.stop()

    def _warn_network(self) -> None:
        for host in self.network:
            _log.warn("{text} host={host}", text=NETWORK_WARNING, host=host)


def warning_for(
    hosts: Sequence[HostDescription], *, verify: bool, clock: IReactorTime
) -> ExposureWarning | None:
    """The warning service for C{hosts}, or C{None} when all are verified."""
    open_hosts = [h for h in hosts if unverified(h, verify=verify)]
    if not open_hosts:
        return None
    return ExposureWarning(
        [h.text for h in open_hosts if not h.is_loopback],
        [h.text for h in open_hosts if h.is_loopback],
        clock,
    )
