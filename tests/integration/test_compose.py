# -*- test-case-name: tests.integration.test_compose -*-
"""
docker compose against dockserve: Debian's docker-compose 1.29 (what `make
test` installs; the compose v2 plugin is in neither apt nor PyPI here), in
a L{NetworkLab}, as its users run it: C{up -d} of two services where one
waits for the other's healthcheck (C{depends_on: condition:
service_healthy}), a named volume, a published port and the project's
network; C{up} attached in the foreground, its logs streaming, stopped by
Ctrl-C (SIGINT); C{logs -f}; and C{docker events} seeing the project's
life.
"""

from __future__ import annotations

import json
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from tests.integration.test_containers import DOCKER
from tests.integration.test_networking import _LabCase

COMPOSE = shutil.which("docker-compose")

#: db serves "dbhello" after two seconds and is healthy once it answers;
#: web starts only after that (so its start comes after db's
#: health_status: healthy), reaches db by its service name and publishes a
#: port. (JSON is YAML: compose reads it.)
_WEB = "mkdir -p /w; echo {text} > /w/index.html; exec httpd -f -p {port} -h /w"
_CHECK = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080 | grep -q dbhello"
_DB = {
    "image": "busybox",
    "command": ["sh", "-c", "sleep 2; " + _WEB.format(text="dbhello", port=8080)],
    "healthcheck": {"test": ["CMD-SHELL", _CHECK], "interval": "1s", "retries": 10},
    "stop_grace_period": "1s",
}
PROJECT = json.dumps({
    "version": "2.4",
    "services": {
        "db": {**_DB, "volumes": ["data:/data"]},
        "web": {
            "image": "busybox",
            "command": ["sh", "-c", _WEB.format(text="webhello", port=80)],
            "ports": ["18090:80"],
            "depends_on": {"db": {"condition": "service_healthy"}},
            "stop_grace_period": "1s",
        },
    },
    "volumes": {"data": {}},
})  # fmt: skip

#: A shell that says so on stdout, every half second, and ends on SIGTERM
#: ($$ is compose's escape of a $).
_TICKER = (
    "trap 'echo bye; exit 0' TERM; echo {name}-ready; i=0; "
    "while true; do echo {name}-tick $$i; i=$$((i+1)); sleep 0.5; done"
)

#: app waits for db's health, then talks; both stream their output.
ATTACHED = json.dumps({
    "version": "2.4",
    "services": {
        "db": _DB,
        "app": {
            "image": "busybox",
            "command": ["sh", "-c", _TICKER.format(name="app")],
            "depends_on": {"db": {"condition": "service_healthy"}},
            "stop_grace_period": "5s",
        },
    },
})  # fmt: skip


class _Lines:
    """A process's output, read line by line in a thread (never blocking)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self._queue.put(raw.decode(errors="replace").rstrip("\n"))
        self._queue.put(None)

    def until(self, wanted: Any, timeout: float = 60) -> bool:
        """Read until a line makes C{wanted(line)} true; False at the end."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                return False
            self.lines.append(line)
            if wanted(line):
                return True
        return False

    def rest(self, timeout: float = 30) -> None:
        """Read to the end of the stream."""
        self.until(lambda _: False, timeout)

    def text(self) -> str:
        return "\n".join(self.lines)


def _in_order(items: list[str], wanted: list[str]) -> bool:
    """Whether C{wanted} is a subsequence of C{items}."""
    rest = iter(items)
    return all(any(item == w for item in rest) for w in wanted)


class ComposeTests(_LabCase):
    skip = _LabCase.skip or (None if COMPOSE else "docker-compose is not installed")

    def setUp(self) -> None:
        super().setUp()
        self.project = Path(self.mktemp()).absolute()
        self.project.mkdir()

    def write(self, project: str) -> None:
        (self.project / "docker-compose.yml").write_text(project)
        self.addCleanup(self.compose, "down", "-v")

    def env(self) -> dict[str, str]:
        # Debian's compose runs on Debian's python3: not with the PYTHONPATH
        # trial -j gives its workers (this interpreter's own library).
        return {k: v for k, v in self.daemon.env.items()
                if k not in {"PYTHONPATH", "PYTHONHOME"}}  # fmt: skip

    def compose(
        self, *args: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(COMPOSE), "-p", "proj", *args],
            cwd=self.project, env=self.env(), capture_output=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def spawn(self, argv: list[str]) -> tuple[subprocess.Popen[bytes], _Lines]:
        """C{argv} in the background, its output read as it comes."""
        process = subprocess.Popen(
            argv, cwd=self.project, env=self.env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def end() -> None:
            if process.poll() is None:
                process.kill()
            process.wait()

        self.addCleanup(end)
        assert process.stdout is not None
        return process, _Lines(process.stdout)

    def statuses(self) -> list[str]:
        out = self.ok("ps", "-a", "--filter", "label=com.docker.compose.project=proj",
                      "--format", "{{.Names}} {{.Status}}")  # fmt: skip
        return sorted(out.splitlines())

    def test_up_exec_down(self) -> None:
        """
        up -d holds web back until db is healthy (web's start event comes
        after db's health_status: healthy), web reaches db by name and
        serves on its published port; down removes containers, network and
        volume.
        """
        self.write(PROJECT)
        since = str(time.time() - 1)
        up = self.compose("up", "-d")
        self.assertEqual(up.returncode, 0, up.stderr.decode())
        self.assertIn("(healthy)", self.ok("ps", "--filter", "name=proj_db_1",
                                            "--format", "{{.Status}}"))  # fmt: skip
        out = self.ok("events", "--since", since, "--until", str(time.time()),
                      "--filter", "type=container",
                      "--format", "{{.Action}} {{.Actor.Attributes.name}}")  # fmt: skip
        events = out.splitlines()
        self.assertTrue(
            _in_order(events, ["start proj_db_1", "health_status: healthy proj_db_1",
                               "create proj_web_1", "start proj_web_1"]),
            events,
        )  # fmt: skip
        fetched = self.compose(
            "exec", "-T", "web", "sh", "-c",
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc db 8080 | tail -1",
        )  # fmt: skip
        self.assertEqual(fetched.stdout, b"dbhello\n", fetched.stderr.decode())
        self.assertEqual(self.wait_http("http://127.0.0.1:18090/"), "webhello\n")
        self.assertIn("proj_default", self.ok("network", "ls", "--format", "{{.Name}}"))
        self.assertIn("proj_data", self.ok("volume", "ls", "-q"))
        down = self.compose("down", "-v")
        self.assertEqual(down.returncode, 0, down.stderr.decode())
        self.assertEqual(self.ok("ps", "-aq"), "")
        self.assertNotIn(
            "proj_default", self.ok("network", "ls", "--format", "{{.Name}}")
        )
        self.assertNotIn("proj_data", self.ok("volume", "ls", "-q"))

    def test_up_attached_sigint(self) -> None:
        """
        docker-compose up in the foreground: it waits for db's health
        before it starts app, streams both services' output as it comes
        (app's ticks keep arriving), and Ctrl-C (SIGINT) stops the project
        gracefully: both containers exited, none removed.
        """
        self.write(ATTACHED)
        process, out = self.spawn([str(COMPOSE), "--ansi", "never", "-p", "proj", "up"])
        self.assertTrue(
            out.until(lambda line: "app-tick 3" in line), out.text()[-3000:]
        )
        self.assertIn("app_1  | app-ready", out.text())
        self.assertIn("Creating proj_app_1", out.text())
        started = json.loads(self.inspect("proj_app_1", "{{json .State.StartedAt}}"))
        health = json.loads(self.inspect("proj_db_1", "{{json .State.Health}}"))
        healthy_at = min(e["End"] for e in health["Log"] if e["ExitCode"] == 0)
        self.assertGreater(started, healthy_at)
        process.send_signal(signal.SIGINT)
        out.rest()
        self.assertEqual(process.wait(60), 0, out.text()[-3000:])
        self.assertIn("Gracefully stopping", out.text())
        self.assertIn("Stopping proj_app_1 ... done", out.text())
        statuses = self.statuses()
        self.assertEqual(len(statuses), 2, statuses)
        for line in statuses:
            self.assertIn(" Exited (", line)

    def test_logs_follow(self) -> None:
        """
        docker-compose logs -f: what was written, then new lines as they
        come; it ends by itself when the project is stopped.
        """
        self.write(ATTACHED)
        up = self.compose("up", "-d")
        self.assertEqual(up.returncode, 0, up.stderr.decode())
        self.until(lambda: "app-tick 2" in self.ok("logs", "proj_app_1"), "ticks")
        written = self.ok("logs", "proj_app_1").count("app-tick")
        process, out = self.spawn(
            [str(COMPOSE), "--ansi", "never", "-p", "proj", "logs", "-f", "--no-color"]
        )
        later = f"app-tick {written + 3}"
        self.assertTrue(out.until(lambda line: later in line), out.text()[-3000:])
        self.assertIn("app_1  | app-ready", out.text())
        self.assertIn("app_1  | app-tick 0", out.text())
        stop = self.compose("stop")
        self.assertEqual(stop.returncode, 0, stop.stderr.decode())
        out.rest()
        self.assertEqual(process.wait(30), 0, out.text()[-3000:])
        self.assertIn("app_1  | bye", out.text())

    def test_docker_events(self) -> None:
        """
        docker events, streaming while the project goes up and down, shows
        its containers' lives, its network's and its volume's; a filter on
        the project's label keeps its containers' events only.
        """
        self.write(PROJECT)
        name = (
            '{{.Type}} {{.Action}} {{if eq .Type "volume"}}{{.Actor.ID}}'
            "{{else}}{{.Actor.Attributes.name}}{{end}}"
        )
        _, out = self.spawn([DOCKER, "events", "--format", name])
        _, only = self.spawn([DOCKER, "events", "--filter",
                              "label=com.docker.compose.project=proj",
                              "--format", name])  # fmt: skip
        # The CLI prints nothing until the first event: give both a moment
        # to subscribe (a late one would miss the first events).
        time.sleep(1)
        self.assertEqual(self.compose("up", "-d").returncode, 0)
        self.assertEqual(self.compose("down", "-v").returncode, 0)
        for lines in (out, only):
            gone: set[str] = set()

            def both(line: str, gone: set[str] = gone) -> bool:
                if line.startswith("container destroy "):
                    gone.add(line.rsplit(" ", 1)[-1])
                return gone == {"proj_db_1", "proj_web_1"}

            self.assertTrue(lines.until(both), lines.text()[-3000:])
        for name in ("proj_db_1", "proj_web_1"):
            self.assertTrue(
                _in_order(out.lines, [f"container {a} {name}" for a in
                                      ("create", "start", "kill", "die", "stop",
                                       "destroy")]),
                out.text(),
            )  # fmt: skip
        out.until(lambda line: line == "network destroy proj_default", 10)
        out.until(lambda line: line == "volume destroy proj_data", 10)
        network = ["network create proj_default", "network destroy proj_default"]
        self.assertTrue(_in_order(out.lines, network), out.text())
        self.assertIn("volume create proj_data", out.lines)
        self.assertIn("volume destroy proj_data", out.lines)
        self.assertTrue(all(line.startswith("container ") for line in only.lines))
        self.assertIn("container health_status: healthy proj_db_1", only.lines)
