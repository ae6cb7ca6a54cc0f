# -*- test-case-name: tests.daemon.containers.test_transitions -*-
"""
The one place a container's state changes: L{Transitions.record} saves the
new record (durably, before any caller is answered) and publishes the
event that says what happened, with the attributes dockerd gives it (the
container's labels, C{image}, C{name}, and the action's own: C{exitCode}
on C{die}, C{signal} on C{kill}, C{oldName} on C{rename}...).

Actions that change nothing on disk (C{attach}, C{resize}, C{top},
C{exec_create: ...}) go through L{Transitions.announce}, so that every
container event has one shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from dockserve.daemon.containers import record

if TYPE_CHECKING:
    from pathlib import Path

    from dockserve.daemon.containers.record import ContainerRecord


class Publish(Protocol):
    """The event bus's C{publish}."""

    def __call__(
        self, type_: str, action: str, actor_id: str, attributes: dict[str, str]
    ) -> Any:
        """Publish one event."""


class Holder(Protocol):
    """What holds a container's record: its directory and the record itself."""

    record: ContainerRecord
    directory: Path


def _ignore(type_: str, action: str, actor_id: str, attributes: dict[str, str]) -> None:
    del type_, action, actor_id, attributes


def attributes(rec: ContainerRecord, **extra: str) -> dict[str, str]:
    """A container event's attributes: its labels, image and name, then C{extra}."""
    labels = rec.config.get("Labels") or {}
    found = {str(k): str(v) for k, v in labels.items()}
    found["image"] = rec.image
    found["name"] = rec.name.lstrip("/")
    found.update(extra)
    return found


class Transitions:
    """Saves container records and publishes their events."""

    def __init__(self, publish: Publish = _ignore) -> None:
        self._publish = publish

    def set_publish(self, publish: Publish) -> None:
        """Where events go from now on (the daemon's bus)."""
        self._publish = publish

    def record(
        self,
        holder: Holder,
        rec: ContainerRecord,
        action: str | None = None,
        **extra: str,
    ) -> None:
        """
        Make C{rec} the container's record, on disk before this returns,
        and publish C{action} (if any) with C{extra} attributes.
        """
        holder.record = rec
        record.save(holder.directory, rec)
        if action is not None:
            self.announce(holder, action, **extra)

    def announce(self, holder: Holder, action: str, **extra: str) -> None:
        """Publish C{action} for the container, its record unchanged."""
        rec = holder.record
        self._publish("container", action, rec.id, attributes(rec, **extra))
