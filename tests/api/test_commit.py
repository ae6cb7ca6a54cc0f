# -*- test-case-name: tests.api.test_commit -*-
"""Tests for L{dockserve.api.commit}, through the router with StubTreq."""

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.router import make_resource
from dockserve.errors import NotFound
from dockserve.testing.backend import MemoryBackend

URL = "http://localhost/v1.50/commit"
IMAGE = "sha256:" + "a" * 64


class _Committer:
    """A commit backend that records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def commit(self, reference: str, **kwargs: Any) -> Deferred[str]:
        self.calls.append({"reference": reference, **kwargs})
        if reference == "nope":
            return fail(NotFound("No such container: nope"))
        return succeed(IMAGE)


class CommitAPITests(SynchronousTestCase):
    """C{POST /commit}."""

    def setUp(self) -> None:
        self.backend = _Committer()
        self.stub = StubTreq(make_resource(MemoryBackend(containers=self.backend)))

    def post(
        self, query: str, data: bytes = b"", content_type: str | None = None
    ) -> tuple[int, Any]:
        headers = {} if content_type is None else {"Content-Type": content_type}
        response = self.successResultOf(
            self.stub.post(f"{URL}?{query}", data=data, headers=headers)
        )
        body = self.successResultOf(response.content())
        return response.code, json.loads(body) if body else None

    def test_cli_request(self) -> None:
        """
        What C{docker commit -a -m -c -c c img:v1} sends: no body, the
        changes repeated; 201 with the image ID.
        """
        code, body = self.post(
            "container=c&repo=img&tag=v1&author=me&comment=note"
            "&changes=CMD+%5B%22cat%22%5D&changes=ENV+A%3D1"
        )
        self.assertEqual((code, body), (201, {"Id": IMAGE}))
        self.assertEqual(
            self.backend.calls,
            [
                {
                    "reference": "c",
                    "repo": "img",
                    "tag": "v1",
                    "author": "me",
                    "comment": "note",
                    "pause": True,
                    "changes": ['CMD ["cat"]', "ENV A=1"],
                    "config": None,
                }
            ],
        )

    def test_pause_values(self) -> None:
        """
        C{pause} is true when absent; when given, false only for dockerd's
        false words (the CLI's C{0}, the SDK's C{False}) or nothing.
        """
        for query, expected in [
            ("", True),
            ("&pause=0", False),
            ("&pause=False", False),
            ("&pause=no", False),
            ("&pause=none", False),
            ("&pause=", False),
            ("&pause=1", True),
            ("&pause=True", True),
            ("&pause=maybe", True),
        ]:
            self.backend.calls.clear()
            code, _ = self.post("container=c" + query)
            self.assertEqual(code, 201)
            self.assertEqual(self.backend.calls[0]["pause"], expected, query)

    def test_config_body(self) -> None:
        """The SDK's C{conf} is handed on as the body's object."""
        code, _ = self.post(
            "container=c", json.dumps({"Cmd": ["x"]}).encode(), "application/json"
        )
        self.assertEqual(code, 201)
        self.assertEqual(self.backend.calls[0]["config"], {"Cmd": ["x"]})

    def test_bad_bodies(self) -> None:
        """
        A body that is no object, or not said to be JSON, is a 400 and
        nothing is committed.
        """
        code, body = self.post("container=c", b"[1]", "application/json")
        self.assertEqual(code, 400)
        self.assertIn("cannot unmarshal array", body["message"])
        code, body = self.post("container=c", b"{}", "text/plain")
        self.assertEqual(code, 400)
        self.assertEqual(
            body["message"],
            "unsupported Content-Type header (text/plain): must be 'application/json'",
        )
        self.assertEqual(self.backend.calls, [])

    def test_backend_errors(self) -> None:
        """The backend's errors are dockerd's statuses."""
        code, body = self.post("container=nope")
        self.assertEqual((code, body), (404, {"message": "No such container: nope"}))

    def test_unversioned(self) -> None:
        """The route is served without a version prefix too."""
        response = self.successResultOf(
            self.stub.post("http://localhost/commit?container=c")
        )
        self.assertEqual(response.code, 201)
