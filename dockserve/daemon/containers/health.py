# -*- test-case-name: tests.daemon.containers.test_health -*-
"""
Healthchecks, as dockerd runs them (moby's C{daemon/health.go}).

A running container whose config has a test (C{CMD ...} or C{CMD-SHELL
...}; C{NONE} turns the image's off) is probed by an exec of that test
with the container's user, working directory and environment, every
interval (every start interval while it is starting and inside its start
period), one probe at a time. A probe that outlives its timeout is killed
and counts as exit -1 C{Health check exceeded timeout (30s)}. Exit 0 makes
the container C{healthy} and clears the failing streak; anything else,
outside the start period, adds to the streak, and C{retries} failures in
a row make it C{unhealthy} (which restarts nothing, as with dockerd). The
last five results are kept with their output (4096 bytes at most).

Each start (or restart) begins at C{starting}; a stop, a pause or the
process's end stops the probes.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from dockserve.timetypes import rfc3339

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from twisted.internet.interfaces import IDelayedCall, IReactorTime

_log = Logger()

#: dockerd's defaults, in seconds.
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_PERIOD = 0.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3

#: The most output a probe result keeps.
MAX_OUTPUT = 4096

#: The results kept.
MAX_LOG = 5

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"


def _seconds(value: Any, default: float) -> float:
    """A Go duration in nanoseconds; 0 or missing is the default."""
    try:
        ns = int(value or 0)
    except (TypeError, ValueError):
        return default
    return ns / 1e9 if ns > 0 else default


def _go_duration(seconds: float) -> str:
    """C{30s}, C{1m30s}, C{500ms}: how dockerd's message names a timeout."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:g}s"
    return f"{int(minutes)}m{text}" if minutes else text


@define
class Settings:
    """A container's healthcheck, defaults filled in."""

    test: list[str]
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    start_period: float = DEFAULT_START_PERIOD
    start_interval: float = DEFAULT_START_INTERVAL
    retries: int = DEFAULT_RETRIES

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Settings | None:
        """
        The healthcheck of a container's C{Config}, or C{None} when it has
        none (no test, or C{NONE}).
        """
        check = config.get("Healthcheck") or {}
        test = [str(t) for t in check.get("Test") or []]
        if (
            not test
            or test[0] == "NONE"
            or (len(test) == 1 and test[0].startswith("CMD"))
        ):
            return None
        retries = check.get("Retries")
        return cls(
            test,
            _seconds(check.get("Interval"), DEFAULT_INTERVAL),
            _seconds(check.get("Timeout"), DEFAULT_TIMEOUT),
            _seconds(check.get("StartPeriod"), DEFAULT_START_PERIOD),
            _seconds(check.get("StartInterval"), DEFAULT_START_INTERVAL),
            int(retries)
            if isinstance(retries, int) and retries > 0
            else DEFAULT_RETRIES,
        )

    def command(self, shell: list[str]) -> list[str]:
        """The probe's argv: C{CMD} as given, C{CMD-SHELL} through C{shell}."""
        if self.test[0] == "CMD-SHELL":
            return [*shell, " ".join(self.test[1:])]
        if self.test[0] == "CMD":
            return self.test[1:]
        # A bare list (no kind) is taken as CMD-SHELL's text, as the CLI does.
        return [*shell, " ".join(self.test)]


@define
class Health:
    """C{State.Health}: the status, the failing streak, the last results."""

    status: str = STARTING
    failing_streak: int = 0
    log: list[dict[str, Any]] = field(factory=list)

    def view(self) -> dict[str, Any]:
        """As inspect shows it."""
        return {
            "Status": self.status,
            "FailingStreak": self.failing_streak,
            "Log": list(self.log),
        }

    @classmethod
    def from_view(cls, value: Mapping[str, Any] | None) -> Health:
        """Back from a saved L{view}."""
        value = value or {}
        return cls(
            str(value.get("Status") or STARTING),
            int(value.get("FailingStreak") or 0),
            list(value.get("Log") or []),
        )


class Monitor:
    """
    The probes of one running container.

    @param run: Starts a probe's process: fires with an object that has
        C{exited} (a Deferred of the exit code) and C{pid}; C{output()}
        gives what it wrote so far.
    @param changed: Told the new L{Health} after each probe, and whether
        its status changed.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        settings: Settings,
        *,
        started_at: float,
        run: Callable[[], Deferred[Any]],
        changed: Callable[[Health, bool], None],
        health: Health | None = None,
    ) -> None:
        self._reactor = reactor
        self.settings = settings
        self._started_at = started_at
        self._run = run
        self._changed = changed
        self.health = health or Health()
        self._timer: IDelayedCall | None = None
        self._probing: Any = None
        self._stopped = False
        self._timed_out = False

    def start(self) -> None:
        """Schedule the first probe."""
        self._schedule()

    def _interval(self) -> float:
        within = self._reactor.seconds() < self._started_at + self.settings.start_period
        if self.health.status == STARTING and within:
            return self.settings.start_interval
        return self.settings.interval

    def _schedule(self) -> None:
        if not self._stopped:
            self._timer = self._reactor.callLater(self._interval(), self._probe)

    def stop(self) -> None:
        """No more probes; a running one is killed."""
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._kill()

    def _kill(self) -> None:
        proc = self._probing
        pid = int(getattr(proc, "pid", 0) or 0) if proc is not None else 0
        if pid > 0:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def _probe(self) -> None:
        self._timer = None
        begun = self._reactor.seconds()
        Deferred.fromCoroutine(self._probe_once(begun)).addErrback(
            lambda f: _log.failure("health probe", f)
        )

    async def _probe_once(self, begun: float) -> None:
        self._timed_out = False
        try:
            proc = await self._run()
        except Exception as e:
            self._record(begun, -1, str(getattr(e, "message", e)).encode())
            self._schedule()
            return
        self._probing = proc
        timer = self._reactor.callLater(self.settings.timeout, self._on_timeout)
        try:
            code = await proc.exited
        finally:
            self._probing = None
            if timer.active():
                timer.cancel()
        if self._stopped:
            return
        output: bytes = proc.output()
        if self._timed_out:
            message = (
                f"Health check exceeded timeout ({_go_duration(self.settings.timeout)})"
            )
            if output:
                message += ": " + output.decode(errors="replace")
            self._record(begun, -1, message.encode())
        else:
            self._record(begun, code, output)
        self._schedule()

    def _on_timeout(self) -> None:
        self._timed_out = True
        self._kill()

    def _record(self, begun: float, code: int, output: bytes) -> None:
        health = self.health
        before = health.status
        entry = {
            "Start": rfc3339(int(begun * 1e9)),
            "End": rfc3339(int(self._reactor.seconds() * 1e9)),
            "ExitCode": code,
            "Output": output[:MAX_OUTPUT].decode(errors="replace"),
        }
        health.log = [*health.log, entry][-MAX_LOG:]
        if code == 0:
            health.failing_streak = 0
            health.status = HEALTHY
        else:
            within = begun < self._started_at + self.settings.start_period
            if not (health.status == STARTING and within):
                health.failing_streak += 1
                if health.failing_streak >= self.settings.retries:
                    health.status = UNHEALTHY
        self._changed(health, health.status != before)
