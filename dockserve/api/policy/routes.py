# -*- test-case-name: tests.api.policy.test_routes -*-
"""
The names a policy calls routes by: dockerd's areas and operations
(C{containers.create}, C{images.pull}, C{exec.start}), one per row of the
route table.

Docker's API has no such names on the wire; these follow the Engine API's
operation IDs (C{ContainerCreate} is C{containers.create},
C{ImageCreate} from a registry is C{images.pull}), so a policy reads as the
CLI's verbs do. A table here rather than a field on
L{dockserve.api.route.Route} keeps the route table the handlers' alone;
C{tests.api.policy.test_routes} fails when a route has no name.
"""

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from twisted.web.server import Request

#: Route name -> (HTTP method, the handler's name in the route table).
#: C{images.pull} and C{images.import} share C{POST /images/create}: the
#: query (C{fromSrc}) tells them apart. C{images.build} is dockerd's
#: C{POST /build}, not served yet; its body rule (build args) is ready for it.
ROUTES: Final[dict[str, tuple[str, str]]] = {
    "system.ping": ("GET", "ping"),
    "system.version": ("GET", "version"),
    "system.info": ("GET", "info"),
    "system.df": ("GET", "system_df"),
    "system.events": ("GET", "events"),
    "containers.list": ("GET", "container_list_containers"),
    "containers.create": ("POST", "container_create"),
    "containers.prune": ("POST", "container_prune"),
    "containers.inspect": ("GET", "container_inspect"),
    "containers.top": ("GET", "container_top"),
    "containers.logs": ("GET", "container_logs"),
    "containers.changes": ("GET", "container_changes"),
    "containers.export": ("GET", "container_export"),
    "containers.stats": ("GET", "container_stats"),
    "containers.resize": ("POST", "container_resize"),
    "containers.start": ("POST", "container_start"),
    "containers.stop": ("POST", "container_stop"),
    "containers.restart": ("POST", "container_restart"),
    "containers.kill": ("POST", "container_kill"),
    "containers.update": ("POST", "container_update"),
    "containers.rename": ("POST", "container_rename"),
    "containers.pause": ("POST", "container_pause"),
    "containers.unpause": ("POST", "container_unpause"),
    "containers.attach": ("POST", "container_attach"),
    "containers.wait": ("POST", "container_wait"),
    "containers.copy": ("POST", "container_copy"),
    "containers.archive_info": ("HEAD", "container_archive_head"),
    "containers.archive": ("GET", "container_archive_get"),
    "containers.put_archive": ("PUT", "container_archive_put"),
    "containers.delete": ("DELETE", "container_remove"),
    "exec.create": ("POST", "exec_create"),
    "exec.start": ("POST", "exec_start"),
    "exec.resize": ("POST", "exec_resize"),
    "exec.inspect": ("GET", "exec_inspect"),
    "images.list": ("GET", "list_images"),
    "images.pull": ("POST", "create_image"),
    "images.import": ("POST", "create_image"),
    "images.load": ("POST", "load_images"),
    "images.save": ("GET", "save_images"),
    "images.search": ("GET", "search_images"),
    "images.prune": ("POST", "prune_images"),
    "images.inspect": ("GET", "inspect_image"),
    "images.history": ("GET", "image_history"),
    "images.tag": ("POST", "tag_image"),
    "images.push": ("POST", "push_image"),
    "images.delete": ("DELETE", "remove_image"),
    "images.build": ("POST", "build"),
    "images.commit": ("POST", "image_commit"),
    "build.prune": ("POST", "build_prune"),
    "networks.list": ("GET", "network_list_networks"),
    "networks.create": ("POST", "network_create"),
    "networks.prune": ("POST", "network_prune"),
    "networks.inspect": ("GET", "network_inspect"),
    "networks.delete": ("DELETE", "network_remove"),
    "networks.connect": ("POST", "network_connect"),
    "networks.disconnect": ("POST", "network_disconnect"),
    "volumes.list": ("GET", "volume_list"),
    "volumes.create": ("POST", "volume_create"),
    "volumes.prune": ("POST", "volume_prune"),
    "volumes.inspect": ("GET", "volume_inspect"),
    "volumes.delete": ("DELETE", "volume_remove"),
    "debug.vars": ("GET", "debug_vars"),
    "debug.pprof": ("GET", "debug_pprof_index"),
}

#: Handlers served under more than one name or path, beyond L{ROUTES}.
_EXTRA_HANDLERS: Final = {
    "create_image": "images.pull",
    "save_image": "images.save",
    "debug_pprof_profile": "debug.pprof",
    "debug_pprof_heap": "debug.pprof",
    "debug_pprof_goroutine": "debug.pprof",
}

#: The handler's name -> the route's name.
BY_HANDLER: Final[dict[str, str]] = {
    **{handler: name for name, (_, handler) in ROUTES.items()},
    **_EXTRA_HANDLERS,
}

#: Every route name a policy may name.
NAMES: Final = frozenset(ROUTES)

#: Routes that change nothing: the C{read-only} preset allows these.
READ_ONLY: Final = frozenset(
    name for name, (method, _) in ROUTES.items() if method in {"GET", "HEAD"}
)

#: Routes that hold the connection as a hijacked stream (attach, exec):
#: what C{streams} in a policy's limits counts.
STREAMS: Final = frozenset({"containers.attach", "exec.start"})


def route_name(handler: str, request: "Request") -> str:
    """
    The policy's name for a request routed to C{handler}.

    @return: A name of L{NAMES}; the handler's own name for a route this
        table does not know (which no rule then allows but C{*}).
    """
    name = BY_HANDLER.get(handler, handler)
    if name == "images.pull" and request.args.get(b"fromSrc"):
        return "images.import"
    return name
