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
"""

import os
from pathlib import Path

from attrs import frozen

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer

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
    """

    verify: bool
    ca: str
    cert: str
    key: str


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TLSFileError(f"{flag}: cannot read {path}: {e.strerror or e}") from e


def server_creator(settings: TLSSettings) -> IOpenSSLServerConnectionCreator:
    """
    Load the files in C{settings} into a server TLS connection creator.

    @raise TLSFileError: Naming the flag and file when one is missing,
        unreadable, or not a certificate or key.
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
        options.getContext().check_privatekey()
    except (SSL.Error, ValueError) as e:
        raise TLSFileError(
            f"--tlskey: {settings.key} does not match --tlscert {settings.cert}: {e}"
        ) from e
    return options


def _acceptable_ciphers() -> ssl.AcceptableCiphers:
    """L{CIPHERS} as Twisted takes them (those this OpenSSL knows)."""
    ciphers: ssl.AcceptableCiphers = ssl.AcceptableCiphers.fromOpenSSLCipherString(  # type: ignore[no-untyped-call]
        CIPHERS
    )
    return ciphers


def _chain(pem: bytes) -> list[bytes]:
    """Each PEM certificate block in C{pem}, in order."""
    marker = b"-----BEGIN CERTIFICATE-----"
    end = b"-----END CERTIFICATE-----"
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
