# -*- test-case-name: tests.api.policy.test_peer -*-
"""
Who is on the other end of a request's connection: the listener it came
in on, the TLS client certificate it showed, the unix peer's uid and gid.

Everything here is read from the connection once, at its first request,
and kept for the connection's life (a hijacked attach keeps its channel):
a certificate does not change within a TLS session, nor a unix peer's
credentials within a connection (C{SO_PEERCRED} is what they were at
C{connect}).
"""

import socket
import struct
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from attrs import field, frozen
from cryptography import x509
from cryptography.x509.oid import NameOID

from twisted.logger import Logger

_log = Logger()

#: C{struct ucred}: pid, uid, gid.
_UCRED = struct.Struct("3i")

#: How deep a transport may be wrapped (TLS, the connection limit, the
#: listen buffer's handover): a bound on the walk, not a real depth.
_MAX_WRAPPERS = 8


@frozen
class Certificate:
    """
    What a TLS client certificate says about its holder.

    @ivar subject: The subject as RFC 4514 text (C{CN=alice,O=Example}),
        for the audit log.
    @ivar cn: The subject's common names.
    @ivar o: The subject's organisations.
    @ivar ou: The subject's organisational units.
    @ivar dns: The DNS names of its subjectAltName.
    @ivar uri: The URIs of its subjectAltName (SPIFFE IDs).
    @ivar email: The e-mail addresses of its subjectAltName and subject.
    @ivar patterns: service-identity's patterns of the certificate, which
        DNS names are matched against (wildcards, IDNA).
    """

    subject: str
    cn: tuple[str, ...] = ()
    o: tuple[str, ...] = ()
    ou: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    uri: tuple[str, ...] = ()
    email: tuple[str, ...] = ()
    patterns: tuple[Any, ...] = field(default=(), eq=False, repr=False)


@frozen
class Peer:
    """
    One connection's caller, as far as the daemon can tell.

    @ivar listener: The C{-H} listener (its canonical text) the connection
        came in on, or C{None} when unknown (a test's fake channel).
    @ivar address: The peer's address for the log (C{127.0.0.1:5555}, or
        the socket's path).
    @ivar certificate: The verified TLS client certificate, if any.
    @ivar uid: A unix peer's uid (C{SO_PEERCRED}).
    @ivar gid: A unix peer's gid.
    @ivar pid: A unix peer's process ID when it connected.
    @ivar groups: The unix peer's supplementary groups (from
        C{/proc/PID/status} when it connected), its C{gid} included.
    """

    listener: str | None = None
    address: str = "-"
    certificate: Certificate | None = None
    uid: int | None = None
    gid: int | None = None
    pid: int | None = None
    groups: frozenset[int] = frozenset()


def certificate_identity(cert: x509.Certificate) -> Certificate:
    """
    The names a policy can match in C{cert}: the subject's CN, O, OU and
    e-mail, and the subjectAltName's DNS names, URIs and e-mail addresses.
    """
    from service_identity.cryptography import extract_patterns  # noqa: PLC0415

    def attributes(oid: x509.ObjectIdentifier) -> tuple[str, ...]:
        return tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(oid))

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        uri = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        email = tuple(san.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        dns = uri = email = ()
    except ValueError:  # a malformed extension: match on the subject alone
        dns = uri = email = ()
    try:
        patterns = tuple(extract_patterns(cert))
    except Exception:
        patterns = ()
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        cn=attributes(NameOID.COMMON_NAME),
        o=attributes(NameOID.ORGANIZATION_NAME),
        ou=attributes(NameOID.ORGANIZATIONAL_UNIT_NAME),
        dns=dns,
        uri=uri,
        email=email + attributes(NameOID.EMAIL_ADDRESS),
        patterns=patterns,
    )


def _transports(transport: object) -> Iterator[object]:
    """
    C{transport} and each one it wraps: the HTTP channel's transport is
    TLS, or the connection limit's wrapper, over the socket's own.
    """
    for _ in range(_MAX_WRAPPERS):
        if transport is None:
            return
        yield transport
        transport = getattr(transport, "transport", None)


def _peer_certificate(transports: list[object]) -> Certificate | None:
    for transport in transports:
        get = getattr(transport, "getPeerCertificate", None)
        if get is None:
            continue
        try:
            certificate = get()
        except Exception:
            return None
        if certificate is None:
            return None
        return certificate_identity(certificate.to_cryptography())
    return None


def _unix_socket(transports: list[object]) -> socket.socket | None:
    for transport in transports:
        sock = getattr(transport, "socket", None)
        if isinstance(sock, socket.socket):
            return sock if sock.family == socket.AF_UNIX else None
    return None


def _groups(pid: int, gid: int) -> frozenset[int]:
    """The peer's groups: its gid and what C{/proc/PID/status} lists."""
    groups = {gid}
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return frozenset(groups)
    for line in status.splitlines():
        if line.startswith("Groups:"):
            groups.update(int(g) for g in line.split()[1:] if g.isdigit())
    return frozenset(groups)


def _address(request: Any) -> str:
    peer = request.getClientAddress()
    host = getattr(peer, "host", None)
    if host is not None:
        return f"{host}:{getattr(peer, 'port', '')}"
    name = getattr(peer, "name", None)
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    return str(name) if name else "-"


def read_peer(request: Any) -> Peer:
    """
    The caller of C{request}, read from its connection (no cache).

    @param request: A L{twisted.web.server.Request} whose channel is
        connected; C{request.site.listener} names its listener when the
        daemon's L{Site} says so.
    """
    channel = request.channel
    transports = list(_transports(getattr(channel, "transport", None)))
    site = getattr(channel, "site", None)
    listener = getattr(site, "listener", None)
    certificate = _peer_certificate(transports)
    uid = gid = pid = None
    groups: frozenset[int] = frozenset()
    sock = _unix_socket(transports)
    if sock is not None:
        try:
            pid, uid, gid = _UCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            )
        except OSError as e:
            _log.warn("Cannot read a unix peer's credentials: {error}", error=e)
        else:
            groups = _groups(pid, gid)
    return Peer(
        listener=listener if isinstance(listener, str) else None,
        address=_address(request),
        certificate=certificate,
        uid=uid,
        gid=gid,
        pid=pid,
        groups=groups,
    )


class ConnectionCache:
    """
    One value per connection (its principal), made at the connection's
    first request and forgotten with the connection.
    """

    def __init__(self) -> None:
        self._values: weakref.WeakKeyDictionary[object, Any] = (
            weakref.WeakKeyDictionary()
        )

    def peek(self, request: Any) -> Any:
        """What this connection's first request made, or C{None} yet."""
        try:
            return self._values.get(getattr(request, "channel", None))
        except TypeError:
            return None

    def get(self, request: Any, make: Callable[[Any], Any]) -> Any:
        """What C{make(request)} gave at this connection's first request."""
        channel = request.channel
        try:
            value = self._values.get(channel)
        except TypeError:  # not weakly referable: nothing to keep it on
            return make(request)
        if value is None:
            value = make(request)
            self._values[channel] = value
        return value
