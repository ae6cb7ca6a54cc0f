# -*- test-case-name: tests.daemon.containers.test_service -*-
"""
C{docker exec}: exec instances made, started, inspected and resized
(L{dockserve.daemon.containers.execs.ExecInstance} is one instance).
"""

from typing import Any

from twisted.internet.defer import (
    Deferred,
)

from dockserve.daemon.containers import (
    names,
)
from dockserve.daemon.containers.execs import ExecInstance, build_process
from dockserve.daemon.containers.table import (
    Container,
    ContainerParts,
    _start_error,
)
from dockserve.daemon.contracts import (
    OutputCallback,
)
from dockserve.errors import (
    Conflict,
    DockerError,
    InvalidParameter,
    NotFound,
)


def _exec_command(instance: ExecInstance) -> str:
    """An exec's command as dockerd's exec events name it (C{true }, with the space)."""
    cmd = [str(a) for a in instance.config["Cmd"]]
    return f"{cmd[0]} {' '.join(cmd[1:])}"


class ExecControl(ContainerParts):
    """The exec operations of the container service."""

    def exec_create(self, reference: str, body: dict[str, Any]) -> dict[str, Any]:
        """
        C{POST /containers/{id}/exec}.

        @raise Conflict: Not running, or paused.
        """
        c = self._get(reference)
        self._check_exec_target(c, reference)
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd:
            raise InvalidParameter("No exec command specified")
        instance = ExecInstance.from_request(
            names.new_id(lambda i: i in self._execs), c.id, body, cmd
        )
        self._execs[instance.id] = instance
        c.exec_ids.append(instance.id)
        self._announce(c, f"exec_create: {_exec_command(instance)}", execID=instance.id)
        return {"Id": instance.id}

    def _check_exec_target(self, c: Container, reference: str | None = None) -> None:
        """As dockerd's C{getActiveContainer}: running, not paused, not restarting."""
        status = c.record.state.status
        if status == "restarting":
            raise Conflict(
                f"Container {c.id} is restarting, wait until the container is running"
            )
        if not c.record.state.running:
            raise Conflict(f"Container {c.id} is not running")
        if status == "paused":
            raise Conflict(
                f"Container {reference or c.id} is paused, unpause the container "
                "before exec"
            )

    def _exec(self, exec_id: str) -> ExecInstance:
        instance = self._execs.get(exec_id)
        if instance is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return instance

    def exec_start(
        self,
        exec_id: str,
        on_output: OutputCallback | None,
    ) -> Deferred[ExecInstance]:
        """
        C{POST /exec/{id}/start}: run the process; C{on_output=None} detaches.
        Fires once the process runs; C{instance.exited} fires at its end.
        """
        instance = self._exec(exec_id)
        if instance.running or instance.started:
            raise Conflict(f"Error: Exec command {exec_id} is already running")
        c = self._containers.get(instance.container_id)
        if c is None:
            raise NotFound(f"No such container: {instance.container_id}")
        self._check_exec_target(c)
        instance.started = True
        process = build_process(
            c.directory / "config.json", self._bundles.rootfs(c.directory), instance
        )

        self._announce(c, f"exec_start: {_exec_command(instance)}", execID=exec_id)

        def died(code: int) -> int:
            if self._containers.get(c.id) is c:
                self._announce(c, "exec_die", execID=exec_id, exitCode=str(code))
            return code

        instance.exited.addCallback(died)

        async def run() -> ExecInstance:
            try:
                proc = await self._runtime.exec(
                    c.id,
                    process,
                    on_output=on_output,
                    stdin=bool(instance.config["AttachStdin"]),
                )
            except DockerError as e:
                code, error = _start_error(e.message)
                instance.finished(code)
                raise error from None
            instance.attach_process(proc)
            return instance

        return Deferred.fromCoroutine(run())

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        """C{GET /exec/{id}/json}."""
        instance = self._exec(exec_id)
        c = self._containers.get(instance.container_id)
        return instance.describe(c.record.state.pid if c else 0)

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        """C{POST /exec/{id}/resize}."""
        instance = self._exec(exec_id)
        if instance.exit_code is not None:
            raise Conflict(f"Exec {exec_id} is not running")
        instance.resize(height, width)
