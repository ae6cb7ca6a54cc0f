# -*- test-case-name: tests.server.test_tls -*-
"""
C{--tls}, C{--tlsverify}: TLS 1.2+ on TCP listeners, client certificates verified.

Like dockerd, C{--tlsverify} implies C{--tls} and requires every client to
present a certificate signed by C{--tlscacert}; C{--tls} alone encrypts but
lets anyone in.  The files default to C{~/.docker/{ca,cert,key}.pem}.
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
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer


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
        )
        # Fail now, with the flag's name, rather than at the first handshake.
        options.getContext().check_privatekey()
    except (SSL.Error, ValueError) as e:
        raise TLSFileError(
            f"--tlskey: {settings.key} does not match --tlscert {settings.cert}: {e}"
        ) from e
    return options


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
        return self._endpoint.listen(
            TLSMemoryBIOFactory(self._creator, False, protocolFactory)
        )
