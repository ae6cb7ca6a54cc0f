# -*- test-case-name: tests.integration.test_client_bugs -*-
"""
Client-visible bugs of issue 9, each as the docker CLI or the Docker SDK
for Python met it, against a real daemon; what they check was compared with
dockerd 20.10 on the same machine.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path

from tests.integration.harness import unix_request
from tests.integration.images import write_rootfs
from tests.integration.test_containers import _DaemonCase

#: The users and groups of the image C{groups}, as in dockerd's comparison.
_PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"nobody:x:65534:65534::/:/bin/false\n"
    b"alice:x:1000:1000::/home/alice:/bin/sh\n"
    b"bob:x:1001:1001::/:/bin/sh\n"
)
_GROUP = (
    b"root:x:0:\nwheel:x:10:root\naudio:x:29:alice,bob\nstaff:x:50:alice\n"
    b"alice:x:1000:\nnogroup:x:65534:\n"
)


def _rootfs_with_users(path: Path) -> Path:
    """The busybox root with L{_PASSWD} and L{_GROUP} as its /etc files."""
    raw = io.BytesIO()
    write_rootfs(raw)
    raw.seek(0)
    replaced = {"etc/passwd": _PASSWD, "etc/group": _GROUP}
    with (
        tarfile.open(fileobj=raw) as source,
        tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as target,
    ):
        for member in source:
            if member.name in replaced:
                data = replaced[member.name]
            elif member.isfile():
                extracted = source.extractfile(member)
                assert extracted is not None
                data = extracted.read()
            else:
                target.addfile(member)
                continue
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    return path


class BindFileTests(_DaemonCase):
    """A single file bound into a container, by C{-v} and by C{--mount}."""

    def source(self) -> Path:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        path = directory / "file.txt"
        path.write_text("hello cfg\n")
        return path

    def test_volume_form(self) -> None:
        """C{-v /host/file.txt:/etc/cfg.txt:ro}: the file, read-only, as a file."""
        source = self.source()
        out = self.ok(
            "run", "--rm", "-v", f"{source}:/etc/cfg.txt:ro", "busybox", "sh", "-c",
            "cat /etc/cfg.txt; test -f /etc/cfg.txt && echo file; "
            "echo x 2>/dev/null >> /etc/cfg.txt || echo read-only",
        )  # fmt: skip
        self.assertEqual(out, "hello cfg\nfile\nread-only\n")
        self.assertEqual(source.read_text(), "hello cfg\n")

    def test_mount_form(self) -> None:
        """C{--mount type=bind,...}: the same, at a path whose parents are new."""
        source = self.source()
        out = self.ok(
            "run", "--rm", "--mount", f"type=bind,src={source},dst=/new/dir/cfg",
            "busybox", "sh", "-c", "cat /new/dir/cfg; echo more >> /new/dir/cfg",
        )  # fmt: skip
        self.assertEqual(out, "hello cfg\n")
        self.assertEqual(source.read_text(), "hello cfg\nmore\n")

    def test_missing_source(self) -> None:
        """A missing C{-v} source is made a directory on the host."""
        source = Path(self.mktemp()).absolute() / "made" / "here"
        self.ok("run", "--rm", "-v", f"{source}:/data", "busybox",
                "touch", "/data/written")  # fmt: skip
        self.assertTrue((source / "written").is_file())

    def test_sdk(self) -> None:
        """The SDK's C{volumes=} dictionary binds a file too."""
        source = self.source()
        client = self.sdk()
        out = client.containers.run(
            "busybox",
            ["cat", "/etc/cfg.txt"],
            volumes={str(source): {"bind": "/etc/cfg.txt", "mode": "ro"}},
            remove=True,
        )
        self.assertEqual(out, b"hello cfg\n")


class GroupTests(_DaemonCase):
    """
    Supplementary groups: C{id} in the container says what dockerd 20.10's
    said for the same image and options (C{id -G} showed only 0).
    """

    def setUp(self) -> None:
        super().setUp()
        tarball = _rootfs_with_users(Path(self.mktemp()))
        self.sdk().api.import_image(
            src=str(tarball), repository="groups", tag="latest",
            changes=['CMD ["sh"]'],
        )  # fmt: skip

    def id_of(self, *options: str) -> str:
        return self.ok("run", "--rm", *options, "groups", "id").strip()

    def test_cli(self) -> None:
        """No user, numbers, names, --group-add: each as dockerd's."""
        cases = {
            (): "uid=0(root) gid=0(root) groups=0(root),10(wheel)",
            ("-u", "1000"): "uid=1000(alice) gid=1000(alice) "
            "groups=29(audio),50(staff),1000(alice)",
            ("-u", "1000:1000"): "uid=1000(alice) gid=1000(alice) groups=1000(alice)",
            ("-u", "alice:staff"): "uid=1000(alice) gid=50(staff) groups=50(staff)",
            ("-u", "nobody"): "uid=65534(nobody) gid=65534(nogroup) "
            "groups=65534(nogroup)",
            ("-u", "5000"): "uid=5000 gid=0(root) groups=0(root)",
            ("--group-add", "1000", "--group-add", "5"): "uid=0(root) gid=0(root) "
            "groups=0(root),5,10(wheel),1000(alice)",
            ("--group-add", "audio"): "uid=0(root) gid=0(root) "
            "groups=0(root),10(wheel),29(audio)",
        }
        for options, expected in cases.items():
            self.assertEqual(self.id_of(*options), expected, options)

    def test_unknown_group(self) -> None:
        """An unknown --group-add name fails the start with dockerd's words."""
        error = self.fails("run", "--rm", "--group-add", "nosuch", "groups", "id")
        self.assertIn(
            "Unable to find group nosuch: no matching entries in group file", error
        )

    def test_sdk(self) -> None:
        """The SDK's C{group_add=[1000]} and C{user='1000:1000'}."""
        client = self.sdk()
        out = client.containers.run(
            "groups", ["id", "-G"], group_add=[1000], remove=True
        )
        self.assertEqual(out, b"0 10 1000\n")
        out = client.containers.run(
            "groups", ["id", "-G"], user="1000:1000", remove=True
        )
        self.assertEqual(out, b"1000\n")

    def test_exec(self) -> None:
        """
        An exec has the container's groups; one with a user of its own has
        that user's and the container's GroupAdd, as with dockerd.
        """
        self.cleanup_container("grouped")
        self.ok("run", "-d", "--name", "grouped", "--group-add", "7", "-u", "bob",
                "groups", "sleep", "300")  # fmt: skip
        self.assertEqual(
            self.ok("exec", "grouped", "id", "-G").split(), ["1001", "7", "29"]
        )
        self.assertEqual(
            self.ok("exec", "-u", "alice", "grouped", "id").strip(),
            "uid=1000(alice) gid=1000(alice) groups=7,29(audio),50(staff),1000(alice)",
        )
        self.assertEqual(
            self.ok("exec", "-u", "0", "grouped", "id").strip(),
            "uid=0(root) gid=0(root) groups=0(root),7,10(wheel)",
        )


def _daemon_files(pid: int) -> tuple[list[str], int]:
    """The files process C{pid} holds open, and its inotify watches."""
    files, watches = [], 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
            if target == "anon_inode:inotify":
                info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
                watches += info.count("inotify wd:")
            files.append(target)
        except OSError:
            continue
    return files, watches


class LogStreamTests(_DaemonCase):
    """C{containers.run(stream=True)} and C{logs(stream=True, follow=True)}."""

    def test_run_stream(self) -> None:
        """
        Each line is an item of the stream (docker-py's own test: the
        stream stopped after the first, which held both lines).
        """
        client = self.sdk()
        out = client.containers.run(
            "busybox", 'sh -c "echo hello && echo world"', stream=True, remove=True
        )
        self.assertEqual(list(out), [b"hello\n", b"world\n"])

    def test_run_stream_cancel(self) -> None:
        """docker-py's test: closing the stream a second later leaves both lines."""
        client = self.sdk()
        out = client.containers.run(
            "busybox", 'sh -c "echo hello && echo world"', stream=True, remove=True
        )
        threading.Timer(1, out.close).start()
        self.assertEqual(list(out), [b"hello\n", b"world\n"])

    def test_follow_as_written(self) -> None:
        """Lines written half a second apart arrive apart, one item each."""
        client = self.sdk()
        container = client.containers.run(
            "busybox", ["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.5; done"],
            detach=True,
        )  # fmt: skip
        self.addCleanup(container.remove, force=True)
        arrivals = [
            (time.monotonic(), chunk)
            for chunk in container.logs(stream=True, follow=True)
        ]
        self.assertEqual(
            [c for _, c in arrivals], [b"line 1\n", b"line 2\n", b"line 3\n"]
        )
        self.assertGreater(arrivals[2][0] - arrivals[0][0], 0.7)

    def test_close_ends_the_follow(self) -> None:
        """
        Closing a follow stream (C{logs.close()}) ends it in the daemon: the
        log file is closed and no inotify watch is left for it.
        """
        client = self.sdk()
        container = client.containers.run(
            "busybox", ["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
            detach=True,
        )  # fmt: skip
        self.addCleanup(container.remove, force=True)
        _, watches = _daemon_files(self.daemon.pid)
        logs = container.logs(stream=True, follow=True)
        threading.Timer(1, logs.close).start()
        started = time.monotonic()
        ticks = list(logs)
        self.assertLess(time.monotonic() - started, 5)
        self.assertGreater(len(ticks), 2)
        self.assertEqual(set(ticks), {b"tick\n"})

        def released() -> bool:
            files, now = _daemon_files(self.daemon.pid)
            return now == watches and not any(container.id in f for f in files)

        self.until(released, "the daemon to let the log go", timeout=5)


#: What C{echo hello out} gives through a TTY: dockerd's, or runc exec -t's
#: known CR CR LF (docs/architecture.md: ONLCR cleared late by runc).
_HELLO = (b"hello out\r\n", b"hello out\r\r\n")


class ExecTtyTests(_DaemonCase):
    """
    TTY execs through the SDK: output framed as the start body's C{Tty}
    says, as dockerd does ("t\\r\\n" was all that was left of "hello out").
    """

    def setUp(self) -> None:
        super().setUp()
        self.client = self.sdk()
        self.container = self.client.containers.run(
            "busybox", ["sleep", "300"], detach=True
        )
        self.addCleanup(self.container.remove, force=True)

    def test_exec_run(self) -> None:
        """C{exec_run(tty=True)}, with and without demux."""
        result = self.container.exec_run("echo hello out", tty=True)
        self.assertEqual(result.exit_code, 0)
        self.assertIn(result.output, _HELLO)
        result = self.container.exec_run("echo hello out", tty=True, demux=True)
        stdout, stderr = result.output
        self.assertIn(stdout, _HELLO)
        self.assertIsNone(stderr)

    def test_low_level(self) -> None:
        """
        C{exec_create(tty=True)} then C{exec_start} with C{tty=True} (raw,
        also as a stream) or without (framed: the SDK demultiplexes it).
        """
        api = self.client.api
        for start in ({"tty": True}, {"tty": True, "stream": True}, {}):
            created = api.exec_create(self.container.id, "echo hello out", tty=True)
            output = api.exec_start(created["Id"], **start)
            if start.get("stream"):
                output = b"".join(output)
            self.assertIn(output, _HELLO, start)

    def test_plain_exec_started_with_tty(self) -> None:
        """A plain exec started with C{tty=True}: its stdout raw, no stderr."""
        api = self.client.api
        created = api.exec_create(
            self.container.id, ["sh", "-c", "echo out; echo err >&2"]
        )
        self.assertEqual(api.exec_start(created["Id"], tty=True), b"out\n")
        created = api.exec_create(
            self.container.id, ["sh", "-c", "echo out; echo err >&2"]
        )
        self.assertEqual(
            api.exec_start(created["Id"], demux=True), (b"out\n", b"err\n")
        )

    def test_cli(self) -> None:
        """The CLI's C{exec -t} and plain C{exec} are as they were."""
        self.assertIn(
            self.docker("exec", "-t", self.container.id, "echo", "hello", "out").stdout,
            _HELLO,
        )
        result = self.docker(
            "exec", self.container.id, "sh", "-c", "echo out; echo err >&2"
        )
        self.assertEqual((result.stdout, result.stderr), (b"out\n", b"err\n"))


class NetworkStatsTests(_DaemonCase):
    """
    The stats body's C{networks}, read in the container's own network
    namespace: its interfaces but loopback, as dockerd reports its
    endpoints'. Interfaces are made inside the container's namespace only
    (a veth pair with both ends there): the host's network is not touched.
    """

    def setUp(self) -> None:
        if shutil.which("nsenter") is None or shutil.which("ip") is None:
            self.skipTest("nsenter and ip are needed")
        super().setUp()

    def running(self, *options: str) -> tuple[str, int]:
        name = f"net{len(options)}"
        self.cleanup_container(name)
        self.ok("run", "-d", "--name", name, *options, "busybox", "sleep", "300")
        return name, int(self.inspect(name, "{{.State.Pid}}"))

    def add_veth(self, pid: int) -> None:
        for command in (
            "ip link add v0 type veth peer name v1",
            "ip link set v0 up",
            "ip link set v1 up",
        ):
            subprocess.run(
                ["nsenter", "-t", str(pid), "-n", *command.split()],
                check=True,
                capture_output=True,
            )

    def stats(self, name: str) -> dict[str, object]:
        status, body = unix_request(
            self.daemon.socket_path, "GET", f"/containers/{name}/stats?stream=false"
        )
        self.assertEqual(status, 200, body)
        result: dict[str, object] = json.loads(body)
        return result

    def test_interfaces(self) -> None:
        """
        Loopback only: nothing (as dockerd's --network none); with a veth
        pair inside: both ends, dockerd's eight counters each.
        """
        from dockserve.daemon.netstats import network_stats  # noqa: PLC0415

        _, pid = self.running()
        self.assertEqual(network_stats(pid), {})
        self.add_veth(pid)
        stats = network_stats(pid)
        self.assertEqual(sorted(stats), ["v0", "v1"])
        self.assertEqual(
            list(stats["v0"]),
            ["rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
             "tx_bytes", "tx_packets", "tx_errors", "tx_dropped"],
        )  # fmt: skip

    def test_host_network(self) -> None:
        """A container of the host's network has none: they are the host's."""
        from dockserve.daemon.netstats import network_stats  # noqa: PLC0415

        _, pid = self.running("--network", "host")
        self.assertEqual(network_stats(pid), {})

    def test_stats_body(self) -> None:
        """
        C{GET /containers/{id}/stats?stream=false} carries them (docker-py's
        test asks for C{networks}); none without an interface but C{lo}.
        """
        name, pid = self.running()
        self.assertNotIn("networks", self.stats(name))
        self.add_veth(pid)
        networks = self.stats(name).get("networks")
        assert isinstance(networks, dict)
        self.assertEqual(sorted(networks), ["v0", "v1"])
