# -*- test-case-name: tests.daemon.test_rootfs -*-
"""
A container's root file system: the image's layers under an overlayfs.

The layers are read-only C{lowerdir}s (the top layer first, so the base
layer given first is listed last); the container's own changes go to
C{upperdir}. The kernel takes the whole option string in one page, so when
the layer paths are too long together they are reached through short
symlinks made beside the work directory.

These functions block (system calls on the file system): call them from a
thread, never from the reactor.
"""

import ctypes
import ctypes.util
import os
from errno import EINVAL
from pathlib import Path

#: The mount(2) data is one page; stay well under it.
_MAX_OPTIONS = 3500

_MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(result: int, what: str, path: str | Path) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}", str(path))


def _short_links(layer_dirs: list[str], work: Path) -> list[str]:
    """
    Symlinks C{<work>/../l/<n>} to each layer, so the option string stays
    short however deep the layer store is.
    """
    links = work.parent / "l"
    links.mkdir(exist_ok=True)
    short = []
    for index, layer in enumerate(layer_dirs):
        link = links / str(index)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(layer)
        short.append(str(link))
    return short


def overlay_options(layer_dirs: list[str], upper: str | Path, work: str | Path) -> str:
    """
    The overlayfs mount options for C{layer_dirs} (base layer first) under
    C{upper}: the top layer leads C{lowerdir}, as overlayfs wants.
    """
    lower = ":".join(reversed(layer_dirs))
    return f"lowerdir={lower},upperdir={upper},workdir={work}{_PLAIN_UPPER}"


#: An upper directory whose every change is a whole file or a whiteout, as
#: docker commit and the builder read it (images/upperdir.py): no renamed
#: directories recorded as redirects, no metadata-only copies. Off by
#: default in the kernel, but a module parameter can turn them on.
_PLAIN_UPPER = ",redirect_dir=off,metacopy=off"


def mount_rootfs(
    layer_dirs: list[str], upper: str | Path, work: str | Path, target: str | Path
) -> None:
    """
    Mount the overlayfs of C{layer_dirs} (base first) with C{upper} on
    C{target}.

    @raise OSError: The kernel refused (for example a missing layer).
    @raise ValueError: No layers at all.
    """
    if not layer_dirs:
        msg = "an image root needs at least one layer"
        raise ValueError(msg)
    work = Path(work)
    options = overlay_options(layer_dirs, upper, work)
    if len(options) > _MAX_OPTIONS:
        options = overlay_options(_short_links(layer_dirs, work), upper, work)
    result = _libc.mount(
        b"overlay", os.fsencode(str(target)), b"overlay", 0, options.encode()
    )
    if result != 0 and ctypes.get_errno() == EINVAL:
        # A kernel older than 4.19 knows neither option (then neither
        # feature can be on).
        plain = options.removesuffix(_PLAIN_UPPER).encode()
        result = _libc.mount(b"overlay", os.fsencode(str(target)), b"overlay", 0, plain)
    _check(result, "mount overlay", target)


def unmount(target: str | Path) -> None:
    """
    Unmount C{target}, lazily so a process still inside cannot keep it
    busy; a target that is not mounted is left alone.
    """
    if not os.path.ismount(target):
        return
    _check(_libc.umount2(os.fsencode(str(target)), _MNT_DETACH), "unmount", target)


_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000


def bind(source: str | Path, parent_fd: int, name: str, *, readonly: bool) -> int:
    """
    Bind C{source} (and what is mounted below it) onto the entry C{name}
    of the directory open at C{parent_fd} (reached without following a
    link out of its root). The kernel is given C{/proc/self/fd} paths
    only, so no path a container could swap is ever resolved.

    @return: An C{O_PATH} descriptor of the new mount's root, for
        L{detach}.
    @raise OSError: The kernel refused.
    """
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
    target = os.open(name, flags, dir_fd=parent_fd)
    try:
        _check(
            _libc.mount(
                os.fsencode(str(source)),
                f"/proc/self/fd/{target}".encode(),
                None,
                _MS_BIND | _MS_REC,
                None,
            ),
            "bind mount",
            name,
        )
    finally:
        os.close(target)
    # Looked up again, the name now leads into the mount (its root).
    mounted = os.open(name, flags, dir_fd=parent_fd)
    if readonly:
        path = f"/proc/self/fd/{mounted}".encode()
        flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY
        if _libc.mount(None, path, None, flags, None) != 0:
            errno = ctypes.get_errno()
            detach(mounted)
            raise OSError(errno, f"read-only remount: {os.strerror(errno)}", name)
    return mounted


def detach(mounted: int) -> None:
    """Lazily unmount the mount whose root L{bind} returned, and close it."""
    try:
        _libc.umount2(f"/proc/self/fd/{mounted}".encode(), _MNT_DETACH)
    finally:
        os.close(mounted)
