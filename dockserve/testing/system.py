# -*- test-case-name: tests.api.test_system -*-
"""
L{MemorySystem}: the system area of L{dockserve.testing.backend.MemoryBackend}.

Fixed, plausible facts in the shape of the real
L{dockserve.daemon.system.SystemService}, for API tests and for people who
test their own Docker clients against a fake daemon.
"""

from typing import Any

from dockserve import API_VERSION, MIN_API_VERSION, __version__


class MemorySystem:
    """
    Answers C{/info} and C{/version} from dictionaries a test may change.

    @ivar info_facts: The body of C{GET /info}.
    @ivar version_facts: The body of C{GET /version}.
    """

    def __init__(self, **info: Any) -> None:
        """
        @param info: Fields of C{GET /info} to set or override.
        """
        engine = {
            "Version": __version__,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "0000000",
            "GoVersion": "python3",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": "6.1.0-memory",
            "BuildTime": "2026-01-01T00:00:00+00:00",
        }
        self.version_facts: dict[str, Any] = {
            "Platform": {"Name": "dockserve"},
            "Components": [
                {
                    "Name": "Engine",
                    "Version": __version__,
                    "Details": {k: v for k, v in engine.items() if k != "Version"},
                }
            ],
            **engine,
        }
        self.info_facts: dict[str, Any] = {
            "ID": "memory",
            "Containers": 0,
            "ContainersRunning": 0,
            "ContainersPaused": 0,
            "ContainersStopped": 0,
            "Images": 0,
            "Driver": "overlay2",
            "DockerRootDir": "/var/lib/dockserve",
            "KernelVersion": "6.1.0-memory",
            "OperatingSystem": "Memory Linux",
            "OSType": "linux",
            "Architecture": "x86_64",
            "NCPU": 1,
            "MemTotal": 1 << 30,
            "ServerVersion": __version__,
            **info,
        }

    def info(self) -> dict[str, Any]:
        """A copy of L{info_facts}."""
        return dict(self.info_facts)

    def version(self) -> dict[str, Any]:
        """A copy of L{version_facts}."""
        return dict(self.version_facts)
