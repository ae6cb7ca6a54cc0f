"""Tests for L{dockserve.daemon.images.layers}."""

import gzip
import io
import lzma
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

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


def _sample_tar(fmt: int) -> bytes:
    """Every kind of member a save archive may hold, long names included."""
    out = io.BytesIO()
    long_dir = "d" * 120
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in (
            ("manifest.json", b"[]"),
            ("empty", b""),
            (f"{long_dir}/layer.tar", os.urandom(70_000)),
            ("uni/\u00e9t\u00e9.txt", b"summer"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, kind, link in (
            ("adir", tarfile.DIRTYPE, ""),
            ("alink", tarfile.SYMTYPE, f"{long_dir}/layer.tar"),
            ("hard", tarfile.LNKTYPE, "manifest.json"),
            (f"{'s' * 150}", tarfile.SYMTYPE, "t" * 150),
        ):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            tar.addfile(info)
    return out.getvalue()


def _listing(
    members: Any,
) -> list[tuple[str, bytes, str, bytes | None]]:
    return [
        (m.name, m.type, m.linkname, None if data is None else data.read())
        for m, data in members
    ]


class IterTarTests(SynchronousTestCase):
    """L{layers.iter_tar} reads what tarfile reads, faster."""

    def test_same_as_tarfile(self) -> None:
        """PAX and GNU archives: the same members, names, links and data."""
        for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
            raw = _sample_tar(fmt)
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r|") as tar:
                expected = [
                    (
                        m.name,
                        m.type,
                        m.linkname,
                        tar.extractfile(m).read() if m.isreg() else None,  # type: ignore[union-attr]
                    )
                    for m in tar
                ]
            self.assertEqual(_listing(layers.iter_tar(io.BytesIO(raw))), expected)

    def test_unread_data_is_skipped(self) -> None:
        """A member whose data is not read is skipped whole."""
        raw = _sample_tar(tarfile.PAX_FORMAT)
        names = [m.name for m, _ in layers.iter_tar(io.BytesIO(raw))]
        self.assertEqual(names[0], "manifest.json")
        self.assertEqual(len(names), 8)

    def test_short_reads(self) -> None:
        """A source that returns little at a time (a decompressor) is fine."""

        class Trickle(io.BytesIO):
            def read(self, size: int | None = -1) -> bytes:
                return super().read(min(7, size if size and size > 0 else 7))

        raw = _sample_tar(tarfile.PAX_FORMAT)
        self.assertEqual(
            _listing(layers.iter_tar(Trickle(raw))),
            _listing(layers.iter_tar(io.BytesIO(raw))),
        )

    def test_truncated(self) -> None:
        """An archive cut inside a member is an EOFError."""
        raw = _sample_tar(tarfile.PAX_FORMAT)
        with self.assertRaises(EOFError):
            _listing(layers.iter_tar(io.BytesIO(raw[:20_000])))

    def test_garbage(self) -> None:
        """Bytes that are no tar header are a ReadError."""
        with self.assertRaises(tarfile.ReadError):
            list(layers.iter_tar(io.BytesIO(b"garbage" * 100)))

    def test_end(self) -> None:
        """The zero block ends it; nothing after is read; empty is empty."""
        raw = _sample_tar(tarfile.PAX_FORMAT) + b"trailing junk"
        self.assertEqual(len(list(layers.iter_tar(io.BytesIO(raw)))), 8)
        self.assertEqual(list(layers.iter_tar(io.BytesIO(b""))), [])
