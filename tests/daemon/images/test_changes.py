"""Tests for L{dockserve.daemon.images.changes}: C{--change} instructions."""

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.images.changes import apply
from dockserve.errors import InvalidParameter


class ApplyTests(SynchronousTestCase):
    """Each instruction as dockerd's C{BuildFromConfig} applies it."""

    def test_cmd_forms(self) -> None:
        """Exec form as given; shell form under C{/bin/sh -c}."""
        self.assertEqual(apply({}, ['CMD ["cat", "/f"]'])["Cmd"], ["cat", "/f"])
        self.assertEqual(
            apply({}, ["CMD echo $HOME"])["Cmd"], ["/bin/sh", "-c", "echo $HOME"]
        )

    def test_empty_cmd(self) -> None:
        """C{CMD} alone is the shell alone, as dockerd makes it."""
        self.assertEqual(apply({}, ["CMD"])["Cmd"], ["/bin/sh", "-c"])

    def test_shell_of_the_config(self) -> None:
        """The shell form runs under the config's C{Shell}."""
        config = {"Shell": ["/bin/bash", "-ec"]}
        self.assertEqual(
            apply(config, ["ENTRYPOINT run"])["Entrypoint"], ["/bin/bash", "-ec", "run"]
        )

    def test_entrypoint_drops_cmd(self) -> None:
        """
        A new entrypoint drops the command it had, unless a C{CMD} came
        before it in the same changes.
        """
        config = {"Cmd": ["sh"], "Entrypoint": None}
        changed = apply(config, ['ENTRYPOINT ["a"]'])
        self.assertEqual((changed["Entrypoint"], changed["Cmd"]), (["a"], None))
        changed = apply(config, ['CMD ["b"]', 'ENTRYPOINT ["a"]'])
        self.assertEqual((changed["Entrypoint"], changed["Cmd"]), (["a"], ["b"]))
        self.assertEqual(config["Cmd"], ["sh"])

    def test_entrypoint_without_cmd(self) -> None:
        """For an import (no config yet) no C{Cmd} appears."""
        self.assertEqual(apply({}, ['ENTRYPOINT ["a"]']), {"Entrypoint": ["a"]})

    def test_env_label_expose_volume(self) -> None:
        """The map and list instructions add to what the config has."""
        changed = apply(
            {"Env": ["A=1", "B=2"], "Labels": {"x": "1"}},
            [
                "ENV A=3 C=4",
                'LABEL y="two words"',
                "EXPOSE 80 53/UDP 8000-8010",
                'VOLUME ["/data", "/logs"]',
                "VOLUME /cache",
            ],
        )
        self.assertEqual(changed["Env"], ["B=2", "A=3", "C=4"])
        self.assertEqual(changed["Labels"], {"x": "1", "y": "two words"})
        self.assertEqual(
            sorted(changed["ExposedPorts"]), ["53/udp", "80/tcp", "8000-8010/tcp"]
        )
        self.assertEqual(sorted(changed["Volumes"]), ["/cache", "/data", "/logs"])

    def test_healthcheck(self) -> None:
        """C{HEALTHCHECK} with its flags; C{NONE} turns it off."""
        changed = apply(
            {},
            ["HEALTHCHECK --interval=3s --retries=2 --start-period=1m CMD curl -f x"],
        )
        self.assertEqual(
            changed["Healthcheck"],
            {
                "Test": ["CMD-SHELL", "curl -f x"],
                "Interval": 3_000_000_000,
                "StartPeriod": 60_000_000_000,
                "Retries": 2,
            },
        )
        changed = apply({}, ['HEALTHCHECK CMD ["true"]'])
        self.assertEqual(changed["Healthcheck"], {"Test": ["CMD", "true"]})
        self.assertEqual(
            apply({}, ["HEALTHCHECK NONE"])["Healthcheck"], {"Test": ["NONE"]}
        )

    def test_errors(self) -> None:
        """Bad changes are 400s with dockerd's words."""
        for change, message in [
            ("RUN x", "run is not a valid change command"),
            ("FROM busybox", "from is not a valid change command"),
            ("ENV", "ENV requires at least one argument"),
            ("EXPOSE abc", "Invalid containerPort: abc"),
            ("EXPOSE", "EXPOSE requires at least one argument"),
            ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
            ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
            ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
            ("HEALTHCHECK RUN x", 'Unknown type "RUN" in HEALTHCHECK (try CMD)'),
            ("HEALTHCHECK --bogus=1 CMD x", "Unknown flag: bogus"),
            ("HEALTHCHECK --interval=soon CMD x", 'time: invalid duration "soon"'),
            ("HEALTHCHECK --timeout=1ns CMD x", 'Interval "timeout" cannot be less'),
            ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
        ]:
            error = self.assertRaises(InvalidParameter, apply, {}, [change])
            self.assertIn(message, error.message)

    def test_lines(self) -> None:
        """
        The changes read as one Dockerfile: a change may hold several
        lines, a backslash goes on, comments and blank lines are skipped.
        """
        changed = apply(
            {},
            ["ENV A=1\n\n# note\nLABEL x=1", "CMD echo \\\n  two"],
        )
        self.assertEqual(changed["Env"], ["A=1"])
        self.assertEqual(changed["Labels"], {"x": "1"})
        self.assertEqual(changed["Cmd"], ["/bin/sh", "-c", "echo   two"])
