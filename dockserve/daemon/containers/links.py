# -*- test-case-name: tests.daemon.containers.test_links -*-
"""
Legacy links (C{docker run --link other[:alias]}), as dockerd 20.10 keeps
and gives them (moby's C{opts.ParseLink}, C{daemon/links} and the sandbox
options of the default bridge).

A link is kept in C{HostConfig.Links} in dockerd's form,
C{/other:/me/alias}: the other container's name, then the link's name
under the linking container's. Only on the default bridge does a link do
anything at a start: the linking container's C{/etc/hosts} gets a line for
the alias, the other container's hostname and its name, and its
environment the other container's address, exposed ports and environment
(L{env}). On a user-defined network a link is an C{EndpointsConfig} entry
instead: a name the embedded DNS answers for the linking container alone.

Plain functions of plain values: the container service finds the
containers and the addresses.
"""

import posixpath
import re
from collections.abc import Iterable, Sequence

from attrs import frozen

from dockserve.errors import SystemError_


@frozen
class Link:
    """
    One link as kept: C{/other:/me/alias}.

    @ivar target: The other container's name, with its slash (C{/other}).
    @ivar name: The link's own name (C{/me/alias}): the linking
        container's name joined with the alias.
    """

    target: str
    name: str

    @property
    def alias(self) -> str:
        """
        The last part of the link's name: what C{/etc/hosts} and the
        environment call the other container.
        """
        return posixpath.basename(self.name)

    @property
    def parent(self) -> str:
        """The linking container's name when the link was made (C{/me})."""
        return posixpath.dirname(self.name)

    def stored(self) -> str:
        """C{/other:/me/alias}, as inspect shows it."""
        return f"{self.target}:{self.name}"


def parse(value: str) -> tuple[str, str]:
    """
    A C{Links} entry as a client sends it (C{other}, C{other:alias}, or
    the kept C{/other:/me/alias}): the other container and the alias, as
    moby's C{opts.ParseLink} reads it.

    @raise SystemError_: dockerd's 500s, C{empty string specified for
        links} and C{bad format for links: VALUE}.
    """
    if not value:
        raise SystemError_("empty string specified for links")
    parts = value.split(":")
    if len(parts) > 2:
        raise SystemError_(f"bad format for links: {value}")
    if len(parts) == 1:
        return value, value
    target, alias = parts
    if target.startswith("/"):
        return target[1:], posixpath.basename(alias)
    return target, alias


def kept(values: Iterable[str] | None) -> list[Link]:
    """
    The links a record keeps (C{HostConfig.Links}, each C{/other:/me/alias});
    anything else in it is left out.
    """
    found = []
    for value in values or []:
        target, colon, name = str(value).partition(":")
        if colon and target.startswith("/") and name.startswith("/"):
            found.append(Link(target, name))
    return found


def link_name(parent: str, alias: str) -> str:
    """A link's name (C{/me/alias}), as dockerd's C{path.Join} makes it."""
    return posixpath.join(parent, alias)


def renamed(links: Iterable[Link], old: str, new: str) -> list[Link]:
    """
    C{links} after a container was renamed from C{old} to C{new} (names
    with their slash): as the other container, or as the linking one (its
    links' names are under its name).
    """
    changed = []
    for link in links:
        target = new if link.target == old else link.target
        name = link.name
        if link.parent == old:
            name = link_name(new, link.alias)
        changed.append(Link(target, name))
    return changed


def hosts_names(link: Link, hostname: str, target_name: str) -> str:
    """
    The names of a link's C{/etc/hosts} line: the alias, the other
    container's hostname, then its name unless that is the alias (as
    dockerd's default bridge writes them).
    """
    names = f"{link.alias} {hostname}"
    bare = target_name.lstrip("/")
    if link.alias != bare:
        names += f" {bare}"
    return names


def _port_key(port: tuple[int, str]) -> tuple[int, int, str]:
    """The order of dockerd 20.10: by number, TCP first on a tie."""
    number, proto = port
    return (number, 0 if proto.lower() == "tcp" else 1, proto)


def _ports(exposed: Iterable[str]) -> list[tuple[int, str]]:
    """C{80/tcp} keys as C{(80, "tcp")}, in dockerd 20.10's order."""
    ports = []
    for key in exposed:
        number, _, proto = str(key).partition("/")
        try:
            ports.append((int(number), proto or "tcp"))
        except ValueError:
            continue
    return sorted(ports, key=_port_key)


def _last_contiguous(ports: Sequence[tuple[int, str]], index: int) -> int:
    """The index of the last port of the run of numbers that starts at C{index}."""
    value = ports[index][0]
    for i in range(index + 1, len(ports)):
        if ports[i][0] > value + 1:
            return i - 1
        value += 1
    return len(ports) - 1


def env(
    link: Link,
    address: str,
    target_env: Iterable[str],
    exposed_ports: Iterable[str],
) -> list[str]:
    """
    The environment a link gives the linking container, as dockerd 20.10's
    C{Link.ToEnv}: C{ALIAS_PORT} (the first port), a C{_START}/C{_END}
    group for each run of three or more consecutive ports, C{_PORT_N_PROTO}
    with C{_ADDR}, C{_PORT} and C{_PROTO} for every port, C{ALIAS_NAME}
    (the link's name) and C{ALIAS_ENV_*} for the other container's own
    variables but C{HOME} and C{PATH}. dockerd repeats some names (a
    range's first C{_ADDR} and C{_PROTO}); so does this, and the runtime
    keeps one of each.

    @param address: The other container's address on the default bridge.
    @param target_env: The other container's C{Config.Env}.
    @param exposed_ports: Its C{Config.ExposedPorts} keys (C{80/tcp}).
    """
    alias = link.alias.upper().replace("-", "_")
    ports = _ports(exposed_ports)
    found: list[str] = []
    if ports:
        number, proto = ports[0]
        found.append(f"{alias}_PORT={proto}://{address}:{number}")
    i = 0
    while i < len(ports):
        j = _last_contiguous(ports, i) if i + 1 < len(ports) else i
        if j > i + 1:
            number, proto = ports[i]
            last, last_proto = ports[j]
            prefix = f"{alias}_PORT_{number}_{proto.upper()}"
            end = f"{alias}_PORT_{number}_{last_proto.upper()}"
            found += [
                f"{prefix}_START={proto}://{address}:{number}",
                f"{prefix}_ADDR={address}",
                f"{prefix}_PROTO={proto}",
                f"{prefix}_PORT_START={number}",
                f"{end}_END={last_proto}://{address}:{last}",
                f"{end}_PORT_END={last}",
            ]
            i = j + 1
        else:
            i += 1
    for number, proto in ports:
        prefix = f"{alias}_PORT_{number}_{proto.upper()}"
        found += [
            f"{prefix}={proto}://{address}:{number}",
            f"{prefix}_ADDR={address}",
            f"{prefix}_PORT={number}",
            f"{prefix}_PROTO={proto}",
        ]
    found.append(f"{alias}_NAME={link.name}")
    for item in target_env:
        key, equals, value = str(item).partition("=")
        if not equals or key in {"HOME", "PATH"}:
            continue
        found.append(f"{alias}_ENV_{key}={value}")
    return found


def with_env(own: Sequence[str], linked: Sequence[str]) -> list[str]:
    """
    A container's C{Config.Env} with its links' variables ahead of its
    own, which win a name, as dockerd's C{ReplaceOrAppendEnvValues} lets
    them.
    """
    mine = {str(item).partition("=")[0] for item in own}
    return [e for e in linked if e.partition("=")[0] not in mine] + list(own)


def _alias_line(alias: str) -> re.Pattern[str]:
    """The C{/etc/hosts} lines whose first name is C{alias}."""
    return re.compile(rf"^\S*(\t{re.escape(alias)})(\s|\.|$)", re.MULTILINE)


def hosts_readdressed(text: str, alias: str, address: str) -> str:
    """
    C{text} (an C{/etc/hosts}) with the lines of a link's alias given
    C{address}: the other container started again, maybe elsewhere (as
    dockerd's C{etchosts.Update}).
    """
    return _alias_line(alias).sub(lambda m: f"{address}{m.group(1)}{m.group(2)}", text)


def hosts_without(text: str, alias: str) -> str:
    """C{text} (an C{/etc/hosts}) without the lines of a link's alias."""
    lines = text.splitlines(keepends=True)
    pattern = _alias_line(alias)
    return "".join(line for line in lines if not pattern.match(line))
