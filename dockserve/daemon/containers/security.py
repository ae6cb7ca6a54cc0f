# -*- test-case-name: tests.daemon.containers.test_security -*-
"""
C{HostConfig.SecurityOpt}: the seccomp filter a container gets (Docker's
default, none, or a profile the client sent) and C{no-new-privileges}.

The options are read as dockerd reads them, at create, so that a bad one is
a 400 with dockerd's words, not a failed start. A custom profile is Docker's
JSON (the docker CLI sends the file's content as C{seccomp=<json>}); it
becomes the OCI C{linux.seccomp} the way moby's C{setupSeccomp} makes it:
the rules whose C{includes}/C{excludes} (capabilities, architectures,
kernel version) fit this container and machine, the native architecture
with its sub-architectures from C{archMap}.
"""

import json
import os
import re
from typing import Any

from attrs import frozen

from dockserve.errors import InvalidParameter


@frozen
class SecurityOptions:
    """
    What C{SecurityOpt} asks for.

    @ivar seccomp: C{"default"}, C{"unconfined"} or C{"custom"}.
    @ivar profile: The custom profile (Docker's JSON, decoded).
    @ivar no_new_privileges: C{no-new-privileges}.
    """

    seccomp: str = "default"
    profile: dict[str, Any] | None = None
    no_new_privileges: bool = False


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse(options: list[str] | None) -> SecurityOptions:
    """
    Read C{SecurityOpt} as dockerd does: C{no-new-privileges[=bool]},
    C{seccomp=}, C{apparmor=}, C{label=} (accepted; this daemon has no
    AppArmor or SELinux to give them to), C{key:value} as the old spelling.

    @raise InvalidParameter: An option dockerd refuses, or a custom seccomp
        profile that is not a profile.
    """
    found = SecurityOptions()
    for option in options or []:
        if option == "no-new-privileges":
            found = SecurityOptions(found.seccomp, found.profile, True)
            continue
        if option == "disable":
            continue
        separator = "=" if "=" in option else ":" if ":" in option else None
        if separator is None:
            raise InvalidParameter(f'invalid --security-opt 1: "{option}"')
        key, _, value = option.partition(separator)
        if key in {"label", "apparmor"}:
            continue
        if key == "no-new-privileges":
            if value not in _TRUE | _FALSE:
                raise InvalidParameter(f'invalid --security-opt 2: "{option}"')
            found = SecurityOptions(found.seccomp, found.profile, value in _TRUE)
        elif key == "seccomp":
            if value in {"", "builtin"}:
                found = SecurityOptions("default", None, found.no_new_privileges)
            elif value == "unconfined":
                found = SecurityOptions("unconfined", None, found.no_new_privileges)
            else:
                profile = _decode_profile(value)
                found = SecurityOptions("custom", profile, found.no_new_privileges)
        else:
            raise InvalidParameter(f'invalid --security-opt 2: "{option}"')
    return found


def _decode_profile(text: str) -> dict[str, Any]:
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise InvalidParameter(f"Decoding seccomp profile failed: {e}") from None
    if not isinstance(profile, dict):
        raise InvalidParameter(
            "Decoding seccomp profile failed: the profile is not a JSON object"
        )
    if not isinstance(profile.get("syscalls", []) or [], list):
        raise InvalidParameter(
            "Decoding seccomp profile failed: syscalls is not a list"
        )
    if not isinstance(profile.get("defaultAction"), str):
        raise InvalidParameter(
            "Decoding seccomp profile failed: defaultAction must be a string"
        )
    for rule in profile.get("syscalls") or []:
        if not isinstance(rule, dict) or not (rule.get("names") or rule.get("name")):
            raise InvalidParameter(
                "Decoding seccomp profile failed: a syscall rule has no names"
            )
        if "action" not in rule:
            raise InvalidParameter(
                "Decoding seccomp profile failed: a syscall rule has no action"
            )
    return profile


#: The system calls Docker's default seccomp profile refuses, each with the
#: capability that lifts the refusal (moby profiles/seccomp/default.json);
#: C{None}: refused whatever the capabilities. Docker's profile is an
#: allow-list (everything else is refused); this is the same idea written
#: as a deny-list of what that list leaves out or gates, so a system call
#: newer than this list is allowed where dockerd would refuse it.
SECCOMP_DENIED: dict[str, str | None] = {
    # Keys and kernel images, modules, accounting, swap, old interfaces.
    "add_key": None, "keyctl": None, "request_key": None,
    "kexec_load": None, "kexec_file_load": None,
    "create_module": None, "get_kernel_syms": None, "query_module": None,
    "nfsservctl": None, "uselib": None, "userfaultfd": None, "ustat": None,
    "sysfs": None, "_sysctl": None, "vm86": None, "vm86old": None,
    "swapon": None, "swapoff": None,
    "io_uring_setup": None, "io_uring_enter": None, "io_uring_register": None,
    "init_module": "CAP_SYS_MODULE", "finit_module": "CAP_SYS_MODULE",
    "delete_module": "CAP_SYS_MODULE",
    "acct": "CAP_SYS_PACCT",
    "reboot": "CAP_SYS_BOOT",
    "iopl": "CAP_SYS_RAWIO", "ioperm": "CAP_SYS_RAWIO",
    "settimeofday": "CAP_SYS_TIME", "stime": "CAP_SYS_TIME",
    "clock_settime": "CAP_SYS_TIME", "clock_settime64": "CAP_SYS_TIME",
    "clock_adjtime": "CAP_SYS_TIME", "clock_adjtime64": "CAP_SYS_TIME",
    "vhangup": "CAP_SYS_TTY_CONFIG",
    "get_mempolicy": "CAP_SYS_NICE", "set_mempolicy": "CAP_SYS_NICE",
    "mbind": "CAP_SYS_NICE", "move_pages": "CAP_SYS_NICE",
    "kcmp": "CAP_SYS_PTRACE", "pidfd_getfd": "CAP_SYS_PTRACE",
    "process_madvise": "CAP_SYS_PTRACE",
    "process_vm_readv": "CAP_SYS_PTRACE", "process_vm_writev": "CAP_SYS_PTRACE",
    "open_by_handle_at": "CAP_DAC_READ_SEARCH",
    "syslog": "CAP_SYSLOG",
    # Namespaces, mounts and the rest of CAP_SYS_ADMIN's.
    "unshare": "CAP_SYS_ADMIN", "setns": "CAP_SYS_ADMIN",
    "mount": "CAP_SYS_ADMIN", "umount": "CAP_SYS_ADMIN",
    "umount2": "CAP_SYS_ADMIN", "pivot_root": "CAP_SYS_ADMIN",
    "mount_setattr": "CAP_SYS_ADMIN", "move_mount": "CAP_SYS_ADMIN",
    "open_tree": "CAP_SYS_ADMIN", "fsopen": "CAP_SYS_ADMIN",
    "fsconfig": "CAP_SYS_ADMIN", "fsmount": "CAP_SYS_ADMIN",
    "fspick": "CAP_SYS_ADMIN", "fanotify_init": "CAP_SYS_ADMIN",
    "lookup_dcookie": "CAP_SYS_ADMIN", "name_to_handle_at": "CAP_SYS_ADMIN",
    "quotactl": "CAP_SYS_ADMIN", "quotactl_fd": "CAP_SYS_ADMIN",
    "setdomainname": "CAP_SYS_ADMIN", "sethostname": "CAP_SYS_ADMIN",
    "bpf": "CAP_SYS_ADMIN", "perf_event_open": "CAP_SYS_ADMIN",
}  # fmt: skip

#: clone's namespace flags, refused without CAP_SYS_ADMIN (NEWNS, NEWCGROUP,
#: NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET), one rule each: seccomp compares
#: a masked argument for equality only.
_CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000,
                          0x10000000, 0x20000000, 0x40000000)  # fmt: skip

_EPERM = 1
_ENOSYS = 38

#: This machine's architecture and the ones its kernel also runs, so that
#: a 32-bit system call cannot go round the rules.
_SECCOMP_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
}


def seccomp_for(options: SecurityOptions, caps: list[str]) -> dict[str, Any] | None:
    """
    The OCI C{linux.seccomp} for a container with capabilities C{caps}, or
    C{None} (no filter: C{seccomp=unconfined}).
    """
    if options.seccomp == "unconfined":
        return None
    if options.seccomp == "custom" and options.profile is not None:
        return translate(options.profile, caps)
    return default_profile(caps)


def default_profile(caps: list[str]) -> dict[str, Any]:
    """
    Docker's default refusals (EPERM) less those C{caps} lift; C{clone3}
    answers ENOSYS (its flags cannot be inspected, and C libraries fall back
    to C{clone}, whose namespace flags can).
    """
    have = set(caps)
    denied = sorted(
        name for name, cap in SECCOMP_DENIED.items() if cap is None or cap not in have
    )
    syscalls: list[dict[str, Any]] = [
        {"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM}
    ]
    if "CAP_SYS_ADMIN" not in have:
        syscalls.append(
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS}
        )
        syscalls += [
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": _EPERM,
                "args": [
                    {
                        "index": 0,
                        "value": flag,
                        "valueTwo": flag,
                        "op": "SCMP_CMP_MASKED_EQ",
                    }
                ],
            }
            for flag in _CLONE_NAMESPACE_FLAGS
        ]
    profile: dict[str, Any] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls}
    arches = _SECCOMP_ARCHES.get(os.uname().machine)
    if arches:
        profile["architectures"] = arches
    return profile


#: C{uname -m} as seccomp names the architecture.
_NATIVE = {
    "x86_64": "SCMP_ARCH_X86_64",
    "aarch64": "SCMP_ARCH_AARCH64",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "s390x": "SCMP_ARCH_S390X",
}

#: The architecture names a profile's C{includes}/C{excludes} use.
_GO_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def _kernel_at_least(wanted: str, release: str | None = None) -> bool:
    def numbers(text: str) -> list[int]:
        return [int(n) for n in re.findall(r"\d+", text)[:2]]

    have = numbers(release if release is not None else os.uname().release)
    return have >= numbers(wanted)


def _applies(rule: dict[str, Any], caps: set[str], arch: str) -> bool:
    includes = rule.get("includes") or {}
    excludes = rule.get("excludes") or {}
    if any(cap not in caps for cap in includes.get("caps") or []):
        return False
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if includes.get("minKernel") and not _kernel_at_least(includes["minKernel"]):
        return False
    if any(cap in caps for cap in excludes.get("caps") or []):
        return False
    return arch not in (excludes.get("arches") or [])


def translate(profile: dict[str, Any], caps: list[str]) -> dict[str, Any]:
    """
    Docker's profile JSON as OCI C{linux.seccomp} for a container with
    capabilities C{caps} on this machine.
    """
    machine = os.uname().machine
    native = _NATIVE.get(machine, "")
    arch = _GO_ARCH.get(machine, machine)
    have = set(caps)
    result: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if "defaultErrnoRet" in profile:
        result["defaultErrnoRet"] = profile["defaultErrnoRet"]
    architectures: list[str] = []
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            architectures = [native, *(entry.get("subArchitectures") or [])]
    if not architectures:
        architectures = list(profile.get("architectures") or [])
    if architectures:
        result["architectures"] = architectures
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if profile.get(key):
            result[key] = profile[key]
    syscalls = []
    for rule in profile.get("syscalls") or []:
        if not _applies(rule, have, arch):
            continue
        names = list(rule.get("names") or []) or [rule["name"]]
        out: dict[str, Any] = {"names": names, "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            out["args"] = [
                {k: arg[k] for k in ("index", "value", "valueTwo", "op") if k in arg}
                for arg in rule["args"]
            ]
        syscalls.append(out)
    result["syscalls"] = syscalls
    return result
