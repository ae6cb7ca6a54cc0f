# -*- test-case-name: tests.daemon.containers.test_signals -*-
"""Signal names and numbers as C{docker kill -s} and C{StopSignal} take them."""

import signal

from dockserve.errors import InvalidParameter


def parse_signal(value: str | int) -> int:
    """
    C{KILL}, C{SIGKILL}, C{9} or C{sigkill} -> 9, as moby's
    C{signal.ParseSignal}.

    @raise InvalidParameter: C{Invalid signal: VALUE}.
    """
    text = str(value).strip()
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
        raise InvalidParameter(f"Invalid signal: {text}")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        pass
    if name.startswith(("SIGRTMIN", "SIGRTMAX")):
        base = signal.SIGRTMIN if name.startswith("SIGRTMIN") else signal.SIGRTMAX
        rest = name[8:]
        try:
            offset = int(rest) if rest else 0
        except ValueError:
            offset = None
        if offset is not None:
            return int(base) + offset
    raise InvalidParameter(f"Invalid signal: {text}")
