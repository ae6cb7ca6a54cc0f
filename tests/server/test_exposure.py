"""
Tests for L{dockserve.server.exposure}: which TCP listeners let unverified
clients in, the refusal of those on the network without C{--insecure-tcp},
and dockerd's warning at start and every hour.
"""

from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from dockserve.server import hosts
from dockserve.server.exposure import (
    NETWORK_WARNING,
    REPEAT,
    ExposureWarning,
    RefusedListener,
    check,
    unverified,
    warning_for,
)


def parse(text: str) -> hosts.HostDescription:
    return hosts.parse(text, default_unix="/run/dockserve.sock")


#: Listeners every address of the machine, or another machine's, reaches.
NETWORK = ["tcp://0.0.0.0:2375", "tcp://[::]:2375", "tcp://192.0.2.1:2375",
           "tcp://example.test:2375", "tcp:2375", "tcp6:2375",
           "tcp:2375:interface=0.0.0.0"]  # fmt: skip

#: Listeners only this machine reaches.
LOOPBACK = ["tcp://127.0.0.1:2375", "tcp://127.1.2.3:2375", "tcp://[::1]:2375",
            "tcp://localhost:2375", "tcp://", "tcp:2375:interface=127.0.0.1",
            "tcp6:2375:interface=\\:\\:1"]  # fmt: skip


class CheckTests(SynchronousTestCase):
    def test_network_without_verify_refused(self) -> None:
        """
        Without --tlsverify a listener on any non-loopback address (the
        wildcards too) is refused, naming --tlsverify and --insecure-tcp.
        """
        for text in NETWORK:
            with self.assertRaises(RefusedListener, msg=text) as caught:
                check([parse(text)], verify=False, insecure=False)
            message = str(caught.exception)
            self.assertIn(parse(text).text, message)
            self.assertIn("--tlsverify", message)
            self.assertIn("--insecure-tcp", message)
            self.assertIn("root", message)

    def test_loopback_allowed(self) -> None:
        """Loopback (127/8, ::1, localhost) needs no TLS."""
        check([parse(t) for t in LOOPBACK], verify=False, insecure=False)

    def test_verified_allowed(self) -> None:
        """Under --tlsverify a network listener is allowed."""
        check([parse(t) for t in NETWORK], verify=True, insecure=False)

    def test_insecure_allows(self) -> None:
        """--insecure-tcp takes the risk: nothing is refused."""
        check([parse(t) for t in NETWORK], verify=False, insecure=True)

    def test_ssl_strports_never_verified(self) -> None:
        """
        An ssl: description cannot name a CA, so its clients are never
        verified: on the network it is refused even under --tlsverify.
        """
        ssl = parse("ssl:2376:privateKey=k.pem")
        self.assertTrue(unverified(ssl, verify=True))
        with self.assertRaises(RefusedListener) as caught:
            check([ssl], verify=True, insecure=False)
        self.assertIn("ssl:", str(caught.exception))
        check([parse("ssl:2376:interface=127.0.0.1")], verify=True, insecure=False)

    def test_unix_and_fd_not_tcp(self) -> None:
        """unix sockets and fd:// are not what the check is about."""
        for text in ("unix:///run/x.sock", "unix:/x.sock:mode=600", "fd://"):
            self.assertFalse(unverified(parse(text), verify=False), text)


class WarningTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.clock = Clock()

    def warned(self) -> list[str]:
        lines = [
            formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.warn
        ]
        self.events.clear()
        return lines

    def test_network_at_start_and_every_hour(self) -> None:
        """
        dockerd's warning is logged at start and then every hour while the
        listener lives (both of dockerd's lines at start).
        """
        service = ExposureWarning(["tcp://0.0.0.0:2375"], [], self.clock)
        service.startService()
        start = self.warned()
        self.assertEqual(len(start), 2)
        self.assertEqual(start[0], f"{NETWORK_WARNING} host=tcp://0.0.0.0:2375")
        self.clock.advance(REPEAT - 1)
        self.assertEqual(self.warned(), [])
        self.clock.advance(1)
        self.assertEqual(self.warned(), [f"{NETWORK_WARNING} host=tcp://0.0.0.0:2375"])
        self.clock.advance(REPEAT)
        self.assertEqual(len(self.warned()), 1)
        service.stopService()
        self.clock.advance(REPEAT * 3)
        self.assertEqual(self.warned(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_loopback_once(self) -> None:
        """A loopback listener without TLS is warned about at start only."""
        service = ExposureWarning([], ["tcp://127.0.0.1:2375"], self.clock)
        service.startService()
        self.assertEqual(len(self.warned()), 2)
        self.clock.advance(REPEAT * 2)
        self.assertEqual(self.warned(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        service.stopService()

    def test_warning_for(self) -> None:
        """Only unverified TCP listeners are warned about, split by reach."""
        listeners = [parse(t) for t in ("tcp://0.0.0.0:2375", "tcp://127.0.0.1:1",
                                        "unix:///x.sock")]  # fmt: skip
        service = warning_for(listeners, verify=False, clock=self.clock)
        assert service is not None
        self.assertEqual(
            (service.network, service.local),
            (("tcp://0.0.0.0:2375",), ("tcp://127.0.0.1:1",)),
        )
        self.assertIsNone(warning_for(listeners, verify=True, clock=self.clock))
