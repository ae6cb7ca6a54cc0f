# -*- test-case-name: tests.daemon.containers.test_restart -*-
"""
Restart policies, and the back-off between restarts, as moby's restartmanager.

A container that keeps dying is restarted after 100 ms, then 200 ms, 400 ms
and so on up to a minute; a run of ten seconds or more resets the delay.
"""

from typing import Any

from attrs import frozen

from dockserve.errors import InvalidParameter

#: The first delay, the growth factor, the ceiling, and the run time that
#: counts as healthy (resetting the delay).
_FIRST = 0.1
_FACTOR = 2.0
_CEILING = 60.0
_HEALTHY_RUN = 10.0

_NAMES = ("", "no", "always", "on-failure", "unless-stopped")


@frozen
class RestartPolicy:
    """
    A C{HostConfig.RestartPolicy}.

    @ivar name: C{no}, C{always}, C{on-failure} or C{unless-stopped}.
    @ivar maximum_retry_count: For C{on-failure}: 0 means no limit.
    """

    name: str = "no"
    maximum_retry_count: int = 0

    def should_restart(
        self, exit_code: int, restart_count: int, manually_stopped: bool
    ) -> bool:
        """
        Whether a container that just exited with C{exit_code} is started
        again (never after a C{docker stop}, as moby decides).
        """
        if manually_stopped:
            return False
        if self.name in {"always", "unless-stopped"}:
            return True
        if self.name == "on-failure" and exit_code != 0:
            return (
                self.maximum_retry_count == 0
                or restart_count < self.maximum_retry_count
            )
        return False

    def restarts_at_boot(
        self, exit_code: int, restart_count: int, manually_stopped: bool
    ) -> bool:
        """
        Whether the daemon starts a stopped container when the daemon itself
        starts, as moby's restore asks a fresh restart manager: C{always}
        even after a C{docker stop}, C{unless-stopped} unless stopped so,
        C{on-failure} after a failure with retries left.
        """
        if self.name == "always":
            return True
        if self.name == "unless-stopped":
            return not manually_stopped
        if self.name == "on-failure" and exit_code != 0:
            return (
                self.maximum_retry_count == 0
                or restart_count < self.maximum_retry_count
            )
        return False


def parse(host_config: dict[str, Any]) -> RestartPolicy:
    """
    The policy in C{host_config}, validated with dockerd's messages.

    @raise InvalidParameter: For an unknown name or a retry count with a
        policy other than C{on-failure}.
    """
    raw = host_config.get("RestartPolicy") or {}
    if not isinstance(raw, dict):
        raise InvalidParameter(
            "json: cannot unmarshal into Go struct field "
            "HostConfig.RestartPolicy of type container.RestartPolicy"
        )
    name = raw.get("Name") or "no"
    count = raw.get("MaximumRetryCount") or 0
    if name not in _NAMES:
        raise InvalidParameter(
            f"invalid restart policy: unknown policy '{name}'; use one of "
            "'no', 'always', 'on-failure', or 'unless-stopped'"
        )
    if not isinstance(count, int):
        raise InvalidParameter(
            "json: cannot unmarshal into Go struct field "
            "RestartPolicy.HostConfig.RestartPolicy.MaximumRetryCount of type int"
        )
    if count < 0:
        raise InvalidParameter(
            "invalid restart policy: maximum retry count cannot be negative"
        )
    if count and name != "on-failure":
        raise InvalidParameter(
            "invalid restart policy: maximum retry count can only be used "
            "with 'on-failure'"
        )
    return RestartPolicy(name, count)


class Backoff:
    """
    The delay before the next restart of one container.

    @ivar delay: The delay the last L{next_delay} returned, 0 before any.
    """

    def __init__(self) -> None:
        self.delay = 0.0

    def next_delay(self, ran_for: float) -> float:
        """
        The delay before restarting a container that ran C{ran_for} seconds.
        """
        if ran_for >= _HEALTHY_RUN:
            self.delay = 0.0
        self.delay = _FIRST if self.delay == 0 else min(self.delay * _FACTOR, _CEILING)
        return self.delay

    def reset(self) -> None:
        """A manual start or stop: the next failure starts from the beginning."""
        self.delay = 0.0
