# -*- test-case-name: tests.daemon.containers.test_health -*-
"""
The container service's side of healthchecks: a L{Monitor} per running
container with a test, its probes run as execs of the container, its
results kept in C{State.Health} and its status changes published as
C{health_status: healthy} events (L{dockserve.daemon.containers.health}).
"""

from __future__ import annotations

from attrs import define, field

from twisted.internet.defer import Deferred

from dockserve.daemon.containers import names
from dockserve.daemon.containers.execs import ExecInstance, build_process
from dockserve.daemon.containers.health import Health, Monitor, Settings
from dockserve.daemon.containers.table import Container, ContainerParts


@define
class _Probe:
    """A running probe: its end, its pid, what it wrote."""

    exited: Deferred[int]
    pid: int = 0
    chunks: list[bytes] = field(factory=list)

    def output(self) -> bytes:
        return b"".join(self.chunks)


class ContainerHealth(ContainerParts):
    """Healthchecks of the container service."""

    def _start_health(self, c: Container, health: Health | None = None) -> None:
        """Probe C{c} from now on, if it has a healthcheck."""
        self._stop_health(c)
        settings = Settings.of(c.record.config)
        if settings is None:
            return
        monitor = Monitor(
            self._reactor,
            settings,
            started_at=self._reactor.seconds(),
            run=lambda: Deferred.fromCoroutine(self._run_probe(c, settings)),
            changed=lambda h, changed: self._health_changed(c, h, changed),
            health=health,
        )
        c.health_monitor = monitor
        monitor.start()

    def _stop_health(self, c: Container) -> None:
        """No more probes for C{c} (stop, pause, exit)."""
        monitor = c.health_monitor
        c.health_monitor = None
        if monitor is not None:
            monitor.stop()

    async def _run_probe(self, c: Container, settings: Settings) -> _Probe:
        """
        One probe, as an exec of C{c}: with dockerd's C{exec_create},
        C{exec_start} and C{exec_die} events (its health.go runs probes
        through the exec path, so C{docker events} shows each one).
        """
        shell = [str(s) for s in c.record.config.get("Shell") or ["/bin/sh", "-c"]]
        command = settings.command(shell)
        exec_id = names.new_id()
        instance = ExecInstance.from_request(
            exec_id, c.id, {"AttachStdout": True, "AttachStderr": True}, command
        )
        process = build_process(
            c.directory / "config.json", self._bundles.rootfs(c.directory), instance
        )
        text = f"{command[0]} {' '.join(command[1:])}"
        self._announce(c, f"exec_create: {text}", execID=exec_id)
        self._announce(c, f"exec_start: {text}", execID=exec_id)
        chunks: list[bytes] = []
        proc = await self._runtime.exec(
            c.id, process, on_output=lambda _s, data: chunks.append(data), stdin=False
        )

        def died(code: int) -> int:
            if self._containers.get(c.id) is c:
                self._announce(c, "exec_die", execID=exec_id, exitCode=str(code))
            return code

        return _Probe(
            proc.exited.addCallback(died), int(getattr(proc, "pid", 0) or 0), chunks
        )

    def _health_changed(self, c: Container, health: Health, changed: bool) -> None:
        if self._containers.get(c.id) is not c or not c.record.state.running:
            return
        rec = c.record.with_state(health=health.view())
        if changed:
            self._save(c, rec, f"health_status: {health.status}")
        else:
            c.record = rec  # as dockerd: on disk at the next change
