"""Tests for L{dockserve.server.hosts}: every C{-H} form, good and bad."""

from twisted.trial.unittest import SynchronousTestCase

from dockserve.server.hosts import InvalidHost, parse, unique

DEFAULT = "/run/dockserve.sock"


def p(value: str):  # type: ignore[no-untyped-def]
    return parse(value, default_unix=DEFAULT)


class DockerFormsTests(SynchronousTestCase):
    def test_tcp(self) -> None:
        """tcp://HOST:PORT: its address and port, loopback, canonical text."""
        host = p("tcp://127.0.0.1:2376")
        self.assertEqual(
            (host.scheme, host.host, host.port), ("tcp", "127.0.0.1", 2376)
        )
        self.assertEqual(host.text, "tcp://127.0.0.1:2376")
        self.assertTrue(host.is_tcp)
        self.assertTrue(host.is_loopback)

    def test_tcp_defaults(self) -> None:
        """C{tcp://} alone is localhost:2375, as dockerd."""
        self.assertEqual(p("tcp://").text, "tcp://localhost:2375")
        self.assertEqual(p("tcp://:2380").text, "tcp://localhost:2380")
        self.assertEqual(p("tcp://10.0.0.1").port, 2375)

    def test_tcp_ipv6(self) -> None:
        """A bracketed IPv6 address is unbracketed to bind and kept in the text."""
        host = p("tcp://[::1]:2375")
        self.assertEqual((host.host, host.text), ("::1", "tcp://[::1]:2375"))
        self.assertTrue(host.is_loopback)

    def test_not_loopback(self) -> None:
        """0.0.0.0 and real addresses are reachable by others."""
        self.assertFalse(p("tcp://0.0.0.0:2375").is_loopback)
        self.assertFalse(p("tcp://192.0.2.1:2375").is_loopback)
        self.assertFalse(p("tcp:2375").is_loopback)
        self.assertTrue(p("tcp:2375:interface=127.0.0.1").is_loopback)

    def test_unix(self) -> None:
        """unix:///path is a socket file, not a network listener."""
        host = p("unix:///tmp/x.sock")
        self.assertEqual((host.scheme, host.path), ("unix", "/tmp/x.sock"))
        self.assertFalse(host.is_tcp)

    def test_unix_default(self) -> None:
        """C{unix://} alone is the default socket."""
        self.assertEqual(p("unix://").path, DEFAULT)

    def test_fd(self) -> None:
        """fd:// is every passed socket, fd://N the one numbered N."""
        self.assertIsNone(p("fd://").fd)
        self.assertEqual(p("fd://3").fd, 3)


class StrportsTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """Twisted endpoint descriptions are kept as given; ssl: does its own TLS."""
        self.assertEqual(p("tcp:2375").endpoint, "tcp:2375")
        self.assertTrue(p("ssl:2376:privateKey=k.pem").encrypted)
        self.assertEqual(
            p("systemd:domain=UNIX:index=0").endpoint, "systemd:domain=UNIX:index=0"
        )

    def test_plain_unix_is_a_unix_socket(self) -> None:
        """C{unix:/path} gets the same socket-file care as C{unix:///path}."""
        host = p("unix:/tmp/y.sock")
        self.assertEqual((host.scheme, host.text), ("unix", "unix:///tmp/y.sock"))

    def test_unix_options_keep_the_care(self) -> None:
        """
        Every strports unix form is a careful unix socket (0660, the group),
        with its keywords: any option used to hand the description to
        Twisted's own unix endpoint, whose socket is 0666.
        """
        for value, path, mode, backlog, lockfile in [
            ("unix:/tmp/y.sock:backlog=50", "/tmp/y.sock", 0o660, 50, False),
            ("unix:/tmp/y.sock:lockfile=1", "/tmp/y.sock", 0o660, None, True),
            ("unix:/tmp/y.sock:lockfile=0", "/tmp/y.sock", 0o660, None, False),
            ("unix:/tmp/y.sock:wantPID=1", "/tmp/y.sock", 0o660, None, True),
            ("unix:path=/tmp/x:mode=600", "/tmp/x", 0o600, None, False),
            ("unix:address=/tmp/x:mode=0660", "/tmp/x", 0o660, None, False),
            ("unix:mode=640:/tmp/x:backlog=5", "/tmp/x", 0o640, 5, False),
            ("unix:/tmp/a\\:b.sock", "/tmp/a:b.sock", 0o660, None, False),
        ]:
            host = p(value)
            self.assertEqual(
                (host.scheme, host.path, host.mode, host.backlog, host.lockfile),
                ("unix", path, mode, backlog, lockfile),
                value,
            )
            self.assertEqual(host.text, f"unix://{path}")
            self.assertFalse(host.is_tcp)

    def test_docker_unix_form_defaults(self) -> None:
        """unix:///path is 0660, the default backlog, no lock file."""
        host = p("unix:///tmp/y.sock")
        self.assertEqual((host.mode, host.backlog, host.lockfile), (0o660, None, False))

    def test_interface_escaped(self) -> None:
        """An escaped IPv6 interface (interface=\\:\\:1) is loopback."""
        self.assertTrue(p("tcp6:2375:interface=\\:\\:1").is_loopback)
        self.assertFalse(p("tcp6:2375:interface=\\:\\:").is_loopback)


class BadHostTests(SynchronousTestCase):
    def assertBad(self, value: str, *fragments: str) -> None:
        with self.assertRaises(InvalidHost) as caught:
            p(value)
        for fragment in fragments:
            self.assertIn(fragment, str(caught.exception))

    def test_no_protocol(self) -> None:
        """The seed's PROTO://ADDR check."""
        self.assertBad("127.0.0.1", "expected PROTO://ADDR")

    def test_unknown_protocol(self) -> None:
        """A protocol that is neither Docker's nor Twisted's is named."""
        self.assertBad("udp://127.0.0.1:2375", "'udp'")
        self.assertBad("http:2375", "'http'")

    def test_bad_ports(self) -> None:
        """Port 0, ports above 65535 and non-numbers are refused in both forms."""
        for value in ("tcp://127.0.0.1:0", "tcp://127.0.0.1:65536",
                      "tcp://127.0.0.1:x", "tcp:0", "tcp:70000"):  # fmt: skip
            with self.assertRaises(InvalidHost, msg=value):
                p(value)

    def test_path_after_port(self) -> None:
        """Nothing may follow tcp://HOST:PORT."""
        self.assertBad("tcp://127.0.0.1:2375/path", "path element")

    def test_relative_unix(self) -> None:
        """A unix socket path must be absolute."""
        self.assertBad("unix://relative.sock", "not absolute")

    def test_unix_mode_wider_than_0660(self) -> None:
        """A mode= that lets anyone but the owner and group in is refused."""
        for mode in ("666", "0777", "662", "1660", "670"):
            self.assertBad(f"unix:/tmp/x.sock:mode={mode}", "0660", f"mode={mode}")

    def test_unix_bad_keywords(self) -> None:
        """Bad values and unknown keywords are named, not left to bind time."""
        self.assertBad("unix:/tmp/x:mode=rw", "mode='rw'")
        self.assertBad("unix:/tmp/x:backlog=many", "backlog='many'")
        self.assertBad("unix:/tmp/x:backlog=0", "backlog='0'")
        self.assertBad("unix:/tmp/x:lockfile=yes", "lockfile='yes'")
        self.assertBad("unix:/tmp/x:colour=blue", "'colour'")
        self.assertBad("unix:mode=600", "no socket path")
        self.assertBad("unix:/tmp/x:/tmp/y", "/tmp/y")
        self.assertBad("unix:path=relative", "not absolute")

    def test_bad_fd(self) -> None:
        """fd://N takes a descriptor number only."""
        for value in ("fd://x", "fd://-1"):
            with self.assertRaises(InvalidHost, msg=value):
                p(value)


class UniqueTests(SynchronousTestCase):
    def test_duplicates_served_once(self) -> None:
        """The same listener given twice, in any spelling, is served once."""
        hosts = [p("tcp://"), p("tcp://localhost:2375"), p("unix:///a"), p("unix:/a")]
        self.assertEqual(
            [h.text for h in unique(hosts)],
            ["tcp://localhost:2375", "unix:///a"],
        )
