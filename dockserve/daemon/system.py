# -*- test-case-name: tests.daemon.test_system -*-
"""Facts about this machine and daemon for C{/info} and C{/version}: placeholder."""

from typing import Any

from dockserve.daemon.config import DaemonConfig


class SystemService:
    """The daemon's answer to C{GET /info}."""

    def __init__(self, config: DaemonConfig) -> None:
        self._config = config

    def info(self) -> dict[str, Any]:
        """A minimal C{/info} body until the full one lands."""
        return {"DockerRootDir": self._config.data_root}
