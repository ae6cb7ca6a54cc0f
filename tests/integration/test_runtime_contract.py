"""
The runtime contract (L{tests.daemon.runtime_contract}) against the real
L{dockserve.daemon.runtime.RuncRuntime}: runc under conmon, each container
on an overlayfs root made from /bin/busybox at test time, its bundle
written by the daemon's own spec builder.
"""

import json
import os
import shutil
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from dockserve.daemon import rootfs
from dockserve.daemon.containers.spec import build_spec
from dockserve.daemon.runtime import RuncRuntime
from tests.daemon.runtime_contract import RuntimeContract


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "real containers need root"
    for binary in ("runc", "conmon"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed"
    if not Path("/bin/busybox").exists():
        return "busybox-static is not installed (/bin/busybox)"
    return None


class RuncRuntimeContractTests(RuntimeContract, TestCase):
    """The real runtime keeps the contract."""

    skip = _missing()

    def setUp(self) -> None:
        self.base = Path(self.mktemp()).absolute()
        layer = self.base / "layer"
        (layer / "bin").mkdir(parents=True)
        shutil.copy("/bin/busybox", layer / "bin" / "busybox")
        for name in ("sh", "echo", "cat", "sleep"):
            (layer / "bin" / name).symlink_to("busybox")
        self.layer = layer
        self.runtime = RuncRuntime(self.base / "rt", reactor)
        self.addCleanup(self.runtime.close)
        self.ids: list[str] = []

    def tearDown(self) -> Deferred[None]:
        async def clean() -> None:
            for cid in self.ids:
                await self.runtime.delete(cid, force=True)
                rootfs.unmount(self.base / cid / "rootfs")

        return Deferred.fromCoroutine(clean())

    def bundle(self, container_id: str, argv: tuple[str, ...], **config: Any) -> str:
        directory = self.base / container_id
        for sub in ("rootfs", "upper", "work"):
            (directory / sub).mkdir(parents=True)
        rootfs.mount_rootfs(
            [str(self.layer)],
            directory / "upper",
            directory / "work",
            directory / "rootfs",
        )
        self.ids.append(container_id)
        spec = build_spec(
            container_id=container_id,
            image_config={"config": {"Env": ["PATH=/bin"]}},
            config={"Cmd": list(argv), **config},
            host_config={},
            rootfs=directory / "rootfs",
            container_dir=directory,
        )
        (directory / "config.json").write_text(json.dumps(spec))
        return str(directory)

    def log_path(self, container_id: str) -> str:
        return str(self.base / f"{container_id}.log")
