# -*- test-case-name: tests.api.test_build -*-
"""
The builder's endpoints: C{POST /build} (the classic builder, what the
docker CLI without buildx, compose and the Docker SDK send) and C{POST
/build/prune}.

C{/build} reads its parameters as dockerd's C{build_routes.go} does
(booleans as C{httputils.BoolValue}: only C{""}, C{0}, C{no}, C{false},
C{none} are false; C{rm} is true unless given), refuses what it does not
do before any work (C{version=2}: BuildKit; C{squash}), then has the
backend receive the context (the body, or C{remote}'s URL or Git
repository) and parse the Dockerfile: a failure there is a plain error
status, as dockerd's, unless a remote context's download progress has
started the stream already. From then on the answer is a 200 JSON
stream; a failed step is its last message (C{errorDetail}). A client
that goes away cancels the build.
"""

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.web.server import Request

from dockserve.api.params import query, query_all, query_bool, query_filters
from dockserve.api.route import Route
from dockserve.errors import DockerError, InvalidParameter, NotImplementedByDaemon

_log = Logger()

_FALSE = frozenset({"", "0", "no", "false", "none"})

#: The message of C{version=2}: this daemon has no BuildKit.
BUILDKIT_REFUSED = (
    "BuildKit (builder version 2) is not supported by this daemon: use the "
    "classic builder (DOCKER_BUILDKIT=0 docker build, version=1)"
)


class BuildBackend(Protocol):
    """What the build endpoints need (L{dockserve.daemon.build.service})."""

    def check(self, query: dict[str, Any]) -> Any:
        """The build's options, checked (dockerd's 400s)."""

    def prepare(
        self, options: Any, body: Any, send: Callable[[dict[str, Any]], None]
    ) -> Deferred[Any]:
        """
        Receive the context (the body or a remote one), read and parse the
        Dockerfile; a remote download's progress to C{send}.
        """

    def build(
        self, options: Any, prepared: Any, send: Callable[[dict[str, Any]], None]
    ) -> Deferred[str]:
        """Run the build, its stream to C{send}; cancel to stop it."""

    def prune(self, *, all_: bool = False) -> Deferred[dict[str, Any]]:
        """Remove the build cache no image or container holds."""


def _bool(request: Request, name: str, default: bool = False) -> bool:
    """As dockerd's C{httputils.BoolValue}; C{default} when absent."""
    value = query(request, name)
    if value is None:
        return default
    return value.strip().lower() not in _FALSE


def _json(request: Request, name: str, kind: type) -> Any:
    """A JSON-encoded parameter (C{buildargs}, C{labels}, C{cachefrom}...)."""
    text = query(request, name)
    if not text:
        return kind()
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InvalidParameter(f"invalid {name} parameter: {e}") from None
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise InvalidParameter(f"invalid {name} parameter: not a JSON {kind.__name__}")
    return value


def _int(request: Request, name: str) -> int:
    text = query(request, name)
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise InvalidParameter(
            f'strconv.ParseInt: parsing "{text}": invalid syntax'
        ) from None


def _registry_config(request: Request) -> dict[str, Any]:
    """C{X-Registry-Config}: base64url JSON credentials by registry."""
    values = request.requestHeaders.getRawHeaders(b"X-Registry-Config") or []
    if not values or not values[0].strip():
        return {}
    raw = values[0].strip()
    try:
        decoded = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
        value = json.loads(decoded) if decoded.strip() else {}
    except (binascii.Error, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def host_config(request: Request) -> dict[str, Any]:
    """The RUN containers' C{HostConfig} from the build's parameters."""
    config: dict[str, Any] = {}
    mode = query(request, "networkmode")
    if mode:
        config["NetworkMode"] = mode
    hosts = [h for value in query_all(request, "extrahosts") for h in value.split(",")]
    hosts = [h.strip() for h in hosts if h.strip()]
    if hosts:
        config["ExtraHosts"] = hosts
    for name, key in (
        ("shmsize", "ShmSize"),
        ("memory", "Memory"),
        ("memswap", "MemorySwap"),
        ("cpushares", "CpuShares"),
        ("cpuperiod", "CpuPeriod"),
        ("cpuquota", "CpuQuota"),
    ):
        value = _int(request, name)
        if value:
            config[key] = value
    for name, key in (
        ("cpusetcpus", "CpusetCpus"),
        ("cpusetmems", "CpusetMems"),
        ("cgroupparent", "CgroupParent"),
    ):
        text = query(request, name)
        if text:
            config[key] = text
    ulimits = _json(request, "ulimits", list)
    if ulimits:
        config["Ulimits"] = ulimits
    return config


class BuildAPI:
    """The /build handlers."""

    def __init__(self, backend: BuildBackend | None) -> None:
        self._backend = backend

    def _check_refusals(self, request: Request) -> None:
        version = query(request, "version") or "1"
        if version == "2":
            raise InvalidParameter(BUILDKIT_REFUSED)
        if version != "1":
            raise InvalidParameter(f"unsupported builder version: {version}")
        if _bool(request, "squash"):
            raise InvalidParameter("squash is only supported with experimental mode")
        isolation = query(request, "isolation") or ""
        if isolation not in {"", "default"}:
            raise InvalidParameter(f"invalid isolation: {isolation}")
        platform = query(request, "platform") or ""
        if platform and not platform.startswith("linux"):
            raise InvalidParameter(f'"{platform}": operating system is not supported')

    async def build(self, request: Request) -> None:
        """
        C{POST /build}: the classic builder's JSON stream; errors before it
        (bad parameters, no Dockerfile, a bad Dockerfile) are plain statuses.
        """
        self._check_refusals(request)
        backend = self._backend
        if backend is None:
            raise NotImplementedByDaemon("this daemon has no builder")
        values: dict[str, Any] = {
            "dockerfile": query(request, "dockerfile") or "Dockerfile",
            "tags": query_all(request, "t"),
            "buildargs": _json(request, "buildargs", dict),
            "labels": _json(request, "labels", dict),
            "target": query(request, "target") or "",
            "nocache": _bool(request, "nocache"),
            "pull": _bool(request, "pull"),
            "rm": _bool(request, "rm", True) or _bool(request, "forcerm"),
            "forcerm": _bool(request, "forcerm"),
            "q": _bool(request, "q"),
            "cachefrom": _json(request, "cachefrom", list),
            "host_config": host_config(request),
            "auth": _registry_config(request),
            "remote": query(request, "remote") or "",
            "platform": query(request, "platform") or "",
        }
        options = backend.check(values)
        assert request.content is not None  # noqa: S101 - Twisted always sets it
        request.content.seek(0)
        started = False

        def send(message: dict[str, Any]) -> None:
            nonlocal started
            if request.finished or getattr(request, "_disconnected", False):
                return
            if not started:
                started = True
                request.setResponseCode(200)
                request.responseHeaders.setRawHeaders(
                    b"Content-Type", [b"application/json"]
                )
            request.write(json.dumps(message).encode("utf-8") + b"\r\n")  # type: ignore[no-untyped-call]

        try:
            prepared = await backend.prepare(options, request.content, send)
        except DockerError as e:
            # As dockerd's errf: a plain status until the stream has said
            # something (a remote context's download), its last message after.
            if not started:
                raise
            send({"errorDetail": {"message": e.message}, "error": e.message})
            return
        if not started:
            request.setResponseCode(200)
            request.responseHeaders.setRawHeaders(
                b"Content-Type", [b"application/json"]
            )
            started = True
        running = backend.build(options, prepared, send)
        request.notifyFinish().addErrback(lambda _: running.cancel())
        try:
            await running
        except (DockerError, CancelledError):
            # An error is already the stream's last message; a cancel means
            # the client is gone.
            pass
        except Exception:
            _log.failure("build")

    async def build_prune(self, request: Request) -> dict[str, Any]:
        """
        C{POST /build/prune}: the build cache's unused images go;
        C{{"CachesDeleted": [...], "SpaceReclaimed": N}}.
        """
        query_filters(request)
        all_ = query_bool(request, "all")
        if self._backend is None:
            return {"CachesDeleted": [], "SpaceReclaimed": 0}
        return await self._backend.prune(all_=all_)


ROUTES: list[Route] = [
    Route("POST", "/build", "build"),
    Route("POST", "/build/prune", "build_prune"),
]
