"""Tests for L{dockserve.daemon.volumes.copyup}."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.volumes import copyup
from dockserve.errors import SystemError_

_ROOT_ONLY = None if os.geteuid() == 0 else "owners and devices need root"


def _user_xattrs_work(directory: Path) -> bool:
    probe = directory / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as e:
        if e.errno in {errno.ENOTSUP, errno.EOPNOTSUPP}:
            return False
        raise
    finally:
        probe.unlink()
    return True


class PopulateTests(SynchronousTestCase):
    def setUp(self) -> None:
        top = Path(tempfile.mkdtemp(prefix="copyup-"))
        self.addCleanup(_remove, top)
        self.root = top / "rootfs"
        self.volume = top / "volumes" / "v" / "_data"
        self.root.mkdir()
        self.volume.mkdir(parents=True)
        self.outside = top / "outside"
        self.outside.mkdir()
        (self.outside / "secret").write_text("host\n")

    def image_dir(self, path: str = "data", mode: int = 0o750) -> Path:
        data = self.root / path
        data.mkdir(parents=True)
        data.chmod(mode)
        return data

    def test_files_dirs_links(self) -> None:
        """
        The image's files, directories and links land in the empty volume
        with their modes and times; the volume's own directory takes the
        image directory's mode.
        """
        data = self.image_dir()
        (data / "a").write_text("alpha\n")
        (data / "a").chmod(0o640)
        os.utime(data / "a", ns=(1_700_000_000_000_000_000, 1_700_000_000_123_456_789))
        (data / "sub" / "deeper").mkdir(parents=True)
        (data / "sub" / "deeper" / "b").write_text("beta\n")
        (data / "sub").chmod(0o701)
        (data / "link").symlink_to("a")
        (data / "abs").symlink_to("/etc/passwd")
        (data / "exe").write_text("#!/bin/sh\n")
        (data / "exe").chmod(0o4755)
        os.utime(data / "sub", ns=(1_600_000_000_000_000_000,) * 2)

        self.assertTrue(copyup.populate(self.root, "/data", self.volume))

        v = self.volume
        self.assertEqual((v / "a").read_text(), "alpha\n")
        self.assertEqual(stat.S_IMODE((v / "a").stat().st_mode), 0o640)
        self.assertEqual((v / "a").stat().st_mtime_ns, 1_700_000_000_123_456_789)
        self.assertEqual((v / "sub" / "deeper" / "b").read_text(), "beta\n")
        self.assertEqual(stat.S_IMODE((v / "sub").stat().st_mode), 0o701)
        self.assertEqual((v / "sub").stat().st_mtime_ns, 1_600_000_000_000_000_000)
        self.assertEqual(str((v / "link").readlink()), "a")
        self.assertEqual(str((v / "abs").readlink()), "/etc/passwd")
        self.assertEqual(stat.S_IMODE((v / "exe").stat().st_mode), 0o4755)
        self.assertEqual(stat.S_IMODE(v.stat().st_mode), 0o750)

    def test_hard_links(self) -> None:
        """Two names of one file in the image are two names of one copy."""
        data = self.image_dir()
        (data / "one").write_text("x")
        os.link(data / "one", data / "two")
        copyup.populate(self.root, "/data", self.volume)
        self.assertEqual(
            (self.volume / "one").stat().st_ino, (self.volume / "two").stat().st_ino
        )

    def test_owners_and_nodes(self) -> None:
        """Owners are kept, the volume's own too; FIFOs and devices are made."""
        data = self.image_dir()
        os.chown(data, 1000, 1001)
        (data / "f").write_text("f")
        os.chown(data / "f", 7, 8)
        (data / "l").symlink_to("f")
        os.chown(data / "l", 9, 10, follow_symlinks=False)
        os.mkfifo(data / "pipe")
        (data / "pipe").chmod(0o620)
        os.mknod(data / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        copyup.populate(self.root, "/data", self.volume)
        v = self.volume
        self.assertEqual((v.stat().st_uid, v.stat().st_gid), (1000, 1001))
        self.assertEqual(((v / "f").stat().st_uid, (v / "f").stat().st_gid), (7, 8))
        link = (v / "l").lstat()
        self.assertEqual((link.st_uid, link.st_gid), (9, 10))
        self.assertTrue(stat.S_ISFIFO((v / "pipe").lstat().st_mode))
        self.assertEqual(stat.S_IMODE((v / "pipe").lstat().st_mode), 0o620)
        null = (v / "null").lstat()
        self.assertTrue(stat.S_ISCHR(null.st_mode))
        self.assertEqual(null.st_rdev, os.makedev(1, 3))

    test_owners_and_nodes.skip = _ROOT_ONLY  # type: ignore[attr-defined]

    def test_xattrs(self) -> None:
        """Extended attributes come along, on the volume's directory too."""
        if not _user_xattrs_work(self.root):
            raise self.skipTest("no user xattrs on this file system")
        data = self.image_dir()
        (data / "f").write_text("f")
        os.setxattr(data / "f", "user.k", b"v")
        os.setxattr(data, "user.top", b"t")
        copyup.populate(self.root, "/data", self.volume)
        self.assertEqual(os.getxattr(self.volume / "f", "user.k"), b"v")
        self.assertEqual(os.getxattr(self.volume, "user.top"), b"t")

    def test_not_empty(self) -> None:
        """A volume with anything in it is left as it is."""
        data = self.image_dir()
        (data / "a").write_text("image")
        (self.volume / "mine").write_text("data")
        self.assertFalse(copyup.populate(self.root, "/data", self.volume))
        self.assertEqual(_names(self.volume), ["mine"])
        self.assertNotEqual(stat.S_IMODE(self.volume.stat().st_mode), 0o750)

    def test_nothing_there(self) -> None:
        """An image without the path leaves the volume empty."""
        self.assertFalse(copyup.populate(self.root, "/nowhere/at/all", self.volume))
        self.assertEqual(_names(self.volume), [])

    def test_file_there(self) -> None:
        """A file where the volume goes: dockerd's error, with the container's path."""
        (self.root / "etc").mkdir()
        (self.root / "etc" / "passwd").write_text("root\n")
        e = self.assertRaises(
            SystemError_, copyup.populate, self.root, "/etc/passwd", self.volume
        )
        self.assertEqual(e.message, "source /etc/passwd is not directory")

    def test_links_resolved_in_the_root(self) -> None:
        """
        A link on the way to the mount point is followed inside the root,
        as in the container: an absolute link to a host directory names the
        image's directory of that name, never the host's.
        """
        data = self.image_dir()
        (data / "a").write_text("image's")
        (self.root / "via").symlink_to("/data")
        (self.root / "escape").symlink_to(str(self.outside))
        (self.root / "up").symlink_to("../../../../../../" + str(self.outside))
        self.assertTrue(copyup.populate(self.root, "/via", self.volume))
        self.assertEqual(_names(self.volume), ["a"])
        for path in ("/escape", "/up"):
            other = self.volume.parent / path.strip("/")
            other.mkdir()
            self.assertFalse(copyup.populate(self.root, path, other))
            self.assertEqual(_names(other), [])

    def test_links_inside_never_followed(self) -> None:
        """Links below the mount point are copied as links, not what they name."""
        data = self.image_dir()
        (data / "host").symlink_to(str(self.outside))
        (data / "dotdot").symlink_to("../../../outside")
        copyup.populate(self.root, "/data", self.volume)
        self.assertTrue((self.volume / "host").is_symlink())
        self.assertTrue((self.volume / "dotdot").is_symlink())
        self.assertEqual(_names(self.outside), ["secret"])

    def test_empty_image_directory(self) -> None:
        """An empty image directory still gives the volume its mode."""
        self.image_dir("empty", 0o1777)
        self.assertTrue(copyup.populate(self.root, "/empty", self.volume))
        self.assertEqual(stat.S_IMODE(self.volume.stat().st_mode), 0o1777)

    def test_is_empty(self) -> None:
        """L{copyup.is_empty} says whether a volume holds anything."""
        self.assertTrue(copyup.is_empty(self.volume))
        (self.volume / ".hidden").write_text("")
        self.assertFalse(copyup.is_empty(self.volume))


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _remove(top: Path) -> None:
    import shutil  # noqa: PLC0415

    shutil.rmtree(top, ignore_errors=True)
