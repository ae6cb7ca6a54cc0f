"""
C{--metrics-addr} on a real daemon: what a Prometheus scrape shows after
the docker CLI has worked on it (requests by route, status and listener,
containers by state, the image store, events), and the metrics listener
answering while the API's connections are still held during start-up.
"""

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.integration.harness import RunningDaemon, start_daemon
from tests.integration.images import have_busybox, import_busybox
from tests.integration.test_front_door import free_port
from tests.tempdirs import temp_dir

#: Seconds a wait for the daemon may take before the test fails.
WAIT = 30.0


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of C{/metrics}: (name, sorted labels) -> value."""
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/metrics", timeout=10
    ) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    name: str,
    **labels: str,
) -> float:
    """A sample's value, 0 when the series does not exist yet."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait until C{condition()} holds, or fail naming C{what}."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class _Case(SynchronousTestCase):
    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("the daemon needs root")
        if shutil.which("docker") is None:
            raise SkipTest("the docker CLI is not installed")
        self.port = free_port()


class ScrapeAfterCLITests(_Case):
    def docker(
        self, daemon: RunningDaemon, *args: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], env=daemon.env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip

    def test_counters_move(self) -> None:
        """
        After CLI commands a scrape shows each request under its route,
        status and listener (the unix socket's -H), containers by state as
        dockerd names them, the image store's bytes and the events.
        """
        if not have_busybox():
            raise SkipTest("busybox-static is not installed")
        daemon = start_daemon(self, ["--metrics-addr", f"127.0.0.1:{self.port}"])
        listener = daemon.docker_host
        before = scrape(self.port)
        for _ in range(3):
            self.assertEqual(self.docker(daemon, "ps").returncode, 0)
        missing = self.docker(daemon, "container", "inspect", "nosuch")
        self.assertEqual(missing.returncode, 1)
        self.assertEqual(self.docker(daemon, "volume", "create", "v1").returncode, 0)
        import_busybox(daemon.docker_host)
        created = self.docker(daemon, "create", "busybox", "true")
        self.assertEqual(created.returncode, 0, created.stderr)
        running = self.docker(daemon, "run", "-d", "busybox", "sleep", "600")
        self.assertEqual(running.returncode, 0, running.stderr)
        paused = self.docker(daemon, "run", "-d", "busybox", "sleep", "600")
        self.assertEqual(
            self.docker(daemon, "pause", paused.stdout.strip()).returncode, 0
        )
        after = scrape(self.port)

        def moved(route: str, status: str) -> float:
            labels = {"route": route, "status": status, "principal": listener}
            name = "dockserve_http_requests_total"
            return value(after, name, **labels) - value(before, name, **labels)

        self.assertEqual(moved("container_list_containers", "200"), 3.0)
        self.assertEqual(moved("container_inspect", "404"), 1.0)
        self.assertEqual(moved("volume_create", "201"), 1.0)
        self.assertGreaterEqual(moved("ping", "200"), 7.0)
        self.assertGreater(
            value(after, "dockserve_http_request_duration_seconds_count",
                  route="container_list_containers"),
            value(before, "dockserve_http_request_duration_seconds_count",
                  route="container_list_containers"),
        )  # fmt: skip
        states = "engine_daemon_container_states_containers"
        self.assertEqual(
            [value(after, states, state=s) for s in ("running", "paused", "stopped")],
            [1.0, 1.0, 1.0],
        )
        self.assertGreater(value(after, "dockserve_image_store_bytes"), 500_000)
        self.assertEqual(value(after, "dockserve_images"), 1.0)
        # volume create, image import, three containers created, two
        # started, one paused: at least eight events.
        self.assertGreaterEqual(
            value(after, "engine_daemon_events_total")
            - value(before, "engine_daemon_events_total"),
            8.0,
        )
        self.assertEqual(
            value(after, "dockserve_listen_buffer_held_connections",
                  listener=listener),
            0.0,
        )  # fmt: skip
        for cid in (running.stdout.strip(), paused.stdout.strip()):
            self.docker(daemon, "rm", "-f", cid)


class HeldWhileRestoringTests(_Case):
    def test_held_connection_seen(self) -> None:
        """
        While the daemon restores (--activation-delay), /metrics already
        answers and counts the API connection its listen buffer holds; once
        it is ready the connection is served and none is held.
        """
        directory = temp_dir(self)
        daemon = RunningDaemon(
            directory,
            ["--metrics-addr", f"127.0.0.1:{self.port}", "--activation-delay", "4"],
        )
        self.addCleanup(daemon.stop)
        daemon.start(wait=False)
        held = "dockserve_listen_buffer_held_connections"
        listener = daemon.docker_host

        def answering() -> bool:
            try:
                scrape(self.port)
            except OSError:
                return False
            return True

        wait_for(answering, "the metrics listener")
        wait_for(lambda: os.path.exists(daemon.socket_path), "the API socket")  # noqa: PTH110
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(client.close)
        client.settimeout(WAIT)
        client.connect(daemon.socket_path)
        client.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
        wait_for(
            lambda: value(scrape(self.port), held, listener=listener) == 1.0,
            "the held connection in the metrics",
        )
        self.assertTrue(client.recv(4096).startswith(b"HTTP/1.1 200 OK"))
        self.assertEqual(value(scrape(self.port), held, listener=listener), 0.0)
