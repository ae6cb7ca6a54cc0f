# -*- test-case-name: tests.daemon.containers.test_security -*-
"""Tests for L{dockserve.daemon.containers.security}."""

import json
import os
from typing import Any, ClassVar

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import security
from dockserve.daemon.containers.security import (
    SecurityOptions,
    default_profile,
    parse,
    seccomp_for,
    translate,
)
from dockserve.daemon.containers.spec import DEFAULT_CAPABILITIES
from dockserve.errors import InvalidParameter


def _denied(profile: dict[str, Any] | None) -> set[str]:
    assert profile is not None
    return {
        name
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ERRNO" and "args" not in rule
        for name in rule["names"]
    }


class DefaultProfileTests(SynchronousTestCase):
    """L{default_profile}: Docker's default refusals, less what caps lift."""

    def test_default(self) -> None:
        """
        The default capabilities: keyctl, unshare, mount refused with EPERM,
        clone3 with ENOSYS, clone's namespace flags refused; others allowed.
        """
        profile = default_profile(list(DEFAULT_CAPABILITIES))
        self.assertEqual(profile["defaultAction"], "SCMP_ACT_ALLOW")
        denied = _denied(profile)
        self.assertTrue({"keyctl", "unshare", "mount", "setns", "clone3"} <= denied)
        self.assertNotIn("read", denied)
        clone_flags = {
            rule["args"][0]["value"]
            for rule in profile["syscalls"]
            if rule["names"] == ["clone"]
        }
        self.assertIn(0x10000000, clone_flags)  # CLONE_NEWUSER
        clone3 = next(r for r in profile["syscalls"] if r["names"] == ["clone3"])
        self.assertEqual(clone3["errnoRet"], 38)

    def test_capabilities_lift(self) -> None:
        """CAP_SYS_ADMIN allows namespaces and mounts; keyctl stays refused."""
        profile = default_profile([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"])
        denied = _denied(profile)
        self.assertFalse({"unshare", "mount", "clone3"} & denied)
        self.assertIn("keyctl", denied)
        self.assertFalse([r for r in profile["syscalls"] if r["names"] == ["clone"]])
        self.assertNotIn("reboot", _denied(default_profile(["CAP_SYS_BOOT"])))


class ParseTests(SynchronousTestCase):
    """L{parse}: C{SecurityOpt} as dockerd reads it."""

    def test_nothing(self) -> None:
        self.assertEqual(parse(None), SecurityOptions())
        self.assertEqual(parse([]), SecurityOptions())

    def test_no_new_privileges(self) -> None:
        """Bare, =true, =false and the old colon spelling."""
        self.assertTrue(parse(["no-new-privileges"]).no_new_privileges)
        self.assertTrue(parse(["no-new-privileges=true"]).no_new_privileges)
        self.assertTrue(parse(["no-new-privileges:1"]).no_new_privileges)
        self.assertFalse(
            parse(["no-new-privileges", "no-new-privileges=false"]).no_new_privileges
        )

    def test_seccomp(self) -> None:
        """unconfined, builtin, a profile; label and apparmor are accepted."""
        self.assertEqual(parse(["seccomp=unconfined"]).seccomp, "unconfined")
        self.assertEqual(parse(["seccomp=builtin"]).seccomp, "default")
        options = parse(
            ['seccomp={"defaultAction": "SCMP_ACT_ALLOW"}', "label=disable",
             "apparmor=unconfined", "no-new-privileges"]
        )  # fmt: skip
        self.assertEqual(options.seccomp, "custom")
        self.assertEqual(options.profile, {"defaultAction": "SCMP_ACT_ALLOW"})
        self.assertTrue(options.no_new_privileges)

    def test_refused(self) -> None:
        """dockerd's words for options it refuses."""
        for option, message in (
            ("bogus", 'invalid --security-opt 1: "bogus"'),
            ("bogus=1", 'invalid --security-opt 2: "bogus=1"'),
            ("no-new-privileges=maybe",
             'invalid --security-opt 2: "no-new-privileges=maybe"'),
        ):  # fmt: skip
            with self.assertRaises(InvalidParameter) as caught:
                parse([option])
            self.assertEqual(caught.exception.message, message)

    def test_bad_profiles(self) -> None:
        """A profile that is not one is refused at once, saying why."""
        allow = '"defaultAction": "SCMP_ACT_ALLOW"'
        for text in ("{not json", "[1, 2]", "{}", '{"defaultAction": 5}',
                     f'{{{allow}, "syscalls": [{{"action": "x"}}]}}',
                     f'{{{allow}, "syscalls": [{{"names": ["a"]}}]}}'):  # fmt: skip
            with self.assertRaises(InvalidParameter) as caught:
                parse([f"seccomp={text}"])
            self.assertTrue(
                caught.exception.message.startswith("Decoding seccomp profile failed"),
                caught.exception.message,
            )


_NATIVE = security._NATIVE.get(os.uname().machine, "SCMP_ARCH_X86_64")
_ARCH = security._GO_ARCH.get(os.uname().machine, "amd64")


class TranslateTests(SynchronousTestCase):
    """L{translate}: Docker's profile JSON to OCI, as moby's setupSeccomp does."""

    profile: ClassVar[dict[str, Any]] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_OTHER", "subArchitectures": ["SCMP_ARCH_NO"]},
            {"architecture": _NATIVE, "subArchitectures": ["SCMP_ARCH_SUB"]},
        ],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "x"},
            {"name": "old_single", "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["not_admin"], "action": "SCMP_ACT_ALLOW",
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["here_only"], "action": "SCMP_ACT_ALLOW",
             "includes": {"arches": [_ARCH]}},
            {"names": ["elsewhere"], "action": "SCMP_ACT_ALLOW",
             "includes": {"arches": ["mips64"]}},
            {"names": ["not_here"], "action": "SCMP_ACT_ALLOW",
             "excludes": {"arches": [_ARCH]}},
            {"names": ["future"], "action": "SCMP_ACT_ALLOW",
             "includes": {"minKernel": "99.0"}},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["kill_it"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ],
    }  # fmt: skip

    def names(self, caps: list[str]) -> list[str]:
        return [
            n for r in translate(self.profile, caps)["syscalls"] for n in r["names"]
        ]

    def test_rules_that_apply(self) -> None:
        """Capabilities, architectures and the kernel pick the rules."""
        self.assertEqual(
            self.names([]),
            ["read", "write", "old_single", "not_admin", "here_only",
             "personality", "kill_it"],
        )  # fmt: skip
        with_admin = self.names(["CAP_SYS_ADMIN"])
        self.assertIn("mount", with_admin)
        self.assertNotIn("not_admin", with_admin)

    def test_shape(self) -> None:
        """
        The default action and errno, the native architecture with its
        sub-architectures, args and errnoRet kept, comments dropped.
        """
        oci = translate(self.profile, [])
        self.assertEqual(oci["defaultAction"], "SCMP_ACT_ERRNO")
        self.assertEqual(oci["defaultErrnoRet"], 1)
        self.assertEqual(oci["architectures"], [_NATIVE, "SCMP_ARCH_SUB"])
        by_name = {r["names"][0]: r for r in oci["syscalls"]}
        self.assertEqual(by_name["read"], {"names": ["read", "write"],
                                           "action": "SCMP_ACT_ALLOW"})  # fmt: skip
        arg = {"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}
        self.assertEqual(by_name["personality"]["args"], [arg])
        self.assertEqual(by_name["kill_it"]["errnoRet"], 38)
        json.dumps(oci)

    def test_seccomp_for(self) -> None:
        """unconfined is no filter; default is Docker's; custom is translated."""
        caps = list(DEFAULT_CAPABILITIES)
        self.assertIsNone(seccomp_for(parse(["seccomp=unconfined"]), caps))
        self.assertEqual(seccomp_for(parse([]), caps), default_profile(caps))
        custom = parse([f"seccomp={json.dumps(self.profile)}"])
        self.assertEqual(seccomp_for(custom, caps), translate(self.profile, caps))

    def test_kernel_compare(self) -> None:
        self.assertTrue(security._kernel_at_least("4.8", "6.1.0-13-amd64"))
        self.assertFalse(security._kernel_at_least("6.2", "6.1.0"))
        self.assertTrue(security._kernel_at_least("6.1", "6.1.0"))
