"""
Tests for L{dockserve.server.tls}: real TLS handshakes on loopback with a CA,
server and client certificates generated at run time. Under C{--tlsverify}
only a client with a certificate from C{--tlscacert} gets through.
"""

import datetime as dt
import ipaddress
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dockserve.server.listenbuffer import ListenBufferEndpoint
from dockserve.server.tls import (
    PLAIN_HTTP_ANSWER,
    TLSFileError,
    TLSServerEndpoint,
    TLSSettings,
    server_creator,
)
from tests.tempdirs import temp_dir


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


#: The private keys the tests make: ECDSA, or RSA for static-RSA suites.
Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _cert(subject: str, key: Key, issuer: str,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          usage: x509.ObjectIdentifier | None = None) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, name: str, cert: x509.Certificate,
           key: Key) -> tuple[str, str]:  # fmt: skip
    cert_path, key_path = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


class PKI:
    """
    A CA, a server and a client certificate, and a client from another CA.

    @param rsa_server: Give the server an RSA key (else ECDSA), so that the
        static-RSA key exchange suites are possible at all.
    """

    def __init__(self, directory: Path, *, rsa_server: bool = False) -> None:
        self.directory = directory
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("test CA", ca_key, "test CA", ca_key, ca=True)
        self.ca, _ = _write(self.directory, "ca", ca, ca_key)
        server_key: Key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if rsa_server
            else ec.generate_private_key(ec.SECP256R1())
        )
        server = _cert("server", server_key, "test CA", ca_key,
                       usage=ExtendedKeyUsageOID.SERVER_AUTH)  # fmt: skip
        self.server_cert, self.server_key = _write(
            self.directory, "server", server, server_key
        )
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = _cert("client", client_key, "test CA", ca_key,
                       usage=ExtendedKeyUsageOID.CLIENT_AUTH)  # fmt: skip
        self.client_cert, self.client_key = _write(
            self.directory, "client", client, client_key
        )
        other_key = ec.generate_private_key(ec.SECP256R1())
        other = _cert("other CA", other_key, "other CA", other_key, ca=True)
        rogue_key = ec.generate_private_key(ec.SECP256R1())
        rogue = _cert("rogue", rogue_key, "other CA", other_key,
                      usage=ExtendedKeyUsageOID.CLIENT_AUTH)  # fmt: skip
        del other
        self.rogue_cert, self.rogue_key = _write(
            self.directory, "rogue", rogue, rogue_key
        )

    def settings(self, *, verify: bool = True) -> TLSSettings:
        return TLSSettings(verify=verify, ca=self.ca, cert=self.server_cert,
                           key=self.server_key)  # fmt: skip


class Reached(Protocol):
    """Counts connections that got through the handshake to a handler."""

    count = 0

    def dataReceived(self, data: bytes) -> None:
        Reached.count += 1
        assert self.transport is not None
        self.transport.write(b"hello " + data)


def _client(port: int, ca: str, cert: tuple[str, str] | None,
            maximum: ssl.TLSVersion | None = None, *,
            alpn: list[str] | None = None, ciphers: str | None = None,
            negotiated: list[str | None] | None = None) -> bytes:  # fmt: skip
    context = ssl.create_default_context(cafile=ca)
    if cert is not None:
        context.load_cert_chain(*cert)
    if maximum is not None:
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = maximum
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    if ciphers is not None:
        context.set_ciphers(ciphers)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        if negotiated is not None:
            negotiated.append(tls.selected_alpn_protocol())
        tls.sendall(b"x")
        return tls.recv(100)


class HandshakeTests(TestCase):
    def setUp(self) -> None:
        self.pki = PKI(temp_dir(self))
        Reached.count = 0

    async def serve(self, *, verify: bool = True) -> int:
        endpoint = TLSServerEndpoint(
            TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
            server_creator(self.pki.settings(verify=verify)),
        )
        port = await endpoint.listen(Factory.forProtocol(Reached))
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    async def test_client_certificate_accepted(self) -> None:
        """A client certificate signed by --tlscacert reaches the handler."""
        port = await self.serve()
        pair = (self.pki.client_cert, self.pki.client_key)
        reply = await deferToThread(_client, port, self.pki.ca, pair)
        self.assertEqual(reply, b"hello x")

    async def test_alpn_through_listen_buffer(self) -> None:
        """
        Behind the listen buffer (the default stack), a client offering
        ALPN C{h2} and C{http/1.1}, as curl and urllib3 2 do, completes the
        handshake with C{http/1.1}; it was refused with an internal-error
        alert.
        """
        activation: Deferred[None] = Deferred()
        endpoint = ListenBufferEndpoint(
            TLSServerEndpoint(
                TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
                server_creator(self.pki.settings()),
            ),
            activation,
            reactor,
        )
        port = await endpoint.listen(Factory.forProtocol(Reached))
        self.addCleanup(port.stopListening)
        activation.callback(None)
        pair = (self.pki.client_cert, self.pki.client_key)
        negotiated: list[str | None] = []
        reply = await deferToThread(
            _client, port.getHost().port, self.pki.ca, pair,
            alpn=["h2", "http/1.1"], negotiated=negotiated,
        )  # fmt: skip
        self.assertEqual((reply, negotiated), (b"hello x", ["http/1.1"]))

    async def test_no_client_certificate(self) -> None:
        """Under --tlsverify a client without a certificate reaches nothing."""
        port = await self.serve()
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            await deferToThread(_client, port, self.pki.ca, None)
        self.assertEqual(Reached.count, 0)

    async def test_other_ca(self) -> None:
        """A certificate signed by another CA fails the handshake."""
        port = await self.serve()
        pair = (self.pki.rogue_cert, self.pki.rogue_key)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            await deferToThread(_client, port, self.pki.ca, pair)
        self.assertEqual(Reached.count, 0)

    async def test_tls_only_without_verify(self) -> None:
        """--tls alone encrypts but lets a client without a certificate in."""
        port = await self.serve(verify=False)
        reply = await deferToThread(_client, port, self.pki.ca, None)
        self.assertEqual(reply, b"hello x")

    async def test_old_tls_refused(self) -> None:
        """TLS 1.1 and older are refused."""
        port = await self.serve(verify=False)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            await deferToThread(
                _client, port, self.pki.ca, None, ssl.TLSVersion.TLSv1_1
            )
        self.assertEqual(Reached.count, 0)


def _raw(port: int, data: bytes) -> bytes:
    """Send C{data} in plain text and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(data)
        received = b""
        while chunk := raw.recv(4096):
            received += chunk
        return received


class SuiteTests(TestCase):
    """
    TLS 1.2 suites as dockerd's (Go's crypto/tls with go-connections'
    list): ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only; no
    static RSA (no forward secrecy), no CBC.
    """

    async def serve(self, pki: PKI) -> int:
        endpoint = TLSServerEndpoint(
            TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
            server_creator(pki.settings(verify=False)),
        )
        port = await endpoint.listen(Factory.forProtocol(Reached))
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    async def test_weak_suites_refused(self) -> None:
        """Static RSA (CBC or GCM) and ECDHE with CBC fail the handshake."""
        pki = PKI(temp_dir(self), rsa_server=True)
        port = await self.serve(pki)
        for suite in ("AES128-SHA", "AES256-SHA", "AES128-GCM-SHA256",
                      "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA",
                      "ECDHE-RSA-AES256-SHA384"):  # fmt: skip
            with self.assertRaises((ssl.SSLError, ConnectionError, OSError), msg=suite):
                await deferToThread(
                    _client, port, pki.ca, None, ssl.TLSVersion.TLSv1_2,
                    ciphers=suite,
                )  # fmt: skip

    async def test_forward_secret_aead_accepted(self) -> None:
        """ECDHE with AES-GCM or ChaCha20 works, for RSA and ECDSA keys."""
        for rsa_server, suites in (
            (True, ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                    "ECDHE-RSA-CHACHA20-POLY1305")),
            (False, ("ECDHE-ECDSA-AES128-GCM-SHA256",
                     "ECDHE-ECDSA-CHACHA20-POLY1305")),
        ):  # fmt: skip
            pki = PKI(temp_dir(self), rsa_server=rsa_server)
            port = await self.serve(pki)
            for suite in suites:
                reply = await deferToThread(
                    _client, port, pki.ca, None, ssl.TLSVersion.TLSv1_2,
                    ciphers=suite,
                )  # fmt: skip
                self.assertEqual(reply, b"hello x", suite)

    async def test_tls13(self) -> None:
        """TLS 1.3 works, with OpenSSL's suites."""
        pki = PKI(temp_dir(self), rsa_server=True)
        port = await self.serve(pki)
        self.assertEqual(await deferToThread(_client, port, pki.ca, None), b"hello x")


class PlainHTTPTests(TestCase):
    async def serve(self) -> int:
        pki = PKI(temp_dir(self))
        endpoint = TLSServerEndpoint(
            TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
            server_creator(pki.settings()),
        )
        Reached.count = 0
        port = await endpoint.listen(Factory.forProtocol(Reached))
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    async def test_plain_http_told(self) -> None:
        """
        Plain HTTP to the TLS port gets Go's answer, not a silent close:
        what the docker CLI shows for C{-H tcp://...} without C{--tls}.
        """
        port = await self.serve()
        for request in (b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"HEAD /_ping HTTP/1.1\r\n\r\n",
                        b"POST /containers/create HTTP/1.1\r\n\r\n"):  # fmt: skip
            answer = await deferToThread(_raw, port, request)
            self.assertEqual(answer, PLAIN_HTTP_ANSWER)
        self.assertEqual(
            PLAIN_HTTP_ANSWER,
            b"HTTP/1.0 400 Bad Request\r\n\r\n"
            b"Client sent an HTTP request to an HTTPS server.\n",
        )
        self.assertEqual(Reached.count, 0)

    async def test_garbage_not_answered(self) -> None:
        """Other bytes that are not TLS get TLS's alert, not an HTTP answer."""
        port = await self.serve()
        answer = await deferToThread(_raw, port, b"hello there\r\n")
        self.assertFalse(answer.startswith(b"HTTP/"), answer)

    async def test_split_client_hello(self) -> None:
        """A TLS client whose first record arrives a byte at a time still works."""
        pki = PKI(temp_dir(self))
        endpoint = TLSServerEndpoint(
            TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
            server_creator(pki.settings(verify=False)),
        )
        port = await endpoint.listen(Factory.forProtocol(Reached))
        self.addCleanup(port.stopListening)
        reply = await deferToThread(_trickled_client, int(port.getHost().port), pki.ca)
        self.assertEqual(reply, b"hello x")


def _trickled_client(port: int, ca: str) -> bytes:
    """A TLS client (memory BIO) that sends its first record in 1-byte writes."""
    context = ssl.create_default_context(cafile=ca)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        first = True
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            pending = outgoing.read()
            if first:
                for byte in pending:
                    raw.sendall(bytes([byte]))
                first = False
            elif pending:
                raw.sendall(pending)
            incoming.write(raw.recv(65536))
        raw.sendall(outgoing.read())
        tls.write(b"x")
        raw.sendall(outgoing.read())
        while True:
            try:
                return tls.read(100)
            except ssl.SSLWantReadError:
                incoming.write(raw.recv(65536))


class FileErrorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pki = PKI(temp_dir(self))

    def test_missing(self) -> None:
        """A missing --tlscert is named with its flag and path."""
        settings = TLSSettings(verify=False, ca="", cert="/nonexistent/c.pem",
                               key=self.pki.server_key)  # fmt: skip
        with self.assertRaises(TLSFileError) as caught:
            server_creator(settings)
        self.assertIn("--tlscert", str(caught.exception))
        self.assertIn("/nonexistent/c.pem", str(caught.exception))

    def test_mismatched_key(self) -> None:
        """A --tlskey that is not the certificate's key says so."""
        settings = TLSSettings(verify=False, ca="", cert=self.pki.server_cert,
                               key=self.pki.client_key)  # fmt: skip
        with self.assertRaises(TLSFileError) as caught:
            server_creator(settings)
        self.assertIn("does not match", str(caught.exception))

    def test_ca_not_pem(self) -> None:
        """A --tlscacert that is not a certificate is named."""
        bad = self.pki.directory / "bad.pem"
        bad.write_text("nothing here")
        settings = TLSSettings(verify=True, ca=str(bad), cert=self.pki.server_cert,
                               key=self.pki.server_key)  # fmt: skip
        with self.assertRaises(TLSFileError) as caught:
            server_creator(settings)
        self.assertIn("--tlscacert", str(caught.exception))
