# -*- test-case-name: tests.daemon.build.test_platforms -*-
"""
Platforms as C{FROM --platform} and C{POST /build?platform=} name them,
read as containerd's C{platforms.Parse} reads them (what dockerd uses):
C{linux}, C{amd64}, C{linux/arm64}, C{linux/arm/v7}; names normalised
(C{x86_64} is C{amd64}, C{aarch64} is C{arm64}, C{macos} is C{darwin});
a lone OS takes this machine's architecture, a lone architecture this
machine's OS.

A build runs its steps on this machine only (there is no emulation
here): a C{FROM} whose image is of another platform than the one asked
for is refused with dockerd's text (L{mismatch}).
"""

import platform as _platform
import re

from attrs import frozen

from dockserve.errors import InvalidParameter

_COMPONENT = re.compile(r"^[A-Za-z0-9_-]+$")
_KNOWN_OS = frozenset({
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos",
    "ios", "js", "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris",
    "windows", "zos",
})  # fmt: skip
_KNOWN_ARCH = frozenset({
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "loong64",
    "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc",
    "ppc64", "ppc64le", "riscv", "riscv64", "s390", "s390x", "sparc",
    "sparc64", "wasm",
})  # fmt: skip


@frozen
class Platform:
    """An OS, an architecture and its variant (C{""}: none said)."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        """C{os/arch[/variant]}, as containerd's C{platforms.Format}."""
        parts = [self.os or "unknown", self.architecture or "unknown"]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)


def _os(name: str) -> str:
    name = name.lower()
    return "darwin" if name == "macos" else name


def _arch(arch: str, variant: str) -> tuple[str, str]:
    """The names containerd's C{normalizeArch} gives."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in {"x86_64", "x86-64", "amd64"}:
        return "amd64", "" if variant == "v1" else variant
    if arch in {"aarch64", "arm64"}:
        return "arm64", "" if variant in {"8", "v8"} else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in {"", "7"}:
            return "arm", "v7"
        if variant in {"5", "6", "8"}:
            return "arm", "v" + variant
    return arch, variant


def host() -> Platform:
    """This machine's platform."""
    arch, variant = _arch(_platform.machine() or "amd64", "")
    if arch == "arm" and variant == "v7":
        variant = ""
    return Platform("linux", arch, variant)


def parse(text: str) -> Platform:
    """
    C{text} as containerd's C{platforms.Parse}.

    @raise InvalidParameter: With containerd's message (C{"bogus": unknown
        operating system or architecture: invalid argument}).
    """
    if "*" in text:
        raise InvalidParameter(
            f'"{text}": wildcards not yet supported: invalid argument'
        )
    parts = text.split("/")
    for part in parts:
        if not _COMPONENT.match(part):
            raise InvalidParameter(
                f'"{part}" is an invalid component of "{text}": platform specifier '
                f'component must match "{_COMPONENT.pattern}": invalid argument'
            )
    here = host()
    if len(parts) == 1:
        name = _os(parts[0])
        if name in _KNOWN_OS:
            return Platform(name, here.architecture, here.variant)
        arch, variant = _arch(parts[0], "")
        if arch == "arm" and variant == "v7":
            variant = ""
        if arch in _KNOWN_ARCH:
            return Platform(here.os, arch, variant)
        raise InvalidParameter(
            f'"{text}": unknown operating system or architecture: invalid argument'
        )
    if len(parts) == 2:
        arch, variant = _arch(parts[1], "")
        if arch == "arm" and variant == "v7":
            variant = ""
        return Platform(_os(parts[0]), arch, variant)
    if len(parts) == 3:
        arch, variant = _arch(parts[1], parts[2])
        if arch == "arm64" and not variant:
            variant = "v8"
        return Platform(_os(parts[0]), arch, variant)
    raise InvalidParameter(
        f'"{text}": cannot parse platform specifier: invalid argument'
    )


def of_image(config: dict[str, object]) -> Platform:
    """An image's platform, from its config's C{os}, C{architecture}, C{variant}."""
    arch, variant = _arch(
        str(config.get("architecture") or ""), str(config.get("variant") or "")
    )
    if arch == "arm" and variant == "v7":
        variant = ""
    return Platform(_os(str(config.get("os") or "linux")), arch, variant)


def matches(wanted: Platform, have: Platform) -> bool:
    """
    Whether an image of C{have} serves a build for C{wanted}: the same OS
    and architecture; variants only when both name one (C{arm64}'s C{v8}
    is no variant).
    """
    if (wanted.os, wanted.architecture) != (have.os, have.architecture):
        return False
    mine = "" if wanted.variant == "v8" else wanted.variant
    theirs = "" if have.variant == "v8" else have.variant
    return not mine or not theirs or mine == theirs


def mismatch(name: str, wanted: Platform, have: Platform) -> str:
    """The refusal of an image of another platform than asked for (dockerd's)."""
    return (
        f"image with reference {name} was found but does not match the specified "
        f"platform: wanted {wanted}, actual: {have}"
    )
