# -*- test-case-name: tests.integration.test_rootfs -*-
"""L{dockserve.daemon.rootfs} with the kernel's overlayfs."""

import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon import rootfs


class MountRootfsTests(SynchronousTestCase):
    """Layers stack with the last one on top; changes go to upper."""

    skip = None if os.geteuid() == 0 else "mounting overlayfs needs root"

    def setUp(self) -> None:
        self.base = Path(self.mktemp()).absolute()
        self.target = self.base / "rootfs"
        for sub in ("rootfs", "upper", "work"):
            (self.base / sub).mkdir(parents=True)
        self.addCleanup(rootfs.unmount, self.target)

    def layers(self, count: int, depth: str = "") -> list[str]:
        dirs = []
        for index in range(count):
            layer = self.base / depth / f"layer{index}"
            layer.mkdir(parents=True)
            (layer / "which").write_text(str(index))
            (layer / f"only{index}").write_text("")
            dirs.append(str(layer))
        return dirs

    def test_single_layer(self) -> None:
        """One layer and an empty upper mount; writes land in upper."""
        rootfs.mount_rootfs(
            self.layers(1), self.base / "upper", self.base / "work", self.target
        )
        self.assertEqual((self.target / "which").read_text(), "0")
        (self.target / "new").write_text("x")
        self.assertTrue((self.base / "upper" / "new").exists())
        rootfs.unmount(self.target)
        self.assertFalse(os.path.ismount(self.target))
        rootfs.unmount(self.target)

    def test_many_long_layers(self) -> None:
        """Paths too long for one mount option string still mount, top layer wins."""
        deep = "/".join(["d" * 60] * 3)
        dirs = self.layers(30, deep)
        self.assertGreater(len(":".join(dirs)), 4096)
        rootfs.mount_rootfs(dirs, self.base / "upper", self.base / "work", self.target)
        self.assertEqual((self.target / "which").read_text(), "29")
        self.assertTrue((self.target / "only0").exists())
