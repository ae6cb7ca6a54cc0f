# -*- test-case-name: tests.daemon.volumes.test_local -*-
"""
The C{local} volume driver's options, as dockerd's (moby
C{volume/local}): a volume is a directory, C{<volumes>/<name>/_data},
unless C{--opt type=... --opt device=... [--opt o=...]} make it a mount
of a device or file system there (C{tmpfs}, C{nfs}, a bind of a host
path with C{type=none o=bind}), mounted when its first container starts
and unmounted when its last one stops.

The mount is done by util-linux's C{mount(8)}, which parses C{o=} as
C{mount -o} does (C{size=64m,uid=1000}, C{addr=} for NFS) exactly as a
user would type it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockserve.errors import InvalidParameter

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The options the local driver takes (C{size} needs quota support, which
#: this daemon does not offer).
OPTIONS = frozenset({"type", "device", "o"})


def check_options(name: str, options: Mapping[str, str]) -> dict[str, str]:
    """
    C{options} if the local driver takes them, else dockerd's 400.

    @raise InvalidParameter: C{create NAME: invalid option: "x"}, or a
        C{type} without a C{device} (or the other way round).
    """
    for key in options:
        if key == "size":
            raise InvalidParameter(
                f"create {name}: quota size requested but no quota support"
            )
        if key not in OPTIONS:
            raise InvalidParameter(f'create {name}: invalid option: "{key}"')
    if options:
        for required in ("type", "device"):
            if not options.get(required):
                raise InvalidParameter(
                    f'create {name}: missing required option: "{required}"'
                )
    return dict(options)


def mount_argv(options: Mapping[str, str], target: str) -> list[str] | None:
    """
    The C{mount(8)} command that makes the volume's device appear at
    C{target}, or C{None} for a plain directory volume.
    """
    if not options:
        return None
    argv = ["mount", "-t", options["type"]]
    if options.get("o"):
        argv += ["-o", options["o"]]
    return [*argv, options["device"], target]
