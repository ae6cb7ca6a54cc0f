"""
Tests for L{dockserve.server.tls.ServerTLS.reload} and C{--tlscrl}: real
handshakes on loopback with certificates and CRLs made at run time.  New
handshakes get the new material, a connection opened before the reload
goes on with its own, and a bad new file leaves the old material in use
with one log line saying why.
"""

import datetime as dt
import socket
import ssl
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dockserve.server.activation import Notifier
from dockserve.server.tls import (
    ServerTLS,
    TLSFileError,
    TLSServerEndpoint,
    TLSSettings,
    server_creator,
)
from tests.server.test_tls import Reached, _cert, _name, _write
from tests.tempdirs import temp_dir


class ReloadPKI:
    """
    A CA whose key is kept, so that the test can issue a new server
    certificate, more clients and CRLs while the server runs.  The server's
    files are always at the same paths, as an operator renews them.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = _cert("test CA", self.ca_key, "test CA", self.ca_key, ca=True)
        self.ca, _ = _write(directory, "ca", self.ca_cert, self.ca_key)
        self.server_cert = str(directory / "server-cert.pem")
        self.server_key = str(directory / "server-key.pem")
        self.crl = str(directory / "crl.pem")
        self.serial = self.issue_server()
        self.clients: dict[str, tuple[x509.Certificate, tuple[str, str]]] = {}

    def issue_server(self) -> int:
        """A new server key and certificate at the server's paths: its serial."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert("server", key, "test CA", self.ca_key,
                     usage=ExtendedKeyUsageOID.SERVER_AUTH)  # fmt: skip
        staged = self.directory / "staged"
        staged.mkdir(exist_ok=True)
        cert_path, key_path = _write(staged, "server", cert, key)
        Path(cert_path).replace(self.server_cert)
        Path(key_path).replace(self.server_key)
        return cert.serial_number

    def client(self, name: str) -> tuple[str, str]:
        """A client certificate and key of this CA, made once per name."""
        if name not in self.clients:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _cert(name, key, "test CA", self.ca_key,
                         usage=ExtendedKeyUsageOID.CLIENT_AUTH)  # fmt: skip
            self.clients[name] = (cert, _write(self.directory, name, cert, key))
        return self.clients[name][1]

    def write_crl(
        self,
        *revoked: str,
        signer: ec.EllipticCurvePrivateKey | None = None,
        issuer: str = "test CA",
    ) -> str:
        """A CRL at L{crl} listing the clients named C{revoked}."""
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(_name(issuer))
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=1))
        )
        for name in revoked:
            cert = self.clients[name][0]
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.serial_number)
                .revocation_date(now - dt.timedelta(minutes=1))
                .build()
            )
        crl = builder.sign(signer or self.ca_key, hashes.SHA256())
        Path(self.crl).write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return self.crl

    def settings(self, *, crl: bool = False) -> TLSSettings:
        return TLSSettings(
            verify=True,
            ca=self.ca,
            cert=self.server_cert,
            key=self.server_key,
            crl=self.crl if crl else None,
        )


def _connect(port: int, ca: str, cert: tuple[str, str]) -> ssl.SSLSocket:
    """A TLS connection that has said C{x} and read the answer."""
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(*cert)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    tls.sendall(b"x")
    if tls.recv(100) != b"hello x":
        raise ConnectionError("no answer")
    return tls


def _serial(tls: ssl.SSLSocket) -> int:
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _exchange(tls: ssl.SSLSocket, data: bytes) -> bytes:
    tls.sendall(data)
    return tls.recv(100)


def _serial_of_new(port: int, ca: str, cert: tuple[str, str]) -> int:
    with _connect(port, ca, cert) as tls:
        return _serial(tls)


class ReloadTests(TestCase):
    def setUp(self) -> None:
        self.pki = ReloadPKI(temp_dir(self))
        self.alice = self.pki.client("alice")

    async def serve(self, creator: ServerTLS) -> int:
        endpoint = TLSServerEndpoint(
            TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), creator
        )
        port = await endpoint.listen(Factory.forProtocol(Reached))
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    async def test_new_certificate_for_new_handshakes(self) -> None:
        """
        After a reload a new connection gets the new certificate; one
        opened before goes on, still with the certificate it was given.
        """
        creator = server_creator(self.pki.settings())
        port = await self.serve(creator)
        before = await deferToThread(_connect, port, self.pki.ca, self.alice)
        self.addCleanup(before.close)
        old = self.pki.serial
        new = self.pki.issue_server()
        with capturedLogs() as events:
            self.assertTrue(creator.reload())
        self.assertEqual(
            await deferToThread(_serial_of_new, port, self.pki.ca, self.alice), new
        )
        self.assertEqual(await deferToThread(_exchange, before, b"y"), b"hello y")
        self.assertEqual(_serial(before), old)
        [line] = [formatEvent(e) for e in events]
        self.assertIn("TLS reloaded", line)
        self.assertIn(f"serial {new:x}", line)

    async def test_bad_file_keeps_old(self) -> None:
        """
        A certificate file that is not one (half-written, the wrong file)
        leaves the old material in use, and one log line names the flag,
        the file and the reason.
        """
        creator = server_creator(self.pki.settings())
        port = await self.serve(creator)
        Path(self.pki.server_cert).write_text("-----BEGIN CERTIFICATE-----\nxx\n")
        with capturedLogs() as events:
            self.assertFalse(creator.reload())
        [line] = [formatEvent(e) for e in events]
        self.assertIn("TLS reload failed, still using the previous", line)
        self.assertIn(f"--tlscert: {self.pki.server_cert}", line)
        self.assertEqual(
            await deferToThread(_serial_of_new, port, self.pki.ca, self.alice),
            self.pki.serial,
        )

    async def test_key_not_matching_keeps_old(self) -> None:
        """A new certificate with the old key (a renewal half done) is refused."""
        creator = server_creator(self.pki.settings())
        port = await self.serve(creator)
        old_key = Path(self.pki.server_key).read_bytes()
        self.pki.issue_server()
        Path(self.pki.server_key).write_bytes(old_key)
        with capturedLogs() as events:
            self.assertFalse(creator.reload())
        self.assertIn("does not match", formatEvent(events[0]))
        self.assertEqual(
            await deferToThread(_serial_of_new, port, self.pki.ca, self.alice),
            self.pki.serial,
        )

    async def test_missing_ca_keeps_old(self) -> None:
        """A CA file gone at reload time keeps the old CA."""
        creator = server_creator(self.pki.settings())
        port = await self.serve(creator)
        Path(self.pki.ca).rename(self.pki.ca + ".moved")
        with capturedLogs() as events:
            self.assertFalse(creator.reload())
        self.assertIn("--tlscacert", formatEvent(events[0]))
        Path(self.pki.ca + ".moved").rename(self.pki.ca)
        self.assertEqual(
            await deferToThread(_serial_of_new, port, self.pki.ca, self.alice),
            self.pki.serial,
        )

    async def test_crl_refuses_revoked(self) -> None:
        """With --tlscrl a client the CA revoked gets no handshake; others do."""
        bob = self.pki.client("bob")
        self.pki.write_crl("bob")
        port = await self.serve(server_creator(self.pki.settings(crl=True)))
        Reached.count = 0
        await deferToThread(_serial_of_new, port, self.pki.ca, self.alice)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            await deferToThread(_serial_of_new, port, self.pki.ca, bob)
        self.assertEqual(Reached.count, 1)

    async def test_crl_reloaded(self) -> None:
        """
        A CRL revoking a client, reloaded: its new connections fail, the
        one it had open goes on (TLS checks a certificate at the handshake).
        """
        bob = self.pki.client("bob")
        self.pki.write_crl()
        creator = server_creator(self.pki.settings(crl=True))
        port = await self.serve(creator)
        before = await deferToThread(_connect, port, self.pki.ca, bob)
        self.addCleanup(before.close)
        self.pki.write_crl("bob")
        self.assertTrue(creator.reload())
        self.assertIn("1 CRL(s), 1 revoked", creator.description)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            await deferToThread(_serial_of_new, port, self.pki.ca, bob)
        self.assertEqual(await deferToThread(_exchange, before, b"z"), b"hello z")
        await deferToThread(_serial_of_new, port, self.pki.ca, self.alice)


class CRLFileTests(SynchronousTestCase):
    """A CRL that would refuse every client, or none, is refused at load."""

    def setUp(self) -> None:
        self.pki = ReloadPKI(temp_dir(self))
        self.pki.client("bob")

    def refused(self, **kwargs: object) -> str:
        with self.assertRaises(TLSFileError) as caught:
            server_creator(self.pki.settings(crl=True), **kwargs)  # type: ignore[arg-type]
        message = str(caught.exception)
        self.assertTrue(message.startswith("--tlscrl: "), message)
        self.assertIn(self.pki.crl, message)
        return message

    def test_other_ca(self) -> None:
        """A CRL signed by a key that is not the CA's (or of another CA) is named."""
        self.pki.write_crl("bob", signer=ec.generate_private_key(ec.SECP256R1()))
        self.assertIn("not signed by a CA in --tlscacert", self.refused())
        self.pki.write_crl(issuer="other CA")
        self.assertIn("'CN=other CA'", self.refused())

    def test_expired(self) -> None:
        """A CRL past its next update would fail every client: refused."""
        self.pki.write_crl("bob")
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
        self.assertIn("expired at", self.refused(now=lambda: later))

    def test_not_a_crl(self) -> None:
        """A file without a PEM CRL, or a broken one, says so."""
        Path(self.pki.crl).write_bytes(Path(self.pki.ca).read_bytes())
        self.assertIn("holds no PEM CRL", self.refused())
        Path(self.pki.crl).write_text(
            "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"
        )
        self.assertIn("is not a PEM CRL", self.refused())

    def test_missing(self) -> None:
        """A CRL file that is not there is named."""
        self.assertIn("cannot read", self.refused())


class ReloadingNotifyTests(SynchronousTestCase):
    def test_reloading(self) -> None:
        """
        RELOADING=1 goes with MONOTONIC_USEC (CLOCK_MONOTONIC in
        microseconds), one datagram, as systemd 253 wants it.
        """
        path = str(temp_dir(self) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(path)
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": path})
        self.assertTrue(notifier.reloading(lambda: 1_234_567_891))
        self.assertEqual(sock.recv(100), b"RELOADING=1\nMONOTONIC_USEC=1234567")
        self.assertTrue(notifier.reloading())
        usec = int(sock.recv(100).split(b"MONOTONIC_USEC=")[1])
        # The same clock systemd reads: not the wall clock.
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.assertLess(abs(usec - now), 60_000_000, "not CLOCK_MONOTONIC")
