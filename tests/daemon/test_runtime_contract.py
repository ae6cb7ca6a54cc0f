"""
The runtime contract (L{tests.daemon.runtime_contract}) against the
L{dockserve.testing.containers.ScriptedRuntime} every unit test of the
container service stands on; the same tests run against runc and conmon
in C{tests.integration.test_runtime_contract}.
"""

import time
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from dockserve.testing.containers import FakeExec, ScriptedRuntime
from tests.daemon.runtime_contract import (
    CAT_THEN_5,
    ECHO,
    EXEC_EXITS,
    EXITS,
    MISSING,
    NOT_FOUND,
    RuntimeContract,
)


class ScriptedPrograms:
    """
    Plays the contract's programs on a L{ScriptedRuntime} as busybox runs
    them under runc: what each writes, reads and exits with. The script is
    the test's; what the runtime makes of it (states, exit statuses,
    streams, errors) is the fake's own, and is what the contract checks.
    """

    def __init__(self, runtime: ScriptedRuntime) -> None:
        self.runtime = runtime
        self.programs: dict[str, tuple[str, ...]] = {}
        runtime.on_start = self.started
        runtime.on_stdin = self.read
        runtime.on_exec = self.exec_started
        # As a container's pid 1, sleep and sh ignore SIGTERM.
        runtime.deadly = {9}

    def started(self, container_id: str) -> None:
        program = self.programs[container_id]
        if program == ECHO:
            self.runtime.output(container_id, 1, b"first\n")
        elif program == EXITS:
            self.runtime.exit(container_id, 7)

    def read(self, container_id: str, data: bytes | None) -> None:
        if self.programs[container_id] != ECHO:
            return
        if data is not None:
            self.runtime.output(container_id, 1, data)
        else:
            self.runtime.output(container_id, 2, b"err\n")
            self.runtime.exit(container_id, 3)

    def exec_started(self, container_id: str, proc: FakeExec) -> None:
        del container_id
        program = tuple(proc.process["args"])
        if program == EXEC_EXITS:
            proc.exit(4)
        elif program == CAT_THEN_5:

            def cat(data: bytes | None) -> None:
                if data is None:
                    proc.exit(5)
                else:
                    proc.emit(1, data)

            proc.on_stdin = cat


class ScriptedRuntimeContractTests(RuntimeContract, TestCase):
    """The fake runtime keeps the contract."""

    # Nothing here waits on time: a test still running after this has
    # waited for something the fake never does.
    timeout = 10

    def setUp(self) -> None:
        self.base = Path(self.mktemp())
        self.base.mkdir()
        clock = Clock()
        clock.advance(time.time())
        self.runtime = ScriptedRuntime(clock)
        self.script = ScriptedPrograms(self.runtime)

    def bundle(self, container_id: str, argv: tuple[str, ...], **config: Any) -> str:
        del config
        self.script.programs[container_id] = argv
        if argv == MISSING:
            # What runc says, worded as dockerd words a failed create.
            self.runtime.fail_create = (
                "failed to create task for container: failed to create shim "
                "task: OCI runtime create failed: runc create failed: unable "
                f"to start container process: {NOT_FOUND}: unknown"
            )
        directory = self.base / container_id
        directory.mkdir()
        return str(directory)

    def log_path(self, container_id: str) -> str:
        return str(self.base / f"{container_id}.log")
