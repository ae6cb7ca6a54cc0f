# -*- test-case-name: tests.integration.test_runtime -*-
"""
L{dockserve.daemon.runtime.RuncRuntime} with real runc, conmon and
overlayfs, on a root made from /bin/busybox at test time.
"""

import json
import os
import shutil
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from dockserve.daemon import rootfs
from dockserve.daemon.containers.spec import build_spec
from dockserve.daemon.runtime import RuncRuntime
from dockserve.errors import SystemError_


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "real containers need root"
    for binary in ("runc", "conmon"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed"
    if not Path("/bin/busybox").exists():
        return "busybox-static is not installed (/bin/busybox)"
    return None


class RuncRuntimeTests(TestCase):
    """Containers run, talk and end through conmon."""

    skip = _missing()

    def setUp(self) -> None:
        self.base = Path(self.mktemp()).absolute()
        layer = self.base / "layer"
        (layer / "bin").mkdir(parents=True)
        shutil.copy("/bin/busybox", layer / "bin" / "busybox")
        for name in ("sh", "echo", "cat", "sleep", "true"):
            (layer / "bin" / name).symlink_to("busybox")
        self.layer = layer
        self.runtime = RuncRuntime(self.base / "rt", reactor)
        self.addCleanup(self.runtime.close)
        self.ids: list[str] = []

    async def _cleanup(self) -> None:
        for cid in self.ids:
            await self.runtime.delete(cid, force=True)
            rootfs.unmount(self.base / cid / "rootfs")

    def tearDown(self) -> Any:
        from twisted.internet.defer import Deferred  # noqa: PLC0415

        return Deferred.fromCoroutine(self._cleanup())

    def bundle(self, cid: str, cmd: list[str], **config: Any) -> str:
        directory = self.base / cid
        for sub in ("rootfs", "upper", "work"):
            (directory / sub).mkdir(parents=True)
        rootfs.mount_rootfs(
            [str(self.layer)],
            directory / "upper",
            directory / "work",
            directory / "rootfs",
        )
        self.ids.append(cid)
        spec = build_spec(
            container_id=cid,
            image_config={"config": {"Env": ["PATH=/bin"]}},
            config={"Cmd": cmd, **config},
            host_config={},
            rootfs=directory / "rootfs",
            container_dir=directory,
        )
        (directory / "config.json").write_text(json.dumps(spec))
        return str(directory)

    async def test_run_attach_exit(self) -> None:
        """Output arrives by stream, stdin reaches the process, the code is kept."""
        cid = "a" * 64
        bundle = self.bundle(
            cid, ["sh", "-c", "cat; echo err >&2; exit 3"], OpenStdin=True
        )
        log = str(self.base / "log")
        state = await self.runtime.create(
            cid, bundle, log_path=log, tty=False, open_stdin=True
        )
        self.assertEqual(state.status, "created")
        out: list[tuple[int, bytes]] = []
        stdio = await self.runtime.attach(cid, lambda s, d: out.append((s, d)))
        await self.runtime.start(cid)
        stdio.write_stdin(b"in\n")
        stdio.close_stdin()
        status = await self.runtime.wait_exit(cid)
        self.assertEqual(status.code, 3)
        self.assertEqual(self.runtime.exit_status(cid), status)
        await stdio.closed
        self.assertEqual(
            (
                b"".join(d for s, d in out if s == 1),
                b"".join(d for s, d in out if s == 2),
            ),
            (b"in\n", b"err\n"),
        )
        self.assertIn("stdout F in", Path(log).read_text())
        self.assertEqual((await self.runtime.state(cid)).status, "stopped")
        await self.runtime.delete(cid)
        self.assertEqual((await self.runtime.state(cid)).status, None)

    async def test_missing_executable(self) -> None:
        """A missing command fails create with runc's words."""
        cid = "b" * 64
        bundle = self.bundle(cid, ["nosuch"])
        with self.assertRaises(SystemError_) as caught:
            await self.runtime.create(
                cid,
                bundle,
                log_path=str(self.base / "log"),
                tty=False,
                open_stdin=False,
            )
        self.assertIn(
            'exec: "nosuch": executable file not found in $PATH',
            caught.exception.message,
        )

    async def test_exec_and_kill(self) -> None:
        """An exec runs beside the main process; kill ends it with 128+N."""
        cid = "d" * 64
        bundle = self.bundle(cid, ["sleep", "100"])
        await self.runtime.create(
            cid, bundle, log_path=str(self.base / "log"), tty=False, open_stdin=False
        )
        await self.runtime.start(cid)
        out: list[bytes] = []
        process = {
            "args": ["sh", "-c", "cat; exit 5"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
        }
        proc = await self.runtime.exec(
            cid, process, on_output=lambda _s, d: out.append(d)
        )
        proc.write_stdin(b"x")
        proc.close_stdin()
        self.assertEqual(await proc.exited, 5)
        self.assertEqual(b"".join(out), b"x")
        self.assertIn(cid, self.runtime.known())
        self.assertEqual(self.runtime.stats(cid)["pids_stats"]["current"], 1)
        await self.runtime.kill(cid, 9)
        self.assertEqual((await self.runtime.wait_exit(cid)).code, 137)

    async def run_attached(
        self, cid: str, bundle: str, log: str
    ) -> tuple[Any, Any, list[tuple[int, bytes]]]:
        """L{RuncRuntime.run} with one client attached in C{before_start}."""
        from twisted.internet.defer import Deferred  # noqa: PLC0415

        out: list[tuple[int, bytes]] = []
        attached: list[Any] = []

        async def attach() -> None:
            stdio = await self.runtime.attach(cid, lambda s, d: out.append((s, d)))
            attached.append(stdio)

        state = await self.runtime.run(
            cid, bundle, log_path=log, tty=False, open_stdin=True,
            before_start=lambda: Deferred.fromCoroutine(attach()),
        )  # fmt: skip
        return state, attached[0], out

    async def test_gated_run(self) -> None:
        """
        run creates and starts in one runtime process; a client attached in
        before_start sees the very first bytes of a process that writes
        them at once and exits (twenty times over), and stdin reaches it.
        The exit file goes with delete.
        """
        log = str(self.base / "log")
        for n in range(20):
            cid = f"{n:064x}"
            bundle = self.bundle(
                cid, ["sh", "-c", f"echo first-{n}; cat; exit {n}"], OpenStdin=True
            )
            state, stdio, out = await self.run_attached(cid, bundle, log)
            self.assertEqual(state.status, "running")
            self.assertGreater(state.pid, 0)
            stdio.write_stdin(b"typed\n")
            stdio.close_stdin()
            self.assertEqual((await self.runtime.wait_exit(cid)).code, n)
            await stdio.closed
            self.assertEqual(
                b"".join(d for s, d in out if s == 1), f"first-{n}\ntyped\n".encode()
            )
            await self.runtime.delete(cid)
            self.assertIsNone(self.runtime.exit_status(cid))

    async def test_gated_run_missing_executable(self) -> None:
        """A missing command fails run with the words a failed create has."""
        cid = "e" * 64
        bundle = self.bundle(cid, ["nosuch"])
        with self.assertRaises(SystemError_) as caught:
            await self.runtime.run(
                cid, bundle, log_path=str(self.base / "log"), tty=False,
                open_stdin=False,
            )  # fmt: skip
        self.assertIn(
            "OCI runtime create failed: runc create failed: unable to start "
            'container process: exec: "nosuch": executable file not found in $PATH',
            caught.exception.message,
        )

    async def test_gated_run_cancelled(self) -> None:
        """
        When before_start fails, the process never runs: the start fails
        with that error and conmon leaves no container behind.
        """
        cid = "f" * 64
        marker = self.base / cid / "rootfs" / "ran"
        bundle = self.bundle(cid, ["sh", "-c", "echo x > /ran"])

        def refuse() -> Any:
            from twisted.internet.defer import fail  # noqa: PLC0415

            return fail(SystemError_("no attaching today"))

        with self.assertRaises(SystemError_) as caught:
            await self.runtime.run(
                cid, bundle, log_path=str(self.base / "log"), tty=False,
                open_stdin=False, before_start=refuse,
            )  # fmt: skip
        self.assertEqual(caught.exception.message, "no attaching today")
        from twisted.internet.task import deferLater  # noqa: PLC0415

        # conmon's first process writes the pid file after its fork: it may
        # come a moment after the failure.
        pid_file = self.base / "rt" / "c" / cid / "conmon.pid"
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text():
                break
            await deferLater(reactor, 0.01, lambda: None)
        conmon_pid = int(pid_file.read_text())
        for _ in range(200):
            if not Path(f"/proc/{conmon_pid}").exists():
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertFalse(Path(f"/proc/{conmon_pid}").exists(), "conmon lingers")
        self.assertFalse(marker.exists())
        self.assertIsNone((await self.runtime.state(cid)).status)
