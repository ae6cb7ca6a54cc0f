"""
The shipped systemd units (docs/systemd/) are valid for systemd itself, with
ExecStart pointing at this checkout's twistd.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.harness import ROOT, TWISTD

ANALYZE = shutil.which("systemd-analyze")
UNITS = ROOT / "docs" / "systemd"


class UnitFileTests(SynchronousTestCase):
    if ANALYZE is None:
        skip = "systemd-analyze is not installed (Debian package systemd)"

    def test_verify(self) -> None:
        """systemd-analyze verify finds nothing wrong with either unit."""
        directory = Path(tempfile.mkdtemp(prefix="dockserve-units-"))
        self.addCleanup(shutil.rmtree, str(directory), True)
        for name in ("dockserve.socket", "dockserve.service"):
            text = (UNITS / name).read_text()
            text = text.replace("/opt/dockserve/.venv/bin/twistd", TWISTD)
            (directory / name).write_text(text)
        done = subprocess.run(
            [ANALYZE or "", "verify", "--man=no",
             str(directory / "dockserve.socket"), str(directory / "dockserve.service")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        self.assertEqual((done.returncode, done.stderr), (0, ""))
