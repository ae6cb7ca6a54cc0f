# -*- test-case-name: tests.integration.test_links_devices -*-
"""
Legacy links, host devices and joined IPC/PID namespaces through the real
docker CLI, runc and conmon, as a user of an old tutorial or compose file
meets them. Links on the default bridge run the daemon in network
namespaces of the test's own (L{NetworkLab}); the rest on loopback only.
The texts are those dockerd 20.10 gave side by side.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from twisted.trial.unittest import SkipTest

from tests.integration.harness import NetworkLab, start_daemon
from tests.integration.images import import_busybox
from tests.integration.test_containers import _DaemonCase
from tests.integration.test_networking import _missing as _no_lab


class _LinkLab(_DaemonCase):
    """A daemon with its default bridge, in the test's own namespaces."""

    skip = _DaemonCase.skip or _no_lab()

    def setUp(self) -> None:
        self.lab = NetworkLab(self)
        self.daemon = start_daemon(self, lab=self.lab)
        import_busybox(self.daemon.docker_host)

    def run_detached(self, name: str, *args: str) -> str:
        self.cleanup_container(name)
        self.ok("run", "-d", "--name", name, *args, "busybox", "sleep", "1000")
        return self.inspect(name, "{{.Id}}")


class DefaultBridgeLinkTests(_LinkLab):
    """C{docker run --link other:alias} on the default bridge."""

    def test_hosts_and_environment(self) -> None:
        """
        The alias, the other's hostname and its name in C{/etc/hosts}; its
        address, exposed ports, link name and environment in the linking
        container's, as dockerd gives them; inspect keeps C{/db:/web/al}.
        """
        db = self.run_detached("db", "-e", "FOO=bar", "--expose", "80")
        address = self.inspect("db", "{{.NetworkSettings.IPAddress}}")
        self.assertTrue(address)
        self.cleanup_container("web")
        out = self.ok(
            "run", "--name", "web", "--link", "db:al", "busybox",
            "sh", "-c", "env; echo ---; cat /etc/hosts",
        )  # fmt: skip
        env, _, hosts = out.partition("---\n")
        for line in (
            f"AL_PORT=tcp://{address}:80",
            f"AL_PORT_80_TCP=tcp://{address}:80",
            f"AL_PORT_80_TCP_ADDR={address}",
            "AL_PORT_80_TCP_PORT=80",
            "AL_PORT_80_TCP_PROTO=tcp",
            "AL_NAME=/web/al",
            "AL_ENV_FOO=bar",
        ):
            self.assertIn(line, env.splitlines())
        self.assertNotIn("AL_ENV_PATH", env)
        self.assertIn(f"{address}\tal {db[:12]} db", hosts.splitlines())
        self.assertEqual(
            self.inspect("web", "{{json .HostConfig.Links}}"), '["/db:/web/al"]'
        )

    def test_not_running(self) -> None:
        """A stopped target fails the start with dockerd's words."""
        self.cleanup_container("db")
        self.ok("create", "--name", "db", "busybox", "sleep", "1000")
        self.cleanup_container("web")
        self.ok("create", "--name", "web", "--link", "db:al", "busybox", "true")
        err = self.fails("start", "web")
        self.assertIn("Cannot link to a non running container: /db AS /web/al", err)
        self.assertEqual(self.inspect("web", "{{.State.ExitCode}}"), "128")

    def test_missing_target(self) -> None:
        """A target that is not there: a 400, so the CLI does not pull."""
        err = self.fails("run", "--rm", "--link", "nope:al", "busybox", "true")
        self.assertIn("could not get container for nope: No such container: nope", err)
        self.assertNotIn("Unable to find image", err)

    def test_rm_link(self) -> None:
        """C{docker rm --link web/al} takes the link away; the target stays."""
        self.cleanup_container("db")
        self.ok("create", "--name", "db", "busybox", "true")
        self.cleanup_container("web")
        self.ok("create", "--name", "web", "--link", "db:al", "busybox", "true")
        self.assertEqual(self.ok("rm", "--link", "web/al"), "web/al\n")
        self.assertEqual(self.inspect("web", "{{json .HostConfig.Links}}"), "null")
        self.assertIn(
            "Conflict, cannot remove the default link name of the container",
            self.fails("rm", "--link", "db"),
        )
        self.assertEqual(self.inspect("db", "{{.Name}}"), "/db")


class UserNetworkLinkTests(_LinkLab):
    """C{docker run --network net --link other:alias}: a DNS alias."""

    def test_alias_resolves_for_its_container(self) -> None:
        """The alias is the other's address for the linking container only."""
        self.ok("network", "create", "un")
        self.addCleanup(self.docker, "network", "rm", "un")
        self.run_detached("t2", "--network", "un")
        address = self.inspect("t2", "{{.NetworkSettings.Networks.un.IPAddress}}")
        self.run_detached("p2", "--network", "un", "--link", "t2:db")
        out = self.ok("exec", "p2", "nslookup", "db", "127.0.0.11")
        self.assertIn(f"Address: {address}", out)
        other = self.docker(
            "run", "--rm", "--network", "un", "busybox", "nslookup", "db", "127.0.0.11"
        )
        self.assertNotIn(f"Address: {address}", other.stdout.decode())
        self.assertEqual(
            self.inspect("p2", "{{json .NetworkSettings.Networks.un.Links}}"),
            '["t2:db"]',
        )


def _mknod(path: Path, major: int, minor: int) -> None:
    os.mknod(path, stat.S_IFCHR | 0o640, os.makedev(major, minor))


class DeviceTests(_DaemonCase):
    """C{--device} and C{--device-cgroup-rule}, on nodes the test makes."""

    def setUp(self) -> None:
        super().setUp()
        self.dir = Path(tempfile.mkdtemp(prefix="dockserve-devs-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        (self.dir / "sub").mkdir()
        _mknod(self.dir / "mynull", 1, 3)
        os.chown(self.dir / "mynull", 12, 34)
        _mknod(self.dir / "sub" / "myzero", 1, 5)

    def test_node(self) -> None:
        """
        A null-like node appears where asked, with the host node's numbers,
        mode and owner, and reads as /dev/null does.
        """
        out = self.ok(
            "run", "--rm", "--device", f"{self.dir}/mynull:/dev/xnull:r", "busybox",
            "sh", "-c", "ls -ln /dev/xnull; wc -c < /dev/xnull",
        )  # fmt: skip
        listing, count = out.splitlines()
        self.assertRegex(listing, r"^crw-r-----\s+1\s+12\s+34\s+1,\s+3 .*/dev/xnull$")
        self.assertEqual(count.strip(), "0")

    def test_directory(self) -> None:
        """A directory gives every node under it, at the same places."""
        out = self.ok(
            "run", "--rm", "--device", f"{self.dir}:/d", "busybox",
            "sh", "-c", "find /d -type c | sort; head -c 4 /d/sub/myzero | wc -c",
        )  # fmt: skip
        self.assertEqual(out.split(), ["/d/mynull", "/d/sub/myzero", "4"])

    def test_fuse_permissions(self) -> None:
        """
        C{/dev/fuse:r}: opened for reading, not for writing (the cgroup's
        rule), as under dockerd; C{--device-cgroup-rule} adds its rule.
        """
        if not Path("/dev/fuse").exists():
            raise SkipTest("no /dev/fuse on this machine")
        script = (
            "exec 3</dev/fuse && echo read-ok; "
            "(exec 4<>/dev/fuse) 2>/dev/null && echo write-ok || echo write-denied; "
            "cat /sys/fs/cgroup/devices/devices.list 2>/dev/null"
        )
        out = self.ok(
            "run", "--rm", "--device", "/dev/fuse:/dev/fuse:r",
            "--device-cgroup-rule", "b 7:* rm", "busybox", "sh", "-c", script,
        )  # fmt: skip
        lines = out.splitlines()
        self.assertEqual(lines[:2], ["read-ok", "write-denied"])
        if len(lines) > 2:  # cgroup v1 shows the list
            self.assertIn("c 10:229 r", lines)
            self.assertIn("b 7:* rm", lines)

    def test_missing(self) -> None:
        """A path that is not there: dockerd's words at the start, exit 128."""
        self.cleanup_container("dv")
        self.ok("create", "--name", "dv", "--device", f"{self.dir}/nope:/dev/x",
                "busybox", "true")  # fmt: skip
        err = self.fails("start", "dv")
        self.assertIn(
            "error gathering device information while adding custom device "
            f'"{self.dir}/nope": no such file or directory',
            err,
        )
        self.assertEqual(self.inspect("dv", "{{.State.ExitCode}}"), "128")


class NamespaceTests(_DaemonCase):
    """C{--ipc container:X} and C{--pid container:X}."""

    def donor(self, *args: str) -> str:
        self.cleanup_container("donor")
        self.ok("run", "-d", "--name", "donor", *args, "busybox", "sleep", "1000")
        return self.inspect("donor", "{{.Id}}")

    def test_ipc(self) -> None:
        """
        A shareable donor's IPC namespace and /dev/shm: the same namespace,
        a file made in its /dev/shm, a System V segment made in it.
        """
        self.donor("--ipc", "shareable")
        pid = self.inspect("donor", "{{.State.Pid}}")
        self.ok("exec", "donor", "sh", "-c", "echo hello > /dev/shm/x")
        ipcmk = shutil.which("ipcmk")
        if ipcmk is not None:
            subprocess.run(
                ["nsenter", f"--ipc=/proc/{pid}/ns/ipc", ipcmk, "-M", "4096"],
                check=True, capture_output=True,
            )  # fmt: skip
        theirs = self.ok("exec", "donor", "readlink", "/proc/self/ns/ipc")
        out = self.ok(
            "run", "--rm", "--ipc", "container:donor", "busybox", "sh", "-c",
            "readlink /proc/self/ns/ipc; cat /dev/shm/x; cat /proc/sysvipc/shm",
        )  # fmt: skip
        lines = out.splitlines()
        self.assertEqual(lines[:2], [theirs.strip(), "hello"])
        if ipcmk is not None:
            self.assertRegex(lines[-1], r"^\s*-?\d+\s+\d+\s+\d+\s+4096\b")

    def test_ipc_not_shareable(self) -> None:
        """A private donor: dockerd's words."""
        donor = self.donor()
        err = self.fails("run", "--rm", "--ipc", "container:donor", "busybox", "true")
        self.assertIn(
            f"can't join IPC of container {donor}: non-shareable IPC (hint: use "
            "IpcMode:shareable for the donor container)",
            err,
        )

    def test_pid(self) -> None:
        """C{ps} in the joiner shows the donor's process as pid 1."""
        self.donor()
        out = self.ok("run", "--rm", "--pid", "container:donor", "busybox", "ps")
        first = out.splitlines()[1].split()
        self.assertEqual((first[0], first[2:]), ("1", ["sleep", "1000"]))

    def test_not_running(self) -> None:
        """A donor that is not running: dockerd's words, at the start."""
        self.cleanup_container("donor")
        donor = self.ok("create", "--name", "donor", "busybox", "true").strip()
        err = self.fails("run", "--rm", "--pid", "container:donor", "busybox", "ps")
        self.assertIn(f"container {donor} is not running", err)
