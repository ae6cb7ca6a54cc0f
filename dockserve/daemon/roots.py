# -*- test-case-name: tests.daemon.test_roots -*-
"""
The data root's and exec root's modes: nothing in them is reachable by a
local user who is not root.

Image layers keep the modes and owners their tarballs give (a setuid-root
program included), and a container's upper directory holds whatever a
container or C{docker cp} put there. With the directories above them
traversable (0755, what a umask of 022 gives), any local user could run
such a program as root: the CVE-2021-41091 class, which dockerd closed in
20.10.9 by making its roots non-traversable. Here the data root is 0711
(traversable, not listable: a path below it must still be known, and the
trees below are closed anyway) and every tree below it that holds
container or image content is 0700; the exec root (runc's state, conmon's
sockets and pid files) is 0700. Containers never traverse these paths from
the host side: runc mounts their root and volumes as root before it
pivots into the root.

The modes are set at every start, so a tree made by an earlier version
(or by hand) is closed too.
"""

import os
from pathlib import Path

#: The data root's mode: others may pass through, never list or read.
DATA_ROOT_MODE = 0o711

#: The mode of the exec root and of each tree under the data root.
PRIVATE_MODE = 0o700

#: The trees under the data root that hold image or container content.
DATA_TREES = ("image", "containers", "volumes")


def secure(data_root: Path, exec_root: Path) -> None:
    """
    Make (if missing) and close the data root, the trees under it and the
    exec root. Blocks briefly: a few C{mkdir}/C{chmod} calls at start.
    """
    _make(data_root, DATA_ROOT_MODE)
    for name in DATA_TREES:
        _make(data_root / name, PRIVATE_MODE)
    _make(exec_root, PRIVATE_MODE)


def _make(path: Path, mode: int) -> None:
    """C{path} as a directory with exactly C{mode}, whatever the umask."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    if not path.is_dir():
        msg = f"{path} is not a directory"
        raise NotADirectoryError(msg)
    os.chmod(path, mode)  # noqa: PTH101 - the mode whatever mkdir's umask made
