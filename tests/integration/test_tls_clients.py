"""
TLS clients against a real C{twistd -n dockserve --tlsverify}, through the
listen buffer as the daemon runs by default: the Docker SDK for Python (on
urllib3 2, which offers ALPN C{http/1.1}) and curl (which offers C{h2} and
C{http/1.1}) both get through, as they do with dockerd; a client without a
certificate does not.
"""

import os
import shutil
import ssl
import subprocess

import docker
import docker.tls

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.integration.harness import RunningDaemon, start_daemon
from tests.integration.images import have_busybox, import_busybox
from tests.integration.test_front_door import free_port
from tests.server.test_tls import PKI
from tests.tempdirs import temp_dir


class _Case(SynchronousTestCase):
    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("the daemon needs root")
        self.pki = PKI(temp_dir(self))
        self.port = free_port()

    def start(self, *args: str, tls: str = "--tlsverify") -> RunningDaemon:
        """A daemon on TCP 127.0.0.1 under --tlsverify with the test PKI."""
        return start_daemon(
            self,
            [
                "-H", f"tcp://127.0.0.1:{self.port}", tls,
                "--tlscacert", self.pki.ca,
                "--tlscert", self.pki.server_cert,
                "--tlskey", self.pki.server_key,
                *args,
            ],
        )  # fmt: skip

    def sdk(self, *, certificate: bool = True) -> docker.DockerClient:
        # requests prefers these to the session's CA (its issue 3829), and
        # some machines set them: the SDK would then not trust our CA.
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            if name in os.environ:
                self.addCleanup(os.environ.__setitem__, name, os.environ[name])
                del os.environ[name]
        tls = docker.tls.TLSConfig(
            client_cert=(self.pki.client_cert, self.pki.client_key)
            if certificate
            else None,
            ca_cert=self.pki.ca,
            verify=True,
        )
        client = docker.DockerClient(
            base_url=f"https://127.0.0.1:{self.port}", tls=tls, timeout=30
        )
        self.addCleanup(client.close)
        return client


class DockerSDKTests(_Case):
    def test_version_and_list(self) -> None:
        """
        The SDK (urllib3 2 offers ALPN) reads the version and lists
        containers; it failed with TLSV1_ALERT_INTERNAL_ERROR behind the
        listen buffer.
        """
        self.start()
        client = self.sdk()
        self.assertEqual(client.version()["ApiVersion"], "1.50")
        self.assertEqual(client.containers.list(all=True), [])

    def test_run_attached_over_tls(self) -> None:
        """
        docker run through the SDK over TLS: the attach is hijacked below
        the listener's connection count and TLS, and stays quiet longer
        than the request-head deadline (2 s here) without being cut.
        """
        if not have_busybox():
            raise SkipTest("busybox-static is not installed")
        os.environ["DOCKSERVE_HEAD_TIMEOUT"] = "2"
        try:
            daemon = self.start()
        finally:
            del os.environ["DOCKSERVE_HEAD_TIMEOUT"]
        import_busybox(daemon.docker_host)
        output = self.sdk().containers.run(
            "busybox", ["sh", "-c", "sleep 3; echo quiet"], remove=True
        )
        self.assertEqual(output, b"quiet\n")

    def test_cli_run_over_tls(self) -> None:
        """
        The docker CLI's run over --tlsverify prints the container's output:
        the CLI half-closes its side (a TLS close_notify) when it has no
        stdin to send, and the output must still come back, as from dockerd.
        """
        if not have_busybox():
            raise SkipTest("busybox-static is not installed")
        daemon = self.start()
        import_busybox(daemon.docker_host)
        tls = ["--tlsverify", "--tlscacert", self.pki.ca,
               "--tlscert", self.pki.client_cert, "--tlskey", self.pki.client_key,
               "-H", f"tcp://127.0.0.1:{self.port}"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
        result = subprocess.run(
            ["docker", *tls, "run", "--rm", "busybox", "sh", "-c",
             "echo out; sleep 1; echo err >&2; echo done"],
            env=env, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, b"out\ndone\n", daemon.log()[-3000:])
        self.assertEqual(result.stderr, b"err\n")
        piped = subprocess.run(
            ["docker", *tls, "run", "--rm", "-i", "busybox", "wc", "-c"],
            input=b"x" * 100_000, env=env, capture_output=True, timeout=60,
            check=False,
        )  # fmt: skip
        self.assertEqual(piped.stdout.strip(), b"100000", piped.stderr)

    def test_without_certificate_refused(self) -> None:
        """Under --tlsverify a client without a certificate gets nothing."""
        self.start()
        with self.assertRaises((docker.errors.DockerException, ssl.SSLError, OSError)):
            self.sdk(certificate=False).version()

    def test_tls_alone_verifies(self) -> None:
        """
        --tls without --tlsverify verifies clients too, as dockerd's does
        (it let a client without a certificate in); --tlsverify=false opts
        out, with dockerd's warning in the log.
        """
        daemon = self.start(tls="--tls")
        self.assertEqual(self.sdk().version()["ApiVersion"], "1.50")
        with self.assertRaises((docker.errors.DockerException, ssl.SSLError, OSError)):
            self.sdk(certificate=False).version()
        self.assertNotIn("without --tlsverify", daemon.log())
        daemon.stop()
        self.port = free_port()
        daemon = self.start("--tlsverify=false", tls="--tls")
        self.assertEqual(self.sdk(certificate=False).version()["ApiVersion"], "1.50")
        self.assertIn(
            "Binding to IP address without --tlsverify is insecure", daemon.log()
        )


class CurlTests(_Case):
    def setUp(self) -> None:
        super().setUp()
        if shutil.which("curl") is None:
            raise SkipTest("curl is not installed (the Makefile's test packages)")

    def curl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["curl", "-sS", "--max-time", "20", "--cacert", self.pki.ca,
             "--cert", self.pki.client_cert, "--key", self.pki.client_key,
             *args, f"https://127.0.0.1:{self.port}/_ping"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip

    def test_ping(self) -> None:
        """curl (ALPN h2 and http/1.1 offered) gets OK over HTTP/1.1."""
        self.start()
        done = self.curl("-w", "\n%{http_version}")
        self.assertEqual((done.returncode, done.stdout), (0, b"OK\n1.1"), done.stderr)

    def test_plain_http_told(self) -> None:
        """
        curl without TLS to the TLS port gets Go's 400 and its sentence
        (it got an empty reply).
        """
        self.start()
        done = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "-i",
             f"http://127.0.0.1:{self.port}/_ping"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(
            done.stdout,
            b"HTTP/1.0 400 Bad Request\r\n\r\n"
            b"Client sent an HTTP request to an HTTPS server.\n",
        )

    def test_ping_without_buffer(self) -> None:
        """The same with --no-buffer (the site faces TLS directly)."""
        self.start("--no-buffer")
        done = self.curl()
        self.assertEqual((done.returncode, done.stdout), (0, b"OK"), done.stderr)


class SuiteTests(_Case):
    def setUp(self) -> None:
        super().setUp()
        if shutil.which("openssl") is None:
            raise SkipTest("openssl is not installed (the Makefile's test packages)")

    def s_client(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.port}",
             "-CAfile", self.pki.ca, "-cert", self.pki.client_cert,
             "-key", self.pki.client_key, *args],
            input=b"", capture_output=True, timeout=30, check=False,
        )  # fmt: skip

    def test_cbc_refused_gcm_accepted(self) -> None:
        """
        openssl s_client over TLS 1.2: an ECDHE CBC suite is refused, an
        ECDHE AES-GCM suite is taken (the server key is ECDSA; static RSA
        is refused in tests.server.test_tls).
        """
        self.start()
        cbc = self.s_client("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA")
        self.assertNotEqual(cbc.returncode, 0, cbc.stdout)
        gcm = self.s_client("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
        self.assertEqual(gcm.returncode, 0, gcm.stderr)
        self.assertIn(b"ECDHE-ECDSA-AES128-GCM-SHA256", gcm.stdout)
