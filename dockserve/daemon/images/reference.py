# -*- test-case-name: tests.daemon.images.test_reference -*-
"""
Image references as Docker reads them.

C{busybox} means C{docker.io/library/busybox:latest}; C{localhost:5000/x}
names a registry because its first component has a port; references are
stored fully qualified and shown in Docker's "familiar" short form.
"""

import re

from attrs import frozen

from dockserve.errors import InvalidParameter

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}\Z")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
    r"(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*"
    r"(?::[0-9]+)?\Z|\[[a-fA-F0-9:]+\](?::[0-9]+)?\Z"
)
_HEX64 = re.compile(r"[a-f0-9]{64}\Z")


@frozen
class Reference:
    """
    A parsed, normalised image reference.

    @ivar domain: The registry host (C{docker.io}, C{127.0.0.1:5000}).
    @ivar path: The repository path (C{library/busybox}).
    @ivar tag: The tag, or C{None}.
    @ivar digest: C{sha256:...}, or C{None}.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The full repository name, C{docker.io/library/busybox}."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_repository(self) -> str:
        """The repository as Docker shows it, C{busybox}."""
        if self.domain == DEFAULT_DOMAIN:
            return self.path.removeprefix(OFFICIAL_PREFIX)
        return self.repository

    def tagged(self) -> str:
        """The full C{repo:tag} string (tag C{latest} when none)."""
        return f"{self.repository}:{self.tag or 'latest'}"

    def familiar(self) -> str:
        """The reference as Docker shows it, C{busybox:latest}."""
        text = self.familiar_repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def full(self) -> str:
        """The full reference, tag and digest included when present."""
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def with_tag(self, tag: str) -> "Reference":
        """This repository with C{tag} and no digest."""
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> "Reference":
        """This repository with C{digest} and no tag."""
        return Reference(self.domain, self.path, None, digest)


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """
    Parse and normalise C{text} as the docker CLI does.

    @param default_tag: Give C{latest} to a reference with neither tag nor
        digest.
    @raise InvalidParameter: For an invalid reference format, with
        dockerd's message.
    """
    if not text or text != text.strip():
        raise InvalidParameter(f"invalid reference format: {text!r}")
    if _HEX64.match(text):
        raise InvalidParameter(
            f"invalid repository name ({text}), cannot specify 64-byte "
            "hexadecimal strings"
        )
    remainder = text
    digest: str | None = None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidParameter(f"invalid reference format: {text}")
    tag: str | None = None
    last = remainder.rsplit("/", 1)[-1]
    if ":" in last:
        remainder, tag = remainder.rsplit(":", 1)
        if not _TAG.match(tag):
            raise InvalidParameter(f"invalid reference format: {text}")
    parts = remainder.split("/")
    if len(parts) > 1 and (
        "." in parts[0]
        or ":" in parts[0]
        or parts[0] == "localhost"
        or parts[0] != parts[0].lower()
    ):
        domain = parts[0]
        path_parts = parts[1:]
        if not _DOMAIN.match(domain):
            raise InvalidParameter(f"invalid reference format: {text}")
    else:
        domain = DEFAULT_DOMAIN
        path_parts = parts
    if domain == _LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    for component in path_parts:
        if not _COMPONENT.match(component):
            if component != component.lower():
                raise InvalidParameter(
                    f"invalid reference format: repository name ({remainder}) "
                    "must be lowercase"
                )
            raise InvalidParameter(f"invalid reference format: {text}")
    path = "/".join(path_parts)
    if domain == DEFAULT_DOMAIN and len(path_parts) == 1:
        path = OFFICIAL_PREFIX + path
    if len(domain) + 1 + len(path) > 255:
        raise InvalidParameter("repository name must not be more than 255 characters")
    if tag is None and digest is None and default_tag:
        tag = "latest"
    return Reference(domain, path, tag, digest)


def familiar(full: str) -> str:
    """The familiar form of a stored full reference string."""
    return parse(full, default_tag=False).familiar()


def is_full_id(text: str) -> bool:
    """Whether C{text} is a full image ID, with or without C{sha256:}."""
    return bool(_HEX64.match(text.removeprefix("sha256:")))


def validate_tag(tag: str) -> None:
    """
    @raise InvalidParameter: When C{tag} is not a valid tag.
    """
    if not _TAG.match(tag):
        raise InvalidParameter(f"invalid tag format: {tag!r}")
