# -*- test-case-name: tests.api.test_build -*-
"""
The builder's endpoints. There is no builder yet (C{docker build} is its
own issue), hence no build cache: C{POST /build/prune} deletes nothing and
says so, which is true, and lets C{docker system prune} (which calls it
last) finish instead of failing on a 404.
"""

from typing import Any

from twisted.web.server import Request

from dockserve.api.params import query_bool, query_filters
from dockserve.api.route import Route


class BuildAPI:
    """The /build handlers."""

    def build_prune(self, request: Request) -> dict[str, Any]:
        """
        C{POST /build/prune}: C{{"CachesDeleted": [], "SpaceReclaimed": 0}}
        (its parameters are checked as dockerd checks them).
        """
        query_filters(request)
        query_bool(request, "all")
        return {"CachesDeleted": [], "SpaceReclaimed": 0}


ROUTES: list[Route] = [
    Route("POST", "/build/prune", "build_prune"),
]
