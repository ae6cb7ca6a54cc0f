# -*- test-case-name: tests.daemon.containers.test_spec -*-
"""Tests for L{dockserve.daemon.containers.spec}."""

import json
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers.spec import (
    DEFAULT_CAPABILITIES,
    build_spec,
)
from dockserve.errors import InvalidParameter, NotFound, SystemError_

CID = "c" * 64


class BuildSpecTests(SynchronousTestCase):
    """L{build_spec} turns Docker's config into runc's."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.rootfs = self.dir / "rootfs"
        (self.rootfs / "etc").mkdir(parents=True)
        (self.rootfs / "etc" / "passwd").write_text(
            "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/:/bin/sh\n"
        )
        (self.rootfs / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")

    def spec(
        self,
        config: dict[str, Any] | None = None,
        host_config: dict[str, Any] | None = None,
        image: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return build_spec(
            container_id=CID,
            image_config={
                "config": image or {"Cmd": ["sh"], "Env": ["PATH=/bin", "A=1"]}
            },
            config=config or {},
            host_config=host_config or {},
            rootfs=self.rootfs,
            container_dir=self.dir,
        )

    def test_image_command_and_env(self) -> None:
        """Without Cmd the image's runs; the container's Env overrides the image's."""
        spec = self.spec({"Env": ["A=2", "B=3"]})
        self.assertEqual(spec["process"]["args"], ["sh"])
        env = spec["process"]["env"]
        self.assertIn("A=2", env)
        self.assertIn("B=3", env)
        self.assertNotIn("A=1", env)
        self.assertIn(f"HOSTNAME={CID[:12]}", env)
        self.assertEqual(spec["hostname"], CID[:12])

    def test_bare_name_unsets(self) -> None:
        """
        C{-e NAME} without a value (the CLI sends it when its own
        environment has none) unsets NAME, as dockerd: runc would refuse
        the bare name and the start fail.
        """
        env = self.spec({"Env": ["A", "NOPE", "B=3"]})["process"]["env"]
        self.assertNotIn("A=1", env)
        self.assertNotIn("A", env)
        self.assertNotIn("NOPE", env)
        self.assertIn("B=3", env)
        self.assertTrue(all("=" in item for item in env), env)

    def test_entrypoint_and_cmd(self) -> None:
        """A container Entrypoint drops the image's Cmd."""
        spec = self.spec({"Entrypoint": ["echo"], "Cmd": None})
        self.assertEqual(spec["process"]["args"], ["echo"])
        spec = self.spec({"Cmd": ["echo", "hi"]}, image={"Entrypoint": ["/init"]})
        self.assertEqual(spec["process"]["args"], ["/init", "echo", "hi"])

    def test_no_ipv6(self) -> None:
        """
        A container in a network namespace of its own has IPv6 off, as
        with dockerd 20.10 (a --sysctl of the user's wins); one in the
        host's network namespace is left alone.
        """
        if not Path("/proc/sys/net/ipv6").exists():  # pragma: no cover
            self.skipTest("this kernel has no IPv6")
        off = {
            "net.ipv6.conf.all.disable_ipv6": "1",
            "net.ipv6.conf.default.disable_ipv6": "1",
        }
        self.assertEqual(self.spec()["linux"]["sysctl"], off)
        mine = {"net.ipv6.conf.all.disable_ipv6": "0", "net.core.somaxconn": "9"}
        sysctls = self.spec(host_config={"Sysctls": mine})["linux"]["sysctl"]
        self.assertEqual(sysctls, {**off, **mine})
        host = self.spec(host_config={"NetworkMode": "host"})["linux"]
        self.assertNotIn("sysctl", host)

    def test_no_command(self) -> None:
        """Nothing to run is dockerd's 400."""
        with self.assertRaises(InvalidParameter) as caught:
            self.spec(image={"Env": []})
        self.assertEqual(caught.exception.message, "No command specified")

    def test_user(self) -> None:
        """Names are looked up in the root's passwd and group files."""
        self.assertEqual(
            self.spec({"User": "www:staff"})["process"]["user"],
            {"uid": 33, "gid": 50, "additionalGids": [50]},
        )
        self.assertEqual(
            self.spec({"User": "7:8"})["process"]["user"],
            {"uid": 7, "gid": 8, "additionalGids": [8]},
        )
        self.assertRaises(NotFound, self.spec, {"User": "nobody"})

    def test_groups(self) -> None:
        """
        The process has its primary group, the user's groups and GroupAdd
        as supplementary groups (C{id -G} showed only 0); GroupAdd is kept
        in the bundle for the container's execs.
        """
        (self.rootfs / "etc" / "group").write_text(
            "root:x:0:\nwheel:x:10:root\nstaff:x:50:www\n"
        )
        spec = self.spec(host_config={"GroupAdd": ["staff", "1000"]})
        self.assertEqual(
            spec["process"]["user"],
            {"uid": 0, "gid": 0, "additionalGids": [0, 10, 50, 1000]},
        )
        self.assertEqual(
            spec["annotations"]["org.dockserve.group-add"], '["staff", "1000"]'
        )
        spec = self.spec({"User": "www"}, image={"Cmd": ["sh"], "User": "root"})
        self.assertEqual(
            spec["process"]["user"], {"uid": 33, "gid": 34, "additionalGids": [34, 50]}
        )
        self.assertNotIn("org.dockserve.group-add", spec["annotations"])
        self.assertRaises(NotFound, self.spec, host_config={"GroupAdd": ["nosuch"]})

    def test_capabilities(self) -> None:
        """CapAdd/CapDrop work over Docker's default set."""
        caps = self.spec(host_config={"CapAdd": ["NET_ADMIN"], "CapDrop": ["chown"]})[
            "process"
        ]["capabilities"]["bounding"]
        self.assertIn("CAP_NET_ADMIN", caps)
        self.assertNotIn("CAP_CHOWN", caps)
        self.assertEqual(len(caps), len(DEFAULT_CAPABILITIES))
        self.assertRaises(
            InvalidParameter, self.spec, host_config={"CapAdd": ["BOGUS"]}
        )

    def test_resources(self) -> None:
        """Memory, NanoCpus, CpuShares, PidsLimit reach the cgroup settings."""
        resources = self.spec(
            host_config={
                "Memory": 1 << 26,
                "NanoCpus": 500_000_000,
                "CpuShares": 512,
                "PidsLimit": 9,
            }
        )["linux"]["resources"]
        self.assertEqual(resources["memory"], {"limit": 1 << 26})
        self.assertEqual(
            resources["cpu"], {"period": 100000, "quota": 50000, "shares": 512}
        )
        self.assertEqual(resources["pids"], {"limit": 9})

    def test_mounts_and_etc_files(self) -> None:
        """Binds, Tmpfs and the generated /etc files become mounts."""
        spec = self.spec(
            {"Hostname": "box"},
            {"Binds": [f"{self.dir}:/data:ro"], "Tmpfs": {"/run": "size=1m"},
             "ExtraHosts": ["db:10.0.0.2"], "Dns": ["1.1.1.1"]},
        )  # fmt: skip
        mounts = {m["destination"]: m for m in spec["mounts"]}
        self.assertIn("ro", mounts["/data"]["options"])
        self.assertEqual(mounts["/run"]["type"], "tmpfs")
        self.assertIn("size=1m", mounts["/run"]["options"])
        self.assertEqual(mounts["/etc/hosts"]["source"], str(self.dir / "hosts"))
        self.assertIn("10.0.0.2\tdb", (self.dir / "hosts").read_text())
        self.assertEqual((self.dir / "hostname").read_text(), "box\n")
        self.assertEqual(
            (self.dir / "resolv.conf").read_text().splitlines()[0], "nameserver 1.1.1.1"
        )

    def test_namespaces(self) -> None:
        """Host network shares the host's; default gets its own."""
        kinds = [n["type"] for n in self.spec()["linux"]["namespaces"]]
        self.assertIn("network", kinds)
        kinds = [
            n["type"]
            for n in self.spec(host_config={"NetworkMode": "host", "PidMode": "host"})[
                "linux"
            ]["namespaces"]
        ]
        self.assertNotIn("network", kinds)
        self.assertNotIn("pid", kinds)

    def test_privileged_init_readonly(self) -> None:
        """Privileged drops the masks; Init wraps the command; ReadonlyRootfs."""
        spec = self.spec(
            host_config={"Privileged": True, "Init": True, "ReadonlyRootfs": True}
        )
        self.assertNotIn("maskedPaths", spec["linux"])
        self.assertEqual(spec["process"]["args"], ["/sbin/docker-init", "--", "sh"])
        self.assertTrue(spec["root"]["readonly"])
        self.assertIn("/proc/kcore", self.spec()["linux"]["maskedPaths"])

    def test_seccomp(self) -> None:
        """An ordinary container is confined by seccomp; a privileged one is not."""
        self.assertIn("seccomp", self.spec()["linux"])
        self.assertNotIn(
            "seccomp", self.spec(host_config={"Privileged": True})["linux"]
        )
        unconfined = {"SecurityOpt": ["seccomp=unconfined"]}
        self.assertNotIn("seccomp", self.spec(host_config=unconfined)["linux"])

    def test_security_opt(self) -> None:
        """
        no-new-privileges reaches the process; a custom profile becomes the
        filter; no option leaves new privileges allowed, as dockerd does.
        """
        self.assertFalse(self.spec()["process"]["noNewPrivileges"])
        spec = self.spec(host_config={"SecurityOpt": ["no-new-privileges"]})
        self.assertTrue(spec["process"]["noNewPrivileges"])
        rule = {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}
        custom = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]})
        spec = self.spec(host_config={"SecurityOpt": [f"seccomp={custom}"]})
        self.assertEqual(spec["linux"]["seccomp"]["syscalls"], [rule])


class BindSourceTests(SynchronousTestCase):
    """
    Bind sources as dockerd takes them: a missing Binds source becomes a
    directory, anything that is there (a file too) is bound as it is.
    """

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        (self.dir / "rootfs" / "etc").mkdir(parents=True)

    def mounts(self, host_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
        spec = build_spec(
            container_id=CID,
            image_config={"config": {"Cmd": ["sh"]}},
            config={},
            host_config=host_config,
            rootfs=self.dir / "rootfs",
            container_dir=self.dir,
        )
        return {m["destination"]: m for m in spec["mounts"]}

    def test_file_bind(self) -> None:
        """
        C{-v /host/file.txt:/etc/cfg.txt:ro}: the file is bound read-only as
        a file; it was taken for a directory to make ([Errno 17] File exists).
        """
        source = self.dir / "file.txt"
        source.write_text("cfg\n")
        mount = self.mounts({"Binds": [f"{source}:/etc/cfg.txt:ro"]})["/etc/cfg.txt"]
        self.assertEqual(mount["source"], str(source))
        self.assertEqual(mount["type"], "bind")
        self.assertEqual(mount["options"], ["rbind", "ro", "rprivate"])
        self.assertEqual(source.read_text(), "cfg\n")

    def test_file_mount(self) -> None:
        """The C{--mount type=bind} form binds a file as well."""
        source = self.dir / "file.txt"
        source.write_text("cfg\n")
        mounts = self.mounts(
            {"Mounts": [{"Type": "bind", "Source": str(source),
                         "Target": "/etc/cfg.txt", "ReadOnly": True}]}
        )  # fmt: skip
        self.assertEqual(mounts["/etc/cfg.txt"]["source"], str(source))
        self.assertIn("ro", mounts["/etc/cfg.txt"]["options"])

    def test_missing_source_is_a_directory(self) -> None:
        """A Binds source that is not there is made, with its parents, a directory."""
        source = self.dir / "new" / "data"
        self.mounts({"Binds": [f"{source}:/data"]})
        self.assertTrue(source.is_dir())

    def test_source_under_a_file(self) -> None:
        """
        A missing source under a file is left for runc to refuse ("not a
        directory"), as dockerd leaves it.
        """
        (self.dir / "file").write_text("")
        source = self.dir / "file" / "sub"
        mounts = self.mounts({"Binds": [f"{source}:/data"]})
        self.assertEqual(mounts["/data"]["source"], str(source))

    def test_source_that_cannot_be_made(self) -> None:
        """
        A dangling symbolic link cannot be made a directory: dockerd's
        words, not Python's exception.
        """
        source = self.dir / "dangling"
        source.symlink_to(self.dir / "nowhere" / "x")
        with self.assertRaises(SystemError_) as caught:
            self.mounts({"Binds": [f"{source}:/data"]})
        self.assertEqual(
            caught.exception.message,
            f"error while creating mount source path '{source}': "
            f"mkdir {source}: file exists",
        )
        self.assertFalse((self.dir / "nowhere").exists())
