# -*- test-case-name: tests.daemon.containers.test_execs -*-
"""Tests for L{dockserve.daemon.containers.execs} and the record codec."""

import json
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import record
from dockserve.daemon.containers.execs import (
    ExecInstance,
    build_process,
    grantable_capabilities,
    resolve_user,
)
from dockserve.errors import InvalidParameter, NotFound


class BuildProcessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.bundle = Path(self.mktemp())
        (self.bundle / "rootfs" / "etc").mkdir(parents=True)
        (self.bundle / "rootfs" / "etc" / "passwd").write_text(
            "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n"
        )
        (self.bundle / "rootfs" / "etc" / "group").write_text(
            "root:x:0:\nstaff:x:50:\n"
        )
        template = {
            "args": ["sleep", "300"],
            "env": ["PATH=/bin", "A=container"],
            "cwd": "/srv",
            "user": {"uid": 0, "gid": 0},
            "capabilities": {"bounding": ["CAP_CHOWN"]},
            "noNewPrivileges": True,
        }
        (self.bundle / "config.json").write_text(json.dumps({"process": template}))

    def build(self, **body: object) -> dict[str, object]:
        instance = ExecInstance.from_request("e", "c", body, ["id"])
        return build_process(
            self.bundle / "config.json", self.bundle / "rootfs", instance
        )

    def test_template(self) -> None:
        """The container's process, with the exec's command and env on top."""
        process = self.build(Env=["A=exec", "B=2"])
        self.assertEqual(process["args"], ["id"])
        self.assertEqual(process["env"], ["PATH=/bin", "A=exec", "B=2"])
        self.assertEqual(process["cwd"], "/srv")
        self.assertEqual(process["noNewPrivileges"], True)
        self.assertEqual(process["capabilities"], {"bounding": ["CAP_CHOWN"]})
        self.assertEqual(process["terminal"], False)

    def test_user_workdir_tty_privileged(self) -> None:
        """User by name, working directory, TTY and every capability."""
        process = self.build(
            User="www:staff", WorkingDir="/tmp", Tty=True, Privileged=True
        )
        self.assertEqual(process["user"], {"uid": 33, "gid": 50})
        self.assertEqual(process["cwd"], "/tmp")
        self.assertEqual(process["terminal"], True)
        caps = process["capabilities"]
        assert isinstance(caps, dict)
        self.assertEqual(caps["effective"], list(grantable_capabilities()))

    def test_unknown_user(self) -> None:
        """An unknown user name is refused with runc's words."""
        error = self.assertRaises(
            NotFound, resolve_user, self.bundle / "rootfs", "nobody"
        )
        self.assertEqual(
            error.message,
            "unable to find user nobody: no matching entries in passwd file",
        )
        self.assertEqual(
            resolve_user(self.bundle / "rootfs", "1000:7"), {"uid": 1000, "gid": 7}
        )

    def test_bad_types(self) -> None:
        """Wrong types in the exec body are 400."""
        self.assertRaises(
            InvalidParameter, ExecInstance.from_request, "e", "c", {"Tty": "x"}, ["id"]
        )
        self.assertRaises(
            InvalidParameter, ExecInstance.from_request, "e", "c", {"Env": [1]}, ["id"]
        )


class RecordTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """A saved record loads back equal."""
        directory = Path(self.mktemp())
        directory.mkdir()
        original = record.ContainerRecord(
            id="a" * 64,
            name="/web",
            created=record.rfc3339(1_700_000_000_123_456_789),
            image="busybox",
            image_id="sha256:" + "b" * 64,
            config={"Cmd": ["sh"]},
            host_config={"AutoRemove": True},
            args=("-c", "true"),
        ).with_state(status="exited", exit_code=3)
        record.save(directory, original)
        self.assertEqual(record.load(directory), original)

    def test_times(self) -> None:
        """RFC 3339 with nanoseconds, and back to seconds."""
        text = record.rfc3339(1_700_000_000_500_000_000)
        self.assertEqual(text, "2023-11-14T22:13:20.500000000Z")
        self.assertEqual(record.parse_rfc3339(text), 1_700_000_000.5)
        self.assertEqual(record.parse_rfc3339(record.ZERO_TIME), 0.0)
