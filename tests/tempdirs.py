"""Temporary directories that a test removes when it ends."""

import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase


def temp_dir(case: SynchronousTestCase, prefix: str = "dockserve-test-") -> Path:
    """
    A new directory, short enough under /tmp for unix socket paths, removed
    (with everything in it) when C{case} ends.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    case.addCleanup(shutil.rmtree, str(path), True)
    return path
