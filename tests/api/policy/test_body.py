"""
Tests for L{dockserve.api.policy.body} and L{dockserve.api.policy.images}:
each request-body rule, read as dockerd's Go decoder reads the body.
"""

import os
from pathlib import Path

from attrs import evolve

from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.policy import images
from dockserve.api.policy.body import (
    Violation,
    check_build_args,
    check_create,
    check_exec,
    check_volume,
)
from dockserve.api.policy.model import UNRESTRICTED, BodyRules

STRICT = BodyRules()


def _no_names(reference: str) -> list[str]:
    del reference
    return []


def create(body: dict[str, object], rules: BodyRules = STRICT) -> Violation | None:
    return check_create(body, rules, _no_names)


class CreateTests(SynchronousTestCase):
    """C{containers.create} bodies."""

    def test_plain(self) -> None:
        """A body that asks nothing of the host passes the strictest rules."""
        self.assertIsNone(
            create({"Image": "busybox", "HostConfig": {"Binds": ["data:/data"]}})
        )

    def test_privileged(self) -> None:
        """Privileged, in any case of its field names, as Go decodes them."""
        self.assertEqual(
            create({"hostconfig": {"privileged": True}}),
            Violation("privileged", "privileged containers are not allowed"),
        )
        self.assertEqual(
            create({"HostConfig": {"Privileged": False, "PRIVILEGED": True}}).rule,  # type: ignore[union-attr]
            "privileged",
        )
        self.assertIsNone(
            create(
                {"HostConfig": {"Privileged": True}}, evolve(STRICT, privileged=True)
            )
        )

    def test_capabilities(self) -> None:
        """CapAdd, a list or one string, with or without CAP_, any case."""
        rules = evolve(STRICT, capabilities=frozenset({"CHOWN"}))
        self.assertIsNone(create({"HostConfig": {"CapAdd": ["cap_chown"]}}, rules))
        self.assertEqual(
            create({"HostConfig": {"CapAdd": "NET_ADMIN"}}, rules),
            Violation("capabilities", "adding the capability NET_ADMIN is not allowed"),
        )
        self.assertEqual(
            create({"HostConfig": {"CapAdd": ["ALL"]}}, rules).rule,  # type: ignore[union-attr]
            "capabilities",
        )
        self.assertIsNone(
            create(
                {"HostConfig": {"CapAdd": ["SYS_ADMIN"]}},
                evolve(STRICT, capabilities=frozenset({"ALL"})),
            )
        )

    def test_devices(self) -> None:
        """Devices, device requests (GPUs) and cgroup device rules."""
        for key, value in (
            ("Devices", [{"PathOnHost": "/dev/sda"}]),
            ("DeviceRequests", [{"Count": -1}]),
            ("DeviceCgroupRules", ["c 1:3 mr"]),
        ):
            self.assertEqual(create({"HostConfig": {key: value}}).rule, "devices", key)  # type: ignore[union-attr]
        self.assertIsNone(create({"HostConfig": {"Devices": []}}))

    def test_host_namespaces(self) -> None:
        """Each host namespace by its mode field; container: modes are not host."""
        for kind, key in (
            ("pid", "PidMode"),
            ("ipc", "IpcMode"),
            ("uts", "UTSMode"),
            ("network", "NetworkMode"),
            ("userns", "UsernsMode"),
            ("cgroupns", "CgroupnsMode"),
        ):
            violation = create({"HostConfig": {key: "host"}})
            self.assertEqual(
                violation,
                Violation(
                    "host_namespaces",
                    f"the host's {kind} namespace ({key}=host) is not allowed",
                ),
            )
        rules = evolve(STRICT, host_namespaces=frozenset({"network"}))
        self.assertIsNone(create({"HostConfig": {"NetworkMode": "host"}}, rules))
        self.assertIsNone(create({"HostConfig": {"PidMode": "container:abc"}}))

    def test_unconfined(self) -> None:
        """seccomp, apparmor, label and systempaths lifted, in both spellings."""
        for option in (
            "seccomp=unconfined",
            "seccomp:unconfined",
            "apparmor=unconfined",
            "label=disable",
            "systempaths=unconfined",
        ):
            self.assertEqual(
                create({"HostConfig": {"SecurityOpt": [option]}}),
                Violation("unconfined", f"the security option {option} is not allowed"),
            )
        self.assertIsNone(
            create({"HostConfig": {"SecurityOpt": ["no-new-privileges"]}})
        )

    def test_binds(self) -> None:
        """
        Bind sources, Binds and Mounts, checked after their symlinks are
        resolved: a link inside the allowed prefix to outside it is refused.
        """
        allowed = Path(self.mktemp()).absolute()
        allowed.mkdir()
        (allowed / "escape").symlink_to("/etc")
        (allowed / "data").mkdir()
        rules = evolve(STRICT, bind_sources=(os.path.realpath(allowed),))
        self.assertIsNone(
            create({"HostConfig": {"Binds": [f"{allowed}/data:/d:ro"]}}, rules)
        )
        self.assertIsNone(
            create({"HostConfig": {"Binds": [f"{allowed}/new/dir:/d"]}}, rules)
        )
        violation = create({"HostConfig": {"Binds": [f"{allowed}/escape:/e"]}}, rules)
        self.assertEqual(
            violation,
            Violation(
                "bind_sources",
                f"bind mount of {allowed}/escape (which is /etc) is outside the"
                f" allowed sources ({os.path.realpath(allowed)})",
            ),
        )
        mount = {"Type": "bind", "Source": "/", "Target": "/host"}
        self.assertEqual(
            create({"HostConfig": {"Mounts": [mount]}}, rules).rule,  # type: ignore[union-attr]
            "bind_sources",
        )
        self.assertEqual(
            create({"HostConfig": {"Binds": [f"{allowed}/../x:/x"]}}, rules).rule,  # type: ignore[union-attr]
            "bind_sources",
        )
        self.assertEqual(
            create({"HostConfig": {"Binds": ["/tmp:/t"]}}).reason,  # type: ignore[union-attr]
            "bind mount of /tmp is outside the allowed sources (none)",
        )
        self.assertIsNone(create({"HostConfig": {"Binds": ["/etc:/e"]}}, UNRESTRICTED))

    def test_volumes_from(self) -> None:
        """--volumes-from."""
        self.assertEqual(
            create({"HostConfig": {"VolumesFrom": ["other:ro"]}}),
            Violation("volumes_from", "volumes from other containers are not allowed"),
        )

    def test_registries(self) -> None:
        """Image names by registry; an ID by the names the local image has."""
        rules = evolve(STRICT, registries=("docker.io/library", "ghcr.io/acme"))
        self.assertIsNone(create({"Image": "busybox:1.36"}, rules))
        self.assertIsNone(
            create({"Image": "ghcr.io/acme/tool@sha256:" + "a" * 64}, rules)
        )
        self.assertEqual(
            create({"Image": "evil/miner"}, rules),
            Violation(
                "registries",
                "image docker.io/evil/miner is not from the allowed registries"
                " (docker.io/library, ghcr.io/acme)",
            ),
        )
        by_id = "0123456789ab"
        self.assertEqual(create({"Image": by_id}, rules).rule, "registries")  # type: ignore[union-attr]
        self.assertIsNone(
            check_create(
                {"Image": by_id}, rules, lambda ref: ["busybox:latest"] if ref else []
            )
        )


class ImageNameTests(SynchronousTestCase):
    def test_repository(self) -> None:
        """The distribution library's normalisation."""
        self.assertEqual(
            [
                images.repository(name)
                for name in (
                    "busybox",
                    "busybox:1",
                    "acme/tool",
                    "ghcr.io/acme/tool:2",
                    "localhost/x",
                    "localhost:5000/x@sha256:" + "b" * 64,
                    "index.docker.io/busybox",
                    "Registry/x",
                )
            ],
            [
                "docker.io/library/busybox",
                "docker.io/library/busybox",
                "docker.io/acme/tool",
                "ghcr.io/acme/tool",
                "localhost/x",
                "localhost:5000/x",
                "docker.io/library/busybox",
                "registry/x",
            ],
        )

    def test_allowed(self) -> None:
        """A registry, or a registry and path, matched at a path boundary."""
        self.assertTrue(images.allowed("ghcr.io/acme/tool", ("ghcr.io/acme",)))
        self.assertFalse(images.allowed("ghcr.io/acmeevil/tool", ("ghcr.io/acme",)))
        self.assertTrue(
            images.allowed("busybox", (images.normalize_registry("docker.io"),))
        )


class ExecTests(SynchronousTestCase):
    def test_privileged_and_root(self) -> None:
        """An exec's Privileged, and its User root or 0 (with a group or not)."""
        self.assertEqual(
            check_exec({"privileged": True}, STRICT).rule, "exec_privileged"
        )  # type: ignore[union-attr]
        for user in ("root", "0", "0:0", "root:wheel"):
            self.assertEqual(
                check_exec({"User": user}, STRICT),
                Violation("exec_root", "exec as root is not allowed"),
                user,
            )
        self.assertIsNone(check_exec({"User": "1000", "Cmd": ["id"]}, STRICT))
        self.assertIsNone(check_exec({"User": "root"}, evolve(STRICT, exec_root=True)))


class VolumeTests(SynchronousTestCase):
    def test_driver_options(self) -> None:
        """
        The local driver's options: a bind is a bind mount, a device is a
        device; tmpfs and network file systems are neither.
        """
        self.assertEqual(
            check_volume(
                {"DriverOpts": {"type": "none", "o": "bind", "device": "/etc"}}, STRICT
            ),
            Violation(
                "bind_sources",
                "bind mount of /etc is outside the allowed sources (none)",
            ),
        )
        self.assertEqual(
            check_volume(
                {"DriverOpts": {"type": "ext4", "device": "/dev/sda1"}}, STRICT
            ),
            Violation(
                "devices", "a volume that mounts the host's /dev/sda1 is not allowed"
            ),
        )
        self.assertIsNone(
            check_volume(
                {"DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}},
                STRICT,
            )
        )
        self.assertIsNone(
            check_volume(
                {"DriverOpts": {"type": "nfs", "o": "addr=10.0.0.1", "device": ":/x"}},
                STRICT,
            )
        )


class BuildArgTests(SynchronousTestCase):
    def test_build_args(self) -> None:
        """Only the allowed names; the value never in the message."""
        rules = evolve(STRICT, build_args=frozenset({"HTTP_PROXY"}))
        self.assertIsNone(check_build_args('{"HTTP_PROXY": "http://p"}', rules))
        violation = check_build_args('{"TOKEN": "s3cret"}', rules)
        self.assertEqual(
            violation, Violation("build_args", "the build arg TOKEN is not allowed")
        )
        self.assertIsNone(check_build_args('{"ANY": "x"}', STRICT))
