# -*- test-case-name: tests.integration.test_client_bugs -*-
"""
Client-visible bugs of issue 9, each as the docker CLI or the Docker SDK
for Python met it, against a real daemon; what they check was compared with
dockerd 20.10 on the same machine.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

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
