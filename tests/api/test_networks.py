# -*- test-case-name: tests.api.test_networks -*-
"""Tests for L{dockserve.api.networks}."""

import json
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.router import make_resource
from dockserve.daemon.network.service import NetworkService
from dockserve.testing.backend import MemoryBackend
from dockserve.testing.containers import make_service
from tests.api.test_containers import NO_MIDDLEWARE


class NetworksTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp())
        root.mkdir()
        self.service, _, _ = make_service(root)
        self.networks = NetworkService(root / "network", routes=list)
        self.networks.restore()
        self.service.set_networking(self.networks, None)
        self.networks.in_use = self.service.network_in_use
        backend = MemoryBackend(containers=self.service, networks=self.networks)
        self.stub = StubTreq(make_resource(backend))

    def get(self, method: str, path: str) -> tuple[int, Any]:
        response = self.successResultOf(
            self.stub.request(method, "http://localhost/v1.50" + path)
        )
        return response.code, json.loads(self.successResultOf(response.content()))

    def test_list_filters(self) -> None:
        """GET /networks with a name filter."""
        code, listed = self.get("GET", '/networks?filters={"name":["host"]}')
        self.assertEqual((code, [n["Name"] for n in listed]), (200, ["host"]))

    def test_create_inspect(self) -> None:
        """POST /networks/create is 201 with the ID; inspect finds it by name."""
        response = self.successResultOf(
            self.stub.post(
                "http://localhost/v1.50/networks/create",
                json={"Name": "appnet", "Labels": {"a": "b"}},
            )
        )
        made = json.loads(self.successResultOf(response.content()))
        self.assertEqual(response.code, 201)
        code, net = self.get("GET", "/networks/appnet")
        self.assertEqual(
            (code, net["Id"], net["Labels"]), (200, made["Id"], {"a": "b"})
        )


class NetworkErrorTests(NetworksTests):
    skip = NO_MIDDLEWARE

    def test_unknown(self) -> None:
        """An unknown network is 404."""
        self.assertEqual(
            self.get("GET", "/networks/nope"),
            (404, {"message": "network nope not found"}),
        )

    def test_remove_predefined(self) -> None:
        """Removing a predefined network is dockerd's 403."""
        self.assertEqual(
            self.get("DELETE", "/networks/none"),
            (403, {"message": "none is a pre-defined network and cannot be removed"}),
        )
