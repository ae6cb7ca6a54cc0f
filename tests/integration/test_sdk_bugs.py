# -*- test-case-name: tests.integration.test_sdk_bugs -*-
"""
What the Docker SDK for Python's own integration tests expect of a daemon,
found failing by issue 9 (each compared with dockerd 20.10).
"""

from __future__ import annotations

from tests.integration.test_containers import _DaemonCase


class SdkTests(_DaemonCase):
    def test_prune_containers(self) -> None:
        """
        docker-py's test_prune_containers: the exited container is deleted
        with the space it wrote reclaimed (0 before); the running one stays.
        """
        api = self.sdk().api
        wrote = api.create_container("busybox", ["sh", "-c", "echo hello > /data.txt"])
        sleeps = api.create_container("busybox", ["sleep", "9999"])
        self.addCleanup(api.remove_container, sleeps, force=True)
        api.start(wrote)
        api.start(sleeps)
        api.wait(wrote)
        result = api.prune_containers()
        self.assertIn(wrote["Id"], result["ContainersDeleted"])
        self.assertNotIn(sleeps["Id"], result["ContainersDeleted"])
        self.assertGreater(result["SpaceReclaimed"], 0)
