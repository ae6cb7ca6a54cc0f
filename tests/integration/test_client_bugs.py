# -*- test-case-name: tests.integration.test_client_bugs -*-
"""
Client-visible bugs of issue 9, each as the docker CLI or the Docker SDK
for Python met it, against a real daemon; what they check was compared with
dockerd 20.10 on the same machine.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_containers import _DaemonCase


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
