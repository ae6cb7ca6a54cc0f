"""Tests for L{dockserve.daemon.build.output}: dockerd's lines, byte for byte."""

import re
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.build.output import Output

ID = "sha256:" + "3dc38fcfb626" + "0" * 52
CONTAINER = "5dd9c1fda9b9" + "1" * 52


class OutputTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def test_steps(self) -> None:
        """A RUN step's lines as dockerd 28 writes them."""
        out = Output(self.sent.append)
        out.step(2, 3, "RUN echo a")
        out.running(CONTAINER)
        out.stdout(b"a\n")
        out.stderr(b"oops\n")
        out.removed(CONTAINER)
        out.image(ID)
        out.using_cache()
        self.assertEqual(self.sent, [
            {"stream": "Step 2/3 : RUN echo a"},
            {"stream": "\n"},
            {"stream": " ---> Running in 5dd9c1fda9b9\n"},
            {"stream": "a\n"},
            {"stream": "\x1b[91moops\n\x1b[0m"},
            {"stream": " ---> Removed intermediate container 5dd9c1fda9b9\n"},
            {"stream": " ---> 3dc38fcfb626\n"},
            {"stream": " ---> Using cache\n"},
        ])  # fmt: skip

    def test_end(self) -> None:
        """The end of a build; the SDK's regex finds the ID in it."""
        out = Output(self.sent.append)
        out.aux(ID)
        out.unused_args(["Y", "X"])
        out.built(ID)
        out.tagged("t1:latest")
        self.assertEqual(self.sent, [
            {"aux": {"ID": ID}},
            {"stream": "[Warning] One or more build-args [X Y] were not consumed\n"},
            {"stream": "Successfully built 3dc38fcfb626\n"},
            {"stream": "Successfully tagged t1:latest\n"},
        ])  # fmt: skip
        sdk = re.compile(r"(^Successfully built |sha256:)([0-9a-f]+)$")
        match = sdk.search(self.sent[2]["stream"])
        assert match is not None
        self.assertEqual(match.group(2), "3dc38fcfb626")

    def test_triggers(self) -> None:
        out = Output(self.sent.append)
        out.triggers(1)
        out.triggers(2)
        self.assertEqual(
            [m["stream"] for m in self.sent],
            ["# Executing 1 build trigger", "\n", "# Executing 2 build trigger", "s",
             "\n"],
        )  # fmt: skip

    def test_quiet(self) -> None:
        """q=1: the full ID alone, and errors."""
        out = Output(self.sent.append, quiet=True)
        out.step(1, 1, "FROM busybox")
        out.stdout(b"x")
        out.aux(ID)
        out.built(ID)
        out.error("boom")
        self.assertEqual(self.sent, [
            {"stream": ID + "\n"},
            {"errorDetail": {"message": "boom"}, "error": "boom"},
        ])  # fmt: skip

    def test_error_with_code(self) -> None:
        out = Output(self.sent.append)
        text = "The command '/bin/sh -c exit 3' returned a non-zero code: 3"
        out.error(text, 3)
        self.assertEqual(
            self.sent, [{"errorDetail": {"code": 3, "message": text}, "error": text}]
        )
