"""
C{docker kill} of a paused container, as runc ends one: SIGKILL thaws and
kills it at once, so the resume the service sends after it may find
nothing to resume (C{tests.daemon.runtime_contract}: test_kill_paused).
"""

from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from dockserve.errors import SystemError_
from dockserve.testing.containers import make_service


class KillPausedTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp())
        root.mkdir()
        self.service, self.runtime, _ = make_service(root)
        cid = self.service.create("frozen", {"Image": "busybox", "Cmd": ["sleep"]})
        self.cid = cid["Id"]
        self.successResultOf(self.service.start(self.cid))
        self.successResultOf(self.service.pause(self.cid))

    def test_kill_when_nothing_is_left_to_resume(self) -> None:
        """
        The SIGKILL ended the container before the service's resume, whose
        'container not paused' is no failure of docker kill: it answers
        once the exit is in, with the exit's code.
        """
        self.runtime.deadly = set()  # the exit is reported a moment later
        resumed: list[str] = []

        def resume(container_id: str) -> Deferred[None]:
            resumed.append(container_id)
            from twisted.internet.defer import fail  # noqa: PLC0415

            return fail(SystemError_("container not paused"))

        self.runtime.resume = resume
        killing = self.service.kill(self.cid)
        self.assertNoResult(killing)
        self.runtime.exit(self.cid, 137)
        self.successResultOf(killing)
        self.assertEqual(resumed, [self.cid])
        state = self.service.inspect(self.cid)["State"]
        self.assertEqual((state["Status"], state["ExitCode"]), ("exited", 137))

    def test_kill_ends_paused(self) -> None:
        """With the runtime's own order (exit at the SIGKILL), the same."""
        self.successResultOf(self.service.kill(self.cid))
        state = self.service.inspect(self.cid)["State"]
        self.assertEqual((state["Status"], state["ExitCode"]), ("exited", 137))
