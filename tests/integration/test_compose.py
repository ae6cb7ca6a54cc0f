# -*- test-case-name: tests.integration.test_compose -*-
"""
docker compose against dockserve: Debian's docker-compose 1.29 (what `make
test` installs; the compose v2 plugin is in neither apt nor PyPI here) runs
a project of two services, a healthcheck dependency, a named volume, a
published port and the project's network, in a L{NetworkLab}.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.integration.test_networking import _LabCase

COMPOSE = shutil.which("docker-compose")

#: db serves "dbhello" and is healthy once it answers; web starts only
#: after that, reaches db by its service name and publishes a port. (JSON
#: is YAML: compose reads it.)
_WEB = "mkdir -p /w; echo {text} > /w/index.html; exec httpd -f -p {port} -h /w"
_CHECK = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080 | grep -q dbhello"
PROJECT = json.dumps({
    "version": "2.4",
    "services": {
        "db": {
            "image": "busybox",
            "command": ["sh", "-c", _WEB.format(text="dbhello", port=8080)],
            "healthcheck": {"test": ["CMD-SHELL", _CHECK], "interval": "1s",
                            "retries": 5},
            "volumes": ["data:/data"],
        },
        "web": {
            "image": "busybox",
            "command": ["sh", "-c", _WEB.format(text="webhello", port=80)],
            "ports": ["18090:80"],
            "depends_on": {"db": {"condition": "service_healthy"}},
        },
    },
    "volumes": {"data": {}},
})  # fmt: skip


class ComposeTests(_LabCase):
    skip = _LabCase.skip or (None if COMPOSE else "docker-compose is not installed")

    def compose(
        self, *args: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        # Debian's compose runs on Debian's python3: not with the PYTHONPATH
        # trial -j gives its workers (this interpreter's own library).
        env = {k: v for k, v in self.daemon.env.items()
               if k not in {"PYTHONPATH", "PYTHONHOME"}}  # fmt: skip
        return subprocess.run(
            [str(COMPOSE), "-p", "proj", *args],
            cwd=self.project, env=env, capture_output=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def test_up_exec_down(self) -> None:
        """
        up -d waits for db to be healthy, web reaches db by name and serves
        on its published port; down removes containers, network and volume.
        """
        self.project = Path(self.mktemp()).absolute()
        self.project.mkdir()
        (self.project / "docker-compose.yml").write_text(PROJECT)
        self.addCleanup(self.compose, "down", "-v")
        up = self.compose("up", "-d")
        self.assertEqual(up.returncode, 0, up.stderr.decode())
        self.assertIn("(healthy)", self.ok("ps", "--filter", "name=proj_db_1",
                                            "--format", "{{.Status}}"))  # fmt: skip
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
