"""Tests for L{dockserve.api.policy.routes}: every route has a policy name."""

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from dockserve.api import debug
from dockserve.api.policy import routes
from dockserve.api.router import AREAS


def _served() -> list[tuple[str, str]]:
    """(method, handler) of every route the router serves."""
    served = [(r.method, r.handler) for table, _ in AREAS for r in table]
    served += [(r.method, r.handler) for r in debug.ROUTES]
    return served


class RouteNameTests(SynchronousTestCase):
    def test_every_route_named(self) -> None:
        """
        Every route of the route table has a policy name, so a rule can
        name it; a route added without one fails here.
        """
        unnamed = [h for _, h in _served() if h not in routes.BY_HANDLER]
        self.assertEqual(unnamed, [])

    def test_methods_agree(self) -> None:
        """A name's method is its route's (the read-only preset relies on it)."""
        for method, handler in _served():
            name = routes.BY_HANDLER[handler]
            self.assertEqual(routes.ROUTES[name][0], method, handler)

    def test_dockerd_names(self) -> None:
        """The names follow the Engine API's operations."""
        self.assertEqual(
            [
                routes.BY_HANDLER[h]
                for h in ("container_create", "exec_start", "remove_image", "events")
            ],
            ["containers.create", "exec.start", "images.delete", "system.events"],
        )

    def test_pull_or_import(self) -> None:
        """C{POST /images/create} is a pull, or an import with C{fromSrc}."""
        pull = DummyRequest([b"images", b"create"])
        pull.args = {b"fromImage": [b"busybox"]}
        imported = DummyRequest([b"images", b"create"])
        imported.args = {b"fromSrc": [b"-"]}
        self.assertEqual(
            (
                routes.route_name("create_image", pull),
                routes.route_name("create_image", imported),
            ),
            ("images.pull", "images.import"),
        )

    def test_read_only(self) -> None:
        """The read-only preset's routes are those that change nothing."""
        self.assertIn("containers.list", routes.READ_ONLY)
        self.assertIn("system.events", routes.READ_ONLY)
        self.assertNotIn("containers.create", routes.READ_ONLY)
        self.assertNotIn("exec.start", routes.READ_ONLY)
        self.assertEqual(
            {routes.ROUTES[n][0] for n in routes.READ_ONLY}, {"GET", "HEAD"}
        )
