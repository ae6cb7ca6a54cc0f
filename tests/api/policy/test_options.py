"""
C{--policy} and C{--audit-log} on C{twistd dockserve}'s command line
(L{dockserve.tap}): a bad file is exit 2 with its line; a good one puts the
front door in front of every listener.
"""

import io
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.middleware import Middleware
from dockserve.api.policy.door import FrontDoor
from dockserve.server.listeners import ListenerService
from dockserve.tap import Options, _make_service
from tests.tempdirs import temp_dir
from tests.test_tap import FakeReactor


class OptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = temp_dir(self)
        self.roots = [
            "--data-root", str(self.directory / "d"),
            "--exec-root", str(self.directory / "e"),
            "-H", f"unix://{self.directory}/a.sock",
            "-H", "tcp://127.0.0.1:2999",
        ]  # fmt: skip

    def policy(self, text: str) -> str:
        path = self.directory / "policy.toml"
        path.write_text(text)
        return str(path)

    def fails(self, *args: str) -> str:
        """Exit 2 with one line; that line."""
        stderr = io.StringIO()
        with self.assertRaises(SystemExit) as caught:
            Options(environ={}, stderr=stderr).parseOptions([*args, *self.roots])
        self.assertEqual(caught.exception.code, 2)
        [line] = stderr.getvalue().splitlines()
        return line

    def test_bad_file(self) -> None:
        """A mistake in the file: its path, line and reason, exit 2."""
        path = self.policy('[policy.dev]\n\n[policy.dev.body]\nprivileged = "no"\n')
        self.assertEqual(
            self.fails("--policy", path),
            f"dockserve: --policy: {path}:4: policy.dev.body.privileged: expected"
            " true or false, got the string 'no'",
        )

    def test_missing_file(self) -> None:
        """A file that is not there."""
        self.assertIn(
            "cannot read the policy file: No such file or directory",
            self.fails("--policy", str(self.directory / "nope.toml")),
        )

    def test_listener_not_ours(self) -> None:
        """A listener this daemon does not have is a mistake, at its line."""
        path = self.policy('[listener."tcp://127.0.0.1:2375"]\npolicy = "full"\n')
        self.assertEqual(
            self.fails("--policy", path),
            f'dockserve: --policy: {path}:1: listener."tcp://127.0.0.1:2375":'
            " tcp://127.0.0.1:2375 is not one of this daemon's listeners"
            f" (-H unix://{self.directory}/a.sock, -H tcp://127.0.0.1:2999)",
        )

    def test_audit_log_path(self) -> None:
        """The audit log must be an absolute path the daemon can open."""
        self.assertEqual(
            self.fails("--audit-log", "audit.jsonl"),
            "dockserve: --audit-log: 'audit.jsonl' is not an absolute path",
        )
        self.assertIn(
            "dockserve: --audit-log: cannot open /nonexistent/dir/audit.jsonl:",
            self.fails("--audit-log", "/nonexistent/dir/audit.jsonl"),
        )

    def test_wired(self) -> None:
        """
        A good file: listener names as -H canonical texts; the front door is
        the API's check and the service's C{front_door}, each listener's
        site names its listener.
        """
        path = self.policy(
            '[listener."tcp://127.0.0.1:2999"]\npolicy = "read-only"\n'
            f'[listener."unix:{self.directory}/a.sock"]\npolicy = "full"\n'
        )
        options = Options(environ={}, stderr=io.StringIO())
        options.parseOptions(
            ["--policy", path, "--audit-log", str(self.directory / "a.jsonl"),
             *self.roots]
        )  # fmt: skip
        self.addCleanup(options["audit"].close)
        self.assertEqual(
            list(options["policy-file"].listeners),
            ["tcp://127.0.0.1:2999", f"unix://{self.directory}/a.sock"],
        )
        service = _make_service(options, FakeReactor())
        self.assertIsInstance(service.front_door, FrontDoor)
        sites = [s._factory for s in service if isinstance(s, ListenerService)]
        self.assertEqual(
            [site.listener for site in sites],
            [f"unix://{self.directory}/a.sock", "tcp://127.0.0.1:2999"],
        )
        api = sites[0].resource
        self.assertIsInstance(api, Middleware)
        self.assertEqual(api._checks, [service.front_door])
        self.assertTrue(Path(self.directory / "a.jsonl").exists())
