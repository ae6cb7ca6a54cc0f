"""Tests for L{dockserve.daemon.images.layers}."""

import gzip
import io
import lzma
import os
import stat
import tarfile
from pathlib import Path

import zstandard

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.images import layers
from dockserve.testing.images import layer_tar


def _entry(
    name: str, kind: bytes = tarfile.REGTYPE, linkname: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


class UnpackTests(SynchronousTestCase):
    """Layers unpack into directories overlayfs can stack."""

    def _unpack(self, data: bytes) -> Path:
        base = Path(self.mktemp())
        base.mkdir()
        tar_path = base / "layer.tar"
        tar_path.write_bytes(data)
        target = base / "out"
        target.mkdir()
        layers.unpack(tar_path, target)
        return target

    def test_files_and_links(self) -> None:
        """Regular files, symlinks and hard links keep their content and kind."""
        data = layer_tar(
            {"etc/motd": b"hi\n"},
            [
                _entry("bin", tarfile.DIRTYPE),
                _entry("bin/sh", tarfile.SYMTYPE, "busybox"),
                _entry("etc/motd2", tarfile.LNKTYPE, "etc/motd"),
            ],
        )
        out = self._unpack(data)
        self.assertEqual((out / "etc/motd").read_bytes(), b"hi\n")
        self.assertEqual((out / "bin/sh").readlink(), Path("busybox"))
        self.assertEqual(
            (out / "etc/motd").stat().st_ino, (out / "etc/motd2").stat().st_ino
        )

    def test_whiteouts(self) -> None:
        """C{.wh.x} becomes a 0/0 character device; C{.wh..wh..opq} the opaque xattr."""
        data = layer_tar(
            {},
            [
                _entry("d", tarfile.DIRTYPE),
                _entry("d/.wh..wh..opq"),
                _entry(".wh.gone"),
            ],
        )
        out = self._unpack(data)
        st = os.lstat(out / "gone")
        self.assertTrue(stat.S_ISCHR(st.st_mode))
        self.assertEqual(st.st_rdev, os.makedev(0, 0))
        self.assertEqual(os.getxattr(out / "d", "trusted.overlay.opaque"), b"y")
        self.assertFalse((out / "d/.wh..wh..opq").exists())

    def test_escapes_are_skipped(self) -> None:
        """Members with C{..}, absolute paths, or a path via a symlink stay inside."""
        outside = Path(self.mktemp()).absolute()
        outside.mkdir()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in (("../evil", b"x"), ("/abs", b"y")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            tar.addfile(_entry("link", tarfile.SYMTYPE, str(outside)))
            info = tarfile.TarInfo("link/pwned")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"z"))
        out = self._unpack(buf.getvalue())
        self.assertTrue((out / "link").is_symlink())
        self.assertFalse((outside / "pwned").exists())
        self.assertTrue((out / "abs").exists())
        self.assertFalse((out.parent / "evil").exists())


class DecompressTests(SynchronousTestCase):
    """Import and load accept layers in every compression Docker accepts."""

    def test_all_compressions(self) -> None:
        """gzip, xz, zstd and none give back the same bytes."""
        raw = layer_tar({"a": b"hello" * 1000})
        for packed in (
            raw,
            gzip.compress(raw),
            lzma.compress(raw),
            zstandard.ZstdCompressor().compress(raw),
        ):
            self.assertEqual(layers.decompressed(io.BytesIO(packed)).read(), raw)

    def test_sniff(self) -> None:
        """The magic numbers name the compression."""
        self.assertEqual(layers.sniff(b"\x1f\x8b\x08"), "gzip")
        self.assertEqual(layers.sniff(b"\xfd7zXZ\x00"), "xz")
        self.assertEqual(layers.sniff(b"\x28\xb5\x2f\xfd"), "zstd")
        self.assertEqual(layers.sniff(b"ustar"), "none")


class DiskSizeTests(SynchronousTestCase):
    """L{layers.disk_size} counts as dockerd's overlay2 C{DiffSize} does."""

    def test_counts_files_links_once_symlinks_by_target(self) -> None:
        """
        Regular files count their size, a hard link's inode once, a symlink
        its target's length; directories and whiteouts nothing.
        """
        root = Path(self.mktemp())
        (root / "d" / "e").mkdir(parents=True)
        (root / "d" / "e" / "f").write_bytes(b"12345")
        (root / "g").write_bytes(b"abc")
        (root / "h").hardlink_to(root / "g")
        (root / "s").symlink_to("d/e/f")
        (root / "sd").symlink_to("d")
        (root / "empty").write_bytes(b"")
        self.assertEqual(layers.disk_size(root), 5 + 3 + 5 + 1)
