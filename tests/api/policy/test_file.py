"""
Tests for L{dockserve.api.policy.file}: the TOML policy file, read whole,
its mistakes reported with their line and a clear message.
"""

import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.policy.file import PolicyFileError, load, parse
from dockserve.api.policy.lines import KeyLines, split_key
from dockserve.api.policy.model import UNRESTRICTED, BodyRules
from dockserve.api.policy.peer import Peer
from tests.api.policy.rig import tls_peer, unix_peer

#: The example of docs/policy.md, in short.
EXAMPLE = """\
mode = "enforce"
default = "none"

[listener."tcp://0.0.0.0:2376"]
policy = "read-only"

[[principal]]
name = "alice"
policy = "developer"
match = { cn = "alice" }

[[principal]]
name = "ops"
policy = "full"
match = { uid = [0, 1001] }

[policy.developer]
scope = "own"
preset = "read-only"

[[policy.developer.rule]]
name = "no-export"
deny = ["containers.export", "containers.archive"]

[[policy.developer.rule]]
allow = ["containers.*", "exec.*", "images.pull", "volumes.*", "networks.*"]

[policy.developer.body]
capabilities = ["NET_BIND_SERVICE", "cap_chown"]
bind_sources = ["/srv/work"]
registries = ["docker.io/library", "ghcr.io/acme"]

[policy.developer.limits]
requests_per_second = 20
streams = 4
"""


class ErrorTests(SynchronousTestCase):
    """Each mistake names its line and says what was expected."""

    def fails(self, text: str) -> PolicyFileError:
        with self.assertRaises(PolicyFileError) as caught:
            parse(text, path="p.toml")
        return caught.exception

    def assertFails(self, text: str, line: int, *fragments: str) -> None:
        error = self.fails(text)
        self.assertEqual(error.line, line, str(error))
        self.assertTrue(str(error).startswith(f"p.toml:{line}: "), str(error))
        for fragment in fragments:
            self.assertIn(fragment, str(error))

    def test_syntax(self) -> None:
        """Not TOML: tomllib's reason, with its line and column."""
        self.assertFails(
            'mode = "learn"\n\n[policy.a\n', 3, "not valid TOML", "(column "
        )

    def test_unknown_top_key(self) -> None:
        """A misspelt key is named, with the key it most likely meant."""
        self.assertFails(
            "\n\npolcy = 1\n", 3, "polcy: unknown key (did you mean 'policy'?)"
        )

    def test_unknown_body_key(self) -> None:
        """The line of a key inside a table."""
        self.assertFails(
            "[policy.dev]\n[policy.dev.body]\nprivileged = false\nprivilegd = true\n",
            4,
            "policy.dev.body.privilegd: unknown key (did you mean 'privileged'?)",
        )

    def test_wrong_type(self) -> None:
        """A value of the wrong type says what it is and what was expected."""
        self.assertFails(
            '[policy.dev.body]\n# allow\nprivileged = "yes"\n',
            3,
            "policy.dev.body.privileged: expected true or false, got the string 'yes'",
        )

    def test_principal_without_policy(self) -> None:
        """The second [[principal]] header's line, named as principal[2]."""
        self.assertFails(
            '[[principal]]\nname = "a"\npolicy = "full"\n\n[[principal]]\nname = "b"\n',
            5,
            "principal[2]: a principal needs a policy",
        )

    def test_unknown_policy(self) -> None:
        """A principal naming a policy nobody defined."""
        self.assertFails(
            '[[principal]]\nname = "a"\npolicy = "dev"\n',
            3,
            "principal[1].policy: no policy is named 'dev'",
            "full, read-only, none",
        )

    def test_inline_match(self) -> None:
        """A key inside an inline table: the inline table's line."""
        self.assertFails(
            '[[principal]]\nname = "a"\npolicy = "full"\nmatch = { cn = 5 }\n',
            4,
            "principal[1].match.cn: expected a string or an array of strings",
        )

    def test_route_typo(self) -> None:
        """A pattern that names no route, with the name it most likely meant."""
        self.assertFails(
            '[policy.dev]\n[[policy.dev.rule]]\nallow = ["containers.creat"]\n',
            3,
            "'containers.creat' names no route (did you mean 'containers.create'?)",
        )

    def test_allow_and_deny(self) -> None:
        """A rule is one or the other."""
        self.assertFails(
            '[[policy.dev.rule]]\nallow = ["*"]\ndeny = ["*"]\n',
            1,
            "policy.dev.rule[1]: a rule has either allow",
        )

    def test_method(self) -> None:
        """Methods are HTTP's."""
        self.assertFails(
            '[[policy.dev.rule]]\nallow = ["*"]\nmethods = ["FETCH"]\n',
            3,
            "'FETCH' is not a method",
        )

    def test_preset_names(self) -> None:
        """A preset that does not exist; a policy named as a preset."""
        self.assertFails(
            '[policy.dev]\npreset = "all"\n', 2, "no preset is named 'all'"
        )
        self.assertFails("[policy.full]\n", 1, "'full' is a preset's name")

    def test_listener(self) -> None:
        """A listener the daemon does not have, as its canonical check says."""

        def canonical(text: str) -> str:
            raise ValueError(f"{text} is not one of the daemon's -H listeners")

        with self.assertRaises(PolicyFileError) as caught:
            parse(
                '\n[listener."tcp://1.2.3.4:1"]\npolicy = "full"\n',
                path="p.toml",
                canonical=canonical,
            )
        self.assertEqual(
            str(caught.exception),
            'p.toml:2: listener."tcp://1.2.3.4:1": tcp://1.2.3.4:1 is not one of'
            " the daemon's -H listeners",
        )

    def test_unknown_user(self) -> None:
        """Users and groups are looked up when the file is read."""
        self.assertFails(
            '[[principal]]\nname = "a"\npolicy = "full"\n[principal.match]\n'
            'user = "no-such-user-here"\n',
            5,
            "no user is named 'no-such-user-here'",
        )

    def test_body_values(self) -> None:
        """Relative bind sources, unknown namespaces, bad capabilities."""
        self.assertFails(
            '[policy.d.body]\nbind_sources = ["srv"]\n', 2, "'srv' is not an absolute"
        )
        self.assertFails(
            '[policy.d.body]\nhost_namespaces = ["net"]\n',
            2,
            "'net' is not a namespace",
        )
        self.assertFails(
            '[policy.d.body]\ncapabilities = ["NET ADMIN"]\n', 2, "is not a capability"
        )
        self.assertFails(
            '[policy.d.body]\nregistries = ["https://ghcr.io"]\n',
            2,
            "is not a registry",
        )

    def test_limits(self) -> None:
        """A burst needs a rate; streams are whole numbers; rates positive."""
        self.assertFails("[policy.d.limits]\nburst = 3\n", 2, "burst needs requests")
        self.assertFails("[policy.d.limits]\nstreams = 1.5\n", 2, "a whole number")
        self.assertFails(
            "[policy.d.limits]\nrequests_per_second = 0\n", 2, "at least 0.001"
        )

    def test_mode(self) -> None:
        """Only enforce or learn."""
        self.assertFails('mode = "audit"\n', 1, 'expected "enforce" or "learn"')

    def test_unreadable(self) -> None:
        """A file that is not there."""
        with self.assertRaises(PolicyFileError) as caught:
            load("/nonexistent/policy.toml")
        self.assertEqual(
            str(caught.exception),
            "/nonexistent/policy.toml:1: cannot read the policy file: No such file"
            " or directory",
        )


class ReadTests(SynchronousTestCase):
    """What a good file means."""

    def test_example(self) -> None:
        """The example: principals, listener, policies, their decisions."""
        loaded = parse(EXAMPLE)
        developer = loaded.policies["developer"]
        self.assertEqual(
            [
                developer.decide(route)
                for route in (
                    "containers.export",
                    "containers.create",
                    "images.list",
                    "images.push",
                )
            ],
            [
                (False, "developer.rule.no-export"),
                (True, "developer.rule[2]"),
                (True, "developer.preset.read-only"),
                (False, "developer.default"),
            ],
        )
        self.assertTrue(developer.own_scope)
        self.assertEqual(
            developer.body.capabilities, frozenset({"NET_BIND_SERVICE", "CHOWN"})
        )
        self.assertEqual(
            developer.body.registries, ("docker.io/library", "ghcr.io/acme")
        )
        self.assertEqual(
            (developer.limits.rate, developer.limits.burst, developer.limits.streams),
            (20.0, 20.0, 4),
        )
        self.assertFalse(developer.body.privileged)

    def test_principal_order(self) -> None:
        """First matching principal, then the listener's, then the default."""
        loaded = parse(EXAMPLE)
        alice = tls_peer("alice")
        stranger = tls_peer("mallory")
        elsewhere = Peer(listener="tcp://10.0.0.1:2376")
        self.assertEqual(
            [
                loaded.principal_for(p).name
                for p in (alice, stranger, elsewhere, unix_peer(1001))
            ],
            ["alice", "anonymous", "anonymous", "ops"],
        )

    def test_listener_principal(self) -> None:
        """A listener's principal is named after it and has its policy."""
        loaded = parse(EXAMPLE.replace("0.0.0.0:2376", "127.0.0.1:2376"))
        principal = loaded.principal_for(tls_peer("mallory"))
        self.assertEqual(
            (principal.name, principal.policy.name),
            ("tcp://127.0.0.1:2376", "read-only"),
        )

    def test_methods(self) -> None:
        """A rule with methods covers only the routes with those methods."""
        loaded = parse(
            '[[policy.d.rule]]\nallow = ["containers.*"]\nmethods = ["get"]\n'
        )
        policy = loaded.policies["d"]
        self.assertEqual(
            (policy.decide("containers.list")[0], policy.decide("containers.kill")[0]),
            (True, False),
        )

    def test_body_defaults(self) -> None:
        """
        A policy's body rules allow nothing risky unless it says so; one on
        the full preset starts from no restriction.
        """
        loaded = parse('[policy.a]\n[policy.b]\npreset = "full"\n')
        self.assertEqual(loaded.policies["a"].body, BodyRules())
        self.assertEqual(loaded.policies["b"].body, UNRESTRICTED)

    def test_bind_sources_resolved(self) -> None:
        """A bind prefix that is a symlink is kept as what it points to."""
        real = Path(self.mktemp()).absolute()
        real.mkdir()
        link = Path(self.mktemp()).absolute()
        link.symlink_to(real)
        loaded = parse(f'[policy.a.body]\nbind_sources = ["{link}"]\n')
        self.assertEqual(loaded.policies["a"].body.bind_sources, (os.fspath(real),))

    def test_default_none(self) -> None:
        """Without a default, strangers get nothing."""
        loaded = parse("")
        self.assertEqual(
            loaded.default.policy.decide("containers.list"), (False, "none")
        )


class KeyLinesTests(SynchronousTestCase):
    def test_paths(self) -> None:
        """Headers, arrays of tables, dotted and quoted keys."""
        lines = KeyLines(
            '[[principal]]\nname = "a"\n[[principal]]\n[principal.match]\n'
            'cn = "b"\n[policy."read only".body]\na.b = 1\n'
        )
        self.assertEqual(
            [
                lines.line_of(("principal", 0, "name")),
                lines.line_of(("principal", 1)),
                lines.line_of(("principal", 1, "match", "cn")),
                lines.line_of(("policy", "read only", "body", "a", "b")),
                lines.line_of(("nothing",)),
            ],
            [2, 3, 5, 7, 1],
        )

    def test_split_key(self) -> None:
        """Dotted keys with quotes and spaces; not a key."""
        self.assertEqual(split_key(" a . \"b.c\" . 'd' "), ("a", "b.c", "d"))
        self.assertIsNone(split_key("a b"))


class DocsExampleTests(SynchronousTestCase):
    def test_example_reads(self) -> None:
        """The example of docs/policy.md is a good file (its group aside)."""
        docs = Path(__file__).resolve().parents[3] / "docs" / "policy.md"
        text = docs.read_text()
        example = text.split("```toml\n", 1)[1].split("```", 1)[0]
        example = example.replace('group = "developers"', "gid = 4000")
        loaded = parse(example, canonical=lambda listener: listener)
        self.assertEqual(
            [p.name for p in loaded.principals], ["root", "alice", "ci", "dev-team"]
        )
        self.assertEqual(
            loaded.policies["developer"].decide("containers.export"),
            (False, "developer.rule.no-secrets-out"),
        )
        self.assertFalse(loaded.policies["ci"].body.privileged)
        self.assertTrue(loaded.policies["ci"].body.devices)
