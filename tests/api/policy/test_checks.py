"""
Tests for the middleware's checks (L{dockserve.api.middleware.Check}), the
seam the policy's front door uses: run before the handler, able to refuse,
to filter the answer, and to hear how the request ended.
"""

import gc
import json
import weakref
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request

from dockserve import errors
from dockserve.api.middleware import Call, TooManyRequests, status_for, visible
from tests.api.test_middleware import wrap
from tests.api.test_router import fetch


class CheckTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.handled: list[Request] = []
        self.calls: list[Call] = []
        self.finished: list[tuple[int, float]] = []

    def handler(self, request: Request) -> Any:
        self.handled.append(request)
        return {"items": [1, 2, 3], "shows": visible(request) is not None}

    def test_refuse(self) -> None:
        """A check that raises refuses: its error's status, no handler."""

        def check(call: Call) -> None:
            self.calls.append(call)
            call.on_finish.append(lambda *a: self.finished.append(a))
            raise errors.Forbidden("authorization denied by policy rule x: no")

        middleware = wrap(self.handler, now=lambda: 5.0)
        middleware.add_check(check)
        code, _, body = fetch(self, middleware, "GET", "/v1.50/h")
        self.assertEqual(
            (code, json.loads(body)),
            (403, {"message": "authorization denied by policy rule x: no"}),
        )
        self.assertEqual(self.handled, [])
        self.assertEqual([c.handler for c in self.calls], ["h"])
        self.assertEqual(self.finished, [(403, 0.0)])

    def test_shape(self) -> None:
        """A check may filter the answer and say what a stream may show."""

        def check(call: Call) -> None:
            call.shows = lambda _: True
            call.result_filters.append(lambda r: {**r, "items": r["items"][:1]})

        middleware = wrap(self.handler)
        middleware.add_check(check)
        _, _, body = fetch(self, middleware, "GET", "/h")
        self.assertEqual(json.loads(body), {"items": [1], "shows": True})

    def test_no_checks(self) -> None:
        """Without checks nothing is made per request for them."""
        _, _, body = fetch(self, wrap(self.handler), "GET", "/h")
        self.assertEqual(json.loads(body), {"items": [1, 2, 3], "shows": False})

    def test_too_many_requests(self) -> None:
        """Rate limits are a 429."""
        self.assertEqual(status_for(TooManyRequests("slow down")), 429)


class LifetimeTests(SynchronousTestCase):
    def test_request_not_kept(self) -> None:
        """
        A checked request is not kept after it ends: its call holds it, and
        the middleware's state of it is keyed by it weakly (it leaked every
        request: /_ping cost half as much again once a check was added).
        """
        seen: list[weakref.ref[Request]] = []

        def check(call: Call) -> None:
            seen.append(weakref.ref(call.request))

        middleware = wrap(lambda _request: {"ok": True})
        middleware.add_check(check)
        fetch(self, middleware, "GET", "/h")
        gc.collect()
        self.assertEqual([ref() for ref in seen], [None])
