# -*- test-case-name: tests.daemon.containers.test_links -*-
"""Tests for L{dockserve.daemon.containers.links}."""

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import links
from dockserve.daemon.containers.links import Link
from dockserve.errors import SystemError_

#: What C{env} printed in a container run by dockerd 20.10 with
#: C{--link rg} to a container with C{--expose 8000-8002 --expose 8003/udp
#: --expose 9000 -e X -e HOME=/h -e E=1} (its address 172.17.0.3).
DOCKERD_RANGE_ENV = """\
RG_PORT=tcp://172.17.0.3:8000
RG_PORT_8000_TCP_START=tcp://172.17.0.3:8000
RG_PORT_8000_TCP_ADDR=172.17.0.3
RG_PORT_8000_TCP_PROTO=tcp
RG_PORT_8000_TCP_PORT_START=8000
RG_PORT_8000_UDP_END=udp://172.17.0.3:8003
RG_PORT_8000_UDP_PORT_END=8003
RG_PORT_8000_TCP=tcp://172.17.0.3:8000
RG_PORT_8000_TCP_PORT=8000
RG_PORT_8001_TCP=tcp://172.17.0.3:8001
RG_PORT_8001_TCP_ADDR=172.17.0.3
RG_PORT_8001_TCP_PORT=8001
RG_PORT_8001_TCP_PROTO=tcp
RG_PORT_8002_TCP=tcp://172.17.0.3:8002
RG_PORT_8002_TCP_ADDR=172.17.0.3
RG_PORT_8002_TCP_PORT=8002
RG_PORT_8002_TCP_PROTO=tcp
RG_PORT_8003_UDP=udp://172.17.0.3:8003
RG_PORT_8003_UDP_ADDR=172.17.0.3
RG_PORT_8003_UDP_PORT=8003
RG_PORT_8003_UDP_PROTO=udp
RG_PORT_9000_TCP=tcp://172.17.0.3:9000
RG_PORT_9000_TCP_ADDR=172.17.0.3
RG_PORT_9000_TCP_PORT=9000
RG_PORT_9000_TCP_PROTO=tcp
RG_NAME=/goofy_austin/rg
RG_ENV_E=1
""".splitlines()


def _as_seen(env: list[str]) -> list[str]:
    """An environment as the process sees it: runc keeps a name's first place."""
    seen: dict[str, str] = {}
    for item in env:
        seen.setdefault(item.partition("=")[0], item)
    return list(seen.values())


class ParseTests(SynchronousTestCase):
    """L{links.parse} reads a C{Links} entry as moby's C{opts.ParseLink}."""

    def test_forms(self) -> None:
        """A name alone is its own alias; the kept form gives its last part."""
        self.assertEqual(links.parse("db"), ("db", "db"))
        self.assertEqual(links.parse("db:alias"), ("db", "alias"))
        self.assertEqual(links.parse("/db:/web/alias"), ("db", "alias"))

    def test_errors(self) -> None:
        """dockerd's 500s, with its words."""
        for value, message in (
            ("", "empty string specified for links"),
            ("a:b:c", "bad format for links: a:b:c"),
        ):
            with self.subTest(value=value):
                error = self.assertRaises(SystemError_, links.parse, value)
                self.assertEqual(error.message, message)


class KeptTests(SynchronousTestCase):
    """Links as a record keeps them (C{/other:/me/alias})."""

    def test_round_trip(self) -> None:
        """The kept form is read back; anything else is left out."""
        kept = links.kept(["/db:/web/db", "/cache:/web/c", "junk", "a:b"])
        self.assertEqual(kept, [Link("/db", "/web/db"), Link("/cache", "/web/c")])
        self.assertEqual([k.stored() for k in kept], ["/db:/web/db", "/cache:/web/c"])
        self.assertEqual(kept[1].alias, "c")
        self.assertEqual(kept[1].parent, "/web")
        self.assertEqual(links.kept(None), [])

    def test_link_name(self) -> None:
        """An alias with a slash makes a deeper name, as dockerd's path.Join."""
        self.assertEqual(links.link_name("/web", "db"), "/web/db")
        self.assertEqual(links.link_name("/web", "a/b"), "/web/a/b")

    def test_renamed(self) -> None:
        """Renaming the other container or the linking one renames the link."""
        kept = [Link("/db", "/web/db"), Link("/cache", "/web/c")]
        self.assertEqual(
            links.renamed(kept, "/db", "/db2"),
            [Link("/db2", "/web/db"), Link("/cache", "/web/c")],
        )
        self.assertEqual(
            links.renamed(kept, "/web", "/site"),
            [Link("/db", "/site/db"), Link("/cache", "/site/c")],
        )


class EnvTests(SynchronousTestCase):
    """L{links.env} is dockerd 20.10's C{Link.ToEnv}."""

    def test_dockerd_range(self) -> None:
        """
        Ports in order (TCP first on a tie), a START/END group for three or
        more in a row (the run goes on across protocols, as dockerd's
        does), the name, and the other's variables but HOME and PATH and
        one without a value: what a process saw under dockerd.
        """
        env = links.env(
            Link("/rg", "/goofy_austin/rg"),
            "172.17.0.3",
            ["X", "HOME=/h", "E=1", "PATH=/usr/bin"],
            ["9000/tcp", "8003/udp", "8001/tcp", "8000/tcp", "8002/tcp"],
        )
        self.assertEqual(_as_seen(env), DOCKERD_RANGE_ENV)
        # dockerd's own list repeats the range's first _ADDR and _PROTO.
        self.assertEqual(len(env), len(DOCKERD_RANGE_ENV) + 2)

    def test_first_port_and_alias(self) -> None:
        """
        The lowest port is C{ALIAS_PORT} (udp 53 before tcp 80); the alias
        is upper case with dashes made underscores; a value keeps its C{=}.
        """
        env = links.env(
            Link("/tgt", "/me/my-db"), "10.0.0.2", ["MULTI=a=b"], ["80/tcp", "53/udp"]
        )
        self.assertEqual(
            env,
            [
                "MY_DB_PORT=udp://10.0.0.2:53",
                "MY_DB_PORT_53_UDP=udp://10.0.0.2:53",
                "MY_DB_PORT_53_UDP_ADDR=10.0.0.2",
                "MY_DB_PORT_53_UDP_PORT=53",
                "MY_DB_PORT_53_UDP_PROTO=udp",
                "MY_DB_PORT_80_TCP=tcp://10.0.0.2:80",
                "MY_DB_PORT_80_TCP_ADDR=10.0.0.2",
                "MY_DB_PORT_80_TCP_PORT=80",
                "MY_DB_PORT_80_TCP_PROTO=tcp",
                "MY_DB_NAME=/me/my-db",
                "MY_DB_ENV_MULTI=a=b",
            ],
        )

    def test_no_ports(self) -> None:
        """Without exposed ports, the name and the environment only."""
        env = links.env(Link("/db", "/web/db"), "10.0.0.2", [], [])
        self.assertEqual(env, ["DB_NAME=/web/db"])

    def test_own_env_wins(self) -> None:
        """The container's own variable wins a name; the links' come first."""
        self.assertEqual(
            links.with_env(["A=mine", "B=2"], ["A=link", "C=3"]),
            ["C=3", "A=mine", "B=2"],
        )


class HostsTests(SynchronousTestCase):
    """The C{/etc/hosts} lines of a link, as dockerd writes and updates them."""

    def test_names(self) -> None:
        """The alias, the other's hostname, its name unless that is the alias."""
        link = Link("/tgt", "/me/al")
        self.assertEqual(
            links.hosts_names(link, "cf424a2e98e7", "/tgt"), "al cf424a2e98e7 tgt"
        )
        same = Link("/tgt", "/me/tgt")
        self.assertEqual(
            links.hosts_names(same, "cf424a2e98e7", "/tgt"), "tgt cf424a2e98e7"
        )

    def test_readdressed(self) -> None:
        """The alias's lines get the new address; no other line changes."""
        text = (
            "127.0.0.1\tlocalhost\n"
            "172.17.0.2\tal cf424a2e98e7 tgt\n"
            "172.17.0.2\talx other\n"
            "172.17.0.4\t2a3a42bf7c22\n"
        )
        self.assertEqual(
            links.hosts_readdressed(text, "al", "172.17.0.5"),
            text.replace("172.17.0.2\tal ", "172.17.0.5\tal "),
        )

    def test_without(self) -> None:
        """C{docker rm --link}: the alias's lines go, the others stay."""
        text = "127.0.0.1\tlocalhost\n172.17.0.2\tal c tgt\n172.17.0.4\tme\n"
        self.assertEqual(
            links.hosts_without(text, "al"), "127.0.0.1\tlocalhost\n172.17.0.4\tme\n"
        )
