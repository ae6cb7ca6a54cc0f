"""
SIGHUP on a real C{twistd -n dockserve --tlsverify}: the TLS material is
read again while clients keep working.  A Docker SDK client loops requests
over its kept-alive connection, another client opens a new TLS connection
for each request, and a third holds one connection across the reloads: no
request fails, new connections get the new certificate, the held one goes
on with the old, a bad file keeps the last good material, and systemd
(C{NOTIFY_SOCKET}) hears C{RELOADING=1} then C{READY=1} for each reload.
"""

import http.client
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.tls
from cryptography import x509

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.integration.harness import start_daemon
from tests.integration.test_front_door import free_port
from tests.server.test_tls_reload import ReloadPKI
from tests.tempdirs import temp_dir

#: Seconds a wait may take before the test fails.
WAIT = 60.0

#: Requests each looping client makes at least, before and after a reload.
ROUNDS = 20


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait until C{condition()} holds, or fail naming C{what}."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Looper(threading.Thread):
    """
    Calls C{request} until stopped, counting what succeeded and keeping
    every failure (a lost request).
    """

    def __init__(self, request: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._request = request
        self.stopping = threading.Event()
        self.done = 0
        self.failures: list[BaseException] = []
        self.results: list[object] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.results.append(self._request())
            except Exception as e:
                self.failures.append(e)
            else:
                self.done += 1


class SighupReloadTests(SynchronousTestCase):
    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("the daemon needs root")
        directory = temp_dir(self)
        self.pki = ReloadPKI(directory)
        self.alice = self.pki.client("alice")
        self.port = free_port()
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(self.notify.close)
        notify_path = str(directory / "notify")
        self.notify.bind(notify_path)
        self.notify.settimeout(WAIT)
        os.environ["NOTIFY_SOCKET"] = notify_path
        try:
            self.daemon = start_daemon(
                self,
                [
                    "-H", f"tcp://127.0.0.1:{self.port}", "--tlsverify",
                    "--tlscacert", self.pki.ca,
                    "--tlscert", self.pki.server_cert,
                    "--tlskey", self.pki.server_key,
                ],
            )  # fmt: skip
        finally:
            del os.environ["NOTIFY_SOCKET"]
        self.assertEqual(self.notify.recv(200), b"READY=1")

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.pki.ca)
        context.load_cert_chain(*self.alice)
        return context

    def new_connection_ping(self) -> int:
        """C{/_ping} on a new TLS connection: the server certificate's serial."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context(), timeout=30
        )
        try:
            connection.request("GET", "/_ping")
            response = connection.getresponse()
            if (response.status, response.read()) != (200, b"OK"):
                raise AssertionError(f"/_ping answered {response.status}")
            assert isinstance(connection.sock, ssl.SSLSocket)
            return serial_of(connection.sock)
        finally:
            connection.close()

    def sdk(self) -> docker.DockerClient:
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            if name in os.environ:
                self.addCleanup(os.environ.__setitem__, name, os.environ[name])
                del os.environ[name]
        tls = docker.tls.TLSConfig(client_cert=self.alice, ca_cert=self.pki.ca,
                                   verify=True)  # fmt: skip
        client = docker.DockerClient(
            base_url=f"https://127.0.0.1:{self.port}", tls=tls, timeout=30
        )
        self.addCleanup(client.close)
        return client

    def sighup(self, log_line: str, count: int) -> None:
        """SIGHUP, and wait until the log has C{log_line} C{count} times."""
        self.daemon.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_for(lambda: self.daemon.log().count(log_line) >= count, log_line)

    def test_reload_under_load(self) -> None:
        """
        Two reloads (a new certificate, then a broken file) while clients
        loop: no request is lost, and each connection sees the certificate
        it should.
        """
        client = self.sdk()
        sdk = Looper(lambda: (client.ping(), client.containers.list()))
        fresh = Looper(self.new_connection_ping)
        held = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context(), timeout=30
        )
        self.addCleanup(held.close)
        held.request("GET", "/_ping")
        self.assertEqual(held.getresponse().read(), b"OK")
        held_socket = held.sock
        assert isinstance(held_socket, ssl.SSLSocket)
        old = self.pki.serial
        self.assertEqual(serial_of(held_socket), old)
        for looper in (sdk, fresh):
            looper.start()
            self.addCleanup(looper.join, WAIT)
            self.addCleanup(looper.stopping.set)
        wait_for(lambda: min(sdk.done, fresh.done) >= ROUNDS, "requests before")

        new = self.pki.issue_server()
        self.sighup("TLS reloaded", 1)
        self.assertEqual(self.notify.recv(200).split(b"\n")[0], b"RELOADING=1")
        self.assertEqual(self.notify.recv(200), b"READY=1")
        counts = (sdk.done, len(fresh.results))
        wait_for(
            lambda: (
                sdk.done >= counts[0] + ROUNDS
                and fresh.results[counts[1] :].count(new) >= ROUNDS
            ),
            "requests after the reload, with the new certificate",
        )

        Path(self.pki.server_cert).write_text("not a certificate\n")
        self.sighup("TLS reload failed", 1)
        self.assertIn(
            f"--tlscert: {self.pki.server_cert} is not a PEM certificate",
            self.daemon.log(),
        )
        self.assertEqual(self.notify.recv(200).split(b"\n")[0], b"RELOADING=1")
        self.assertEqual(self.notify.recv(200), b"READY=1")
        counts = (sdk.done, len(fresh.results))
        wait_for(
            lambda: (
                sdk.done >= counts[0] + ROUNDS
                and len(fresh.results) >= counts[1] + ROUNDS
            ),
            "requests after the failed reload",
        )
        for looper in (sdk, fresh):
            looper.stopping.set()
            looper.join(WAIT)
        self.assertEqual((sdk.failures, fresh.failures), ([], []))
        # The last good material stays: every new connection after the
        # first reload got the new certificate, none the old.
        first_new = fresh.results.index(new)
        self.assertEqual(set(fresh.results[first_new:]), {new})
        self.assertEqual(set(fresh.results[:first_new]), {old})
        # The connection opened before both reloads is still served, with
        # the certificate it was given.
        held.request("GET", "/_ping")
        self.assertEqual(held.getresponse().read(), b"OK")
        self.assertIs(held.sock, held_socket)
        self.assertEqual(serial_of(held_socket), old)


def serial_of(tls: ssl.SSLSocket) -> int:
    """The serial number of the certificate the server gave C{tls}."""
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number
