"""
Tests for L{dockserve.daemon.images.layers.unpack} against hostile layers:
nothing a layer creates (a symlink, a whiteout) may lead an unpack step
outside the layer's own directory (review findings 2, 3 and 12).
"""

import errno
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from dockserve.daemon.images import layers
from dockserve.errors import InvalidParameter


def _member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    linkname: str = "",
    *,
    mode: int | None = None,
    mtime: int = 1_600_000_000,
    xattrs: dict[str, str] | None = None,
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = (0o755 if kind == tarfile.DIRTYPE else 0o644) if mode is None else mode
    info.mtime = mtime
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    return info


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is None:
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _LayerCase(SynchronousTestCase):
    """
    A temporary C{layers/} directory holding a sibling layer and the work
    directory being unpacked, and a victim directory outside both.
    """

    def setUp(self) -> None:
        self.base = Path(self.mktemp()).absolute()
        self.layers = self.base / "layers"
        self.sibling = self.layers / "sibling"
        (self.sibling / "bin").mkdir(parents=True)
        (self.sibling / "bin" / "sh").write_bytes(b"#!")
        self.out = self.layers / "work"
        self.out.mkdir()
        self.victim = self.base / "victim"
        self.victim.mkdir()
        (self.victim / "secret").write_bytes(b"precious")
        os.chmod(self.victim, 0o750)  # noqa: PTH101, S103 - a test victim
        os.utime(self.victim, (1_000_000_000, 1_000_000_000))
        self.victim_stat = os.stat(self.victim)  # noqa: PTH116

    def unpack(self, data: bytes) -> Path:
        """Unpack C{data} into the work directory."""
        tar_path = self.base / "layer.tar"
        tar_path.write_bytes(data)
        layers.unpack(tar_path, self.out)
        return self.out

    def assertVictimUntouched(self) -> None:
        """The victim directory has its mode, times, files and no xattrs."""
        now = os.stat(self.victim)  # noqa: PTH116
        self.assertEqual(oct(now.st_mode), oct(self.victim_stat.st_mode))
        self.assertEqual(now.st_mtime_ns, self.victim_stat.st_mtime_ns)
        self.assertEqual((now.st_uid, now.st_gid), (0, 0))
        self.assertEqual(_names(self.victim), ["secret"])
        self.assertEqual(os.listxattr(self.victim), [])
        self.assertEqual((self.victim / "secret").read_bytes(), b"precious")
        self.assertEqual(os.stat(self.victim / "secret").st_nlink, 1)  # noqa: PTH116

    def assertSiblingUntouched(self) -> None:
        """The other layer next to the work directory is still whole."""
        self.assertEqual((self.sibling / "bin" / "sh").read_bytes(), b"#!")


class SymlinkTests(_LayerCase):
    """No step follows a symlink that the layer created (finding 2)."""

    def test_directory_over_symlink(self) -> None:
        """
        A directory member over a symlink of the same name replaces the
        link, as dockerd does: the directory the link named keeps its mode
        and time, and the new directory has the member's.
        """
        self.unpack(
            _tar(
                (_member("x", tarfile.SYMTYPE, str(self.victim)), None),
                (_member("x", tarfile.DIRTYPE, mode=0o6777, mtime=0), None),
            )
        )
        self.assertVictimUntouched()
        made = os.lstat(self.out / "x")
        self.assertTrue(stat.S_ISDIR(made.st_mode))
        self.assertEqual(stat.S_IMODE(made.st_mode), 0o6777)
        self.assertEqual(made.st_mtime, 0)

    def test_directory_over_relative_symlink(self) -> None:
        """A relative link inside the layer is replaced too, not followed."""
        self.unpack(
            _tar(
                (_member("real", tarfile.DIRTYPE, mode=0o755, mtime=5), None),
                (_member("x", tarfile.SYMTYPE, "real"), None),
                (_member("x", tarfile.DIRTYPE, mode=0o700, mtime=7), None),
            )
        )
        real = os.lstat(self.out / "real")
        self.assertEqual((stat.S_IMODE(real.st_mode), real.st_mtime), (0o755, 5))
        made = os.lstat(self.out / "x")
        self.assertTrue(stat.S_ISDIR(made.st_mode))
        self.assertEqual((stat.S_IMODE(made.st_mode), made.st_mtime), (0o700, 7))

    def test_xattr_through_symlink(self) -> None:
        """Attributes of a directory member never reach a link's target."""
        self.unpack(
            _tar(
                (_member("x", tarfile.SYMTYPE, str(self.victim)), None),
                (
                    _member(
                        "x",
                        tarfile.DIRTYPE,
                        mode=0o777,
                        xattrs={"user.pwned": "1", "trusted.pwned": "1"},
                    ),
                    None,
                ),
            )
        )
        self.assertVictimUntouched()
        self.assertEqual(os.getxattr(self.out / "x", "user.pwned"), b"1")

    def test_file_through_symlinked_parent(self) -> None:
        """
        A file under a symlink to an outside directory is never written
        there, whether the link is absolute or climbs with C{..}.
        """
        self.unpack(
            _tar(
                (_member("abs", tarfile.SYMTYPE, str(self.victim)), None),
                (_member("abs/pwned"), b"x"),
                (_member("abs/secret"), b"overwritten"),
                (_member("rel", tarfile.SYMTYPE, "../../victim"), None),
                (_member("rel/pwned"), b"x"),
                (_member("d", tarfile.DIRTYPE), None),
                (_member("d/up", tarfile.SYMTYPE, "../../../../victim"), None),
                (_member("d/up/pwned"), b"x"),
            )
        )
        self.assertVictimUntouched()
        self.assertTrue((self.out / "abs").is_symlink())

    def test_symlinked_parent_resolves_inside_the_layer(self) -> None:
        """
        A parent that is a symlink resolves as in a chroot at the layer:
        an absolute link names the layer's own directory.
        """
        self.unpack(
            _tar(
                (_member("usr", tarfile.DIRTYPE), None),
                (_member("usr/lib", tarfile.DIRTYPE), None),
                (_member("lib", tarfile.SYMTYPE, "/usr/lib"), None),
                (_member("lib/libc.so"), b"elf"),
                (_member("lib64", tarfile.SYMTYPE, "usr/../usr/lib"), None),
                (_member("lib64/ld.so"), b"ld"),
                (_member("up", tarfile.SYMTYPE, "../../../../usr"), None),
                (_member("up/share", tarfile.DIRTYPE, mode=0o700), None),
            )
        )
        self.assertEqual((self.out / "usr/lib/libc.so").read_bytes(), b"elf")
        self.assertEqual((self.out / "usr/lib/ld.so").read_bytes(), b"ld")
        self.assertTrue((self.out / "lib").is_symlink())
        self.assertEqual(stat.S_IMODE(os.lstat(self.out / "usr/share").st_mode), 0o700)
        self.assertFalse((self.layers / "usr").exists())

    def test_hard_link_through_symlink(self) -> None:
        """A hard link whose target path crosses a link never links a host file."""
        self.unpack(
            _tar(
                (_member("s", tarfile.SYMTYPE, str(self.victim)), None),
                (_member("h", tarfile.LNKTYPE, "s/secret"), None),
                (_member("h2", tarfile.LNKTYPE, "../victim/secret"), None),
                (_member("h3", tarfile.LNKTYPE, str(self.victim / "secret")), None),
            )
        )
        self.assertVictimUntouched()
        for name in ("h", "h2", "h3"):
            self.assertFalse(os.path.lexists(self.out / name))

    def test_hard_link_to_a_symlink_links_the_symlink(self) -> None:
        """A hard link to a symlink links the symlink itself, as link(2) does."""
        self.unpack(
            _tar(
                (_member("s", tarfile.SYMTYPE, str(self.victim / "secret")), None),
                (_member("h", tarfile.LNKTYPE, "s"), None),
            )
        )
        self.assertTrue((self.out / "h").is_symlink())
        self.assertVictimUntouched()

    def test_file_over_symlink(self) -> None:
        """A file member over a symlink replaces the link, not its target."""
        self.unpack(
            _tar(
                (_member("s", tarfile.SYMTYPE, str(self.victim / "secret")), None),
                (_member("s", mode=0o4755), b"new"),
            )
        )
        self.assertVictimUntouched()
        self.assertEqual((self.out / "s").read_bytes(), b"new")
        self.assertEqual(stat.S_IMODE(os.lstat(self.out / "s").st_mode), 0o4755)

    def test_device_and_fifo_over_symlink(self) -> None:
        """Special files over a symlink replace it and take their mode there."""
        self.unpack(
            _tar(
                (_member("f", tarfile.SYMTYPE, str(self.victim)), None),
                (_member("f", tarfile.FIFOTYPE, mode=0o640), None),
                (_member("c", tarfile.SYMTYPE, str(self.victim)), None),
                (_member("c", tarfile.CHRTYPE, mode=0o600), None),
            )
        )
        self.assertVictimUntouched()
        self.assertTrue(stat.S_ISFIFO(os.lstat(self.out / "f").st_mode))
        self.assertEqual(stat.S_IMODE(os.lstat(self.out / "f").st_mode), 0o640)
        self.assertTrue(stat.S_ISCHR(os.lstat(self.out / "c").st_mode))

    def test_opaque_and_whiteout_through_symlinked_parent(self) -> None:
        """
        A whiteout or opaque marker under a link to an outside directory
        touches nothing there.
        """
        self.unpack(
            _tar(
                (_member("d", tarfile.SYMTYPE, str(self.victim)), None),
                (_member("d/.wh..wh..opq"), b""),
                (_member("d/.wh.secret"), b""),
            )
        )
        self.assertVictimUntouched()

    def test_symlink_loop(self) -> None:
        """A parent that is a loop of links skips its member, as ELOOP would."""
        self.unpack(
            _tar(
                (_member("a", tarfile.SYMTYPE, "b"), None),
                (_member("b", tarfile.SYMTYPE, "a"), None),
                (_member("a/f"), b"x"),
                (_member("ok"), b"y"),
            )
        )
        self.assertEqual((self.out / "ok").read_bytes(), b"y")
        self.assertFalse(os.path.lexists(self.out / "f"))

    def test_file_as_parent(self) -> None:
        """A member under a regular file has no place and is skipped."""
        self.unpack(_tar((_member("f"), b"1"), (_member("f/g"), b"2")))
        self.assertEqual((self.out / "f").read_bytes(), b"1")

    def test_directory_cache_follows_replacement(self) -> None:
        """
        A directory replaced by a link later in the layer is resolved
        again, not reused from what the unpacker remembered.
        """
        self.unpack(
            _tar(
                (_member("a", tarfile.DIRTYPE), None),
                (_member("a/one"), b"1"),
                (_member("b", tarfile.DIRTYPE), None),
                (_member("a", tarfile.SYMTYPE, "b"), None),
                (_member("a/two"), b"2"),
                (_member("a", tarfile.DIRTYPE), None),
                (_member("a/three"), b"3"),
            )
        )
        self.assertEqual(_names(self.out / "a"), ["three"])
        self.assertEqual(_names(self.out / "b"), ["two"])


class WhiteoutTests(_LayerCase):
    """Whiteouts delete only inside the layer being unpacked (finding 3)."""

    def test_dot_dot_whiteout_at_top(self) -> None:
        """
        C{.wh...} (a whiteout of C{..}) is refused, as containerd refuses
        it: the sibling layers and the work directory stay.
        """
        for name in (".wh...", ".wh..", ".wh.", "d/.wh...", "d/.wh.."):
            e = self.assertRaises(
                InvalidParameter,
                self.unpack,
                _tar((_member("d", tarfile.DIRTYPE), None), (_member(name), b"")),
            )
            self.assertEqual(
                e.message, f"invalid whiteout name: {name.rpartition('/')[2]}"
            )
            self.assertSiblingUntouched()
            self.assertTrue(self.out.is_dir())
            self.assertTrue((self.out / "d").is_dir())
        self.assertVictimUntouched()

    def test_whiteout_becomes_device(self) -> None:
        """A good whiteout still replaces what the layer had with a 0/0 device."""
        self.unpack(
            _tar(
                (_member("d", tarfile.DIRTYPE), None),
                (_member("d/x", tarfile.DIRTYPE), None),
                (_member("d/x/y"), b"y"),
                (_member("d/.wh.x"), b""),
                (_member("d/.wh.z"), b""),
            )
        )
        for name in ("x", "z"):
            info = os.lstat(self.out / "d" / name)
            self.assertTrue(stat.S_ISCHR(info.st_mode))
            self.assertEqual(info.st_rdev, 0)

    def test_whiteout_of_a_symlink_removes_the_link(self) -> None:
        """A whiteout over a link to a directory removes the link, not the directory."""
        self.unpack(
            _tar(
                (_member("l", tarfile.SYMTYPE, str(self.victim)), None),
                (_member(".wh.l"), b""),
            )
        )
        self.assertVictimUntouched()
        self.assertTrue(stat.S_ISCHR(os.lstat(self.out / "l").st_mode))

    def test_aufs_metadata_is_skipped(self) -> None:
        """AUFS metadata (C{.wh..wh.plnk}...) is not taken for a whiteout."""
        self.unpack(_tar((_member(".wh..wh.plnk", tarfile.DIRTYPE), None)))
        self.assertEqual(_names(self.out), [])

    def test_opaque_on_the_resolved_parent(self) -> None:
        """The opaque marker sets the xattr on the directory it is in."""
        self.unpack(
            _tar(
                (_member("usr", tarfile.DIRTYPE), None),
                (_member("lib", tarfile.SYMTYPE, "/usr"), None),
                (_member("lib/.wh..wh..opq"), b""),
                (_member(".wh..wh..opq"), b""),
            )
        )
        self.assertEqual(os.getxattr(self.out / "usr", "trusted.overlay.opaque"), b"y")
        self.assertEqual(os.getxattr(self.out, "trusted.overlay.opaque"), b"y")
        self.assertSiblingUntouched()


class SparseTests(SynchronousTestCase):
    """Sparse members keep their holes (finding 12)."""

    def _sparse_tar(self, *options: str) -> tuple[Path, bytes]:
        if shutil.which("tar") is None:
            raise SkipTest("no GNU tar to write a sparse archive")
        base = Path(self.mktemp()).absolute()
        src = base / "src"
        src.mkdir(parents=True)
        head, tail = b"head" * 1000, b"tail" * 1000
        with (src / "sp").open("wb") as f:
            f.write(head)
            f.seek((4 << 30) - len(tail))
            f.write(tail)
        tar_path = base / "sp.tar"
        subprocess.run(
            ["tar", "-C", str(src), "--sparse", *options, "-cf", str(tar_path), "sp"],
            check=True,
        )
        (src / "sp").unlink()
        return tar_path, head + tail

    def _check(self, *options: str) -> None:
        tar_path, content = self._sparse_tar(*options)
        self.assertLess(tar_path.stat().st_size, 64 << 10)
        out = tar_path.parent / "out"
        out.mkdir()
        layers.unpack(tar_path, out)
        info = os.lstat(out / "sp")
        self.assertEqual(info.st_size, 4 << 30)
        self.assertLess(info.st_blocks * 512, 1 << 20)
        with (out / "sp").open("rb") as f:
            self.assertEqual(f.read(4000), content[:4000])
            f.seek(1 << 30)
            self.assertEqual(f.read(16), b"\0" * 16)
            f.seek((4 << 30) - 4000)
            self.assertEqual(f.read(), content[4000:])

    def test_gnu_sparse(self) -> None:
        """A 4 GiB GNU sparse member of a tiny tar allocates almost nothing."""
        self._check("--format=gnu")

    def test_pax_sparse(self) -> None:
        """The same with each of the pax sparse formats (0.0, 0.1, 1.0)."""
        for version in ("0.0", "0.1", "1.0"):
            self._check("--format=posix", f"--sparse-version={version}")


class CopyTests(_LayerCase):
    """Member data, in the kernel or not, and a tarball cut short."""

    def test_without_kernel_copy(self) -> None:
        """Where C{copy_file_range} cannot copy, the data goes through a buffer."""

        def refuse(*_: object) -> int:
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        self.patch(layers.os, "copy_file_range", refuse)
        data = os.urandom(3 << 20)
        self.unpack(_tar((_member("big"), data), (_member("small"), b"s")))
        self.assertEqual((self.out / "big").read_bytes(), data)
        self.assertEqual((self.out / "small").read_bytes(), b"s")

    def test_truncated(self) -> None:
        """A tarball that ends inside a member's data is a 400."""
        data = _tar((_member("big"), os.urandom(100_000)))
        self.assertRaises(InvalidParameter, self.unpack, data[:50_000])

    def test_disk_errors_name_the_member(self) -> None:
        """An OSError names the member, relative to the layer, not a host path."""

        def full(*_: object) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(layers.os, "copy_file_range", full)
        e = self.assertRaises(OSError, self.unpack, _tar((_member("d/big"), b"x" * 10)))
        self.assertEqual((e.errno, e.filename), (errno.ENOSPC, "d/big"))
