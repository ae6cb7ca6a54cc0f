# -*- test-case-name: tests.integration.test_run_options -*-
"""
The options of C{docker run} seen from inside the container: each one is
observed the way a user would look (id, pwd, /etc files, /proc/self/status,
the cgroup files, df, ulimit), against real runc under conmon.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_containers import _DaemonCase
from tests.tempdirs import temp_dir

#: Docker's default capability set as CapEff shows it (moby's defaults).
DEFAULT_CAP_EFF = 0xA80425FB
CAP_CHOWN = 1 << 0
CAP_NET_ADMIN = 1 << 12


def _cap_bnd() -> int:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(
        int(line.split()[1], 16) for line in status if line.startswith("CapBnd:")
    )


class RunOptionTests(_DaemonCase):
    def run_sh(self, *options: str, script: str) -> str:
        """C{docker run --rm OPTIONS busybox sh -c SCRIPT}: its output."""
        return self.ok("run", "--rm", *options, "busybox", "sh", "-c", script)

    def run_fails(self, *options: str, script: str) -> str:
        """The same, for a script that must fail: its stderr."""
        return self.fails("run", "--rm", *options, "busybox", "sh", "-c", script)

    def cap_eff(self, *options: str) -> int:
        out = self.run_sh(*options, script="grep CapEff /proc/self/status")
        return int(out.split()[1], 16)

    def test_user(self) -> None:
        """-u NAME from the image's /etc/passwd, and -u UID:GID."""
        script = "echo $(id -un) $(id -u):$(id -g)"
        self.assertEqual(
            self.run_sh("-u", "nobody", script=script), "nobody 65534:65534\n"
        )
        script = "echo $(id -u):$(id -g)"
        self.assertEqual(self.run_sh("-u", "1000:1001", script=script), "1000:1001\n")

    def test_workdir_env_hostname(self) -> None:
        """-w, -e and --hostname."""
        out = self.run_sh(
            "-w", "/var/work", "-e", "GREETING=hello world", "--hostname", "inside",
            script='pwd; echo "$GREETING"; hostname; cat /etc/hostname',
        )  # fmt: skip
        self.assertEqual(out, "/var/work\nhello world\ninside\ninside\n")

    def test_add_host_and_dns(self) -> None:
        """--add-host lands in /etc/hosts, --dns in /etc/resolv.conf."""
        out = self.run_sh(
            "--add-host", "db.example:10.1.2.3", "--dns", "10.9.9.9",
            script="grep db.example /etc/hosts; grep nameserver /etc/resolv.conf",
        )  # fmt: skip
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["10.1.2.3", "db.example"])
        self.assertEqual(lines[1:], ["nameserver 10.9.9.9"])

    def test_bind_rw_and_ro(self) -> None:
        """-v HOST:CTR writes through to the host; :ro refuses writes."""
        host = temp_dir(self)
        (host / "in.txt").write_text("from host\n")
        out = self.run_sh(
            "-v", f"{host}:/data", script="cat /data/in.txt; echo back > /data/out.txt"
        )
        self.assertEqual(out, "from host\n")
        self.assertEqual((host / "out.txt").read_text(), "back\n")
        err = self.run_fails("-v", f"{host}:/data:ro", script="echo x > /data/ro.txt")
        self.assertIn("Read-only file system", err)
        self.assertFalse((host / "ro.txt").exists())

    def test_mount_bind_and_tmpfs(self) -> None:
        """--mount type=bind and type=tmpfs, and --tmpfs."""
        host = temp_dir(self)
        (host / "f").write_text("bound\n")
        out = self.run_sh(
            "--mount", f"type=bind,src={host},dst=/b,readonly",
            "--mount", "type=tmpfs,dst=/t",
            "--tmpfs", "/scratch:size=1m",
            script="cat /b/f; grep -E ' /(t|scratch) ' /proc/mounts | cut -d' ' -f2,3;"
            " touch /b/g 2>/dev/null || echo ro",
        )  # fmt: skip
        # dockerd 20.10 mounts the --tmpfs before the --mount tmpfs, as here.
        self.assertEqual(out, "bound\n/scratch tmpfs\n/t tmpfs\nro\n")

    def test_named_volume(self) -> None:
        """-v NAME:/data: what one container writes the next one reads."""
        self.addCleanup(self.docker, "volume", "rm", "-f", "c1-keep")
        self.run_sh("-v", "c1-keep:/data", script="echo kept > /data/f")
        out = self.run_sh("-v", "c1-keep:/data", script="cat /data/f")
        self.assertEqual(out, "kept\n")

    def test_read_only(self) -> None:
        """--read-only: the root cannot be written; a --tmpfs on it can."""
        err = self.run_fails("--read-only", script="touch /x")
        self.assertIn("Read-only file system", err)
        out = self.run_sh(
            "--read-only", "--tmpfs", "/w", script="touch /w/x && echo ok"
        )
        self.assertEqual(out, "ok\n")

    def test_capabilities(self) -> None:
        """The default set, --cap-drop and --cap-add, as CapEff shows them."""
        self.assertEqual(self.cap_eff(), DEFAULT_CAP_EFF)
        self.assertEqual(
            self.cap_eff("--cap-drop", "CHOWN"), DEFAULT_CAP_EFF & ~CAP_CHOWN
        )
        self.assertEqual(
            self.cap_eff("--cap-add", "NET_ADMIN"), DEFAULT_CAP_EFF | CAP_NET_ADMIN
        )
        self.assertEqual(self.cap_eff("--cap-drop", "ALL"), 0)

    def test_memory_and_pids(self) -> None:
        """--memory and --pids-limit are the container cgroup's limits."""
        out = self.run_sh(
            "--memory", "64m", "--pids-limit", "50",
            script="cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
            " /sys/fs/cgroup/pids/pids.max",
        )  # fmt: skip
        self.assertEqual(out.split(), [str(64 * 1024 * 1024), "50"])

    def test_ulimit(self) -> None:
        """--ulimit nofile=SOFT:HARD."""
        out = self.run_sh("--ulimit", "nofile=100:200", script="ulimit -n; ulimit -Hn")
        self.assertEqual(out.split(), ["100", "200"])

    def test_shm_size(self) -> None:
        """--shm-size is /dev/shm's size (64 MB without it)."""
        script = "df -k /dev/shm | tail -1"
        self.assertEqual(
            self.run_sh("--shm-size", "32m", script=script).split()[1], "32768"
        )
        self.assertEqual(self.run_sh(script=script).split()[1], "65536")

    def test_init(self) -> None:
        """
        --init: pid 1 is the small init (catatonit, mounted as
        /sbin/docker-init and so named, as dockerd names its tini), the
        command its child.
        """
        script = "echo $$ $PPID; cat /proc/1/comm"
        pid, ppid, comm = self.run_sh("--init", script=script).split()
        self.assertEqual((ppid, comm), ("1", "docker-init"))
        self.assertNotEqual(pid, "1")
        pid, _, comm = self.run_sh(script=script).split()
        # Without it the command is pid 1 (sh execs its last command).
        self.assertEqual((pid, comm), ("1", "cat"))

    def test_networks(self) -> None:
        """--network none has loopback only; host shares the host's devices."""
        script = "ls /sys/class/net"
        self.assertEqual(
            self.run_sh("--network", "none", script=script).split(), ["lo"]
        )
        self.assertEqual(
            sorted(self.run_sh("--network", "host", script=script).split()),
            sorted(p.name for p in Path("/sys/class/net").iterdir()),
        )

    def test_privileged(self) -> None:
        """
        --privileged: every capability the daemon has, /sys writable and the
        masked paths visible.
        """
        self.assertEqual(self.cap_eff("--privileged"), _cap_bnd())
        out = self.run_sh(
            "--privileged",
            script="grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1;"
            " head -c1 /proc/timer_list | wc -c; ls -A /sys/firmware | wc -l",
        )
        self.assertEqual(out.split()[:2], ["rw", "1"])
        self.assertGreater(int(out.split()[2]), 0)

    def test_privileged_devices(self) -> None:
        """--privileged gives the host's devices (dockerd's HostDevices)."""
        host = sorted(
            p.name
            for p in Path("/dev").iterdir()
            if p.is_char_device() and p.name.startswith(("loop", "fuse", "kmsg"))
        )
        if not host:
            self.skipTest("this machine has no loop, fuse or kmsg device")
        script = "ls /dev"
        inside = self.run_sh("--privileged", script=script).split()
        self.assertEqual([name for name in host if name in inside], host)
        unprivileged = self.run_sh(script=script).split()
        self.assertEqual([name for name in host if name in unprivileged], [])

    def test_masked_paths(self) -> None:
        """
        Docker's masked paths read as empty (files as /dev/null, directories
        as an empty read-only tmpfs); /proc/sys and /sys are read-only.
        """
        out = self.run_sh(
            script="wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l;"
            " echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo ro;"
            " grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1",
        )
        self.assertEqual(out.split(), ["0", "0", "ro", "ro"])

    def test_seccomp(self) -> None:
        """
        Docker's default seccomp idea: a new user namespace (unshare -U) is
        refused; CAP_SYS_ADMIN, --privileged and seccomp=unconfined allow it.
        """
        script = "unshare -U true && echo allowed"
        err = self.run_fails(script=script)
        self.assertIn("Operation not permitted", err)
        for options in (
            ("--cap-add", "SYS_ADMIN"),
            ("--privileged",),
            ("--security-opt", "seccomp=unconfined"),
        ):
            self.assertEqual(self.run_sh(*options, script=script), "allowed\n", options)

    def test_security_opt(self) -> None:
        """
        --security-opt no-new-privileges reaches the process; a profile file
        (which the CLI sends as JSON) is the filter; a bad option is a 400
        at create, in dockerd's words, and leaves no container.
        """
        self.assertEqual(
            self.run_sh(script="grep NoNewPrivs /proc/self/status").split()[1], "0"
        )
        out = self.run_sh("--security-opt", "no-new-privileges",
                          script="grep NoNewPrivs /proc/self/status")  # fmt: skip
        self.assertEqual(out.split()[1], "1")
        profile = Path(self.mktemp()).absolute()
        profile.write_text(json.dumps({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
        }))  # fmt: skip
        err = self.run_fails("--security-opt", f"seccomp={profile}",
                             script="mkdir /made")  # fmt: skip
        self.assertIn("Operation not permitted", err)
        self.assertEqual(self.run_sh(script="mkdir /made && echo made"), "made\n")
        err = self.fails("run", "--rm", "--security-opt", "bogus=1", "busybox", "true")
        self.assertIn('invalid --security-opt 2: "bogus=1"', err)

    def test_seccomp_allows_fork(self) -> None:
        """The clone rules refuse namespace flags only: fork still works."""
        out = self.run_sh(script="(echo child); echo $(echo sub)")
        self.assertEqual(out, "child\nsub\n")
