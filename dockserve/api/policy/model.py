# -*- test-case-name: tests.api.policy.test_file -*-
"""
A loaded policy: principals and how a connection is matched to one, and
each policy's decisions, body rules, scope and limits.

Everything is decided at load time that can be: a policy's route rules
become one table from route name to verdict, so a request costs one
dictionary look-up whether the file has one rule or fifty.
"""

from collections.abc import Mapping
from typing import Final

from attrs import field, frozen

from dockserve.api.policy.peer import Certificate, Peer

#: The host namespaces C{host_namespaces} may allow, by the create body's
#: field that asks for the host's: C{NetworkMode: host} and so on.
NAMESPACES: Final = {
    "pid": "PidMode",
    "ipc": "IpcMode",
    "uts": "UTSMode",
    "network": "NetworkMode",
    "userns": "UsernsMode",
    "cgroupns": "CgroupnsMode",
}

#: The label a principal's containers, volumes and networks get.
DEFAULT_OWNER_LABEL: Final = "dockserve.owner"


@frozen
class Match:
    """
    Which connections a principal is: every key given must match, and a
    key matches when any of its values does.

    @ivar listeners: The C{-H} listeners (canonical text) it comes in on.
    @ivar cn: Subject common names of its TLS client certificate.
    @ivar o: Subject organisations.
    @ivar ou: Subject organisational units.
    @ivar dns: DNS names the certificate is valid for (service-identity's
        matching: a C{*.example.com} certificate is valid for
        C{ci.example.com}).
    @ivar uri: subjectAltName URIs, exactly (SPIFFE IDs).
    @ivar email: E-mail addresses (the domain in any case).
    @ivar uids: A unix peer's uids.
    @ivar gids: A unix peer's groups (its gid or a supplementary group).
    """

    listeners: frozenset[str] = frozenset()
    cn: frozenset[str] = frozenset()
    o: frozenset[str] = frozenset()
    ou: frozenset[str] = frozenset()
    dns: tuple[str, ...] = ()
    uri: frozenset[str] = frozenset()
    email: frozenset[str] = frozenset()
    uids: frozenset[int] = frozenset()
    gids: frozenset[int] = frozenset()

    def matches(self, peer: Peer) -> bool:
        """Whether C{peer} is this principal."""
        if self.listeners and peer.listener not in self.listeners:
            return False
        if self.uids and peer.uid not in self.uids:
            return False
        if self.gids and not (self.gids & peer.groups):
            return False
        certificate = peer.certificate
        wants_certificate = (
            self.cn or self.o or self.ou or self.dns or self.uri or self.email
        )
        if not wants_certificate:
            return True
        if certificate is None:
            return False
        return self._certificate_matches(certificate)

    def _certificate_matches(self, certificate: Certificate) -> bool:
        if self.cn and not self.cn.intersection(certificate.cn):
            return False
        if self.o and not self.o.intersection(certificate.o):
            return False
        if self.ou and not self.ou.intersection(certificate.ou):
            return False
        if self.uri and not self.uri.intersection(certificate.uri):
            return False
        if self.email and not self.email.intersection(
            fold_email(e) for e in certificate.email
        ):
            return False
        return not self.dns or any(_valid_for(certificate, n) for n in self.dns)


def fold_email(address: str) -> str:
    """An e-mail address with its domain in lower case, as they compare."""
    local, at, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}" if at else address


def _valid_for(certificate: Certificate, name: str) -> bool:
    """Whether C{certificate} is valid for the DNS name C{name}."""
    from service_identity import VerificationError  # noqa: PLC0415
    from service_identity.hazmat import (  # noqa: PLC0415
        DNS_ID,
        verify_service_identity,
    )

    if not certificate.patterns:
        return False
    try:
        verify_service_identity(
            list(certificate.patterns), obligatory_ids=[DNS_ID(name)], optional_ids=[]
        )
    except (VerificationError, ValueError):
        return False
    except Exception:  # CertificateError and the like: no valid name
        return False
    return True


@frozen
class BodyRules:
    """
    What the bodies of C{containers.create}, C{exec.create},
    C{volumes.create}, C{images.pull}/C{push} and C{images.build} may ask
    for. Each field says what is allowed; the defaults allow none of it.

    @ivar privileged: C{HostConfig.Privileged}.
    @ivar capabilities: The capabilities C{CapAdd} may name (upper case,
        without C{CAP_}); C{ALL} allows any.
    @ivar devices: C{Devices}, C{DeviceRequests}, C{DeviceCgroupRules}, and
        volumes that mount a host device.
    @ivar host_namespaces: Which of L{NAMESPACES} may be the host's.
    @ivar unconfined: C{SecurityOpt} C{seccomp=unconfined},
        C{apparmor=unconfined}, C{label=disable}, C{systempaths=unconfined}.
    @ivar bind_sources: Host paths bind mounts may come from (each resolved,
        symlinks and all, when loaded); C{/} allows any.
    @ivar volumes_from: C{HostConfig.VolumesFrom}.
    @ivar registries: Where images may come from (C{docker.io},
        C{registry.example.com:5000/team}); C{None}: anywhere.
    @ivar exec_privileged: An exec's C{Privileged}.
    @ivar exec_root: An exec's C{User} of C{root} or C{0}.
    @ivar build_args: The build args a build may set; C{None}: any.
    """

    privileged: bool = False
    capabilities: frozenset[str] = frozenset()
    devices: bool = False
    host_namespaces: frozenset[str] = frozenset()
    unconfined: bool = False
    bind_sources: tuple[str, ...] = ()
    volumes_from: bool = False
    registries: tuple[str, ...] | None = None
    exec_privileged: bool = False
    exec_root: bool = False
    build_args: frozenset[str] | None = None


#: The body rules of the C{full} preset: anything goes.
UNRESTRICTED: Final = BodyRules(
    privileged=True,
    capabilities=frozenset({"ALL"}),
    devices=True,
    host_namespaces=frozenset(NAMESPACES),
    unconfined=True,
    bind_sources=("/",),
    volumes_from=True,
    registries=None,
    exec_privileged=True,
    exec_root=True,
    build_args=None,
)


@frozen
class Limits:
    """
    How much one principal may ask at once.

    @ivar rate: Requests per second, on average; C{None}: no limit.
    @ivar burst: How many requests may come at once above the rate.
    @ivar streams: Hijacked streams (attach, exec) open at once; C{None}:
        no limit.
    """

    rate: float | None = None
    burst: float = 1.0
    streams: int | None = None


@frozen
class Policy:
    """
    What a principal may do.

    @ivar name: Its name in the file (C{developer}), or a preset's.
    @ivar decisions: Route name -> (allowed, the rule that decided).
    @ivar default_rule: The rule that refuses a route no rule names.
    @ivar body: The request-body rules.
    @ivar limits: Rate and stream limits.
    @ivar own_scope: C{scope = "own"}: sees and touches only what carries
        its owner label.
    @ivar learn: Learning mode: what would be refused is logged, not
        refused.
    """

    name: str
    decisions: Mapping[str, tuple[bool, str]]
    default_rule: str
    body: BodyRules = BodyRules()
    limits: Limits = Limits()
    own_scope: bool = False
    learn: bool = False

    def decide(self, route: str) -> tuple[bool, str]:
        """Whether C{route} is allowed, and by which rule."""
        return self.decisions.get(route, (False, self.default_rule))


@frozen
class Principal:
    """
    A caller the file names.

    @ivar name: Its name (audit log, metrics, messages).
    @ivar policy: What it may do.
    @ivar owner: The value of its owner label.
    @ivar match: Which connections it is.
    """

    name: str
    policy: Policy
    owner: str
    match: Match = field(factory=Match)


@frozen
class PolicyFile:
    """
    A loaded policy file.

    @ivar principals: Matched in order; the first that matches is the
        connection's.
    @ivar listeners: A listener's principal, for connections on it that no
        principal matched.
    @ivar default: Who a connection is when nothing else matched.
    @ivar owner_label: The label key of owners.
    @ivar learn: The file's C{mode = "learn"} (each policy may also say).
    @ivar policies: Every policy by name, presets included.
    """

    principals: tuple[Principal, ...]
    listeners: Mapping[str, Principal]
    default: Principal
    owner_label: str = DEFAULT_OWNER_LABEL
    learn: bool = False
    policies: Mapping[str, Policy] = field(factory=dict)

    def principal_for(self, peer: Peer) -> Principal:
        """The principal C{peer} is."""
        for principal in self.principals:
            if principal.match.matches(peer):
                return principal
        if peer.listener is not None:
            by_listener = self.listeners.get(peer.listener)
            if by_listener is not None:
                return by_listener
        return self.default
