# -*- test-case-name: tests.integration.test_container_inspect -*-
"""
Looking at containers through the real docker CLI: inspect, ps and its
filters (the names dockerd lists for the same containers), top, stats,
diff, export, and docker cp both ways without ever leaving the container's
root.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import tarfile
import tempfile
from pathlib import Path

from tests.integration.harness import unix_get
from tests.integration.test_containers import DOCKER, _DaemonCase


class InspectTests(_DaemonCase):
    def test_state_while_running_and_after(self) -> None:
        """State, Config, HostConfig, Mounts, LogPath as a user reads them."""
        self.cleanup_container("seen")
        self.ok("run", "-d", "--name", "seen", "--label", "team=a",
                "-e", "GREETING=hi", "-w", "/tmp", "--memory", "64m",
                "-v", "/tmp:/hosttmp:ro", "--restart", "on-failure:1",
                "busybox", "sleep", "300")  # fmt: skip
        state = json.loads(self.ok("inspect", "-f", "{{json .State}}", "seen"))
        self.assertEqual(
            (state["Status"], state["Running"], state["Paused"], state["ExitCode"]),
            ("running", True, False, 0),
        )
        self.assertGreater(state["Pid"], 0)
        self.assertTrue(Path(f"/proc/{state['Pid']}").exists())
        self.assertEqual(state["FinishedAt"], "0001-01-01T00:00:00Z")
        info = json.loads(self.ok("inspect", "seen"))[0]
        self.assertEqual(info["Name"], "/seen")
        self.assertEqual(info["Path"], "sleep")
        self.assertEqual(info["Args"], ["300"])
        self.assertEqual(info["RestartCount"], 0)
        self.assertEqual(info["Config"]["Labels"], {"team": "a"})
        self.assertIn("GREETING=hi", info["Config"]["Env"])
        self.assertEqual(info["Config"]["WorkingDir"], "/tmp")
        self.assertEqual(info["Config"]["Image"], "busybox")
        self.assertEqual(info["HostConfig"]["Memory"], 64 * 1024 * 1024)
        self.assertEqual(
            info["HostConfig"]["RestartPolicy"],
            {"Name": "on-failure", "MaximumRetryCount": 1},
        )
        self.assertEqual(info["HostConfig"]["Binds"], ["/tmp:/hosttmp:ro"])
        # What the CLI sends as zero values shows dockerd's defaults.
        host = info["HostConfig"]
        self.assertEqual(
            (host["ShmSize"], host["IpcMode"], host["PidsLimit"]),
            (64 * 1024 * 1024, "private", None),
        )
        self.assertIn("/proc/kcore", host["MaskedPaths"])
        self.assertIn("/proc/sys", host["ReadonlyPaths"])
        self.assertIsNone(info["Config"]["Volumes"])
        mount = info["Mounts"][0]
        self.assertEqual(
            (mount["Type"], mount["Source"], mount["Destination"], mount["RW"]),
            ("bind", "/tmp", "/hosttmp", False),
        )
        self.assertTrue(Path(info["LogPath"]).exists())
        self.ok("stop", "-t", "1", "seen")
        state = json.loads(self.ok("inspect", "-f", "{{json .State}}", "seen"))
        self.assertEqual(
            (state["Status"], state["Running"], state["Pid"], state["ExitCode"]),
            ("exited", False, 0, 137),
        )
        self.assertGreaterEqual(state["FinishedAt"], state["StartedAt"])

    def test_quick_exit_times(self) -> None:
        """A process that exits at once did not finish before it started."""
        self.cleanup_container("quick")
        self.ok("run", "--name", "quick", "busybox", "true")
        started, finished = self.inspect(
            "quick", "{{.State.StartedAt}} {{.State.FinishedAt}}"
        ).split()
        self.assertGreaterEqual(finished, started)


class ListTests(_DaemonCase):
    def setUp(self) -> None:
        super().setUp()
        for name in ("i1", "i2", "i3"):
            self.cleanup_container(name)
        self.ok("run", "-d", "--name", "i1", "--label", "a=1", "--label", "b=2",
                "-v", "/tmp:/hosttmp:ro", "busybox", "sleep", "300")  # fmt: skip
        self.docker("run", "--name", "i2", "--label", "a=1", "busybox", "sh",
                    "-c", "echo x > /newfile; rm /bin/true; exit 2")  # fmt: skip
        self.ok("create", "--name", "i3", "busybox", "true")

    def names(self, *args: str) -> list[str]:
        return self.ok("ps", *args, "--format", "{{.Names}}").split()

    def test_ps(self) -> None:
        """ps, -a, -n, and the columns dockerd fills in."""
        self.assertEqual(self.names(), ["i1"])
        self.assertEqual(self.names("-a"), ["i3", "i2", "i1"])
        self.assertEqual(self.names("-n", "1"), ["i3"])
        self.assertEqual(self.names("-l"), ["i3"])
        rows = self.ok(
            "ps", "-a", "--format", "{{.Names}}|{{.Status}}|{{.Labels}}|{{.Command}}"
        ).splitlines()
        self.assertEqual(rows[0], 'i3|Created||"true"')
        self.assertRegex(rows[1], r"^i2\|Exited \(2\) .* ago\|a=1\|")
        self.assertIn("\"sh -c 'echo x > /ne", rows[1])
        self.assertRegex(rows[2], r'^i1\|Up .*\|a=1,b=2\|"sleep 300"$')
        self.assertEqual(self.ok("ps", "-s", "--format", "{{.Names}}"), "i1\n")

    def test_sizes(self) -> None:
        """ps -s and inspect --size count the container's files and the image's."""
        self.cleanup_container("sz")
        self.ok("run", "--name", "sz", "busybox", "sh", "-c",
                "head -c 1000 /dev/zero > /f")  # fmt: skip
        own, total = self.ok(
            "inspect", "--size", "-f", "{{.SizeRw}} {{.SizeRootFs}}", "sz"
        ).split()
        self.assertEqual(own, "1000")
        image = Path("/bin/busybox").stat().st_size
        self.assertGreater(int(total), 1000 + image)
        self.assertRegex(
            self.ok("ps", "-a", "-s", "--filter", "name=sz", "--format", "{{.Size}}"),
            r"^1kB \(virtual [0-9.]+MB\)\n$",
        )

    def test_filters(self) -> None:
        """Each filter lists what dockerd lists for the same containers."""
        expected = {
            "label=a=1": ["i2", "i1"],
            "label=b": ["i1"],
            "status=exited": ["i2"],
            "status=created": ["i3"],
            "status=running": ["i1"],
            "exited=2": ["i2"],
            "exited=0": [],
            "ancestor=busybox": ["i3", "i2", "i1"],
            "before=i2": ["i1"],
            "since=i1": ["i3", "i2"],
            "name=i2": ["i2"],
            "volume=/hosttmp": ["i1"],
            "id=" + self.inspect("i3", "{{.Id}}")[:6]: ["i3"],
        }
        for spec, names in expected.items():
            self.assertEqual(self.names("-a", "--filter", spec), names, spec)
        self.assertIn(
            "nvalid filter 'status=bogus'",
            self.fails("ps", "--filter", "status=bogus"),
        )
        self.assertIn("nvalid filter 'foo'", self.fails("ps", "--filter", "foo=1"))


class LookInsideTests(_DaemonCase):
    def test_top_stats(self) -> None:
        """top lists the container's processes; stats shows real numbers."""
        self.cleanup_container("busy")
        self.ok("run", "-d", "--name", "busy", "busybox", "sleep", "300")
        pid = self.inspect("busy", "{{.State.Pid}}")
        lines = self.ok("top", "busy").splitlines()
        self.assertEqual(lines[0].split()[:2], ["UID", "PID"])
        self.assertEqual([line.split()[1] for line in lines[1:]], [pid])
        self.assertIn("sleep 300", lines[1])
        stats = self.ok(
            "stats", "--no-stream", "--format", "{{.Name}}|{{.MemUsage}}|{{.PIDs}}",
            "busy",
        ).strip()  # fmt: skip
        name, memory, pids = stats.split("|")
        self.assertEqual((name, pids), ("busy", "1"))
        used = memory.split(" / ")[0]
        self.assertRegex(used, r"^[0-9.]+(B|KiB|MiB)$")
        self.assertNotEqual(used, "0B")
        self.assertIn("No such container: nothere", self.fails("top", "nothere"))

    def test_stats_cpu(self) -> None:
        """stats --no-stream shows the CPU a busy container is using."""
        self.cleanup_container("hot")
        self.ok("run", "-d", "--name", "hot", "busybox", "sh", "-c",
                "while true; do :; done")  # fmt: skip
        percent = self.ok(
            "stats", "--no-stream", "--format", "{{.CPUPerc}}", "hot"
        ).strip()
        self.assertGreater(float(percent.rstrip("%")), 20.0, percent)

    def test_diff_export(self) -> None:
        """diff shows the container's own changes only; export its files."""
        self.cleanup_container("changed")
        self.docker("run", "--name", "changed", "busybox", "sh", "-c",
                    "echo x > /newfile; rm /bin/true")  # fmt: skip
        self.assertEqual(
            self.ok("diff", "changed").splitlines(),
            ["C /bin", "D /bin/true", "A /newfile"],
        )
        exported = subprocess.run(
            [DOCKER, "export", "changed"],
            env=self.daemon.env,
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
            names = set(tar.getnames())
            newfile = tar.extractfile("newfile")
            assert newfile is not None
            self.assertEqual(newfile.read(), b"x\n")
        self.assertIn("bin/busybox", names)
        self.assertNotIn("bin/true", names)


class CopyEscapeTests(_DaemonCase):
    """
    docker cp resolves every path inside the container's root: neither a
    symlink to a host path nor C{..} reads or writes outside it.
    """

    def setUp(self) -> None:
        super().setUp()
        self.host = Path(tempfile.mkdtemp(prefix="dockserve-cp-host-"))
        self.addCleanup(subprocess.run, ["rm", "-rf", str(self.host)])
        (self.host / "secret").write_text("host secret\n")
        self.cleanup_container("esc")
        script = (
            f"echo inside >> /etc/passwd; ln -s /etc/passwd /pw; "
            f"mkdir -p {self.host}; echo container > {self.host}/secret; "
            f"ln -s {self.host} /out; ln -s ../../../../../etc /up"
        )
        self.ok("run", "--name", "esc", "busybox", "sh", "-c", script)
        self.out = Path(self.mktemp())
        self.out.mkdir()

    def test_read_through_symlink(self) -> None:
        """-L through /pw gives the container's /etc/passwd, not the host's."""
        self.ok("cp", "-L", "esc:/pw", str(self.out / "pw"))
        text = (self.out / "pw").read_text()
        self.assertTrue(text.endswith("inside\n"), text)
        self.ok("cp", "esc:/out/secret", str(self.out / "s"))
        self.assertEqual((self.out / "s").read_text(), "container\n")

    def test_read_dotdot(self) -> None:
        """../ above the root stays at the root."""
        self.ok("cp", "esc:/../../../../etc/passwd", str(self.out / "p"))
        self.assertTrue((self.out / "p").read_text().endswith("inside\n"))
        self.ok("cp", "esc:/up/passwd", str(self.out / "q"))
        self.assertTrue((self.out / "q").read_text().endswith("inside\n"))

    def test_write_through_symlink(self) -> None:
        """Writing through a link to a host path writes inside the container."""
        source = self.out / "dropped"
        source.write_text("dropped\n")
        self.ok("cp", str(source), "esc:/out/")
        self.assertFalse((self.host / "dropped").exists())
        self.ok("cp", str(source), f"esc:/../../../..{self.host}/two")
        self.assertFalse((self.host / "two").exists())
        self.assertEqual((self.host / "secret").read_text(), "host secret\n")
        self.ok("cp", f"esc:{self.host}/dropped", str(self.out / "back"))
        self.assertEqual((self.out / "back").read_text(), "dropped\n")
        self.ok("cp", f"esc:{self.host}/two", str(self.out / "back2"))
        self.assertEqual((self.out / "back2").read_text(), "dropped\n")

    def test_seed_copy_endpoint(self) -> None:
        """The seed's POST /containers/{id}/copy answers the tar of the path."""
        out = subprocess.run(
            [
                "curl", "-s", "--unix-socket", self.daemon.socket_path,
                "-H", "Content-Type: application/json",
                "-d", json.dumps({"Resource": "/pw"}),
                "http://localhost/containers/esc/copy",
            ],
            capture_output=True,
            check=True,
        ).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(out)) as tar:
            member = tar.getmember("pw")
        self.assertTrue(member.issym())
        self.assertEqual(member.linkname, "/etc/passwd")


class NetworkTests(_DaemonCase):
    def test_networks(self) -> None:
        """
        host and none are listed (this daemon runs with --bridge none, as
        dockerd then lists them); none has loopback only.
        """
        self.assertEqual(
            sorted(self.ok("network", "ls", "--format", "{{.Name}} {{.Driver}}")
                   .splitlines()),
            ["host host", "none null"],
        )  # fmt: skip
        links = self.ok("run", "--rm", "--network", "none", "busybox", "ip", "-o",
                        "link")  # fmt: skip
        self.assertEqual([line.split(":")[1].strip() for line in links.splitlines()],
                         ["lo"])  # fmt: skip
        self.assertIn(
            "network nope not found", self.fails("network", "inspect", "nope")
        )

    def test_host_network_hostname(self) -> None:
        """On the host's network a container has the host's name."""
        self.assertEqual(
            self.ok("run", "--rm", "--network", "host", "busybox", "hostname"),
            socket.gethostname() + "\n",
        )

    def test_unknown_network(self) -> None:
        """
        run on a network that does not exist: dockerd's error when it
        starts, and no attempt to pull the image.
        """
        self.cleanup_container("lost")
        err = self.fails("run", "--name", "lost", "--network", "nonet", "busybox")
        self.assertIn("network nonet not found", err)
        self.assertNotIn("Unable to find image", err)


class DiskUsageTests(_DaemonCase):
    def test_system_df(self) -> None:
        """
        docker system df: the images with how many containers use them, the
        containers with what they wrote, the named volumes with their size
        and users, an empty build cache; the SDK's df() the same; an unknown
        type is a 400.
        """
        self.cleanup_container("writer")
        self.cleanup_container("idle")
        self.ok("run", "--name", "writer", "-v", "dfvol:/data", "busybox", "sh",
                "-c", "head -c 300000 /dev/zero > /data/f; echo hi > /hi")  # fmt: skip
        self.ok("create", "--name", "idle", "busybox", "true")
        rows = self.ok(
            "system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}"
        ).splitlines()
        self.assertEqual(
            rows,
            ["Images 1 1", "Containers 2 0", "Local Volumes 1 1", "Build Cache 0 0"],
        )
        usage = self.sdk().df()
        (image,) = usage["Images"]
        self.assertEqual(image["Containers"], 2)
        self.assertEqual(usage["LayersSize"], image["Size"])
        self.assertGreater(image["Size"], 0)
        sizes = {c["Names"][0]: c["SizeRw"] for c in usage["Containers"]}
        self.assertEqual(sizes["/idle"], 0)
        self.assertGreater(sizes["/writer"], 0)
        (volume,) = usage["Volumes"]
        self.assertEqual(volume["Name"], "dfvol")
        self.assertEqual(volume["UsageData"]["RefCount"], 1)
        self.assertGreaterEqual(volume["UsageData"]["Size"], 300000)
        self.assertEqual(usage["BuildCache"], [])
        status, body = unix_get(self.daemon.socket_path, "/system/df?type=image")
        self.assertEqual(status, 200)
        self.assertEqual(set(json.loads(body)), {"LayersSize", "Images"})
        status, body = unix_get(self.daemon.socket_path, "/system/df?type=nope")
        self.assertEqual(
            (status, json.loads(body)), (400, {"message": "unknown object type: nope"})
        )

    def test_system_prune(self) -> None:
        """
        docker system prune -f: stopped containers, unused networks and
        dangling images go, and the build-cache step (no builder, nothing
        cached) does not fail it.
        """
        self.cleanup_container("done")
        self.ok("create", "--name", "done", "busybox", "true")
        cid = self.inspect("done", "{{.Id}}")
        out = self.ok("system", "prune", "-f")
        self.assertIn(f"Deleted Containers:\n{cid}\n", out)
        self.assertEqual(self.ok("ps", "-aq"), "")
        self.assertIn("busybox", self.ok("images", "--format", "{{.Repository}}"))
