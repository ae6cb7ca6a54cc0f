# -*- test-case-name: tests.api.policy.test_door -*-
"""
L{FrontDoor}: the check every routed request passes before its handler
(L{dockserve.api.middleware.Check}).

For each request it finds the caller's principal (once per connection),
then decides, in this order, each refusal naming its rule:

  1. the principal's rate (429);
  2. the route rules: may this principal call this route at all (403);
  3. its scope: a C{scope = "own"} principal touches only objects with
     its owner label; others answer 404 as if absent;
  4. the body rules: privileged, capabilities, devices, host namespaces,
     unconfined, bind sources, volumes-from, registries, exec as root or
     privileged, build args (403);
  5. its hijacked streams (429).

An allowed request is then shaped: creates get the owner label; a scoped
principal's lists, prunes and C{/events} are narrowed to its objects. In
learning mode (C{mode = "learn"}) a refusal is logged and audited as
C{learn} but not made, and nothing is narrowed. C{/_ping} is never
checked nor audited: every client calls it first, and it tells nothing.

Each decision goes to the observers (L{FrontDoor.add_observer}: the
metrics count them) and, with C{--audit-log}, one line per request.
"""

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from attrs import define, field

from twisted.logger import Logger

from dockserve.api.middleware import Call, TooManyRequests
from dockserve.api.params import json_body, query, set_json_body
from dockserve.api.policy import body as bodies
from dockserve.api.policy import routes
from dockserve.api.policy.audit import AuditLog, timestamp
from dockserve.api.policy.limits import Limiter
from dockserve.api.policy.model import Policy, PolicyFile, Principal
from dockserve.api.policy.peer import ConnectionCache, Peer, read_peer
from dockserve.api.policy.scope import (
    Owned,
    Owners,
    add_label_filter,
    inject_label,
    references,
)
from dockserve.errors import DockerError, Forbidden, NotFound

_log = Logger()

#: Routes whose path names a container (C{name}), and those of an exec.
_CONTAINER_ROUTES: Final = frozenset(
    name
    for name in routes.NAMES
    if name.startswith("containers.")
    and name not in {"containers.list", "containers.create", "containers.prune"}
) | {"exec.create"}
_EXEC_ROUTES: Final = frozenset({"exec.start", "exec.resize", "exec.inspect"})
_VOLUME_ROUTES: Final = frozenset({"volumes.inspect", "volumes.delete"})
_NETWORK_ROUTES: Final = frozenset(
    {"networks.inspect", "networks.delete", "networks.connect", "networks.disconnect"}
)

#: Lists and prunes narrowed by a label filter for a scoped principal.
_FILTERED: Final = frozenset(
    {
        "containers.list",
        "containers.prune",
        "volumes.list",
        "volumes.prune",
        "networks.prune",
    }
)

#: Creates whose objects get the owner label: the route, and what kind of
#: object it makes and where its ID is in the answer.
_CREATES: Final = {
    "containers.create": ("container", "Id"),
    "volumes.create": ("volume", "Name"),
    "networks.create": ("network", "Id"),
}


class DecisionObserver(Protocol):
    """
    Told of every decision the front door makes (the metrics count them).
    """

    def __call__(
        self, principal: str, route: str, verdict: str, rule: str | None
    ) -> object:
        """
        C{principal} called C{route}; C{verdict} is C{allow}, C{deny}, or
        C{learn} (refused in learning mode, so let through); C{rule} is the
        rule that decided (C{None} without a policy file).
        """


class _Refusal(Exception):
    """A check refuses; L{FrontDoor} refuses, or learns, with C{error}."""

    def __init__(self, rule: str, error: DockerError) -> None:
        super().__init__(error.message)
        self.rule = rule
        self.error = error


@define
class _Decision:
    """What the audit line says of one request."""

    route: str
    verdict: str = "allow"
    rule: str | None = None
    objects: list[str] = field(factory=list)

    def saw(self, object_id: object) -> None:
        if isinstance(object_id, str) and object_id and object_id not in self.objects:
            self.objects.append(object_id)


def _peer_record(peer: Peer, principal: Principal | None) -> dict[str, Any]:
    certificate = peer.certificate
    return {
        "name": principal.name if principal is not None else None,
        "listener": peer.listener,
        "address": peer.address,
        "subject": certificate.subject if certificate is not None else None,
        "uid": peer.uid,
        "gid": peer.gid,
        "pid": peer.pid,
    }


def _decoded(result: object) -> Any:
    """A handler's answer as JSON, if it is a small JSON document."""
    if isinstance(result, bytes) and len(result) < 65536:
        try:
            return json.loads(result.decode("utf-8"))
        except ValueError:
            return None
    return result


class FrontDoor:
    """
    The policy's check on every routed request, and the audit log.

    @param policy: The loaded policy file, or C{None} to only audit
        (C{--audit-log} without C{--policy}).
    @param backend: The API's backend: owners are asked of it.
    @param audit: Where each request is recorded, if anywhere.
    @param clock: Monotonic seconds, for the rate limits.
    @param wall: Unix seconds, for the audit log's times.
    @param identify: Reads a request's caller from its connection
        (L{read_peer}); tests pass a fixed one.
    """

    def __init__(
        self,
        policy: PolicyFile | None,
        backend: Any,
        *,
        audit: AuditLog | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        identify: Callable[[Any], Peer] = read_peer,
    ) -> None:
        self.policy = policy
        self._audit = audit
        self._wall = wall
        self._identify = identify
        self._callers = ConnectionCache()
        self._limiter = Limiter(clock)
        label = policy.owner_label if policy is not None else ""
        self.owners = Owners(backend, label)
        self._observers: list[DecisionObserver] = []

    def add_observer(self, observer: DecisionObserver) -> None:
        """Tell C{observer} of every decision from now on."""
        self._observers.append(observer)

    def principal_of(self, request: Any) -> str | None:
        """
        The name of the principal C{request}'s connection is, once a routed
        request on it was checked (the metrics label requests with it);
        C{-} without a policy file, C{None} when not known yet.
        """
        known = self._callers.peek(request)
        if known is None:
            return None
        principal = known[1]
        return principal.name if principal is not None else "-"

    def _caller(self, request: Any) -> tuple[Peer, Principal | None]:
        peer = self._identify(request)
        if self.policy is None:
            return peer, None
        return peer, self.policy.principal_for(peer)

    def __call__(self, call: Call) -> None:
        """Decide on C{call}: let it through, shaped, or refuse it."""
        request = call.request
        route = routes.route_name(call.handler, request)
        if route == "system.ping":
            return
        peer, principal = self._callers.get(request, self._caller)
        decision = _Decision(route)
        for value in call.arguments.values():
            decision.saw(value)
        if self._audit is not None:
            self._audit_on_finish(call, peer, principal, decision)
        if principal is None:
            self._notify("-", route, "allow", None)
            return
        policy = principal.policy
        try:
            self._enforce(call, route, principal, decision)
        except _Refusal as refusal:
            decision.rule = refusal.rule
            decision.verdict = "learn" if policy.learn else "deny"
            self._notify(principal.name, route, decision.verdict, refusal.rule)
            if not policy.learn:
                raise refusal.error from None
            _log.warn(
                "Policy (learning mode) would refuse {route} for {principal}: {reason}",
                route=route,
                principal=principal.name,
                reason=refusal.error.message,
                rule=refusal.rule,
            )
            self._shape(call, route, principal, decision, narrow=False)
            return
        self._notify(principal.name, route, "allow", decision.rule)
        self._shape(
            call,
            route,
            principal,
            decision,
            narrow=policy.own_scope and not policy.learn,
        )

    def _notify(
        self, principal: str, route: str, verdict: str, rule: str | None
    ) -> None:
        for observer in self._observers:
            try:
                observer(principal, route, verdict, rule)
            except Exception:
                _log.failure("A policy decision observer failed")

    # --- deciding ---------------------------------------------------------

    def _enforce(
        self, call: Call, route: str, principal: Principal, decision: _Decision
    ) -> None:
        policy = principal.policy
        name = principal.name
        limits = policy.limits
        if not self._limiter.admit(name, limits):
            raise _Refusal(
                f"{policy.name}.limits.requests_per_second",
                TooManyRequests(
                    f"rate limit exceeded by policy rule {policy.name}.limits."
                    f"requests_per_second: {name} may make {limits.rate:g} requests"
                    f" per second (bursts of {limits.burst:g})"
                ),
            )
        allowed, rule = policy.decide(route)
        decision.rule = rule
        if not allowed:
            raise _Refusal(
                rule,
                Forbidden(
                    f"authorization denied by policy rule {rule}: {route} is not"
                    f" allowed for {name}"
                ),
            )
        owned = self._check_scope(call, route, principal, decision)
        self._check_body(call, route, principal, owned)
        if route in routes.STREAMS and limits.streams is not None:
            if not self._limiter.open_stream(name, limits):
                raise _Refusal(
                    f"{policy.name}.limits.streams",
                    TooManyRequests(
                        f"stream limit reached by policy rule {policy.name}.limits."
                        f"streams: {name} may hold {limits.streams} attach or exec"
                        " streams at once"
                    ),
                )
            call.on_finish.append(lambda *_: self._limiter.close_stream(name))

    def _check_scope(
        self, call: Call, route: str, principal: Principal, decision: _Decision
    ) -> Owned | None:
        """
        The object the path names, refused as absent when a scoped principal
        does not own it; for a start, the container whatever the scope, when
        binds are restricted: its bind sources are checked again.
        """
        owners = self.owners
        scoped = principal.policy.own_scope
        owner = principal.owner
        arguments = call.arguments
        rule = f"{principal.policy.name}.scope"
        found: Owned | None = None
        if route in _CONTAINER_ROUTES and "name" in arguments:
            reference = arguments["name"]
            recheck = (
                route == "containers.start"
                and principal.policy.body.bind_sources != ("/",)
            )
            if scoped or recheck:
                found = owners.container(reference)
            if scoped and found is not None and not found.visible_to(owner):
                raise _Refusal(rule, NotFound(f"No such container: {reference}"))
        elif route == "images.commit" and scoped:
            reference = query(call.request, "container") or ""
            found = owners.container(reference) if reference else None
            if found is not None and not found.visible_to(owner):
                raise _Refusal(rule, NotFound(f"No such container: {reference}"))
        elif route in _EXEC_ROUTES and scoped:
            exec_id = arguments.get("exec_id", "")
            found = owners.exec_container(exec_id)
            if found is not None and not found.visible_to(owner):
                raise _Refusal(rule, NotFound(f"No such exec instance: {exec_id}"))
        elif route in _VOLUME_ROUTES and scoped:
            name = arguments.get("name", "")
            found = owners.volume(name)
            if found is not None and not found.visible_to(owner):
                raise _Refusal(rule, NotFound(f"get {name}: no such volume"))
        elif route in _NETWORK_ROUTES and scoped:
            name = arguments.get("name", "")
            found = owners.network(name)
            if found is not None and not found.visible_to(owner):
                raise _Refusal(rule, NotFound(f"network {name} not found"))
            if route in {"networks.connect", "networks.disconnect"}:
                self._check_member(call, rule, owner)
        elif route == "volumes.create" and scoped:
            self._check_volume_name(call, rule, owner)
        if found is not None:
            decision.saw(found.id)
        return found

    def _check_member(self, call: Call, rule: str, owner: str) -> None:
        """A scoped connect or disconnect: the body's container is its own."""
        body = _body_object(call)
        for container in bodies.values(body, "Container"):
            if isinstance(container, str) and container:
                found = self.owners.container(container)
                if found is not None and not found.visible_to(owner):
                    raise _Refusal(rule, NotFound(f"No such container: {container}"))

    def _check_volume_name(self, call: Call, rule: str, owner: str) -> None:
        """
        A scoped volume create of a name another owner's volume has: dockerd
        would answer with that volume.
        """
        body = _body_object(call)
        for name in bodies.values(body, "Name"):
            if isinstance(name, str) and name:
                found = self.owners.volume(name)
                if found is not None and not found.visible_to(owner):
                    raise _Refusal(
                        rule,
                        Forbidden(
                            f"authorization denied by policy rule {rule}: the volume"
                            f" name {name} is taken by another owner"
                        ),
                    )

    def _check_body(
        self, call: Call, route: str, principal: Principal, owned: Owned | None
    ) -> None:
        rules = principal.policy.body
        violation = None
        if route == "containers.create":
            body = _body_object(call)
            violation = bodies.check_create(body, rules, self._image_names)
            if violation is None and principal.policy.own_scope:
                self._check_references(body, principal)
        elif route == "containers.start" and owned is not None and owned.record:
            # The symlinks under a bind's source may have changed since the
            # create: they are resolved again just before the mount.
            host = owned.record.get("HostConfig")
            if isinstance(host, dict):
                violation = bodies.check_binds(host, rules)
        elif route == "exec.create":
            violation = bodies.check_exec(_body_object(call), rules)
        elif route == "volumes.create":
            violation = bodies.check_volume(_body_object(call), rules)
        elif route in {"images.pull", "images.push"} and rules.registries is not None:
            reference = (
                query(call.request, "fromImage")
                if route == "images.pull"
                else call.arguments.get("name")
            )
            if reference:
                violation = bodies.check_image(
                    reference, rules.registries, self._image_names
                )
        elif route == "images.build":
            violation = bodies.check_build_args(query(call.request, "buildargs"), rules)
        if violation is not None:
            rule = f"{principal.policy.name}.body.{violation.rule}"
            raise _Refusal(
                rule,
                Forbidden(
                    f"authorization denied by policy rule {rule}: {violation.reason}"
                ),
            )

    def _check_references(self, body: Mapping[str, Any], principal: Principal) -> None:
        """A scoped create names only its own containers, networks, volumes."""
        rule = f"{principal.policy.name}.scope"
        lookups = {
            "container": self.owners.container,
            "network": self.owners.network,
            "volume": self.owners.volume,
        }
        for kind, reference in references(body):
            found = lookups[kind](reference)
            if found is not None and not found.visible_to(principal.owner):
                raise _Refusal(
                    rule,
                    Forbidden(
                        f"authorization denied by policy rule {rule}: the {kind}"
                        f" {reference} belongs to another owner"
                    ),
                )

    def _image_names(self, reference: str) -> list[str]:
        """The names of the local image C{reference} (an ID)."""
        try:
            record = self.owners.backend.images.inspect(reference)
        except DockerError:
            return []
        names = [*(record.get("RepoTags") or []), *(record.get("RepoDigests") or [])]
        return [n for n in names if isinstance(n, str)]

    # --- shaping ----------------------------------------------------------

    def _shape(
        self,
        call: Call,
        route: str,
        principal: Principal,
        decision: _Decision,
        *,
        narrow: bool,
    ) -> None:
        """
        Label what an allowed create makes; narrow a scoped principal's
        lists, prunes and events to its own objects.
        """
        label, owner = self.owners.label, principal.owner
        made = _CREATES.get(route)
        if made is not None:
            body = _body_object(call, create=True)
            if body is None and route == "volumes.create" and _empty(call):
                # docker volume create with no body at all still gets a label.
                body = {}
                set_json_body(call.request, body)
            if body is not None:
                inject_label(body, label, owner)
                if route == "containers.create" and principal.policy.own_scope:
                    self._make_volumes(body, owner)
            kind, key = made

            def remember(result: object) -> object:
                answer = _decoded(result)
                if isinstance(answer, dict) and isinstance(answer.get(key), str):
                    self.owners.remember(kind, answer[key], owner)
                    decision.saw(answer[key])
                return result

            call.result_filters.append(remember)
        if not narrow:
            return
        if route == "containers.list" and not query(call.request, "limit"):
            # Without a limit the answer is the same filtered here, for a
            # dictionary look-up per container rather than the daemon's
            # label filter (a tenth of a list's cost with 20 containers).
            call.result_filters.append(self._containers_of(owner))
        elif route in _FILTERED:
            add_label_filter(call.request, label, owner)
        elif route == "networks.list":
            call.result_filters.append(self._networks_of(owner))
        elif route == "system.events":
            call.shows = self.owners.shows_event(owner)

    def _make_volumes(self, body: Mapping[str, Any], owner: str) -> None:
        """
        Make the named volumes a scoped create names that do not exist yet,
        with the owner label (the daemon would make them without it, and
        their owner could not see them).
        """
        volumes = self.owners.backend.volumes
        for kind, name in references(body):
            if kind != "volume" or self.owners.volume(name) is not None:
                continue
            try:
                volumes.create(name, labels={self.owners.label: owner})
            except DockerError:
                continue  # a bad name: the create refuses it with its message
            self.owners.remember("volume", name, owner)

    def _containers_of(self, owner: str) -> Callable[[object], object]:
        label = self.owners.label

        def only(result: object) -> object:
            if not isinstance(result, list):
                return result
            return [
                container
                for container in result
                if isinstance(container, dict)
                and (container.get("Labels") or {}).get(label) == owner
            ]

        return only

    def _networks_of(self, owner: str) -> Callable[[object], object]:
        label = self.owners.label

        def only(result: object) -> object:
            if not isinstance(result, list):
                return result
            return [
                network
                for network in result
                if isinstance(network, dict)
                and (
                    (network.get("Labels") or {}).get(label) == owner
                    or (
                        not (network.get("Labels") or {}).get(label)
                        and network.get("Name") in {"bridge", "host", "none"}
                    )
                )
            ]

        return only

    # --- the audit log ----------------------------------------------------

    def _audit_on_finish(
        self,
        call: Call,
        peer: Peer,
        principal: Principal | None,
        decision: _Decision,
    ) -> None:
        audit = self._audit
        if audit is None:
            return
        request = call.request
        arrived = self._wall()
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        who = _peer_record(peer, principal)

        def finished(status: int, duration: float) -> None:
            audit.write(
                {
                    "time": timestamp(arrived),
                    "principal": who,
                    "method": method,
                    "route": decision.route,
                    "path": path,
                    "objects": decision.objects,
                    "verdict": decision.verdict,
                    "rule": decision.rule,
                    "status": status,
                    "duration": round(duration, 6),
                }
            )

        call.on_finish.append(finished)


def _empty(call: Call) -> bool:
    """Whether the request has no body (not a body that is not JSON)."""
    try:
        return json_body(call.request) is None
    except DockerError:
        return False


def _body_object(call: Call, *, create: bool = False) -> Any:
    """
    The request's JSON body, read once for the policy and the handler
    (L{json_body}); C{{}} (or C{None} with C{create}) when it is empty or
    not an object, which the handler then refuses with its own message.
    """
    try:
        body = json_body(call.request)
    except DockerError:
        return None if create else {}
    if isinstance(body, dict):
        return body
    return None if create else {}


__all__ = ["DecisionObserver", "FrontDoor", "Policy"]
