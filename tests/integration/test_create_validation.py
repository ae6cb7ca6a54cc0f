# -*- test-case-name: tests.integration.test_create_validation -*-
"""
Bad create and update bodies at a real daemon's door (findings 10, 15 and
17 of the security review): each is a 400 with a C{{"message"}}, nothing is
stored, and what the docker CLI and the SDK send is still accepted.

The messages are dockerd's (20.10 beside it, or newer where 20.10 let the
body through and failed later); see L{tests.daemon.containers.test_configs}
for the whole table.
"""

from __future__ import annotations

import json
from typing import Any

from tests.integration.test_containers import _DaemonCase

_GO = "json: cannot unmarshal {} into Go struct field {} of type {}"
_VOLUME = (
    'create {0}: "{0}" includes invalid characters for a local volume name, only '
    '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
    "directory, use absolute path"
)

#: A sample of the review's 89 bad bodies and their answers.
BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"HostConfig": {"Mounts": ["x"]}},
     _GO.format("string", "ContainerConfigWrapper.HostConfig.Mounts", "mount.Mount")),
    ({"HostConfig": {"Mounts": [{"Type": "volume", "Target": 5}]}},
     _GO.format("number", "Mount.HostConfig.Mounts.Target", "string")),
    ({"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": "a", "Hard": 2}]}},
     _GO.format("string", "Ulimit.HostConfig.Ulimits.Soft", "int64")),
    ({"HostConfig": {"Sysctls": ["a"]}},
     _GO.format("array", "ContainerConfigWrapper.HostConfig.Sysctls",
                "map[string]string")),
    ({"HostConfig": {"Devices": "x"}},
     _GO.format("string", "ContainerConfigWrapper.HostConfig.Devices",
                "[]container.DeviceMapping")),
    ({"Healthcheck": "x"},
     _GO.format("string", "ContainerConfigWrapper.Config.Healthcheck",
                "container.HealthConfig")),
    ({"HostConfig": {"PortBindings": {"80/tcp": "x"}}},
     _GO.format("string", "ContainerConfigWrapper.HostConfig.PortBindings",
                "[]nat.PortBinding")),
    ({"Labels": {"a": 1}},
     _GO.format("number", "ContainerConfigWrapper.Config.Labels", "string")),
    ({"HostConfig": {"PidsLimit": 10**30}},
     _GO.format(f"number {10**30}", "ContainerConfigWrapper.HostConfig.PidsLimit",
                "int64")),
    ({"HostConfig": {"Binds": ["../../x:/d"]}},
     _VOLUME.format("../../x")),
    ({"HostConfig": {"Mounts": [{"Type": "volume", "Source": "../..",
                                 "Target": "/x"}]}},
     _VOLUME.format("../..")),
    ({"ExposedPorts": {"notaport": {}}}, 'invalid port specification: "notaport"'),
    ({"HostConfig": {"Memory": -5}}, "Minimum memory limit allowed is 6MB"),
    ({"HostConfig": {"CpuShares": -100}},
     "invalid CPU shares (-100): value must be a positive integer"),
    ({"Env": ["A=\u0000"]},
     'invalid Config.Env: "A=\\x00": NUL characters are not allowed'),
    ({"HostConfig": {"Runtime": "bogus"}}, "unknown or invalid runtime name: bogus"),
    ({"HostConfig": {"IpcMode": "bogus"}}, "invalid IPC mode: bogus"),
    # dockerd's 400 (a 404 would have the CLI pull the image).
    ({"HostConfig": {"PidMode": "container:nope"}}, "No such container: nope"),
    ({"HostConfig": {"CgroupParent": "../../x"}},
     'invalid CgroupParent "../../x": it may not name a parent directory (..)'),
    ({"HostConfig": {"LogConfig": {"Type": "bogus"}}},
     'error looking up logging plugin bogus: plugin "bogus" not found'),
    ({"HostConfig": {"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 2}]}},
     "invalid ulimit type: bogus"),
    ({"HostConfig": {"Sysctls": {"kernel.bogus": "1"}}},
     'sysctl "kernel.bogus" is not in a separate kernel namespace'),
    ({"HostConfig": {"VolumesFrom": ["errc:nocopy"]}}, "invalid mode: nocopy"),
    ({"HostConfig": {"StorageOpt": {"size": "1G"}}},
     ("--storage-opt is supported only for overlay over xfs with 'pquota' "
      "mount option")),
]  # fmt: skip


class CreateValidationTests(_DaemonCase):
    def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, str, Any]:
        """C{method path} at the daemon: status, content type, decoded body."""
        from tests.integration.harness import _UNIXConnection  # noqa: PLC0415

        connection = _UNIXConnection(self.daemon.socket_path, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, "/v1.50" + path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        kind = response.getheader("Content-Type") or ""
        return response.status, kind, json.loads(data) if data else None

    def assertRefused(
        self, method: str, path: str, body: bytes | None, message: str
    ) -> None:
        self.assertEqual(
            self.request(method, path, body),
            (400, "application/json", {"message": message}),
            (body or b"")[:200],
        )

    def containers(self) -> list[str]:
        """Every container's ID, from C{docker ps -a} (which must work)."""
        return self.ok("ps", "-aq", "--no-trunc").split()

    def test_bad_bodies(self) -> None:
        """
        The review's bad bodies are 400s naming the fault; none is stored,
        and docker ps -a still works (a numeric Mounts[].Source once broke
        it for everyone).
        """
        before = self.containers()
        for body, message in BAD_BODIES:
            self.assertRefused(
                "POST",
                "/containers/create",
                json.dumps({"Image": "busybox", **body}).encode(),
                message,
            )
        numeric = {"Type": "volume", "Source": 5, "Target": "/x"}
        self.assertRefused(
            "POST",
            "/containers/create",
            json.dumps(
                {"Image": "busybox", "HostConfig": {"Mounts": [numeric]}}
            ).encode(),
            _GO.format("number", "Mount.HostConfig.Mounts.Source", "string"),
        )
        self.assertEqual(self.containers(), before)

    def test_deep_json(self) -> None:
        """100000 nested arrays: a 400, and the daemon answers on."""
        deep = b'{"Image": "busybox", "Labels": ' + b"[" * 100_000 + b"]" * 100_000
        self.assertRefused(
            "POST",
            "/containers/create",
            deep + b"}",
            "invalid JSON: invalid character '[' exceeded max depth",
        )
        self.ok("version")

    def test_update_and_archive(self) -> None:
        """
        update with a negative Memory is dockerd's 400 (not runc's 500) and
        changes nothing; a NUL in an archive path is a 400 for GET, HEAD and
        PUT.
        """
        self.cleanup_container("val")
        self.ok("run", "-d", "--name", "val", "busybox", "sleep", "300")
        self.assertRefused(
            "POST",
            "/containers/val/update",
            b'{"Memory": -7}',
            "Minimum memory limit allowed is 6MB",
        )
        self.assertEqual(self.inspect("val", "{{.HostConfig.Memory}}"), "0")
        self.assertEqual(self.inspect("val", "{{.State.Running}}"), "true")
        self.ok("update", "--restart", "always", "val")
        self.assertEqual(
            self.inspect("val", "{{.HostConfig.RestartPolicy.Name}}"), "always"
        )
        nul = 'invalid path "/etc\\u0000x": a path cannot contain a NUL character'
        self.assertRefused("GET", "/containers/val/archive?path=/etc%00x", None, nul)
        self.assertRefused("PUT", "/containers/val/archive?path=/etc%00x", b"", nul)
        status, _, _ = self.request("HEAD", "/containers/val/archive?path=/etc%00x")
        self.assertEqual(status, 400)

    def test_clients_accepted(self) -> None:
        """
        What the docker CLI and the SDK send, nulls and all, is accepted and
        reads back: a create with many options, and the SDK's volumes=[...].
        """
        for name in ("many", "sdkvol"):
            self.cleanup_container(name)
        self.ok(
            "create", "--name", "many", "-e", "A=1", "-v", "/tmp:/t:ro",
            "-v", "vol1:/v", "--mount", "type=tmpfs,target=/tt,tmpfs-size=1000",
            "--tmpfs", "/run:size=1m", "--expose", "9000-9001",
            "--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5",
            "--cpu-shares", "512", "--pids-limit", "50",
            "--ulimit", "nofile=100:200", "--sysctl", "net.ipv4.ip_forward=1",
            "--cap-add", "NET_ADMIN", "--add-host", "a:1.2.3.4",
            "--restart", "on-failure:3", "--label", "a=b",
            "--log-opt", "max-size=10m", "--health-cmd", "true",
            "--stop-signal", "SIGINT", "--init", "--workdir", "/w",
            "--ipc", "shareable", "--runtime", "runc", "busybox", "true",
        )  # fmt: skip
        self.assertEqual(self.inspect("many", "{{.HostConfig.PidsLimit}}"), "50")
        client = self.sdk()
        client.containers.create(
            "busybox", "true", name="sdkvol", volumes=["/vol1", "/tmp:/t:ro"],
            healthcheck={"test": ["CMD", "true"], "interval": 5_000_000_000},
        )  # fmt: skip
        names = self.ok("ps", "-a", "--format", "{{.Names}}").split()
        self.assertIn("many", names)
        self.assertIn("sdkvol", names)
        self.ok("run", "--rm", "busybox", "true")
