# -*- test-case-name: tests.integration.test_crash_safety -*-
"""
Crash safety of running containers: a SIGKILL of the daemon in the middle
of many starts, and a container monitor (conmon) that dies, never leave a
container that shows as running for ever or a C{docker stop}, C{rm -f} or
C{wait} that hangs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.integration.harness import unix_request
from tests.integration.test_containers import DOCKER, _DaemonCase

#: How long each stop or removal may take after the crash (the issue's bound).
_EACH = 10.0


def _alive(pid: int) -> bool:
    """Whether process C{pid} exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in {"Z", "X"}


class MonitorLossTests(_DaemonCase):
    def conmon_pid(self, cid: str) -> int:
        path = Path(self.daemon.exec_root) / "runtime" / "c" / cid / "conmon.pid"
        return int(path.read_text())

    def test_conmon_killed(self) -> None:
        """
        A container whose conmon is SIGKILLed is stopped by the daemon and
        shows why: exited 137 with State.Error naming the monitor; wait,
        stop and rm answer at once.
        """
        self.cleanup_container("orphan")
        cid = self.ok("run", "-d", "--name", "orphan", "busybox", "sleep", "300")
        cid = cid.strip()
        waiting = subprocess.Popen(
            [DOCKER, "wait", "orphan"], env=self.daemon.env, stdout=subprocess.PIPE
        )
        os.kill(self.conmon_pid(cid), signal.SIGKILL)
        out, _ = waiting.communicate(timeout=_EACH)
        self.assertEqual(out, b"137\n")
        self.assertEqual(
            self.inspect("orphan", "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 137",
        )
        self.assertIn("monitor (conmon)", self.inspect("orphan", "{{.State.Error}}"))
        self.docker("rm", "-f", "orphan", timeout=_EACH)
        self.assertEqual(self.ok("ps", "-aq"), "")

    def test_conmon_gone_while_daemon_down(self) -> None:
        """
        conmon dies while the daemon is down: the restarted daemon does not
        adopt a container nobody monitors; stop and rm answer at once.
        """
        self.cleanup_container("lost")
        cid = self.ok("run", "-d", "--name", "lost", "busybox", "sleep", "300").strip()
        pid = int(self.inspect("lost", "{{.State.Pid}}"))
        self.daemon.kill()
        os.kill(self.conmon_pid(cid), signal.SIGKILL)
        self.daemon.start()
        self.until(
            lambda: self.inspect("lost", "{{.State.Status}}") == "exited",
            "the unmonitored container to be stopped",
        )
        self.assertFalse(_alive(pid))
        self.docker("stop", "-t", "1", "lost", timeout=_EACH)
        result = self.docker("rm", "-f", "lost", timeout=_EACH)
        self.assertEqual(result.returncode, 0, result.stderr)


class StartStormTests(_DaemonCase):
    def test_sigkill_during_starts(self) -> None:
        """
        SIGKILL the daemon in the middle of 20 concurrent creates and
        starts, start it again: every container listed as running has a
        live conmon and a real StartedAt, and every one stops and goes
        within 10 s.
        """
        body = json.dumps(
            {
                "Image": "busybox",
                "Cmd": ["sh", "-c", "sleep 2; echo hello; exec sleep 300"],
            }
        ).encode()
        started: list[str] = []
        lock = threading.Lock()

        def one() -> None:
            try:
                _, data = unix_request(
                    self.daemon.socket_path, "POST", "/containers/create", body
                )
                cid = json.loads(data)["Id"]
                unix_request(
                    self.daemon.socket_path, "POST", f"/containers/{cid}/start"
                )
            except (OSError, ValueError, KeyError):
                return
            with lock:
                started.append(cid)

        threads = [threading.Thread(target=one, daemon=True) for _ in range(20)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(started) < 6 and time.monotonic() < deadline:
            time.sleep(0.005)
        self.daemon.kill()
        for thread in threads:
            thread.join(10)
        self.daemon.start()
        self.addCleanup(self._remove_all)
        ids = self.ok("ps", "-q", "--no-trunc").split()
        self.assertGreater(len(ids), 0)
        runtime = Path(self.daemon.exec_root) / "runtime"
        for cid in ids:
            conmon = int((runtime / "c" / cid / "conmon.pid").read_text())
            cmdline = Path(f"/proc/{conmon}/cmdline").read_bytes()
            self.assertIn(cid.encode(), cmdline, "a running container without conmon")
            self.assertNotEqual(
                self.inspect(cid, "{{.State.StartedAt}}"), "0001-01-01T00:00:00Z"
            )
        # The ones that ran long enough said hello, and their log has it.
        time.sleep(2.5)
        for cid in ids:
            self.assertIn("hello", self.ok("logs", cid))
        for cid in self.ok("ps", "-aq", "--no-trunc").split():
            begun = time.monotonic()
            stop = self.docker("stop", "-t", "1", cid, timeout=_EACH)
            self.assertEqual(stop.returncode, 0, stop.stderr)
            rm = self.docker("rm", "-f", cid, timeout=_EACH)
            self.assertEqual(rm.returncode, 0, rm.stderr)
            self.assertLess(time.monotonic() - begun, _EACH)
        self.assertEqual(self.ok("ps", "-aq"), "")
        self.assertEqual(list((runtime / "runc").iterdir()), [])

    def _remove_all(self) -> None:
        ids = self.docker("ps", "-aq").stdout.decode().split()
        if ids:
            self.docker("rm", "-f", *ids, timeout=60)
