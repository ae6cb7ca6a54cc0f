"""Tests for L{dockserve.daemon.build.dockerfile}: what the classic builder reads."""

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.build.dockerfile import (
    DockerfileError,
    go_duration,
    parse,
    parse_trigger,
)

TWO_STAGES = b"""# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS Build
ENV A=1 B="two words"
# a comment

RUN echo one \\
    two
COPY --from=0 --chown=1:1 a b/
RUN <<EOF
echo from heredoc
EOF
FROM --platform=linux/amd64 busybox
COPY --from=build /out /out
ONBUILD RUN touch /trigger
HEALTHCHECK --interval=5s --retries=2 CMD ["true"]
CMD ["/out"]
"""


class ParseTests(SynchronousTestCase):
    def test_stages(self) -> None:
        """ARGs before FROM are meta args; stages are named in lower case."""
        df = parse(TWO_STAGES)
        self.assertEqual([i.original for i in df.meta_args], ["ARG BASE=busybox"])
        self.assertEqual([s.name for s in df.stages], ["build", ""])
        self.assertEqual(df.stages[0].base, "${BASE}")
        self.assertEqual(df.stages[1].platform, "linux/amd64")
        self.assertIs(df.stage("BUILD"), df.stages[0])
        self.assertIsNone(df.stage("nope"))

    def test_instructions(self) -> None:
        """Continuations join, comments go, lines and flags are kept."""
        first = parse(TWO_STAGES).stages[0].instructions
        self.assertEqual([i.keyword for i in first], ["ENV", "RUN", "COPY", "RUN"])
        self.assertEqual(first[1].args, ("echo one     two",))
        self.assertEqual(first[1].line, 7)
        self.assertEqual(first[2].flags, {"from": "0", "chown": "1:1"})
        self.assertEqual(first[3].heredocs[0].content, "echo from heredoc\n")
        self.assertTrue(first[3].heredocs[0].expand)

    def test_onbuild_and_healthcheck(self) -> None:
        second = parse(TWO_STAGES).stages[1].instructions
        self.assertEqual(second[1].trigger, "RUN touch /trigger")
        self.assertEqual(parse_trigger(second[1].trigger).keyword, "RUN")
        self.assertEqual(second[2].flags, {"interval": "5s", "retries": "2"})
        self.assertTrue(second[2].json)
        self.assertEqual(second[2].args, ("CMD", "true"))

    def test_escape_directive(self) -> None:
        df = parse(b"# escape=`\nFROM a\nRUN echo a `\n  b\n")
        self.assertEqual(df.escape, "`")
        self.assertEqual(df.stages[0].instructions[0].args, ("echo a   b",))

    def test_heredoc_quoted_and_chomped(self) -> None:
        """A quoted delimiter does not expand; C{<<-} strips leading tabs."""
        df = parse(b'FROM a\nRUN <<"EOF" <<-END\n$X\nEOF\n\tb\n\tEND\n')
        first, second = df.stages[0].instructions[0].heredocs
        self.assertFalse(first.expand)
        self.assertEqual(second.content, "b\n")
        self.assertTrue(second.chomp)


class ErrorTests(SynchronousTestCase):
    def assert_error(self, text: bytes, message: str) -> None:
        with self.assertRaises(DockerfileError) as e:
            parse(text)
        self.assertEqual(e.exception.message, message)

    def test_dockerd_messages(self) -> None:
        """Each bad Dockerfile gets dockerd's 400 text."""
        line1 = "dockerfile parse error line 1: "
        line2 = "dockerfile parse error line 2: "
        parser = "failed to parse Dockerfile: "
        cases = [
            (b"", "the Dockerfile (Dockerfile) cannot be empty"),
            (b"\n# only comment\n", parser + "file with no instructions"),
            (b"FROM a\nENV A\n", parser + "ENV must have two arguments"),
            (b"FROM a\nFOO bar\n", line2 + "unknown instruction: FOO"),
            (b"FROM a\nCOPY --foo=1 a b\n", line2 + "Unknown flag: foo"),
            (b"FROM a\nCOPY a\n", line2 + "COPY requires at least two arguments, "
             "but only one was provided. Destination could not be determined"),
            (b"FROM a x\n", line1 + "FROM requires either one or three arguments"),
            (b"FROM a AS 1x\n", line1 + 'invalid name for build stage: "1x", name '
             "can't start with a number or contain symbols"),
            (b"FROM a\nHEALTHCHECK FOO x\n",
             line2 + 'Unknown type "FOO" in HEALTHCHECK (try CMD)'),
            (b"FROM a\nONBUILD ONBUILD RUN x\n",
             line2 + "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
            (b"FROM a\nONBUILD FROM b\n",
             line2 + "FROM isn't allowed as an ONBUILD trigger"),
            (b"RUN true\nFROM a\n", "no build stage in current context"),
            (b"FROM a\nWORKDIR\n", line2 + "WORKDIR requires exactly one argument"),
            (b"FROM a\nHEALTHCHECK --interval=0.1ms CMD true\n",
             line2 + 'Interval "interval" cannot be less than 1ms'),
            (b"FROM a\nHEALTHCHECK --retries=0 CMD true\n",
             line2 + "--retries must be at least 1 (not 0)"),
            (b"FROM a\nCOPY --chown 1 a b\n", line2 + "Missing a value on flag: chown"),
            (b"FROM a\nSHELL sh -c\n",
             line2 + "SHELL requires the arguments to be in JSON form"),
            (b"FROM a\nRUN <<EOF\nabc\n", parser + "unterminated heredoc"),
        ]  # fmt: skip
        for text, message in cases:
            self.assert_error(text, message)

    def test_run_flags_parse(self) -> None:
        """RUN --mount parses (the step refuses it: BuildKit only)."""
        df = parse(b"FROM a\nRUN --mount=type=cache,target=/x true\n")
        self.assertEqual(
            df.stages[0].instructions[0].flags, {"mount": "type=cache,target=/x"}
        )


class DurationTests(SynchronousTestCase):
    def test_go_durations(self) -> None:
        self.assertEqual(go_duration("1m30s"), 90.0)
        self.assertAlmostEqual(go_duration("1.5ms"), 0.0015)
        self.assertEqual(go_duration("0"), 0.0)
        for bad in ("", "5", "1x", "s"):
            self.assertRaises(ValueError, go_duration, bad)
