# -*- test-case-name: tests.api.policy.test_body -*-
"""
Image names as a registry rule compares them: C{busybox} is
C{docker.io/library/busybox}, C{ghcr.io/acme/tool:1} is C{ghcr.io/acme/tool}.

The normalisation is the distribution library's (C{ParseNormalizedNamed}),
which the CLI and dockerd apply: the first path component is a registry
when it has a C{.} or a C{:}, is C{localhost}, or has upper case; anything
else is on Docker Hub, and a one-component Hub name is under C{library/}.
"""

import re
from typing import Final

#: Docker Hub, however it is written.
_HUB: Final = "docker.io"
_HUB_ALIASES: Final = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io"}
)

#: An image ID, or the start of one, as C{docker run} accepts it.
_ID: Final = re.compile(r"(?:sha256:)?[0-9a-f]{12,64}")


def looks_like_id(reference: str) -> bool:
    """Whether C{reference} names an image by its ID rather than a name."""
    return _ID.fullmatch(reference) is not None


def repository(reference: str) -> str:
    """
    The normalised repository of C{reference}: registry and path, without
    a tag or digest (C{busybox:1} -> C{docker.io/library/busybox}).
    """
    name = reference.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name = name[:colon]
    first, separator, rest = name.partition("/")
    if separator and (
        "." in first or ":" in first or first == "localhost" or first != first.lower()
    ):
        domain, path = first.lower(), rest
    else:
        domain, path = _HUB, name
    if domain in _HUB_ALIASES:
        domain = _HUB
        if "/" not in path:
            path = f"library/{path}"
    return f"{domain}/{path}"


def normalize_registry(entry: str) -> str:
    """
    A C{registries} entry as repositories are compared with it: a registry
    (C{ghcr.io}, C{registry.example.com:5000}) or a registry and a path
    under it (C{docker.io/library}).

    @raise ValueError: For an entry with a scheme, a tag or a digest.
    """
    text = entry.strip().rstrip("/")
    if "://" in text or "@" in text or not text:
        raise ValueError(f"{entry!r} is not a registry (write ghcr.io or ghcr.io/acme)")
    domain, _, path = text.partition("/")
    domain = domain.lower()
    if domain in _HUB_ALIASES:
        domain = _HUB
    return f"{domain}/{path}" if path else domain


def allowed(reference: str, registries: tuple[str, ...]) -> bool:
    """Whether C{reference} comes from one of C{registries}."""
    name = repository(reference)
    return any(name == entry or name.startswith(f"{entry}/") for entry in registries)
