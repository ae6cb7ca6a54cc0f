# -*- test-case-name: tests.server.test_tls -*-
"""
C{--tls}, C{--tlsverify}: TLS 1.2+ on TCP listeners, client certificates verified.

The TLS is dockerd's: TLS 1.2 with forward-secret AEAD suites only (ECDHE
with AES-GCM or ChaCha20-Poly1305: no static RSA key exchange, no CBC), TLS
1.3 with OpenSSL's suites, and plain HTTP sent to the port answered with Go's
C{400 Client sent an HTTP request to an HTTPS server.} rather than closed
without a word.  Which flags turn client verification on is decided by the
command line (L{dockserve.tap}); here C{TLSSettings.verify} says whether it
is on.  The files default to C{~/.docker/{ca,cert,key}.pem}.

The material (certificate, key, CA and the CRL of C{--tlscrl}) can be
read again while the daemon runs (L{ServerTLS.reload}, on SIGHUP): new
handshakes use the new material, connections already open keep the TLS
state they were made with, and a new set that does not load leaves the
old one in use.
"""

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

from attrs import frozen
from cryptography import x509

from OpenSSL import SSL, crypto
from OpenSSL.SSL import Error as SSLError
from OpenSSL.SSL import WantReadError, ZeroReturnError
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

_log = Logger()

#: TLS 1.2 suites, as go-connections' server defaults (dockerd): ECDHE key
#: exchange (forward secrecy) with an AEAD cipher, for ECDSA and RSA keys.
#: TLS 1.3 suites are not chosen by this list; OpenSSL's are all AEAD.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

#: Go's answer to plain HTTP on a TLS port, which dockerd clients show.
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)


class TLSFileError(ValueError):
    """A certificate or key file that is missing, unreadable or invalid."""


def default_path(name: str) -> str:
    """C{~/.docker/NAME.pem} or under C{$DOCKER_CERT_PATH}, as dockerd."""
    cert_path = os.environ.get("DOCKER_CERT_PATH")
    directory = Path(cert_path) if cert_path else Path("~/.docker").expanduser()
    return str(directory / f"{name}.pem")


@frozen
class TLSSettings:
    """
    The C{--tls*} options.

    @ivar verify: Require client certificates signed by C{ca}.
    @ivar ca: The CA certificate file (used only with C{verify}).
    @ivar cert: The server certificate file (PEM, may hold a chain).
    @ivar key: The server's private key file (PEM).
    @ivar crl: C{--tlscrl}: certificate revocation lists (PEM) of the CAs
        in C{ca}; a client certificate they list is refused.  C{None}: no
        revocation check.
    """

    verify: bool
    ca: str
    cert: str
    key: str
    crl: str | None = None


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TLSFileError(f"{flag}: cannot read {path}: {e.strerror or e}") from e


def server_creator(
    settings: TLSSettings, now: Callable[[], dt.datetime] | None = None
) -> "ServerTLS":
    """
    Load the files in C{settings} into a server TLS connection creator.

    @param now: The time a CRL must not have expired by (tests).
    @raise TLSFileError: Naming the flag and file when one is missing,
        unreadable, or not a certificate, key or CRL.
    """
    return ServerTLS(settings, now)


def _options(
    settings: TLSSettings, now: Callable[[], dt.datetime]
) -> tuple[ssl.CertificateOptions, str]:
    """
    The TLS options for C{settings}, and one line that says what they hold.

    @raise TLSFileError: As L{server_creator}.
    """
    cert_pem = _read("--tlscert", settings.cert)
    key_pem = _read("--tlskey", settings.key)
    try:
        certificate = ssl.Certificate.loadPEM(cert_pem)
    except Exception as e:
        raise TLSFileError(
            f"--tlscert: {settings.cert} is not a PEM certificate: {e}"
        ) from e
    try:
        key = ssl.KeyPair.load(key_pem, crypto.FILETYPE_PEM)
    except Exception as e:
        raise TLSFileError(
            f"--tlskey: {settings.key} is not a PEM private key: {e}"
        ) from e
    chain = _chain(cert_pem)[1:]
    trust = None
    revocations: list[x509.CertificateRevocationList] = []
    if settings.verify:
        ca_pem = _read("--tlscacert", settings.ca)
        try:
            authorities = [ssl.Certificate.loadPEM(pem) for pem in _chain(ca_pem)]
        except Exception as e:
            raise TLSFileError(
                f"--tlscacert: {settings.ca} is not a PEM certificate: {e}"
            ) from e
        if not authorities:
            raise TLSFileError(f"--tlscacert: {settings.ca} holds no PEM certificate")
        trust = ssl.trustRootFromCertificates(authorities)  # type: ignore[no-untyped-call]
        if settings.crl is not None:
            revocations = _revocations(
                settings.crl, [a.original.to_cryptography() for a in authorities], now()
            )
    try:
        options = ssl.CertificateOptions(
            privateKey=key.original,
            certificate=certificate.original,
            extraCertChain=[ssl.Certificate.loadPEM(pem).original for pem in chain],
            trustRoot=trust,
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
            acceptableCiphers=_acceptable_ciphers(),
        )
        # Fail now, with the flag's name, rather than at the first handshake.
        context = options.getContext()
        context.check_privatekey()
    except (SSL.Error, ValueError) as e:
        raise TLSFileError(
            f"--tlskey: {settings.key} does not match --tlscert {settings.cert}: {e}"
        ) from e
    if revocations:
        # The context is made once and shared by every connection this
        # options object makes: the lists go into its store.  CRL_CHECK
        # looks up the leaf's issuer's list (a client's certificate), and
        # fails the handshake when that CA has none in the file.
        store = context.get_cert_store()
        if store is None:  # pragma: no cover - OpenSSL always gives one
            raise TLSFileError("--tlscrl: this OpenSSL has no certificate store")
        for crl in revocations:
            store.add_crl(crl)
        store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
    return options, _describe(certificate, settings, revocations)


def _revocations(
    path: str, authorities: list[x509.Certificate], now: dt.datetime
) -> list[x509.CertificateRevocationList]:
    """
    The CRLs in the file at C{path}: each signed by one of C{authorities}
    and not expired, since OpenSSL would otherwise refuse every client of
    that CA at the handshake, with no word in our log.

    @raise TLSFileError: Naming C{--tlscrl} and C{path}.
    """
    pem = _read("--tlscrl", path)
    blocks = _blocks(pem, b"X509 CRL")
    if not blocks:
        raise TLSFileError(f"--tlscrl: {path} holds no PEM CRL (X509 CRL)")
    result = []
    for block in blocks:
        try:
            crl = x509.load_pem_x509_crl(block)
        except ValueError as e:
            raise TLSFileError(f"--tlscrl: {path} is not a PEM CRL: {e}") from e
        issuer = crl.issuer.rfc4514_string()
        if not any(_signed_by(crl, ca) for ca in authorities):
            raise TLSFileError(
                f"--tlscrl: {path}: the CRL of {issuer!r} is not signed by a CA"
                " in --tlscacert"
            )
        expires = crl.next_update_utc
        if expires is not None and expires <= now:
            raise TLSFileError(
                f"--tlscrl: {path}: the CRL of {issuer!r} expired at"
                f" {expires.isoformat()} (its next update): publish a new one"
            )
        result.append(crl)
    return result


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    """Whether C{ca} issued C{crl}: its subject, and the signature checks."""
    if ca.subject != crl.issuer:
        return False
    key = ca.public_key()
    try:
        return crl.is_signature_valid(key)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        # A CA key of a kind that cannot sign (X25519, DH).
        return False


def _describe(
    certificate: ssl.Certificate,
    settings: TLSSettings,
    revocations: list[x509.CertificateRevocationList],
) -> str:
    """What the log says a set of material is: the certificate, and the CRLs."""
    cert = certificate.original.to_cryptography()
    text = (
        f"certificate {cert.subject.rfc4514_string()!r} serial {cert.serial_number:x}"
        f" valid until {cert.not_valid_after_utc.isoformat()}"
    )
    if not settings.verify:
        return text + ", clients not verified"
    revoked = sum(len(crl) for crl in revocations)
    crls = f"{len(revocations)} CRL(s), {revoked} revoked" if revocations else "no CRL"
    return f"{text}, clients verified against {settings.ca} ({crls})"


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    The server's TLS state, made from L{TLSSettings}, whose material can be
    replaced while connections are open.

    Each handshake takes the options in use at that moment; an OpenSSL
    connection keeps a reference to the context it was made from, so a
    connection already open goes on with the old certificate and CA until
    it closes, while every new one gets the new material.

    @ivar settings: The files to read (again, on L{reload}).
    @ivar description: What the material in use is, for the log.
    """

    def __init__(
        self, settings: TLSSettings, now: Callable[[], dt.datetime] | None = None
    ) -> None:
        self.settings = settings
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._options, self.description = _options(settings, self._now)

    def serverConnectionForTLS(
        self, tlsProtocol: TLSMemoryBIOProtocol
    ) -> SSL.Connection:
        """A connection for one handshake, with the material in use now."""
        return self._options.serverConnectionForTLS(tlsProtocol)

    def getContext(self) -> SSL.Context:
        """The context of the material in use (what the handshakes share)."""
        return self._options.getContext()

    def reload(self) -> bool:
        """
        Read the files again; use them for new handshakes if they load.

        A file that is missing, half-written or does not fit the others (a
        key that is not the certificate's, a CRL of another CA) leaves the
        material in use as it was, with one log line saying why.

        @return: Whether the new material is in use.
        """
        try:
            options, description = _options(self.settings, self._now)
        except TLSFileError as e:
            _log.error(
                "TLS reload failed, still using the previous certificate, key,"
                " CA and CRL: {why}",
                why=str(e),
            )
            return False
        self._options, self.description = options, description
        _log.info("TLS reloaded: {description}", description=description)
        return True


def _acceptable_ciphers() -> ssl.AcceptableCiphers:
    """L{CIPHERS} as Twisted takes them (those this OpenSSL knows)."""
    ciphers: ssl.AcceptableCiphers = ssl.AcceptableCiphers.fromOpenSSLCipherString(  # type: ignore[no-untyped-call]
        CIPHERS
    )
    return ciphers


def _chain(pem: bytes) -> list[bytes]:
    """Each PEM certificate block in C{pem}, in order."""
    return _blocks(pem, b"CERTIFICATE")


def _blocks(pem: bytes, label: bytes) -> list[bytes]:
    """Each PEM block of C{label} (C{CERTIFICATE}, C{X509 CRL}) in C{pem}."""
    marker = b"-----BEGIN " + label + b"-----"
    end = b"-----END " + label + b"-----"
    blocks = []
    for part in pem.split(marker)[1:]:
        body, found, _ = part.partition(end)
        if found:
            blocks.append(marker + body + end + b"\n")
    return blocks


#: How plain HTTP requests begin, as Go recognises them where a TLS record
#: header (5 bytes, the first C{0x16} for a handshake) was expected.
_PLAIN_HTTP_STARTS = frozenset({b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO"})

#: The first byte of a TLS handshake record (a ClientHello).
_TLS_HANDSHAKE = 0x16


class _PlainHTTPAnsweringTLS(TLSMemoryBIOProtocol):
    """
    TLS that first looks at the connection's first 5 bytes: an HTTP request
    line there is a client that forgot C{--tls}; it is told so in plain
    text, as Go's server does, instead of getting a TLS alert it cannot
    read (curl showed C{(52) Empty reply}).
    """

    _head = b""
    _sniffed = False

    def dataReceived(self, data: bytes) -> None:
        """Pass TLS on; hold up to 5 bytes until it is clear which it is."""
        if self._sniffed:
            super().dataReceived(data)  # type: ignore[no-untyped-call]
            return
        head = self._head + data
        if len(head) < len(b"GET /") and head[0] != _TLS_HANDSHAKE:
            self._head = head
            return
        self._sniffed = True
        self._head = b""
        if head[:5] in _PLAIN_HTTP_STARTS and self.transport is not None:
            self.transport.write(PLAIN_HTTP_ANSWER)
            self.transport.loseConnection()
            return
        super().dataReceived(head)  # type: ignore[no-untyped-call]

    _peer_done_writing = False

    def _flushReceiveBIO(self) -> None:
        """
        Hand the application bytes to the protocol, as Twisted's does, but
        take the peer's C{close_notify} as the end of its writing only when
        the protocol can half-close: Go's C{tls.Conn.CloseWrite} sends one
        (C{docker run} without stdin does, at once), and the container's
        output must still reach it, as from dockerd. Twisted's own tears
        the whole connection down there.
        """
        while not self._lostTLSConnection and not self._peer_done_writing:
            try:
                data = self._tlsConnection.recv(2**15)
            except WantReadError:
                break
            except ZeroReturnError:
                if IHalfCloseableProtocol.providedBy(self.wrappedProtocol):
                    self._peer_done_writing = True
                    self.wrappedProtocol.readConnectionLost()
                    break
                self._shutdownTLS()  # type: ignore[no-untyped-call]
                self._tlsShutdownFinished(None)  # type: ignore[no-untyped-call]
            except SSLError:
                self._tlsShutdownFinished(Failure())  # type: ignore[no-untyped-call]
            else:
                if not self._aborted:
                    ProtocolWrapper.dataReceived(self, data)  # type: ignore[no-untyped-call]
        self._flushSendBIO()  # type: ignore[no-untyped-call]


class _TLSFactory(TLSMemoryBIOFactory):
    """L{TLSMemoryBIOFactory} whose connections answer plain HTTP."""

    protocol = _PlainHTTPAnsweringTLS


def tls_factory(
    creator: IOpenSSLServerConnectionCreator, factory: IProtocolFactory
) -> TLSMemoryBIOFactory:
    """
    Serve C{factory} over TLS made by C{creator}, on any stream transport
    (a bound or an adopted socket).
    """
    return _TLSFactory(creator, False, factory)


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """
    Speak TLS on any stream endpoint: TCP, or a socket systemd passed.

    @param endpoint: The endpoint that listens.
    @param creator: Makes each connection's TLS state (from
        L{server_creator}).
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        creator: IOpenSSLServerConnectionCreator,
    ) -> None:
        self._endpoint = endpoint
        self._creator = creator

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen with every connection wrapped in TLS."""
        return self._endpoint.listen(tls_factory(self._creator, protocolFactory))
