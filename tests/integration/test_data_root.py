# -*- test-case-name: tests.integration.test_data_root -*-
"""
The data root of a real daemon is closed to local users: a setuid-root
program shipped in an image cannot be run by one (review finding 4).
"""

from __future__ import annotations

import io
import stat
import subprocess
import tarfile
from pathlib import Path

from tests.integration.test_containers import _DaemonCase


def _suid_tar() -> bytes:
    """A layer with a setuid-root copy of C{id}."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = Path("/usr/bin/id").read_bytes()
        info = tarfile.TarInfo("suid-id")
        info.mode, info.size, info.uid, info.gid = 0o4755, len(data), 0, 0
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class DataRootTests(_DaemonCase):
    def test_modes(self) -> None:
        """The data root is 0711, its trees and the exec root 0700."""
        data = Path(self.daemon.data_root)
        self.assertEqual(stat.S_IMODE(data.stat().st_mode), 0o711)
        for tree in ("image", "containers", "volumes"):
            self.assertEqual(stat.S_IMODE((data / tree).stat().st_mode), 0o700)
        exec_root = Path(self.daemon.exec_root)
        self.assertEqual(stat.S_IMODE(exec_root.stat().st_mode), 0o700)

    def test_setuid_in_layer_unreachable(self) -> None:
        """
        nobody cannot run the setuid-root program of an imported image (it
        ran as euid 0 before), from its layer or from a container's root.
        """
        # As /var/lib is: the test's own temporary directory is 0700.
        Path(self.daemon.directory).chmod(0o755)
        self.ok("import", "-", "suidimg", stdin=_suid_tar())
        self.addCleanup(self.docker, "rmi", "-f", "suidimg")
        self.cleanup_container("suid")
        self.ok("run", "-d", "--name", "suid", "suidimg", "/suid-id")
        found = sorted(Path(self.daemon.data_root).rglob("suid-id"))
        self.assertTrue(found)
        for program in found:
            run = subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                 "--", "/bin/sh", "-c", 'exec "$0"', str(program)],
                capture_output=True, check=False,
            )  # fmt: skip
            self.assertIn(b"Permission denied", run.stderr, program)
            self.assertNotIn(b"euid=0", run.stdout)
