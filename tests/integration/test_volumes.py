# -*- test-case-name: tests.integration.test_volumes -*-
"""
C{docker volume ...} against a real daemon, as dockerd 20.10 answers it
(compared side by side): create, ls, inspect, rm, prune, the local
driver's options, and the volumes containers make and use.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_containers import _DaemonCase


class VolumeCliTests(_DaemonCase):
    def test_life(self) -> None:
        """create, ls, inspect, rm; in use is dockerd's 409 text."""
        self.assertEqual(
            self.ok("volume", "create", "--label", "a=b", "data"), "data\n"
        )
        self.assertIn("data", self.ok("volume", "ls", "-q").split())
        [made] = json.loads(self.ok("volume", "inspect", "data"))
        self.assertEqual((made["Driver"], made["Labels"], made["Scope"]),
                         ("local", {"a": "b"}, "local"))  # fmt: skip
        self.assertTrue(made["Mountpoint"].endswith("/volumes/data/_data"))
        self.cleanup_container("user")
        cid = self.ok("create", "--name", "user", "-v", "data:/d", "busybox", "true")
        self.assertIn(
            f"remove data: volume is in use - [{cid.strip()}]",
            self.fails("volume", "rm", "data"),
        )
        self.ok("rm", "user")
        self.ok("volume", "rm", "data")
        self.assertIn("no such volume", self.fails("volume", "inspect", "data"))

    def test_named_by_a_container(self) -> None:
        """A volume a container names exists from its create on, and keeps data."""
        self.cleanup_container("ww")
        self.ok("run", "--name", "ww", "-v", "kept:/d", "busybox",
                "sh", "-c", "echo hi > /d/f")  # fmt: skip
        self.addCleanup(self.docker, "volume", "rm", "kept")
        self.assertIn("kept", self.ok("volume", "ls", "-q").split())
        self.assertEqual(
            self.ok("run", "--rm", "-v", "kept:/d", "busybox", "cat", "/d/f"), "hi\n"
        )

    def test_prune(self) -> None:
        """
        prune (API 1.50) removes unused anonymous volumes only; -a also named
        ones; a used one stays.
        """
        self.ok("volume", "create", "named")
        self.cleanup_container("anon")
        self.ok("run", "--name", "anon", "-v", "/scratch", "busybox", "true")
        [mount] = json.loads(self.inspect("anon", "{{json .Mounts}}"))
        anonymous = mount["Name"]
        self.ok("rm", "anon")
        self.assertIn(anonymous, self.ok("volume", "ls", "-q").split())
        out = self.ok("volume", "prune", "-f")
        self.assertIn(anonymous, out)
        self.assertIn("named", self.ok("volume", "ls", "-q").split())
        self.ok("volume", "prune", "-af")
        self.assertNotIn("named", self.ok("volume", "ls", "-q").split())

    def test_tmpfs_option(self) -> None:
        """--opt type=tmpfs: the container sees a tmpfs, unmounted after it stops."""
        self.ok("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
                "--opt", "o=size=1m", "fast")  # fmt: skip
        self.addCleanup(self.docker, "volume", "rm", "fast")
        mounts = self.ok("run", "--rm", "-v", "fast:/f", "busybox", "grep", " /f ",
                         "/proc/mounts")  # fmt: skip
        self.assertIn("tmpfs /f tmpfs", mounts)
        self.assertIn("size=1024k", mounts)
        # Unmounted once the container's run is released (after --rm returns).
        self.until(
            lambda: (
                "/volumes/fast/_data" not in Path("/proc/self/mountinfo").read_text()
            ),
            "the tmpfs to be unmounted",
        )

    def test_bad(self) -> None:
        """dockerd's words for a bad name, driver and option."""
        self.assertIn("includes invalid characters for a local volume name",
                      self.fails("volume", "create", "../x"))  # fmt: skip
        self.assertIn('plugin "nfsx" not found',
                      self.fails("volume", "create", "-d", "nfsx", "vv"))  # fmt: skip
        bad_option = self.fails("volume", "create", "-o", "bogus=1", "vv")
        self.assertIn('invalid option: "bogus"', bad_option)

    def test_events(self) -> None:
        """docker events shows a volume's create, mount, unmount and destroy."""
        since = self.ok("version", "-f", "{{.Server.Version}}")  # warms the CLI
        del since
        import time  # noqa: PLC0415

        start = str(int(time.time()) - 1)
        self.ok("volume", "create", "evv")
        self.ok("run", "--rm", "-v", "evv:/d", "busybox", "true")
        self.ok("volume", "rm", "evv")
        out = self.ok("events", "--since", start, "--until", str(int(time.time()) + 1),
                      "--filter", "type=volume", "--format", "{{.Action}}")  # fmt: skip
        self.assertEqual(out.split(), ["create", "mount", "unmount", "destroy"])
