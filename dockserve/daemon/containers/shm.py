# -*- test-case-name: tests.daemon.containers.test_shm -*-
"""
The C{/dev/shm} of a C{--ipc shareable} container: a tmpfs mounted on the
host, in the container's directory, and bound into the container, so
that C{--ipc container:X} containers can be given the very same one (as
dockerd's C{setupIpcDirs} does with C{mounts/shm}). A private C{/dev/shm}
is runc's own tmpfs inside the container and cannot be shared.

The mount is made before each start and undone when the container's run
is released (L{dockserve.daemon.containers.oci}). These functions block:
call them from a thread.
"""

import ctypes
import ctypes.util
import os
from pathlib import Path

from dockserve.daemon.rootfs import unmount

#: The directory, in the container's own, where its shareable tmpfs is.
SHM_DIRECTORY = "shm"

#: dockerd's default C{ShmSize}.
DEFAULT_SIZE = 64 * 1024 * 1024

_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]


def path(directory: Path) -> Path:
    """Where the shareable C{/dev/shm} of the container in C{directory} is."""
    return directory / SHM_DIRECTORY


def mount(target: Path, size: int) -> None:
    """
    Mount a fresh tmpfs at C{target} (made 0700 if missing) with dockerd's
    options (C{mode=1777,size=...}, nosuid, nodev, noexec); one already
    mounted there is kept (a container started again).

    @raise OSError: The mount failed.
    """
    target.mkdir(mode=0o700, exist_ok=True)
    if os.path.ismount(target):
        return
    data = f"mode=1777,size={size or DEFAULT_SIZE}".encode()
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    if _libc.mount(b"shm", os.fsencode(str(target)), b"tmpfs", flags, data) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mounting shm tmpfs: {os.strerror(errno)}")


def release(target: Path) -> None:
    """
    Unmount the tmpfs at C{target} if there is one (lazily: containers
    that joined it keep it through their own binds).
    """
    if os.path.ismount(target):
        unmount(target)
