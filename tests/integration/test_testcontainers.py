# -*- test-case-name: tests.integration.test_testcontainers -*-
"""
testcontainers-python (4.x) against dockserve, as its users run it: a
container with an exposed port reached at the host and port testcontainers
finds (inspect's NetworkSettings.Ports), a network with an alias another
container reaches, its health wait (C{HealthcheckWaitStrategy}: an image
built with a C{HEALTHCHECK}, and a healthcheck given at create; unhealthy
and missing checks reported as testcontainers words them), and
C{wait_for_logs}. Its Ryuk reaper is off (its image cannot be pulled
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

#: The health wait: ready only after two seconds, so a wait that did not
#: wait would see "starting".
_HEALTH_SCRIPT = """
import os, sys, tempfile, time
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
from testcontainers.core.container import DockerContainer
from testcontainers.core.image import DockerImage
from testcontainers.core.wait_strategies import HealthcheckWaitStrategy

def health(container):
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    return wrapped.attrs["State"].get("Health")

ready = "sleep 2; touch /tmp/ready; echo up; exec sleep 300"
context = tempfile.mkdtemp()
with open(os.path.join(context, "Dockerfile"), "w") as dockerfile:
    dockerfile.write(
        "FROM busybox\\n"
        "HEALTHCHECK --interval=1s --retries=10 CMD test -f /tmp/ready\\n"
        f'CMD ["sh", "-c", "{ready}"]\\n'
    )
with DockerImage(path=context, tag="tc-health:latest") as image:
    with DockerContainer(str(image)).waiting_for(HealthcheckWaitStrategy()) as c:
        state = health(c)
        print("image", state["Status"], state["Log"][-1]["ExitCode"])

check = {"test": ["CMD", "test", "-f", "/tmp/ready"],
         "interval": 1_000_000_000, "retries": 10}
given = (DockerContainer("busybox").with_command(["sh", "-c", ready])
         .with_kwargs(healthcheck=check).waiting_for(HealthcheckWaitStrategy()))
with given:
    print("kwargs", health(given)["Status"])

failing = {"test": ["CMD-SHELL", "echo no; exit 1"],
           "interval": 500_000_000, "retries": 2}
bad = (DockerContainer("busybox").with_command(["sleep", "300"])
       .with_kwargs(healthcheck=failing).waiting_for(HealthcheckWaitStrategy()))
try:
    bad.start()
except RuntimeError as e:
    print("unhealthy:", e)
finally:
    bad.stop()

plain = (DockerContainer("busybox").with_command(["sleep", "300"])
         .waiting_for(HealthcheckWaitStrategy()))
try:
    plain.start()
except RuntimeError as e:
    print("none:", e)
finally:
    plain.stop()
"""

#: wait_for_logs: a line that comes late on stderr, a predicate, the
#: strategy behind it given to the container, and a container that exits
#: first. (LogMessageWaitStrategy's times= is not used by testcontainers
#: 4.15 itself: not tested.)
_LOGS_SCRIPT = """
import os, time, warnings
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
warnings.simplefilter("ignore")
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy
from testcontainers.core.waiting_utils import wait_for_logs

late = "echo starting; sleep 2; echo 'server is ready' >&2; exec sleep 300"
with DockerContainer("busybox").with_command(["sh", "-c", late]) as c:
    waited = wait_for_logs(c, "server is ready", timeout=30, interval=0.2)
    out, err = c.get_logs()
    print("late", waited >= 1.5, out.decode().strip(), "|", err.decode().strip())
    wait_for_logs(c, lambda logs: "starting" in logs, timeout=10)
    print("predicate ok")

ticks = "for i in 1 2 3; do echo tick $i; sleep 0.5; done; exec sleep 300"
ticking = (DockerContainer("busybox").with_command(["sh", "-c", ticks])
           .waiting_for(LogMessageWaitStrategy("tick 3")))
with ticking:
    print("strategy", ticking.get_logs()[0].decode().count("tick"))

gone = DockerContainer("busybox").with_command(["sh", "-c", "echo bye; exit 3"])
with gone:
    try:
        wait_for_logs(gone, "never said", timeout=20, raise_on_exit=True)
    except RuntimeError as e:
        print("exited:", "exited" in str(e).lower() or "exit" in str(e).lower())
"""


class TestcontainersTests(_LabCase):
    def run_script(self, script: str) -> str:
        """C{script} in the lab's host namespace with this interpreter: its stdout."""
        try:
            import testcontainers  # noqa: F401, PLC0415
        except ImportError:
            self.skipTest("testcontainers is not installed")
        result = subprocess.run(
            ["ip", "netns", "exec", self.lab.host, sys.executable, "-c", script],
            env=self.daemon.env, capture_output=True, timeout=180, check=False,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr.decode()[-3000:])
        return result.stdout.decode()

    def test_port_and_alias(self) -> None:
        """get_exposed_port reaches the server; an alias on a Network resolves."""
        out = self.run_script(_SCRIPT)
        self.assertIn("direct tc-hello", out)
        self.assertIn("alias ok", out)

    def test_health_wait(self) -> None:
        """
        HealthcheckWaitStrategy returns once the container is healthy, for
        a HEALTHCHECK in an image testcontainers built and for one given
        at create; an unhealthy container and one without a check raise
        testcontainers' errors, with the check's output.
        """
        out = self.run_script(_HEALTH_SCRIPT)
        self.assertIn("image healthy 0\n", out)
        self.assertIn("kwargs healthy\n", out)
        self.assertIn("unhealthy: Container health check reported unhealthy", out)
        self.assertIn("Exit code: 1, Output: no", out)
        self.assertIn("none: No health check configured for container", out)

    def test_wait_for_logs(self) -> None:
        """
        wait_for_logs waits for a line that comes late on stderr, takes a
        predicate, LogMessageWaitStrategy holds a container's start until
        its line, and a container that exits first is reported.
        """
        out = self.run_script(_LOGS_SCRIPT)
        self.assertIn("late True starting | server is ready\n", out)
        self.assertIn("predicate ok\n", out)
        self.assertIn("strategy 3\n", out)
        self.assertIn("exited: True\n", out)
