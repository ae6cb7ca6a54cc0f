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

#: The widest mode a unix socket may have: whoever can connect is root here.
UNIX_MODE = 0o660

#: The keywords of Twisted's C{unix:} description (C{wantPID} is the name
#: C{listenUNIX} gives C{lockfile}; C{path} reads better than C{address}).
_UNIX_KEYWORDS = frozenset(
    {"address", "path", "mode", "backlog", "lockfile", "wantPID"}
)

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
    @ivar mode: For C{unix}: the socket file's mode, never wider than
        L{UNIX_MODE}.
    @ivar backlog: For C{unix}: the listen queue's length, if given.
    @ivar lockfile: For C{unix}: hold C{PATH.lock} while listening, as
        Twisted's C{lockfile=1} does.
    """

    scheme: Scheme
    text: str
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int | None = None
    endpoint: str = ""
    encrypted: bool = False
    mode: int = UNIX_MODE
    backlog: int | None = None
    lockfile: bool = False

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
        # Every unix form gets the same care as unix:///path.
        return _parse_unix_strports(value, rest)
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


def _parse_unix_strports(value: str, rest: str) -> HostDescription:
    """
    Parse Twisted's C{unix:PATH[:KEY=VALUE...]} into a careful unix socket.

    Twisted's own unix endpoint would make the file C{0666}; here its
    keywords are read (C{mode}, C{backlog}, C{lockfile}/C{wantPID}, the
    path positionally or as C{address=}/C{path=}) and a C{mode} wider than
    C{0660} is refused.
    """
    args, keywords = split_strports(rest)
    unknown = sorted(set(keywords) - _UNIX_KEYWORDS)
    if unknown:
        raise InvalidHost(
            f"invalid bind address {value!r}: unknown unix option {unknown[0]!r};"
            f" expected {', '.join(sorted(_UNIX_KEYWORDS))}"
        )
    paths = args + [keywords[k] for k in ("address", "path") if k in keywords]
    if not paths:
        raise InvalidHost(f"invalid bind address {value!r}: no socket path")
    if len(paths) > 1:
        raise InvalidHost(
            f"invalid bind address {value!r}: one socket path expected, got"
            f" {', '.join(paths)}"
        )
    path = paths[0]
    if not path.startswith("/"):
        raise InvalidHost(f"invalid unix socket path {value!r}: not absolute")
    lock_key = "lockfile" if "lockfile" in keywords else "wantPID"
    return HostDescription(
        "unix",
        f"unix://{path}",
        path=path,
        mode=_unix_mode(value, keywords.get("mode")),
        backlog=_unix_backlog(value, keywords.get("backlog")),
        lockfile=_unix_flag(value, lock_key, keywords.get(lock_key, "0")),
    )


def _unix_mode(value: str, text: str | None) -> int:
    """The octal C{mode=} of C{value}, which may not be wider than 0660."""
    if text is None:
        return UNIX_MODE
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise InvalidHost(
            f"invalid bind address {value!r}: mode={text!r} is not an octal mode"
        )
    if mode & ~UNIX_MODE:
        raise InvalidHost(
            f"invalid bind address {value!r}: mode={text} is wider than 0660;"
            " whoever can connect to the socket is root on this machine"
        )
    return mode


def _unix_backlog(value: str, text: str | None) -> int | None:
    """The C{backlog=} of C{value}: a positive number, if given."""
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise InvalidHost(
            f"invalid bind address {value!r}: backlog={text!r} is not a positive number"
        )
    return int(text)


def _unix_flag(value: str, name: str, text: str) -> bool:
    """C{lockfile=} or C{wantPID=}: 0 or 1, as Twisted reads them."""
    if text not in {"0", "1"}:
        raise InvalidHost(
            f"invalid bind address {value!r}: {name}={text!r}: expected 0 or 1"
        )
    return text == "1"


def split_strports(description: str) -> tuple[list[str], dict[str, str]]:
    r"""
    Split strports arguments as Twisted does: C{:} separates, the first
    C{=} of a part names a keyword, and a backslash takes the next
    character as it is (the C{\:} of C{interface=\:\:1}).

    @param description: What follows the endpoint type and its colon.
    @return: The positional arguments and the keywords.
    """
    parts: list[list[str]] = [[""]]
    escaped = False
    for char in description:
        if escaped:
            parts[-1][-1] += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append([""])
        elif char == "=" and len(parts[-1]) == 1:
            parts[-1].append("")
        else:
            parts[-1][-1] += char
    args = [part[0] for part in parts if len(part) == 1]
    keywords = {part[0]: part[1] for part in parts if len(part) == 2}
    return args, keywords


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
    _, keywords = split_strports(description.partition(":")[2])
    return keywords.get(name)


def unique(hosts: list[HostDescription]) -> list[HostDescription]:
    """C{hosts} in order, each canonical listener once."""
    seen: set[str] = set()
    result = []
    for host in hosts:
        if host.text not in seen:
            seen.add(host.text)
            result.append(host)
    return result
