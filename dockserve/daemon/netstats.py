# -*- test-case-name: tests.daemon.test_netstats -*-
"""
A container's network counters, as the stats body's C{networks}.

dockerd reports the interfaces of the container's endpoints (C{eth0}...),
read in the container's own network namespace, and never its loopback; a
container that shares the host's namespace has no C{networks} at all, nor
one whose namespace holds nothing but C{lo} (C{--network none}). The
counters come from C{/proc/<pid>/net/dev}, which shows the namespace of
the process C{pid}.
"""

from pathlib import Path

PROC = Path("/proc")

#: The stats body's names of the receive and transmit columns of
#: /proc/net/dev that dockerd reports, by their place in each half.
_RECEIVE = {"rx_bytes": 0, "rx_packets": 1, "rx_errors": 2, "rx_dropped": 3}
_TRANSMIT = {"tx_bytes": 8, "tx_packets": 9, "tx_errors": 10, "tx_dropped": 11}


def _same_namespace(pid: int, proc: Path) -> bool:
    """
    Whether process C{pid} is in this daemon's network namespace (C{--network
    host}): its counters would be the host's. Unknown counts as the same.
    """
    try:
        theirs = (proc / str(pid) / "ns" / "net").stat()
        ours = (proc / "self" / "ns" / "net").stat()
    except OSError:
        return True
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """
    The counters of each interface in a C{/proc/net/dev} text but C{lo}, in
    the stats body's form; lines that do not parse are left out.
    """
    interfaces: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, values = line.partition(":")
        name = name.strip()
        fields = values.split()
        if not sep or not name or name == "lo" or len(fields) < 16:
            continue
        try:
            numbers = [int(field) for field in fields]
        except ValueError:
            continue
        interfaces[name] = {
            key: numbers[column] for key, column in (_RECEIVE | _TRANSMIT).items()
        }
    return interfaces


def network_stats(pid: int, proc: Path = PROC) -> dict[str, dict[str, int]]:
    """
    The C{networks} of the stats body of the container whose process is
    C{pid}: its interfaces but loopback, read in its network namespace;
    empty for no process, the host's namespace, or loopback only (dockerd
    then leaves C{networks} out).
    """
    if pid <= 0 or _same_namespace(pid, proc):
        return {}
    try:
        text = (proc / str(pid) / "net" / "dev").read_text()
    except OSError:
        return {}
    return parse_net_dev(text)
