"""
Tests for L{dockserve.tap}: every bad option is one line naming the flag and
exit status 2 (in-process, and once through a real twistd); good options
make the service tree they describe.
"""

import io
import os
import signal
import subprocess

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http
from twisted.web.resource import Resource

from dockserve.server.exposure import ExposureWarning
from dockserve.server.listeners import ListenerService
from dockserve.tap import (
    Options,
    _make_service,
    default_data_root,
    default_unix_socket,
    make_site,
    stop_on_sigint,
)
from tests.integration.harness import ROOT, TWISTD
from tests.server.test_tls import PKI
from tests.tempdirs import temp_dir


class FakeReactor(MemoryReactorClock):
    """A memory reactor with the thread pool the daemon asks for (unused)."""

    def getThreadPool(self) -> ThreadPool:
        return ThreadPool()


class BadOptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = temp_dir(self)
        self.roots = ["--data-root", str(self.directory / "d"),
                      "--exec-root", str(self.directory / "e")]  # fmt: skip

    def fails(self, *args: str) -> str:
        """Parse C{args}: must exit 2 with one line; return that line."""
        stderr = io.StringIO()
        options = Options(environ={}, stderr=stderr)
        with self.assertRaises(SystemExit) as caught:
            options.parseOptions([*args, *self.roots])
        self.assertEqual(caught.exception.code, 2)
        lines = stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1, stderr.getvalue())
        self.assertTrue(lines[0].startswith("dockserve: "))
        return lines[0]

    def test_hosts(self) -> None:
        """Each bad -H form is one line naming -H/--host and what is wrong."""
        for value, fragment in [
            ("127.0.0.1:2375", "PROTO://ADDR"),
            ("udp://127.0.0.1:1", "'udp'"),
            ("tcp://127.0.0.1:0", "-H/--host"),
            ("tcp://127.0.0.1:65536", "-H/--host"),
            ("tcp://127.0.0.1:2375/x", "path element"),
            ("unix:/tmp/x.sock:mode=666", "wider than 0660"),
            ("unix:/tmp/x.sock:mode=0777", "wider than 0660"),
        ]:
            self.assertIn(fragment, self.fails("-H", value))

    def test_tls_files(self) -> None:
        """Missing TLS files are named with their flag."""
        missing = str(self.directory / "nope.pem")
        line = self.fails("--tls", "--tlscert", missing, "--tlskey", missing)
        self.assertIn("--tlscert", line)
        self.assertIn(missing, line)

    def test_each_tls_file_named(self) -> None:
        """
        With every other file good, a missing or unreadable (a directory)
        certificate, key or CA is one line naming its flag and the file.
        """
        pki = PKI(temp_dir(self))
        good = {"--tlscacert": pki.ca, "--tlscert": pki.server_cert,
                "--tlskey": pki.server_key}  # fmt: skip
        for flag in good:
            for bad in (str(self.directory / "missing.pem"), str(self.directory)):
                files = {**good, flag: bad}
                args = [a for pair in files.items() for a in pair]
                line = self.fails("--tlsverify", *args)
                self.assertIn(f"{flag}: cannot read {bad}", line)

    def test_tlsverify_needs_ca(self) -> None:
        """A certificate file that is not PEM is named with --tlscert."""
        cert = self.directory / "garbage.pem"
        cert.write_text("not a certificate")
        line = self.fails(
            "--tlsverify", "--tlscacert", str(self.directory / "ca.pem"),
            "--tlscert", str(cert), "--tlskey", str(cert),
        )  # fmt: skip
        self.assertIn("--tlscert", line)

    def test_network_without_verify(self) -> None:
        """
        A TCP listener on a non-loopback address (wildcards included)
        without --tlsverify is refused, saying why and naming the flags;
        it used to serve anyone, with or without a warning.
        """
        for value in ("tcp://0.0.0.0:2375", "tcp://[::]:2375", "tcp:2375",
                      "tcp://192.0.2.1:2375"):  # fmt: skip
            line = self.fails("-H", value)
            self.assertIn("reachable from the network", line)
            self.assertIn("--tlsverify", line)
            self.assertIn("--insecure-tcp", line)

    def test_tls_without_verify_on_network(self) -> None:
        """
        --tls with --tlsverify=false encrypts but lets anyone in: refused on
        the network too; so is an ssl: description, which has no CA.
        """
        pki = PKI(temp_dir(self))
        files = ["--tlscert", pki.server_cert, "--tlskey", pki.server_key]
        line = self.fails("--tls", "--tlsverify=false", *files,
                          "-H", "tcp://0.0.0.0:2376")  # fmt: skip
        self.assertIn("--insecure-tcp", line)
        line = self.fails(
            "-H", f"ssl:2376:privateKey={pki.server_key}:certKey={pki.server_cert}"
        )  # fmt: skip
        self.assertIn("ssl: descriptions do not verify client certificates", line)

    def test_tls_alone_needs_ca(self) -> None:
        """
        --tls alone verifies clients, as dockerd's does (its --tlsverify
        defaults to on once --tls is given), so it needs the CA.
        """
        pki = PKI(temp_dir(self))
        missing = str(self.directory / "no-ca.pem")
        line = self.fails(
            "--tls", "--tlscert", pki.server_cert, "--tlskey", pki.server_key,
            "--tlscacert", missing,
        )  # fmt: skip
        self.assertIn(f"--tlscacert: cannot read {missing}", line)

    def test_tlsverify_value(self) -> None:
        """--tlsverify=VALUE takes a boolean, as dockerd's flag."""
        self.assertIn("--tlsverify", self.fails("--tlsverify=maybe"))

    def test_levels_and_formats(self) -> None:
        """An unknown --log-level or --log-format is named."""
        self.assertIn("--log-level", self.fails("--log-level", "loud"))
        self.assertIn("--log-format", self.fails("--log-format", "xml"))

    def test_timeouts(self) -> None:
        """--activation-timeout must be above 0, --activation-delay at least 0."""
        self.assertIn("--activation-timeout", self.fails("--activation-timeout", "0"))
        self.assertIn("--activation-timeout", self.fails("--activation-timeout", "x"))
        self.assertIn("--activation-delay", self.fails("--activation-delay", "-1"))

    def test_relative_roots(self) -> None:
        """A relative --data-root is refused, naming the flag."""
        stderr = io.StringIO()
        with self.assertRaises(SystemExit):
            Options(environ={}, stderr=stderr).parseOptions(["--data-root", "rel"])
        self.assertIn("--data-root", stderr.getvalue())

    def test_unknown_group(self) -> None:
        """A group the user named that does not exist is an error."""
        self.assertIn("-G/--group", self.fails("-G", "no-such-group-here"))

    def test_unknown_flag(self) -> None:
        """An unknown flag is one line too, not twistd's whole help."""
        self.assertIn("--frobnicate", self.fails("--frobnicate"))


class GoodOptionTests(SynchronousTestCase):
    def parse(self, *args: str, environ: dict[str, str] | None = None) -> Options:
        options = Options(environ={} if environ is None else environ,
                          stderr=io.StringIO())  # fmt: skip
        directory = str(temp_dir(self))
        options.parseOptions([*args, "--data-root", f"{directory}/d",
                              "--exec-root", f"{directory}/e"])  # fmt: skip
        return options

    def test_default_host(self) -> None:
        """No -H (or unix:// alone): as root, /run/dockserve.sock."""
        self.patch(os, "geteuid", lambda: 0)
        environ = {"XDG_RUNTIME_DIR": "/run/user/1000"}
        for args in ((), ("-H", "unix://")):
            [host] = self.parse(*args, environ=environ)["parsed-hosts"]
            self.assertEqual((host.scheme, host.path), ("unix", "/run/dockserve.sock"))

    def test_default_host_not_root(self) -> None:
        """
        Not root: under XDG_RUNTIME_DIR, as rootless dockerd; without it
        there is nowhere else, so /run/dockserve.sock.
        """
        self.patch(os, "geteuid", lambda: 1000)
        environ = {"XDG_RUNTIME_DIR": "/run/user/1000"}
        [host] = self.parse(environ=environ)["parsed-hosts"]
        self.assertEqual(host.path, "/run/user/1000/dockserve.sock")
        self.assertEqual(default_unix_socket({}), "/run/dockserve.sock")
        self.assertEqual(default_data_root({"XDG_DATA_HOME": "/x"}), "/x/dockserve")

    def test_tlsverify_implies_tls(self) -> None:
        """--tlsverify alone turns TLS on, with client verification."""
        pki = PKI(temp_dir(self))
        options = self.parse(
            "--tlsverify",
            *("--tlscacert", pki.ca),
            *("--tlscert", pki.server_cert),
            *("--tlskey", pki.server_key),
        )
        self.assertTrue(options["tls"])
        self.assertIsNotNone(options["tls-creator"])
        plain = self.parse()
        self.assertFalse(plain["tls"])
        self.assertIsNone(plain["tls-creator"])

    def test_duplicates_once(self) -> None:
        """tcp:// and tcp://localhost:2375 are one listener."""
        options = self.parse("-H", "tcp://", "-H", "tcp://localhost:2375")
        self.assertEqual([h.text for h in options["parsed-hosts"]],
                         ["tcp://localhost:2375"])  # fmt: skip

    def test_service_per_host(self) -> None:
        """
        One listening service per host, all serving one resource, each
        through a site of its own that names its listener (a policy's
        principals are per listener).
        """
        directory = str(temp_dir(self))
        options = self.parse(
            "-H", f"unix://{directory}/a.sock", "-H", "tcp://127.0.0.1:2999",
            "-H", "tcp:2998:interface=127.0.0.1",
        )  # fmt: skip
        service = _make_service(options, FakeReactor())
        listeners = [s for s in service if isinstance(s, ListenerService)]
        self.assertEqual(
            [listener.host for listener in listeners],
            [
                f"unix://{directory}/a.sock",
                "tcp://127.0.0.1:2999",
                "tcp:2998:interface=127.0.0.1",
            ],
        )
        resources = {id(listener._factory.resource) for listener in listeners}
        self.assertEqual(len(resources), 1)
        self.assertEqual(
            [listener._factory.listener for listener in listeners],
            [listener.host for listener in listeners],
        )

    def test_connections_limited_per_listener(self) -> None:
        """
        Each listener holds at most its share of the open files: with 1024
        files and two listeners, (1024 - 256) // 4 each, counted below TLS.
        """
        options = self.parse("-H", "tcp://127.0.0.1:2999",
                             "-H", "tcp://127.0.0.1:2998")  # fmt: skip
        reactor = FakeReactor()
        service = _make_service(options, reactor, open_files=(1024, 1024))
        service.privilegedStartService()
        self.assertEqual(len(reactor.tcpServers), 2)
        for _, factory, _, _ in reactor.tcpServers:
            self.assertEqual(factory._limit.limit, (1024 - 256) // 4)

    def test_insecure_tcp(self) -> None:
        """
        --insecure-tcp lets an unverified network listener start; dockerd's
        warning is then logged at start and every hour (ExposureWarning),
        for loopback at start only.
        """
        options = self.parse("--insecure-tcp", "-H", "tcp://0.0.0.0:2375",
                             "-H", "tcp://127.0.0.1:2376")  # fmt: skip
        service = _make_service(options, FakeReactor())
        [warning] = [s for s in service if isinstance(s, ExposureWarning)]
        self.assertEqual(warning.network, ("tcp://0.0.0.0:2375",))
        self.assertEqual(warning.local, ("tcp://127.0.0.1:2376",))

    def test_verified_no_warning(self) -> None:
        """Under --tlsverify no listener is warned about."""
        pki = PKI(temp_dir(self))
        options = self.parse(
            "--tlsverify", "--tlscacert", pki.ca, "--tlscert", pki.server_cert,
            "--tlskey", pki.server_key, "-H", "tcp://0.0.0.0:2376",
        )  # fmt: skip
        service = _make_service(options, FakeReactor())
        self.assertEqual([s for s in service if isinstance(s, ExposureWarning)], [])

    def test_tls_alone_verifies(self) -> None:
        """--tls alone requires client certificates, as dockerd."""
        pki = PKI(temp_dir(self))
        files = ["--tlscacert", pki.ca, "--tlscert", pki.server_cert,
                 "--tlskey", pki.server_key]  # fmt: skip
        self.assertTrue(self.parse("--tls", *files)["tls-verify"])
        self.assertTrue(self.parse("--tlsverify=true", *files)["tls-verify"])

    def test_tlsverify_false(self) -> None:
        """
        --tlsverify=false (dockerd's spelling) is TLS without client
        certificates: no CA needed, allowed on loopback.
        """
        pki = PKI(temp_dir(self))
        for args in (["--tls", "--tlsverify=false"], ["--tlsverify=0"]):
            options = self.parse(*args, "--tlscert", pki.server_cert,
                                 "--tlskey", pki.server_key,
                                 "--tlscacert", "/nonexistent/ca.pem",
                                 "-H", "tcp://127.0.0.1:2376")  # fmt: skip
            self.assertTrue(options["tls"], args)
            self.assertFalse(options["tls-verify"], args)
            self.assertIsNotNone(options["tls-creator"])


class SiteTests(SynchronousTestCase):
    def test_alpn_http11_only(self) -> None:
        """
        The site offers only HTTP/1.1 over ALPN, even where twisted.web
        would offer h2: hijacked streams need HTTP/1.1.
        """
        self.patch(http, "H2_ENABLED", True)
        site = make_site(Resource())
        self.assertEqual(site.acceptableProtocols(), [b"http/1.1"])

    def test_slow_head_cut(self) -> None:
        """
        A client that sends a request head a byte every 15 s (each byte
        resets Twisted's 60 s idle timer) is cut 60 s after it connected;
        it used to hold its connection for ever.
        """
        clock = Clock()
        site = make_site(Resource())
        site.reactor = clock
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert channel is not None
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /_ping HTTP/1.1\r\n")
        for _ in range(3):
            clock.advance(15)
            channel.dataReceived(b"X")
        self.assertFalse(transport.disconnecting)
        clock.advance(15)
        self.assertTrue(transport.disconnecting)

    def test_head_timeout_setting(self) -> None:
        """
        $DOCKSERVE_HEAD_TIMEOUT sets the deadline (for tests; not a flag);
        a bad value is a usage error naming it.
        """
        directory = temp_dir(self)
        roots = ["--data-root", f"{directory}/d", "--exec-root", f"{directory}/e"]
        options = Options(environ={"DOCKSERVE_HEAD_TIMEOUT": "2.5"},
                          stderr=io.StringIO())  # fmt: skip
        options.parseOptions(roots)
        self.assertEqual(options["head-timeout"], 2.5)
        stderr = io.StringIO()
        with self.assertRaises(SystemExit):
            Options(environ={"DOCKSERVE_HEAD_TIMEOUT": "0"},
                    stderr=stderr).parseOptions(roots)  # fmt: skip
        self.assertIn("$DOCKSERVE_HEAD_TIMEOUT", stderr.getvalue())


class TwistdTests(SynchronousTestCase):
    def run_twistd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TWISTD, "-n", "--pidfile=", "dockserve", *args],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=str(temp_dir(self)),
        )  # fmt: skip

    def test_network_without_verify_exit_2(self) -> None:
        """
        A real twistd asked for a non-loopback address without --tlsverify:
        exit 2 with one line naming --insecure-tcp, before anything is
        bound.  (192.0.2.1, a documentation address, is not this machine's:
        a daemon that did try would fail to bind it rather than listen.)
        """
        roots = temp_dir(self)
        done = self.run_twistd(
            "-H", "tcp://192.0.2.1:2375",
            "--data-root", str(roots / "d"), "--exec-root", str(roots / "e"),
        )  # fmt: skip
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
        self.assertIn("--insecure-tcp", done.stderr)

    def test_bad_host_exit_2(self) -> None:
        """A real twistd: exit 2, one line, no traceback, no help text."""
        done = self.run_twistd("-H", "127.0.0.1:2375")
        self.assertEqual(done.returncode, 2)
        self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
        self.assertIn("-H/--host", done.stderr)
        self.assertNotIn("Traceback", done.stderr + done.stdout)

    def test_help_lists_every_option(self) -> None:
        """--help names every option with a description."""
        done = self.run_twistd("--help")
        self.assertEqual(done.returncode, 0, done.stderr)
        for flag in ("--host", "--tls", "--tlsverify", "--tlscacert", "--tlscert",
                     "--tlskey", "--group", "--api-cors-header", "--debug",
                     "--log-level", "--log-format", "--data-root", "--exec-root",
                     "--no-buffer", "--activation-timeout",
                     "--insecure-tcp"):  # fmt: skip
            line = next(
                (
                    x
                    for x in done.stdout.splitlines()
                    if flag + " " in x or flag + "=" in x
                ),
                "",
            )
            self.assertTrue(line, f"{flag} missing from --help")
            self.assertGreater(len(line.split(flag, 1)[1].split()), 1, line)


class SigintTests(SynchronousTestCase):
    def setUp(self) -> None:
        previous = signal.getsignal(signal.SIGINT)
        self.addCleanup(signal.signal, signal.SIGINT, previous)

    def test_ignored_becomes_default(self) -> None:
        """
        Started with SIGINT ignored (a script's C{dockserve &}), Python's
        default handler is put back, which the reactor then replaces with
        its own that stops the daemon.
        """
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_on_sigint()
        self.assertIs(signal.getsignal(signal.SIGINT), signal.default_int_handler)

    def test_handler_kept(self) -> None:
        """A handler someone installed on purpose (pdb, say) is kept."""

        def handler(signum: int, frame: object) -> None:
            del signum, frame

        signal.signal(signal.SIGINT, handler)
        stop_on_sigint()
        self.assertIs(signal.getsignal(signal.SIGINT), handler)
