"""
Tests for L{dockserve.api.policy.peer} and principals' L{Match}: who is on
the other end of a connection, and which principal that is.
"""

import os
import socket
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from OpenSSL import crypto
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.policy.model import Match
from dockserve.api.policy.peer import (
    ConnectionCache,
    Peer,
    certificate_identity,
    read_peer,
)
from tests.api.policy.pki import client_certificate


class _Socket:
    """A transport at the bottom: the socket itself."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock


class _Wrapper:
    """A wrapping transport (the connection limit's)."""

    def __init__(self, transport: object) -> None:
        self.transport = transport


class _TLS(_Wrapper):
    def __init__(self, transport: object, certificate: object) -> None:
        super().__init__(transport)
        self._certificate = certificate

    def getPeerCertificate(self) -> object:
        return self._certificate


class _Site:
    listener = "unix:///run/dockserve.sock"


class _Channel:
    def __init__(self, transport: object) -> None:
        self.transport = transport
        self.site = _Site()


class _Request:
    def __init__(self, transport: object, address: Any) -> None:
        self.channel = _Channel(transport)
        self._address = address

    def getClientAddress(self) -> Any:
        return self._address


class IdentityTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())

    def test_certificate_names(self) -> None:
        """CN, O, OU from the subject; DNS, URI and e-mail from the SAN."""
        cert, _ = client_certificate(
            "alice",
            self.ca_key,
            o="Example",
            ou="dev",
            dns=("alice.example.com",),
            uri=("spiffe://example.org/alice",),
            email=("alice@Example.COM",),
        )
        identity = certificate_identity(cert)
        self.assertEqual(
            (
                identity.subject,
                identity.cn,
                identity.o,
                identity.ou,
                identity.dns,
                identity.uri,
                identity.email,
            ),
            (
                "OU=dev,O=Example,CN=alice",
                ("alice",),
                ("Example",),
                ("dev",),
                ("alice.example.com",),
                ("spiffe://example.org/alice",),
                ("alice@Example.COM",),
            ),
        )

    def test_match(self) -> None:
        """
        Every key given must match, any value of each; DNS by service-identity
        (a wildcard certificate is valid for a name under it); e-mail domains
        in any case; no certificate matches no certificate key.
        """
        cert, _ = client_certificate(
            "ci",
            self.ca_key,
            o="Example",
            dns=("*.ci.example.com",),
            uri=("spiffe://example.org/ci",),
            email=("ci@EXAMPLE.com",),
        )
        peer = Peer(
            listener="tcp://0.0.0.0:2376", certificate=certificate_identity(cert)
        )
        cases = [
            (Match(cn=frozenset({"ci", "other"})), True),
            (Match(cn=frozenset({"ci"}), o=frozenset({"Nope"})), False),
            (Match(dns=("runner1.ci.example.com",)), True),
            (Match(dns=("ci.example.com",)), False),
            (Match(uri=frozenset({"spiffe://example.org/ci"})), True),
            (Match(uri=frozenset({"spiffe://example.org/c"})), False),
            (Match(email=frozenset({"ci@example.com"})), True),
            (Match(listeners=frozenset({"tcp://0.0.0.0:2376"})), True),
            (Match(listeners=frozenset({"unix:///run/dockserve.sock"})), False),
            (Match(uids=frozenset({0})), False),
            (Match(), True),
        ]
        self.assertEqual([(m, m.matches(peer)) for m, _ in cases], cases)
        self.assertFalse(Match(cn=frozenset({"ci"})).matches(Peer(uid=0)))

    def test_unix_groups(self) -> None:
        """A gid matches the peer's own gid or one of its groups."""
        peer = Peer(uid=1000, gid=1000, groups=frozenset({1000, 27}))
        self.assertEqual(
            [
                Match(gids=frozenset({27})).matches(peer),
                Match(gids=frozenset({1000})).matches(peer),
                Match(gids=frozenset({0})).matches(peer),
            ],
            [True, True, False],
        )


class ReadPeerTests(SynchronousTestCase):
    def test_unix_peer(self) -> None:
        """
        Through the wrappers down to the unix socket: the peer's uid, gid
        and pid (SO_PEERCRED), its groups, the listener from the site.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX)
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        request = _Request(_Wrapper(_Socket(ours)), UNIXAddress(b"/run/x.sock"))
        peer = read_peer(request)
        self.assertEqual(
            (peer.listener, peer.address, peer.uid, peer.gid, peer.pid),
            (
                "unix:///run/dockserve.sock",
                "/run/x.sock",
                os.getuid(),
                os.getgid(),
                os.getpid(),
            ),
        )
        self.assertIn(os.getgid(), peer.groups)
        self.assertTrue(set(os.getgroups()) <= peer.groups)
        self.assertIsNone(peer.certificate)

    def test_tls_peer(self) -> None:
        """The TLS layer's peer certificate; a TCP socket has no credentials."""
        cert, _ = client_certificate("bob", ec.generate_private_key(ec.SECP256R1()))
        tcp = socket.socket()
        self.addCleanup(tcp.close)
        tls = _TLS(_Wrapper(_Socket(tcp)), crypto.X509.from_cryptography(cert))
        peer = read_peer(_Request(tls, IPv4Address("TCP", "127.0.0.1", 4000)))
        self.assertEqual(
            (peer.address, peer.uid, peer.certificate and peer.certificate.cn),
            ("127.0.0.1:4000", None, ("bob",)),
        )

    def test_no_certificate(self) -> None:
        """TLS without a client certificate: no certificate."""
        tls = _TLS(None, None)
        peer = read_peer(_Request(tls, IPv4Address("TCP", "127.0.0.1", 4000)))
        self.assertIsNone(peer.certificate)


class ConnectionCacheTests(SynchronousTestCase):
    def test_once_per_connection(self) -> None:
        """Made at a connection's first request, kept for the next."""
        cache = ConnectionCache()
        made: list[object] = []
        first = _Request(None, None)
        second = _Request(None, None)
        second.channel = first.channel
        other = _Request(None, None)
        for request in (first, second, other):
            cache.get(request, lambda r: made.append(r) or len(made))
        self.assertEqual(made, [first, other])
