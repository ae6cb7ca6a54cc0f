# -*- test-case-name: tests.daemon.containers.test_restart -*-
"""
Restart policies, and the back-off between restarts, as moby's restartmanager.

A container that keeps dying is restarted after 100 ms, then 200 ms, 400 ms
and so on up to a minute; a run of ten seconds or more resets the delay.

As in moby, two things keep a container from coming back: its policy
(L{RestartPolicy.should_restart}: C{unless-stopped} not after the user
stopped it) and its restart manager's cancellation (L{Backoff.cancel}: a
C{docker stop}, a C{docker kill} that stops it, a removal). The first is
on disk (C{manually_stopped}) and counts again when the daemon starts
(C{always} comes back even after a C{docker stop}); the second lives only
as long as the daemon, as moby's restart manager does.
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
        Whether a container that exited with C{exit_code} is started again,
        as moby's C{ShouldRestart} decides: C{always} whatever happened,
        C{unless-stopped} unless the user stopped it, C{on-failure} after a
        failure with retries left. The same question is asked when the
        daemon starts (L{restarts_at_boot}), so an C{always} container
        stopped by hand comes back then, as with dockerd; while the daemon
        runs, a stop cancels the container's restarts first
        (L{Backoff.cancel}).
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

    def restarts_at_boot(
        self, exit_code: int, restart_count: int, manually_stopped: bool
    ) -> bool:
        """
        Whether the daemon starts a stopped container when the daemon itself
        starts: moby asks a fresh restart manager (never cancelled) the
        same L{should_restart}.
        """
        return self.should_restart(exit_code, restart_count, manually_stopped)


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
    The restart manager of one container, as long as the daemon runs: the
    delay before its next restart and whether its restarts were
    cancelled.

    @ivar delay: The delay the last L{next_delay} returned, 0 before any.
    @ivar canceled: A stop, a kill that stops it or a removal said so: it
        is not restarted until a start resets this (L{reset}).
    """

    def __init__(self) -> None:
        self.delay = 0.0
        self.canceled = False

    def next_delay(self, ran_for: float) -> float:
        """
        The delay before restarting a container that ran C{ran_for} seconds.
        """
        if ran_for >= _HEALTHY_RUN:
            self.delay = 0.0
        self.delay = _FIRST if self.delay == 0 else min(self.delay * _FACTOR, _CEILING)
        return self.delay

    def cancel(self) -> None:
        """No more restarts until the next start (moby's C{ExitOnNext})."""
        self.canceled = True

    def reset(self) -> None:
        """A start: the next failure starts from the beginning."""
        self.delay = 0.0
        self.canceled = False


def kill_cancels(signal_number: int, stop_signal: int | None) -> bool:
    """
    Whether C{docker kill} with C{signal_number} cancels the container's
    restarts, as moby's C{killWithSignal}: SIGKILL always; another signal
    when the container has no C{StopSignal} of its own, or is its
    C{StopSignal}. (Every kill marks it stopped by hand, which only
    C{unless-stopped} heeds.)
    """
    return signal_number == 9 or stop_signal is None or signal_number == stop_signal
