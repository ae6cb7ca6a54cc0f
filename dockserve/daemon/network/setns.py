# -*- test-case-name: tests.daemon.network.test_dns -*-
"""
Work done inside another network namespace by a thread of its own.

A socket belongs to the network namespace of the thread that made it, and
keeps it for life: so the daemon, in the host's namespace, can listen
inside a container's namespace by making the socket in a thread that has
joined it (dockerd's resolver does the same, C{resolver.go}'s SetupFunc).
Python 3.11 has no C{os.setns}, hence C{ctypes}.

The thread is made for the one job and then ends, without switching back:
a pool thread or the reactor thread left in a container's namespace would
make every later socket of the daemon there, and a thread that has ended
cannot be left anywhere.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

T = TypeVar("T")

#: C{CLONE_NEWNET} from C{<sched.h>}: setns(2) joins a network namespace.
CLONE_NEWNET = 0x40000000


def join_netns(netns: Path) -> None:
    """
    Move the calling thread into the network namespace at C{netns} (a
    C{/proc/<pid>/ns/net} or a bind-mounted nsfs file).

    Only for a thread that ends after its work (L{call_in_netns}).

    @raise OSError: The file cannot be opened, or is no network namespace
        (C{EINVAL}), or the daemon may not join it (C{EPERM}).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns {netns}: {os.strerror(code)}")
    finally:
        os.close(fd)


def call_in_netns(reactor: Any, netns: Path, work: Callable[[], T]) -> Deferred[T]:
    """
    Run C{work} in a new thread that has joined the network namespace at
    C{netns}; the thread ends with it.

    @param reactor: The reactor the result is delivered on
        (C{callFromThread}).
    @return: Fires on the reactor thread with what C{work} returned, or
        fails with what it (or joining the namespace) raised.
    """
    done: Deferred[T] = Deferred()

    def deliver(outcome: T | Failure) -> None:
        if isinstance(outcome, Failure):
            done.errback(outcome)
        else:
            done.callback(outcome)

    def main() -> None:
        outcome: T | Failure
        try:
            join_netns(netns)
            outcome = work()
        except BaseException:
            outcome = Failure()  # type: ignore[no-untyped-call]
        reactor.callFromThread(deliver, outcome)

    threading.Thread(target=main, name=f"setns {netns.name}", daemon=True).start()
    return done
