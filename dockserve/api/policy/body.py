# -*- test-case-name: tests.api.policy.test_body -*-
"""
The request-body rules: what a create or exec body may ask of the host.

Each check reads the body as dockerd's Go decoder does, where it matters
for safety: field names match in any case (Go's C{encoding/json}), so
C{{"hostconfig": {"privileged": true}}} is privileged too, and a field
written twice in two cases is checked in each. A C{CapAdd} may be one
string (a C{strslice}). What is refused is named in the message; what is
in a body besides (an C{Env} value) never is.
"""

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from attrs import frozen

from dockserve.api.policy import images
from dockserve.api.policy.model import NAMESPACES, BodyRules

#: C{SecurityOpt} entries that lift a confinement, as C{key}, C{value}.
_UNCONFINED: Final = frozenset(
    {
        ("seccomp", "unconfined"),
        ("apparmor", "unconfined"),
        ("label", "disable"),
        ("systempaths", "unconfined"),
    }
)


@frozen
class Violation:
    """
    A body asks what its policy does not allow.

    @ivar rule: The body rule's key (C{privileged}, C{bind_sources}...).
    @ivar reason: What was asked, for the message.
    """

    rule: str
    reason: str


def values(mapping: object, key: str) -> list[Any]:
    """
    Every value of C{mapping} whose key is C{key} in any case, as Go's
    decoder matches field names; none when C{mapping} is not an object.
    """
    if not isinstance(mapping, dict):
        return []
    folded = key.casefold()
    return [v for k, v in mapping.items() if k.casefold() == folded]


def fold(mapping: object) -> dict[str, list[Any]]:
    """
    C{mapping}'s values by their key folded to one case, each key's values
    in document order: one pass over a body, then a look-up per field
    (L{values} scans the whole body for each); C{{}} when not an object.
    """
    folded: dict[str, list[Any]] = {}
    if isinstance(mapping, dict):
        for key, value in mapping.items():
            folded.setdefault(key.casefold(), []).append(value)
    return folded


def _objects(mapping: object, key: str) -> list[dict[str, Any]]:
    return [v for v in values(mapping, key) if isinstance(v, dict)]


def _lists(values: list[Any]) -> Iterator[Any]:
    """The items of each value that is an array."""
    for value in values:
        if isinstance(value, list):
            yield from value


def _strings(value: object) -> list[str]:
    """A C{strslice}: one string or an array of them."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _under(path: str, prefixes: Iterable[str]) -> bool:
    """Whether C{path} is one of C{prefixes} or inside one."""
    for prefix in prefixes:
        if prefix in {"/", path} or path.startswith(prefix + "/"):
            return True
    return False


def bind_sources(host_config: Mapping[str, Any]) -> list[str]:
    """
    The host paths a container's C{HostConfig} binds: C{Binds} whose source
    is a path, and C{Mounts} of type C{bind}.
    """
    fields = fold(host_config)
    sources = [
        bind.split(":", 1)[0]
        for bind in _lists(fields.get("binds", []))
        if isinstance(bind, str) and bind.startswith("/")
    ]
    for mount in _lists(fields.get("mounts", [])):
        kinds = values(mount, "Type")
        if any(isinstance(k, str) and k.lower() == "bind" for k in kinds):
            sources.extend(s for s in values(mount, "Source") if isinstance(s, str))
    return sources


def check_binds(host_config: Mapping[str, Any], rules: BodyRules) -> Violation | None:
    """
    Each bind source of C{host_config}, its symlinks resolved as the
    daemon's mount will resolve them, must be under one of
    C{rules.bind_sources}.
    """
    return check_sources(bind_sources(host_config), rules)


def check_sources(sources: Iterable[str], rules: BodyRules) -> Violation | None:
    """Each host path of C{sources} must be under C{rules.bind_sources}."""
    if rules.bind_sources == ("/",):
        return None
    for source in sources:
        resolved = os.path.realpath(source)
        if not _under(resolved, rules.bind_sources):
            shown = source if resolved == source else f"{source} (which is {resolved})"
            allowed = ", ".join(rules.bind_sources) or "none"
            return Violation(
                "bind_sources",
                f"bind mount of {shown} is outside the allowed sources ({allowed})",
            )
    return None


def _capability(text: str) -> str:
    return text.upper().removeprefix("CAP_")


def check_create(
    body: Mapping[str, Any],
    rules: BodyRules,
    repositories_of: Callable[[str], list[str]],
) -> Violation | None:
    """
    The first thing a C{containers.create} body asks that C{rules} do not
    allow, or C{None}.

    @param repositories_of: The names (C{RepoTags}, C{RepoDigests}) of a
        local image given by its ID, for the registries rule.
    """
    fields = fold(body)
    for host in fields.get("hostconfig", []):
        if isinstance(host, dict):
            violation = _check_host(host, rules)
            if violation is not None:
                return violation
    if rules.registries is not None:
        for image in fields.get("image", []):
            if isinstance(image, str) and image:
                violation = check_image(image, rules.registries, repositories_of)
                if violation is not None:
                    return violation
    return None


def _check_host(host: dict[str, Any], rules: BodyRules) -> Violation | None:
    fields = fold(host)
    if not rules.privileged and any(
        v not in (None, False) for v in fields.get("privileged", [])
    ):
        return Violation("privileged", "privileged containers are not allowed")
    if "ALL" not in rules.capabilities:
        for value in fields.get("capadd", []):
            for text in _strings(value):
                capability = _capability(text)
                if capability not in rules.capabilities:
                    return Violation(
                        "capabilities",
                        f"adding the capability {capability} is not allowed",
                    )
    if not rules.devices:
        for key in ("Devices", "DeviceRequests", "DeviceCgroupRules"):
            if any(fields.get(key.casefold(), [])):
                return Violation("devices", f"{key} (host devices) are not allowed")
    for kind, key in NAMESPACES.items():
        if kind in rules.host_namespaces:
            continue
        for mode in fields.get(key.casefold(), []):
            if isinstance(mode, str) and mode.lower() == "host":
                return Violation(
                    "host_namespaces",
                    f"the host's {kind} namespace ({key}=host) is not allowed",
                )
    if not rules.unconfined:
        for option in _lists(fields.get("securityopt", [])):
            if not isinstance(option, str):
                continue
            key, _, value = option.replace(":", "=", 1).partition("=")
            if (key.strip().lower(), value.strip().lower()) in _UNCONFINED:
                return Violation(
                    "unconfined", f"the security option {option} is not allowed"
                )
    violation = check_binds(host, rules)
    if violation is not None:
        return violation
    if not rules.volumes_from and any(_lists(fields.get("volumesfrom", []))):
        return Violation(
            "volumes_from", "volumes from other containers are not allowed"
        )
    return None


def check_image(
    reference: str,
    registries: tuple[str, ...],
    repositories_of: Callable[[str], list[str]],
) -> Violation | None:
    """
    C{reference} must come from one of C{registries}; an image given by
    its ID must have one name that does.
    """
    if images.looks_like_id(reference):
        names = repositories_of(reference)
        if any(images.allowed(name, registries) for name in names):
            return None
        return Violation(
            "registries",
            f"image {reference} has no name from the allowed registries "
            f"({', '.join(registries) or 'none'})",
        )
    if images.allowed(reference, registries):
        return None
    return Violation(
        "registries",
        f"image {images.repository(reference)} is not from the allowed registries "
        f"({', '.join(registries) or 'none'})",
    )


def check_exec(body: Mapping[str, Any], rules: BodyRules) -> Violation | None:
    """An C{exec.create} body: C{Privileged}, and C{User} root or 0."""
    if not rules.exec_privileged and any(
        v not in (None, False) for v in values(body, "Privileged")
    ):
        return Violation("exec_privileged", "privileged exec is not allowed")
    if not rules.exec_root:
        for user in values(body, "User"):
            if isinstance(user, str) and user.split(":", 1)[0].strip() in {"root", "0"}:
                return Violation("exec_root", "exec as root is not allowed")
    return None


def check_volume(body: Mapping[str, Any], rules: BodyRules) -> Violation | None:
    """
    A C{volumes.create} body: the local driver's C{type}, C{o} and
    C{device} options make a volume a bind of a host path (C{o=bind}) or
    a mount of a host device, which the bind and device rules govern.
    """
    for options in _objects(body, "DriverOpts"):
        device = options.get("device")
        if not isinstance(device, str) or not device:
            continue
        kind = str(options.get("type", "")).lower()
        flags = {f.strip() for f in str(options.get("o", "")).split(",")}
        if flags & {"bind", "rbind"}:
            violation = check_sources([device], rules)
            if violation is not None:
                return violation
        elif kind != "tmpfs" and device.startswith("/") and not rules.devices:
            return Violation(
                "devices", f"a volume that mounts the host's {device} is not allowed"
            )
    return None


def check_build_args(text: str | None, rules: BodyRules) -> Violation | None:
    """
    C{images.build}'s C{buildargs} query (a JSON object): only the names in
    C{rules.build_args}. The values are never shown (they may be secrets).
    """
    if rules.build_args is None or not text:
        return None
    try:
        arguments = json.loads(text)
    except ValueError:
        return None  # the build refuses it itself
    if not isinstance(arguments, dict):
        return None
    for name in arguments:
        if name not in rules.build_args:
            return Violation("build_args", f"the build arg {name} is not allowed")
    return None
