# -*- test-case-name: tests.integration.test_testcontainers -*-
"""
testcontainers-python against dockserve, as its users run it: a container
with an exposed port reached at the host and port testcontainers finds
(inspect's NetworkSettings.Ports), and a network with an alias another
container reaches. Its Ryuk reaper is off (its image cannot be pulled
offline). The client runs in the lab's host namespace, where the daemon's
published ports are.
"""

from __future__ import annotations

import subprocess
import sys

from tests.integration.test_networking import _LabCase

#: What a testcontainers user writes (run inside the lab's namespace).
_SCRIPT = """
import os, urllib.request
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.waiting_utils import wait_for_logs

fetch = "printf 'GET / HTTP/1.0\\\\r\\\\n\\\\r\\\\n' | nc svc 80 | tail -1; sleep 1"
web = "mkdir -p /w; echo {text} > /w/index.html; exec httpd -f -vv -p 80 -h /w"
with Network() as net:
    server = (DockerContainer("busybox")
              .with_command(["sh", "-c", web.format(text="tc-hello")])
              .with_exposed_ports(80)
              .with_network(net).with_network_aliases("svc"))
    with server:
        host = server.get_container_host_ip()
        port = server.get_exposed_port(80)
        body = urllib.request.urlopen(f"http://{host}:{port}/", timeout=10).read()
        print("direct", body.decode().strip())
        client = (DockerContainer("busybox")
                  .with_command(["sh", "-c", fetch])
                  .with_network(net))
        with client:
            wait_for_logs(client, "tc-hello", timeout=20)
            print("alias ok")
"""


class TestcontainersTests(_LabCase):
    def test_port_and_alias(self) -> None:
        """get_exposed_port reaches the server; an alias on a Network resolves."""
        try:
            import testcontainers  # noqa: F401, PLC0415
        except ImportError:
            self.skipTest("testcontainers is not installed")
        result = subprocess.run(
            ["ip", "netns", "exec", self.lab.host, sys.executable, "-c", _SCRIPT],
            env=self.daemon.env, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        out = result.stdout.decode()
        self.assertEqual(result.returncode, 0, result.stderr.decode()[-3000:])
        self.assertIn("direct tc-hello", out)
        self.assertIn("alias ok", out)
