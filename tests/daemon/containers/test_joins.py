# -*- test-case-name: tests.daemon.containers.test_joins -*-
"""
Tests for L{dockserve.daemon.containers.joins}: what a start found, as the
bundle builder (L{dockserve.daemon.containers.spec}) puts it in
C{config.json}.
"""

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import devices, joins
from dockserve.daemon.containers.joins import Joins
from dockserve.daemon.containers.spec import build_spec

CID = "c" * 64

_NULL = {"path": "/dev/xnull", "type": "c", "major": 1, "minor": 3,
         "fileMode": 0o640, "uid": 12, "gid": 34}  # fmt: skip


class _Spec(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        (self.dir / "rootfs" / "etc").mkdir(parents=True)
        (self.dir / "rootfs" / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")

    def spec(
        self,
        host_config: dict[str, Any],
        joined: Joins | None = None,
        config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        host = joined.into(host_config) if joined is not None else host_config
        return build_spec(
            container_id=CID,
            image_config={"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}},
            config=config or {},
            host_config=host,
            rootfs=self.dir / "rootfs",
            container_dir=self.dir,
        )

    def namespace(self, spec: dict[str, Any], kind: str) -> dict[str, Any] | None:
        found = [n for n in spec["linux"]["namespaces"] if n["type"] == kind]
        return found[0] if found else None

    def shm(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        found = [m for m in spec["mounts"] if m["destination"] == "/dev/shm"]
        return found[0] if found else None


class ViewTests(SynchronousTestCase):
    """A start's L{Joins} travel in the record's C{HostConfig} view."""

    def test_round_trip(self) -> None:
        """Put in, read back; a view without them has none."""
        joined = Joins(ipc_namespace="/proc/1/ns/ipc", link_env=["A=1"])
        host = joined.into({"IpcMode": "container:x"})
        self.assertEqual(host["IpcMode"], "container:x")
        self.assertEqual(joins.of(host), joined)
        self.assertIsNone(joins.of({"IpcMode": "container:x"}))


class NamespaceTests(_Spec):
    """Joined namespaces by path; C{/dev/shm} by the IPC mode."""

    def test_joined(self) -> None:
        """The IPC and PID namespaces at the paths found, X's /dev/shm bound."""
        spec = self.spec(
            {"IpcMode": "container:x", "PidMode": "container:x"},
            Joins(ipc_namespace="/proc/7/ns/ipc", pid_namespace="/proc/7/ns/pid",
                  shm="/data/x/shm"),
        )  # fmt: skip
        self.assertEqual(
            self.namespace(spec, "ipc"), {"type": "ipc", "path": "/proc/7/ns/ipc"}
        )
        self.assertEqual(
            self.namespace(spec, "pid"), {"type": "pid", "path": "/proc/7/ns/pid"}
        )
        self.assertEqual(
            self.shm(spec),
            {"destination": "/dev/shm", "type": "bind", "source": "/data/x/shm",
             "options": ["rbind", "rprivate"]},
        )  # fmt: skip

    def test_shareable(self) -> None:
        """A shareable container's own namespace, its host tmpfs bound."""
        spec = self.spec(
            {"IpcMode": "shareable"}, Joins(shm="/data/me/shm", own_shm=True)
        )
        self.assertEqual(self.namespace(spec, "ipc"), {"type": "ipc"})
        self.assertEqual(self.shm(spec)["source"], "/data/me/shm")  # type: ignore[index]

    def test_modes(self) -> None:
        """Private: runc's tmpfs; none: no /dev/shm; host: the host's."""
        private = self.shm(self.spec({"ShmSize": 1024}))
        assert private is not None
        self.assertEqual(
            (private["type"], private["options"][-1]), ("tmpfs", "size=1024")
        )
        self.assertIsNone(self.shm(self.spec({"IpcMode": "none"})))
        host = self.spec({"IpcMode": "host"})
        self.assertEqual(self.shm(host)["source"], "/dev/shm")  # type: ignore[index]
        self.assertIsNone(self.namespace(host, "ipc"))

    def test_not_a_start(self) -> None:
        """
        A bundle made for anything but a start (docker cp) joins nothing:
        namespaces of its own, a private /dev/shm.
        """
        spec = self.spec({"IpcMode": "container:x", "PidMode": "container:x"})
        self.assertEqual(self.namespace(spec, "ipc"), {"type": "ipc"})
        self.assertEqual(self.namespace(spec, "pid"), {"type": "pid"})
        self.assertEqual(self.shm(spec)["type"], "tmpfs")  # type: ignore[index]

    def test_init_only_in_own_pid_namespace(self) -> None:
        """--init wraps the command only where the container's process is pid 1."""
        own = self.spec({"Init": True})
        self.assertEqual(own["process"]["args"][:2], ["/sbin/docker-init", "--"])
        for mode in ("container:x", "host"):
            with self.subTest(mode=mode):
                spec = self.spec({"Init": True, "PidMode": mode})
                self.assertEqual(spec["process"]["args"], ["sh"])
                self.assertNotIn(
                    "/sbin/docker-init", [m["destination"] for m in spec["mounts"]]
                )


class DeviceTests(_Spec):
    """Devices and cgroup rules."""

    def test_given(self) -> None:
        """A start's devices and rules are the bundle's."""
        mine = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}
        rules = [*devices.DEFAULT_RULES, mine]
        spec = self.spec({}, Joins(devices=[_NULL], device_rules=rules))
        self.assertEqual(spec["linux"]["devices"], [_NULL])
        self.assertEqual(spec["linux"]["resources"]["devices"], rules)

    def test_default(self) -> None:
        """Without any, dockerd's default rules; privileged: allow-all."""
        spec = self.spec({})
        self.assertNotIn("devices", spec["linux"])
        self.assertEqual(
            spec["linux"]["resources"]["devices"], list(devices.DEFAULT_RULES)
        )
        privileged = self.spec({"Privileged": True})
        self.assertEqual(
            privileged["linux"]["resources"]["devices"], [devices.ALLOW_ALL]
        )


class LinkEnvTests(_Spec):
    """The links' variables in the process's environment."""

    def test_env(self) -> None:
        """Ahead of the container's own, which win a name."""
        spec = self.spec(
            {},
            Joins(link_env=["DB_NAME=/me/db", "DB_ENV_A=1"]),
            {"Env": ["DB_ENV_A=mine", "B=2"]},
        )
        env = spec["process"]["env"]
        self.assertIn("DB_NAME=/me/db", env)
        self.assertIn("DB_ENV_A=mine", env)
        self.assertNotIn("DB_ENV_A=1", env)
        self.assertLess(env.index("DB_NAME=/me/db"), env.index("B=2"))
