# -*- test-case-name: tests.test_tap -*-
"""The daemon's settings, as the command line gave them."""

from attrs import field, frozen


@frozen
class DaemonConfig:
    """
    Settings the engine needs; the listeners' settings stay in L{dockserve.tap}.

    @ivar data_root: What must survive a restart: images, container records,
        logs (C{/var/lib/dockserve}).
    @ivar exec_root: What need not: sockets, pid and exit files
        (C{/run/dockserve}).
    @ivar runtime: The OCI runtime binary (C{runc}, or C{crun}).
    @ivar bridge: C{--bridge}: C{""} for the default bridge network,
        C{none} for none (loopback only; the host's network untouched).
    @ivar insecure_registries: Registries reached over plain HTTP or with
        unverified TLS (C{host:port} or CIDR).
    @ivar registry_mirrors: Mirrors tried before Docker Hub.
    @ivar debug: C{--debug}: debug endpoints and debug logging.
    @ivar hosts: The listeners, for C{/info}.
    """

    data_root: str
    exec_root: str
    runtime: str = "runc"
    bridge: str = ""
    insecure_registries: tuple[str, ...] = field(default=())
    registry_mirrors: tuple[str, ...] = field(default=())
    debug: bool = False
    hosts: tuple[str, ...] = field(default=())
