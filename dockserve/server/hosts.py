# -*- test-case-name: tests.server.test_hosts -*-
"""
C{-H} values: Docker's C{PROTO://ADDR} forms and Twisted strports descriptions.

dockerd accepts C{tcp://HOST:PORT}, C{unix:///path}, C{fd://} and C{fd://N};
Twisted users expect C{tcp:2375}, C{unix:/path}, C{ssl:2376:...} and
C{systemd:domain=UNIX:index=0}.  L{parse} turns either into one
L{HostDescription}, or raises L{InvalidHost} with a message that says what
is wrong, so that C{twistd dockserve} can exit 2 with one line.
"""

import ipaddress
from typing import Literal

from attrs import frozen

#: Where dockerd listens when C{tcp://} gives no host or port.
DEFAULT_TCP_HOST = "localhost"
DEFAULT_TCP_PORT = 2375

#: The strports endpoint types we serve; anything else is a typo more often
#: than a plugin, and failing at option time beats failing at bind time.
STRPORTS_TYPES = frozenset({"tcp", "tcp6", "unix", "ssl", "systemd"})

Scheme = Literal["tcp", "unix", "fd", "strports"]


class InvalidHost(ValueError):
    """A C{-H} value that names no listener we can serve."""


@frozen
class HostDescription:
    """
    One listener, as the user asked for it.

    @ivar scheme: C{tcp}, C{unix}, C{fd} or C{strports}.
    @ivar text: The canonical form, used to serve duplicates once and to
        name the listener in messages and C{/info}.
    @ivar host: For C{tcp}: the address or name to bind.
    @ivar port: For C{tcp}: the port.
    @ivar path: For C{unix}: the socket file.
    @ivar fd: For C{fd}: the descriptor number, or C{None} for all of them.
    @ivar endpoint: For C{strports}: the Twisted endpoint description.
    @ivar encrypted: The endpoint does its own TLS (C{ssl:}), so C{--tls}
        is not applied on top of it.
    """

    scheme: Scheme
    text: str
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int | None = None
    endpoint: str = ""
    encrypted: bool = False

    @property
    def is_tcp(self) -> bool:
        """
        Whether this listener is reachable over a network (TCP), which is
        what C{--tls} protects and what the non-loopback warning is about.
        """
        if self.scheme == "tcp":
            return True
        if self.scheme == "strports":
            kind = self.endpoint.split(":", 1)[0]
            return kind in {"tcp", "tcp6", "ssl"}
        return False

    @property
    def is_loopback(self) -> bool:
        """
        Whether only this machine can connect: a TCP host of C{localhost} or
        a loopback address.  A strports C{tcp:PORT} without C{interface=}
        binds every address, so it is not.
        """
        host = self.host
        if self.scheme == "strports":
            host = _strports_keyword(self.endpoint, "interface") or ""
        if self.scheme not in {"tcp", "strports"}:
            return True
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            return False


def parse(value: str, *, default_unix: str) -> HostDescription:
    """
    Parse one C{-H} value.

    @param value: What the user gave.
    @param default_unix: The socket path C{unix://} alone means.
    @return: The listener it describes.
    @raise InvalidHost: For a value without a protocol, an unknown
        protocol, a bad port, or a path after C{tcp://HOST:PORT}.
    """
    value = value.strip()
    if "://" in value:
        proto, _, address = value.partition("://")
        if proto == "tcp":
            return _parse_tcp(value, address)
        if proto == "unix":
            path = address or default_unix
            if not path.startswith("/"):
                raise InvalidHost(f"invalid unix socket path {value!r}: not absolute")
            return HostDescription("unix", f"unix://{path}", path=path)
        if proto == "fd":
            return _parse_fd(value, address)
        raise InvalidHost(
            f"invalid bind address protocol {proto!r} in {value!r}:"
            " expected tcp://, unix:// or fd://"
        )
    kind, colon, rest = value.partition(":")
    if not colon:
        raise InvalidHost(
            f"invalid bind address format {value!r}: expected PROTO://ADDR"
            " (tcp://HOST:PORT, unix:///path, fd://) or a Twisted endpoint"
            " description (tcp:2375, unix:/path, ssl:2376:..., systemd:...)"
        )
    if kind not in STRPORTS_TYPES:
        raise InvalidHost(
            f"invalid bind address {value!r}: {kind!r} is not a protocol;"
            " expected PROTO://ADDR (tcp://HOST:PORT, unix:///path, fd://) or a"
            f" Twisted endpoint ({', '.join(t + ':' for t in sorted(STRPORTS_TYPES))})"
        )
    if kind == "unix":
        path = rest.split(":", 1)[0]
        if not path.startswith("/"):
            raise InvalidHost(f"invalid unix socket path {value!r}: not absolute")
        if rest == path:
            # A plain unix:/path gets the same care as unix:///path.
            return HostDescription("unix", f"unix://{path}", path=path)
    if kind in {"tcp", "tcp6", "ssl"}:
        port_text = rest.split(":", 1)[0]
        port_text = port_text.removeprefix("port=")
        _check_port(value, port_text)
    return HostDescription("strports", value, endpoint=value, encrypted=kind == "ssl")


def _parse_tcp(value: str, address: str) -> HostDescription:
    """Parse the C{HOST:PORT} of C{tcp://HOST:PORT}, with dockerd's defaults."""
    if "/" in address:
        raise InvalidHost(
            f"invalid bind address {value!r}: should not contain a path element"
        )
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise InvalidHost(f"invalid bind address {value!r}: unclosed '['")
        host = address[1:end]
        rest = address[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidHost(f"invalid bind address format {value!r}")
        port_text = rest[1:]
    elif address.count(":") > 1:
        raise InvalidHost(
            f"invalid bind address {value!r}: write IPv6 addresses as [ADDR]:PORT"
        )
    else:
        host, _, port_text = address.partition(":")
    host = host or DEFAULT_TCP_HOST
    port = _check_port(value, port_text) if port_text else DEFAULT_TCP_PORT
    shown = f"[{host}]" if ":" in host else host
    return HostDescription("tcp", f"tcp://{shown}:{port}", host=host, port=port)


def _parse_fd(value: str, address: str) -> HostDescription:
    """Parse C{fd://} (every passed socket) or C{fd://N} (descriptor N)."""
    if address in {"", "*"}:
        return HostDescription("fd", "fd://")
    if not address.isdigit() or int(address) < 3:
        raise InvalidHost(
            f"invalid file descriptor in {value!r}: expected fd:// or fd://N"
            " with N >= 3 (a socket passed by systemd)"
        )
    return HostDescription("fd", f"fd://{int(address)}", fd=int(address))


def _check_port(value: str, port_text: str) -> int:
    """The port in C{port_text}, which must be a number from 1 to 65535."""
    if not port_text.isdigit():
        raise InvalidHost(f"invalid bind address port {port_text!r} in {value!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise InvalidHost(
            f"invalid bind address port {port} in {value!r}: must be 1 to 65535"
        )
    return port


def _strports_keyword(description: str, name: str) -> str | None:
    """The value of C{name=...} in a strports description, if present."""
    for part in description.split(":")[1:]:
        key, eq, val = part.partition("=")
        if eq and key == name:
            return val
    return None


def unique(hosts: list[HostDescription]) -> list[HostDescription]:
    """C{hosts} in order, each canonical listener once."""
    seen: set[str] = set()
    result = []
    for host in hosts:
        if host.text not in seen:
            seen.add(host.text)
            result.append(host)
    return result
