"""Tests for L{dockserve.daemon.roots}: the modes of the daemon's trees."""

import os
import stat
import subprocess
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon import daemon, roots
from dockserve.daemon.config import DaemonConfig


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class SecureTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = Path(self.mktemp())
        self.base.mkdir()
        self.data = self.base / "data"
        self.exec = self.base / "exec"

    def test_new_roots(self) -> None:
        """New roots are made closed, whatever the umask."""
        old = os.umask(0)
        try:
            roots.secure(self.data, self.exec)
        finally:
            os.umask(old)
        self.assertEqual(_mode(self.data), 0o711)
        for name in ("image", "containers", "volumes"):
            self.assertEqual(_mode(self.data / name), 0o700)
        self.assertEqual(_mode(self.exec), 0o700)

    def test_existing_trees_closed(self) -> None:
        """Trees an earlier version left open (0755, 0777) are closed at start."""
        for path in (self.data, self.data / "image", self.data / "containers",
                     self.exec):  # fmt: skip
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)
        (self.data / "image" / "layers").mkdir()
        roots.secure(self.data, self.exec)
        self.assertEqual(_mode(self.data), 0o711)
        self.assertEqual(_mode(self.data / "image"), 0o700)
        self.assertEqual(_mode(self.data / "containers"), 0o700)
        self.assertEqual(_mode(self.exec), 0o700)

    def test_not_a_directory(self) -> None:
        """A file where the data root should be is an error, not a chmod of it."""
        self.data.write_text("x")
        self.data.chmod(0o644)
        self.assertRaises(OSError, roots.secure, self.data, self.exec)
        self.assertEqual(_mode(self.data), 0o644)

    def test_daemon_secures_at_creation(self) -> None:
        """The daemon's wiring closes its roots before any area uses them."""
        self.data.mkdir(mode=0o755)
        config = DaemonConfig(data_root=str(self.data), exec_root=str(self.exec))
        reactor = Clock()
        reactor.getThreadPool = lambda: None  # type: ignore[attr-defined]
        made = daemon.create(config, reactor)
        self.addCleanup(made.containers._runtime.close)
        self.assertEqual(_mode(self.data), 0o711)
        self.assertEqual(_mode(self.data / "image"), 0o700)


class LocalUserTests(SynchronousTestCase):
    """What the review reproduced: a local user running a setuid program."""

    def test_setuid_program_unreachable(self) -> None:
        """
        A setuid-root copy of C{id} deep in the data root cannot be run by
        nobody: the trees above it are closed.
        """
        if os.getuid() != 0:
            self.skipTest("needs root to make a setuid-root file")
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        base.chmod(0o755)
        data = base / "data"
        roots.secure(data, base / "exec")
        layer = data / "image" / "layers" / "abc"
        layer.mkdir(parents=True)
        program = layer / "suid-id"
        program.write_bytes(Path("/usr/bin/id").read_bytes())
        program.chmod(0o4755)
        # Through a shell: the exec is then nobody's own (setpriv's own
        # exec of its argument was seen to get through a 0700 directory).
        run = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
             "/bin/sh", "-c", 'exec "$0"', str(program)],
            capture_output=True, check=False,
        )  # fmt: skip
        self.assertNotEqual(run.returncode, 0, run.stdout)
        self.assertIn(b"Permission denied", run.stderr)
