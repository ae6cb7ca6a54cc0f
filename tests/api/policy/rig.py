"""
A policy in front of a real API over an in-memory engine: containers on
the scripted runtime, real volume, network and event services, each
request made as a chosen L{Peer}.
"""

import json
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.middleware import Middleware
from dockserve.api.policy.audit import AuditLog
from dockserve.api.policy.door import FrontDoor
from dockserve.api.policy.file import parse
from dockserve.api.policy.peer import Certificate, Peer
from dockserve.api.router import make_resource
from dockserve.daemon.events import EventBus
from dockserve.daemon.network.service import NetworkService
from dockserve.daemon.volumes.service import VolumeService
from dockserve.testing.backend import MemoryBackend
from dockserve.testing.containers import make_service

URL = "http://localhost/v1.50"


def tls_peer(cn: str, **kwargs: Any) -> Peer:
    """A TCP caller whose client certificate has the common name C{cn}."""
    return Peer(
        listener="tcp://127.0.0.1:2376",
        address="127.0.0.1:40000",
        certificate=Certificate(subject=f"CN={cn}", cn=(cn,), **kwargs),
    )


def unix_peer(uid: int, gid: int = 0) -> Peer:
    """A caller on the unix socket with C{uid}."""
    return Peer(
        listener="unix:///run/dockserve.sock",
        address="/run/dockserve.sock",
        uid=uid,
        gid=gid,
        pid=4242,
        groups=frozenset({gid}),
    )


class Rig:
    """
    The API with C{policy} in front of it.

    @ivar peer: Who the next request comes from.
    @ivar decisions: What the door told its observer.
    @ivar clock: The rate limits' clock.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        policy: str | None,
        *,
        audit: str | None = None,
        images: Any = None,
    ) -> None:
        root = Path(case.mktemp())
        root.mkdir()
        self.bus = EventBus(now_ns=lambda: 1_765_000_000_000_000_000)
        self.containers, self.runtime, _ = make_service(root)
        self.containers.set_events(self.bus.publish)
        self.volumes = VolumeService(root / "volumes", publish=self.bus.publish)
        self.volumes.restore()
        self.containers.set_volumes(self.volumes)
        self.networks = NetworkService(
            root / "network", routes=list, publish=self.bus.publish
        )
        self.networks.restore()
        self.containers.set_networking(self.networks, None)
        self.networks.in_use = self.containers.network_in_use
        backend = MemoryBackend(
            containers=self.containers,
            volumes=self.volumes,
            networks=self.networks,
            events=self.bus,
            images=images,
        )
        self.peer = unix_peer(0)
        self.decisions: list[tuple[str, str, str, str | None]] = []
        self.clock = Clock()
        self.logs: list[str] = []
        audit_log = AuditLog.open(audit) if audit is not None else None
        if audit_log is not None:
            case.addCleanup(audit_log.close)
        self.door = FrontDoor(
            parse(policy) if policy is not None else None,
            backend,
            audit=audit_log,
            clock=self.clock.seconds,
            wall=lambda: 1_765_000_000.25,
            identify=lambda _request: self.peer,
        )
        self.door.add_observer(lambda *decision: self.decisions.append(decision))
        resource = make_resource(backend, reactor=self.clock)
        assert isinstance(resource, Middleware)
        resource.add_check(self.door)
        self.stub = StubTreq(resource)
        self.case = case

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        as_peer: Peer | None = None,
    ) -> tuple[int, Any]:
        """C{method path} as C{as_peer} (or L{peer}): status and JSON."""
        if as_peer is not None:
            self.peer = as_peer
        data = json.dumps(body).encode() if body is not None else b""
        response = self.case.successResultOf(
            self.stub.request(
                method,
                URL + path,
                data=data,
                headers={"Content-Type": "application/json", **(headers or {})},
            )
        )
        content = self.case.successResultOf(response.content())
        try:
            decoded = json.loads(content) if content.strip() else None
        except ValueError:
            decoded = content
        return response.code, decoded

    def create(self, name: str, as_peer: Peer | None = None, **body: Any) -> str:
        """Create a container; its ID."""
        code, answer = self.request(
            "POST",
            f"/containers/create?name={name}",
            {"Image": "busybox", "Cmd": ["true"], **body},
            as_peer=as_peer,
        )
        self.case.assertEqual(code, 201, answer)
        return str(answer["Id"])
