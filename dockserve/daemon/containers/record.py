# -*- test-case-name: tests.daemon.containers.test_record -*-
"""
The container record: what must survive a restart or a SIGKILL of the daemon.

One JSON file per container (C{<root>/<id>/record.json}), replaced
atomically with L{dockserve.daemon.store.write_json} on every change of
state, and written before the daemon answers the request that made the
change: a container the client was told about is never lost.
"""

import time
from pathlib import Path
from typing import Any

from attrs import asdict, evolve, field, frozen

from dockserve.daemon import store

#: Go's zero C{time.Time} as Docker prints it: never started, never finished.
ZERO_TIME = "0001-01-01T00:00:00Z"

#: The file name of the record in a container's directory.
RECORD_FILE = "record.json"


def rfc3339(nanoseconds: int) -> str:
    """C{nanoseconds} since the epoch as Docker's RFC 3339 with nanoseconds."""
    seconds, nanos = divmod(nanoseconds, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{nanos:09d}Z"


def parse_rfc3339(text: str) -> float:
    """
    Seconds since the epoch for a timestamp written by L{rfc3339}; 0 for
    L{ZERO_TIME} or anything unreadable.
    """
    if text == ZERO_TIME or len(text) < 20:
        return 0.0
    try:
        base = time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return 0.0
    fraction = text[20:].rstrip("Z")
    import calendar  # noqa: PLC0415

    whole = calendar.timegm(base)
    return whole + (float("0." + fraction) if fraction.isdigit() else 0.0)


@frozen
class State:
    """
    Where a container is in its life, in Docker's terms.

    @ivar status: C{created}, C{running}, C{paused}, C{restarting},
        C{removing}, C{exited} or C{dead}.
    @ivar pid: The container's init process on the host while it runs.
    @ivar exit_code: How its last run ended.
    @ivar error: Why it failed to start, if it did.
    @ivar started_at: RFC 3339 time of the last start.
    @ivar finished_at: RFC 3339 time of the last exit.
    @ivar oom_killed: The kernel's OOM killer ended the last run.
    @ivar health: C{State.Health} while a healthcheck runs (C{None}
        without one).
    """

    status: str = "created"
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    oom_killed: bool = False
    health: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        """Docker's C{State.Running}: true while paused too."""
        return self.status in {"running", "paused"}


@frozen
class ContainerRecord:
    """
    Everything dockerd's C{config.v2.json} and C{hostconfig.json} hold.

    @ivar id: 64 hex digits.
    @ivar name: With Docker's leading slash.
    @ivar created: RFC 3339 creation time.
    @ivar image: The image as the user named it (C{Config.Image}).
    @ivar image_id: C{sha256:...} of the image it was created from.
    @ivar config: Docker's container C{Config}, with the image's defaults
        merged in as dockerd merges them at create.
    @ivar host_config: Docker's C{HostConfig}.
    @ivar networking_config: Docker's C{NetworkingConfig}.
    @ivar path: The executable: the first word of entrypoint + cmd.
    @ivar args: The rest of entrypoint + cmd.
    @ivar state: The last known state.
    @ivar restart_count: Restarts by the restart policy since the last
        manual start.
    @ivar manually_stopped: The user stopped it; C{unless-stopped} and
        C{always} leave it stopped at the next daemon start.
    @ivar has_been_started: It ran at least once.
    @ivar anonymous_volumes: Destination -> name of the volumes made for
        this container alone at create (C{-v /path}, the image's VOLUMEs).
    """

    id: str
    name: str
    created: str
    image: str
    image_id: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    networking_config: dict[str, Any] = field(factory=dict)
    path: str = ""
    args: tuple[str, ...] = ()
    state: State = field(factory=State)
    restart_count: int = 0
    manually_stopped: bool = False
    has_been_started: bool = False
    anonymous_volumes: dict[str, str] = field(factory=dict)

    def with_state(self, **changes: Any) -> "ContainerRecord":
        """This record with some fields of its L{State} replaced."""
        return evolve(self, state=evolve(self.state, **changes))


def to_json(record: ContainerRecord) -> dict[str, Any]:
    """The record as the JSON stored on disk."""
    value = asdict(record, recurse=True)
    value["args"] = list(record.args)
    value["version"] = 1
    return value


def from_json(value: dict[str, Any]) -> ContainerRecord:
    """The record that L{to_json} stored."""
    value = dict(value)
    value.pop("version", None)
    state = State(**value.pop("state", {}))
    value["args"] = tuple(value.get("args", ()))
    return ContainerRecord(state=state, **value)


def save(directory: Path, record: ContainerRecord) -> None:
    """Write C{record} durably into its container's C{directory}."""
    store.write_json(directory / RECORD_FILE, to_json(record))


def load(directory: Path) -> ContainerRecord:
    """The record saved in C{directory}."""
    return from_json(store.read_json(directory / RECORD_FILE))
