# -*- test-case-name: tests.daemon.network.test_netns -*-
"""
A container's network namespace, made by the daemon before the container
runs and kept as a file: C{<exec-root>/netns/<container id>}.

The daemon makes the namespace itself (as podman does) rather than letting
runc make one: the non-TTY start is a gated C{runc run --detach} under
conmon, so there is no process to plumb between create and start; a
namespace made first can be plumbed by CNI before any container process
exists, is named in the OCI spec by its path, and gives C{--network
container:X} a stable file to join.

A persistent namespace is an nsfs bind mount on a plain file:
C{unshare --net=<file> true} (util-linux) makes it in about 5 ms; removing
it is an unmount and an unlink, two system calls, which L{remove} does in
the caller's thread (no process, no thread: a microsecond's work). Python
3.11 has neither C{os.unshare} nor C{os.setns}, and a namespace switch must
never happen on the reactor's thread, so everything that runs I{inside} a
namespace is a process started through C{nsenter} (L{run_in}).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from dockserve.daemon.network import commands
from dockserve.daemon.network.commands import Result
from dockserve.errors import SystemError_

if TYPE_CHECKING:
    from pathlib import Path

#: How a part runs a command: L{commands.run}'s signature (reactor, argv,
#: stdin, env), so tests can give a fake one.
Runner = Callable[
    [Any, list[str], bytes | None, Mapping[str, str] | None], Deferred[Result]
]

#: C{ioctl(NS_GET_NSTYPE)} on a namespace file gives its C{CLONE_NEW*} flag.
_NS_GET_NSTYPE = 0xB703
_CLONE_NEWNET = 0x40000000

#: umount2(2): detach now even if busy; never follow a symlink planted at
#: the path.
_MNT_DETACH = 2
_UMOUNT_NOFOLLOW = 8

#: A namespace file can carry more than one mount (two creates that raced);
#: unmount at most this many before giving up.
_MAX_STACKED = 8

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def is_namespace(path: str | Path) -> bool:
    """
    Whether C{path} is a network namespace (an nsfs mount, or a
    C{/proc/<pid>/ns/net} link): the kernel is asked what the file is, so
    a plain file left by a create that died half-way, or a namespace of
    another kind, is not one.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, _NS_GET_NSTYPE) == _CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)


def create(reactor: Any, path: Path, *, run: Runner = commands.run) -> Deferred[None]:
    """
    Make a persistent network namespace at C{path} (its directory too);
    nothing is done if one is already there, so a start retried after a
    failure, or a restore, can call this again.

    The new namespace holds only C{lo}, down: bring it up with the CNI
    C{loopback} plugin (runc does not for a namespace given by path).

    @raise SystemError_: When the namespace cannot be made (the file or
        C{unshare} failed), with what the system said.
    """

    async def make() -> None:
        if is_namespace(path):
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
        except OSError as e:
            raise SystemError_(
                f"cannot create network namespace {path}: {e.strerror}"
            ) from e
        result = await _run(run, reactor, ["unshare", f"--net={path}", "true"])
        if result.code != 0 or not is_namespace(path):
            _unlink_plain(path)
            text = result.err.decode(errors="replace").strip()
            raise SystemError_(
                f"cannot create network namespace {path}: "
                f"{text or f'unshare exited {result.code}'}"
            )

    return Deferred.fromCoroutine(make())


async def _run(run: Runner, reactor: Any, argv: list[str]) -> Result:
    """C{argv} through C{run}; a tool that cannot be started at all is a L{Result}."""
    try:
        return await run(reactor, argv, None, None)
    except OSError as e:
        return Result(127, b"", f"{argv[0]}: {e.strerror}".encode())


def _unlink_plain(path: Path) -> None:
    """Remove the file a failed create left, unless a namespace is on it."""
    if not is_namespace(path):
        path.unlink(missing_ok=True)


def remove(path: Path) -> None:
    """
    Unmount and delete the namespace file C{path}: the namespace itself
    goes when its last user does (the container's processes, by then
    gone). A path that is missing, or a plain file, is removed or left
    alone without complaint, so a restore can sweep whatever a crash left.

    Blocking, but two system calls on a local file: safe on the reactor.
    Run CNI DEL before this while the interfaces are still reachable,
    though DEL also works after (it then frees the address only).

    @raise SystemError_: When the kernel refuses the unmount (not root).
    """
    target = os.fsencode(str(path))
    for _ in range(_MAX_STACKED):
        if _libc.umount2(target, _MNT_DETACH | _UMOUNT_NOFOLLOW) == 0:
            continue
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOENT):
            break
        raise SystemError_(
            f"cannot remove network namespace {path}: {os.strerror(code)}"
        )
    try:
        path.unlink(missing_ok=True)
    except OSError as e:
        raise SystemError_(
            f"cannot remove network namespace {path}: {e.strerror}"
        ) from e


def list_namespaces(directory: Path) -> list[str]:
    """
    The names of the files in C{directory} (sorted): the namespaces the
    daemon made and did not remove, and any plain file a create that died
    half-way left; restore compares them with the running containers and
    gives each stray one to L{remove}. A missing directory has none.
    """
    try:
        return sorted(entry.name for entry in directory.iterdir() if entry.is_file())
    except FileNotFoundError:
        return []


def run_in(
    reactor: Any,
    path: Path,
    argv: list[str],
    *,
    stdin: bytes | None = None,
    run: Runner = commands.run,
) -> Deferred[Result]:
    """
    Run C{argv} inside the network namespace C{path} (C{nsenter --net}):
    only the network namespace changes, so the command sees the daemon's
    files. Fires with its L{Result}, whatever its exit code.
    """
    return run(reactor, ["nsenter", f"--net={path}", "--", *argv], stdin, None)
