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
        self.assertEqual(
            process["user"], {"uid": 33, "gid": 50, "additionalGids": [50]}
        )
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
            resolve_user(self.bundle / "rootfs", "1000:7"),
            {"uid": 1000, "gid": 7, "additionalGids": [7]},
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


class ResolveUserTests(SynchronousTestCase):
    """
    L{resolve_user} gives what dockerd 20.10 gives runc (compared in
    config.json): the primary gid first in C{additionalGids}, then a
    named user's groups from the container's C{/etc/group}, then GroupAdd.
    """

    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        (self.root / "etc").mkdir(parents=True)
        (self.root / "etc" / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\n"
            "nobody:x:65534:65534::/:/bin/false\n"
            "alice:x:1000:1000::/home/alice:/bin/sh\n"
            "bob:x:1001:1001::/:/bin/sh\n"
        )
        (self.root / "etc" / "group").write_text(
            "root:x:0:\nwheel:x:10:root\naudio:x:29:alice,bob\nstaff:x:50:alice\n"
            "alice:x:1000:\nnogroup:x:65534:\n"
        )

    def user(self, spec: str, group_add: list[str] | None = None) -> object:
        return resolve_user(self.root, spec, group_add or [])

    def test_as_dockerd(self) -> None:
        """Each case as dockerd 20.10 wrote it into config.json."""
        cases = {
            "": (0, 0, [0, 10]),
            "root": (0, 0, [0, 10]),
            "0:0": (0, 0, [0]),
            "alice": (1000, 1000, [1000, 29, 50]),
            "1000": (1000, 1000, [1000, 29, 50]),
            "alice:staff": (1000, 50, [50]),
            "1000:1000": (1000, 1000, [1000]),
            "bob": (1001, 1001, [1001, 29]),
            "1001:audio": (1001, 29, [29]),
            "nobody": (65534, 65534, [65534]),
            "5000": (5000, 0, [0]),
            "5000:7": (5000, 7, [7]),
        }
        for spec, (uid, gid, gids) in cases.items():
            self.assertEqual(
                self.user(spec),
                {"uid": uid, "gid": gid, "additionalGids": gids},
                spec,
            )

    def test_group_add(self) -> None:
        """
        GroupAdd names and numbers come after the user's own groups, each
        once, but not checked against them (as dockerd: [1000, 1000, 5]).
        """
        self.assertEqual(
            self.user("", ["audio", "7"]),
            {"uid": 0, "gid": 0, "additionalGids": [0, 10, 29, 7]},
        )
        self.assertEqual(
            self.user("alice", ["audio"]),
            {"uid": 1000, "gid": 1000, "additionalGids": [1000, 29, 50, 29]},
        )
        self.assertEqual(
            self.user("1000:1000", ["1000", "5"]),
            {"uid": 1000, "gid": 1000, "additionalGids": [1000, 1000, 5]},
        )

    def test_unknown(self) -> None:
        """Unknown names are refused with dockerd's words."""
        cases = {
            ("nosuch", ()): "unable to find user nosuch: no matching entries "
            "in passwd file",
            ("5000:nosuch", ()): "unable to find group nosuch: no matching "
            "entries in group file",
            ("", ("nosuch",)): "Unable to find group nosuch: no matching "
            "entries in group file",
        }
        for (spec, group_add), message in cases.items():
            error = self.assertRaises(
                NotFound, resolve_user, self.root, spec, list(group_add)
            )
            self.assertEqual(error.message, message)

    def test_out_of_range(self) -> None:
        """An ID beyond 2^31-1 is runc's range error."""
        for spec, group_add in (("4294967296", []), ("0", ["4294967296"])):
            error = self.assertRaises(
                InvalidParameter, resolve_user, self.root, spec, group_add
            )
            self.assertEqual(
                error.message, "uids and gids must be in range 0-2147483647"
            )

    def test_no_files(self) -> None:
        """Without passwd and group files, numbers still do."""
        empty = Path(self.mktemp())
        empty.mkdir()
        self.assertEqual(
            resolve_user(empty, "", []), {"uid": 0, "gid": 0, "additionalGids": [0]}
        )
        self.assertEqual(
            resolve_user(empty, "7:8", ["9"]),
            {"uid": 7, "gid": 8, "additionalGids": [8, 9]},
        )
        self.assertRaises(NotFound, resolve_user, empty, "alice", [])
        self.assertRaises(NotFound, resolve_user, empty, "", ["audio"])

    def test_exec_user_gets_group_add(self) -> None:
        """
        C{docker exec -u} in a container made with C{--group-add}: the
        exec's user has the container's GroupAdd too, as with dockerd.
        """
        bundle = self.root.parent / "bundle"
        bundle.mkdir()
        spec = {
            "process": {"user": {"uid": 0, "gid": 0, "additionalGids": [0, 10, 7]}},
            "annotations": {"org.dockserve.group-add": '["7"]'},
        }
        (bundle / "config.json").write_text(json.dumps(spec))
        instance = ExecInstance.from_request("e", "c", {"User": "bob"}, ["id"])
        process = build_process(bundle / "config.json", self.root, instance)
        self.assertEqual(
            process["user"], {"uid": 1001, "gid": 1001, "additionalGids": [1001, 29, 7]}
        )
        instance = ExecInstance.from_request("e", "c", {}, ["id"])
        process = build_process(bundle / "config.json", self.root, instance)
        self.assertEqual(process["user"]["additionalGids"], [0, 10, 7])
