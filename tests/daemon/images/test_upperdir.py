"""Tests for L{dockserve.daemon.images.upperdir}: the layer of an upper directory."""

import hashlib
import io
import os
import socket
import stat
import tarfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.images import layers
from dockserve.daemon.images.upperdir import EMPTY_LAYER, PartialUpper, write_layer

#: A file capability (cap_net_bind_service+ep), as setcap writes it.
_CAPABILITY = bytes.fromhex("0100000200040000000000000000000000000000")


def _whiteout(path: Path) -> None:
    """An overlayfs deletion: a 0/0 character device."""
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(0, 0))


def _layer(
    upper: Path, lowers: tuple[Path, ...] = (), exclude: tuple[str, ...] = ()
) -> tuple[bool, bytes]:
    out = io.BytesIO()
    wrote = write_layer(upper, out.write, lowers=lowers, exclude=exclude)
    return wrote, out.getvalue()


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.getmembers()


class _Case(SynchronousTestCase):
    def setUp(self) -> None:
        if os.geteuid() != 0:
            self.skipTest("whiteouts and trusted.* attributes need root")
        self.root = Path(self.mktemp())
        self.upper = self.root / "upper"
        self.upper.mkdir(parents=True)

    def names(self, **kwargs: tuple[Path, ...] | tuple[str, ...]) -> list[str]:
        _, data = _layer(self.upper, **kwargs)  # type: ignore[arg-type]
        return [m.name for m in _members(data)]


class WhiteoutTests(_Case):
    """Deletions and opaque directories as the OCI image spec writes them."""

    def test_deleted_file(self) -> None:
        """
        A 0/0 character device (a deleted file) is an empty C{.wh.NAME}
        regular file, mode 0600, in its directory.
        """
        (self.upper / "etc").mkdir()
        _whiteout(self.upper / "etc" / "passwd")
        wrote, data = _layer(self.upper)
        self.assertTrue(wrote)
        [directory, whiteout] = _members(data)
        self.assertEqual(directory.name, "etc")
        self.assertTrue(directory.isdir())
        self.assertEqual(whiteout.name, "etc/.wh.passwd")
        self.assertTrue(whiteout.isreg())
        self.assertEqual((whiteout.size, whiteout.mode), (0, 0o600))

    def test_deleted_directory_at_the_top(self) -> None:
        """A deleted top-level directory is C{.wh.NAME} at the top."""
        _whiteout(self.upper / "usr")
        self.assertEqual(self.names(), [".wh.usr"])

    def test_shared_whiteout_inode(self) -> None:
        """
        overlayfs links whiteouts to one inode: each is still a whiteout
        of its own, never a hard link to another.
        """
        _whiteout(self.upper / "a")
        os.link(self.upper / "a", self.upper / "b")
        members = _members(_layer(self.upper)[1])
        self.assertEqual([m.name for m in members], [".wh.a", ".wh.b"])
        self.assertTrue(all(m.isreg() for m in members))

    def test_opaque_directory(self) -> None:
        """
        A directory marked opaque (its lower contents deleted) is followed
        by C{.wh..wh..opq}, with the directory's owner and permissions;
        the overlay attribute itself is not in the layer.
        """
        usr = self.upper / "usr"
        usr.mkdir(mode=0o750)
        usr.chmod(0o750)
        os.chown(usr, 12, 34)
        os.setxattr(usr, "trusted.overlay.opaque", b"y")
        (usr / "new").write_bytes(b"n")
        members = _members(_layer(self.upper)[1])
        self.assertEqual(
            [m.name for m in members], ["usr", "usr/.wh..wh..opq", "usr/new"]
        )
        directory, marker, _ = members
        self.assertEqual(directory.pax_headers, {})
        self.assertTrue(marker.isreg())
        self.assertEqual(
            (marker.mode, marker.uid, marker.gid, marker.size), (0o750, 12, 34, 0)
        )

    def test_round_trip(self) -> None:
        """
        Unpacked as a layer, the tar gives the same whiteouts and opaque
        directory back.
        """
        (self.upper / "etc").mkdir()
        _whiteout(self.upper / "etc" / "passwd")
        (self.upper / "usr").mkdir()
        os.setxattr(self.upper / "usr", "trusted.overlay.opaque", b"y")
        tar = self.root / "layer.tar"
        tar.write_bytes(_layer(self.upper)[1])
        target = self.root / "unpacked"
        target.mkdir()
        layers.unpack(tar, target)
        info = os.lstat(target / "etc" / "passwd")
        self.assertTrue(stat.S_ISCHR(info.st_mode))
        self.assertEqual(info.st_rdev, 0)
        self.assertEqual(os.getxattr(target / "usr", "trusted.overlay.opaque"), b"y")


class EntryTests(_Case):
    """Every kind of file, and the walk's order."""

    def test_order(self) -> None:
        """Go's walk order: a directory, then its entries by byte order."""
        (self.upper / "b").mkdir()
        (self.upper / "b" / "z").write_bytes(b"")
        (self.upper / "b" / "a").write_bytes(b"")
        (self.upper / "a").write_bytes(b"")
        (self.upper / "B").write_bytes(b"")
        self.assertEqual(self.names(), ["B", "a", "b", "b/a", "b/z"])

    def test_regular_file(self) -> None:
        """A file's content, mode, owner and mtime (seconds)."""
        f = self.upper / "f"
        f.write_bytes(b"x" * 1000)
        os.chown(f, 1000, 1001)
        f.chmod(0o4755)
        os.utime(f, (1_700_000_000.5, 1_700_000_000.5))
        data = _layer(self.upper)[1]
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            [member] = tar.getmembers()
            content = tar.extractfile(member)
            assert content is not None
            self.assertEqual(content.read(), b"x" * 1000)
        self.assertEqual(
            (member.mode, member.uid, member.gid, member.mtime),
            (0o4755, 1000, 1001, 1_700_000_000),
        )

    def test_hard_links(self) -> None:
        """A second name of a file is a hard link to the first, not a copy."""
        (self.upper / "f").write_bytes(b"data")
        os.link(self.upper / "f", self.upper / "g")
        first, second = _members(_layer(self.upper)[1])
        self.assertTrue(first.isreg())
        self.assertEqual(first.size, 4)
        self.assertTrue(second.islnk())
        self.assertEqual((second.name, second.linkname), ("g", "f"))

    def test_special_files(self) -> None:
        """
        Symlinks (not followed), FIFOs (never opened) and devices are
        themselves; sockets are left out.
        """
        (self.upper / "link").symlink_to("/etc/shadow")
        (self.upper / "root").symlink_to("/")
        os.mkfifo(self.upper / "fifo")
        os.mknod(self.upper / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(self.upper / "loop", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
        listener = socket.socket(socket.AF_UNIX)
        self.addCleanup(listener.close)
        listener.bind(str(self.upper / "sock"))
        members = {m.name: m for m in _members(_layer(self.upper)[1])}
        self.assertEqual(sorted(members), ["fifo", "link", "loop", "null", "root"])
        self.assertTrue(members["link"].issym())
        self.assertEqual(members["link"].linkname, "/etc/shadow")
        self.assertEqual(members["root"].linkname, "/")
        self.assertTrue(members["fifo"].isfifo())
        self.assertTrue(members["null"].ischr())
        self.assertEqual((members["null"].devmajor, members["null"].devminor), (1, 3))
        self.assertTrue(members["loop"].isblk())

    def test_symlinked_directory_not_walked(self) -> None:
        """
        A symlink to a directory outside the upper directory is an entry,
        and nothing of where it points goes into the layer.
        """
        outside = self.root / "outside"
        outside.mkdir()
        (outside / "secret").write_bytes(b"host")
        (self.upper / "d").symlink_to(outside)
        self.assertEqual(self.names(), ["d"])

    def test_xattrs_and_capabilities(self) -> None:
        """
        Extended attributes are kept (a file capability survives a round
        trip through the unpacker); overlayfs's own are not.
        """
        f = self.upper / "ping"
        f.write_bytes(b"#!")
        os.setxattr(f, "security.capability", _CAPABILITY)
        os.setxattr(f, "user.note", b"kept")
        os.setxattr(f, "trusted.overlay.origin", b"\x00\xfb")
        [member] = _members(_layer(self.upper)[1])
        self.assertEqual(
            sorted(member.pax_headers),
            ["SCHILY.xattr.security.capability", "SCHILY.xattr.user.note"],
        )
        tar = self.root / "layer.tar"
        tar.write_bytes(_layer(self.upper)[1])
        target = self.root / "unpacked"
        target.mkdir()
        layers.unpack(tar, target)
        self.assertEqual(
            os.getxattr(target / "ping", "security.capability"), _CAPABILITY
        )
        self.assertEqual(os.getxattr(target / "ping", "user.note"), b"kept")

    def test_name_not_utf8(self) -> None:
        """A name that is no UTF-8 keeps its bytes."""
        (self.upper / os.fsdecode(b"caf\xe9")).mkdir()
        tar = self.root / "layer.tar"
        tar.write_bytes(_layer(self.upper)[1])
        target = self.root / "unpacked"
        target.mkdir()
        layers.unpack(tar, target)
        self.assertEqual([os.fsencode(p.name) for p in target.iterdir()], [b"caf\xe9"])

    def test_empty(self) -> None:
        """
        No change (or no upper directory at all) is the empty tar, whose
        digest is dockerd's empty layer.
        """
        for upper in (self.upper, self.root / "missing"):
            wrote, data = _layer(upper)
            self.assertFalse(wrote)
            self.assertEqual("sha256:" + hashlib.sha256(data).hexdigest(), EMPTY_LAYER)

    def test_partial_upper(self) -> None:
        """
        A directory overlayfs renamed by redirect (its contents still in
        the layers below) cannot be committed, rather than committed empty.
        """
        moved = self.upper / "moved"
        moved.mkdir()
        os.setxattr(moved, "trusted.overlay.redirect", b"/bin")
        self.assertRaises(PartialUpper, _layer, self.upper)


class ExcludeTests(_Case):
    """The mount points a container's runtime made are not its changes."""

    def setUp(self) -> None:
        super().setUp()
        self.lower = self.root / "lower"
        (self.lower / "etc").mkdir(parents=True)
        (self.lower / "etc").chmod(0o755)
        (self.upper / "etc").mkdir()
        (self.upper / "etc").chmod(0o755)
        (self.upper / "etc" / "hosts").write_bytes(b"")
        (self.upper / "etc" / "resolv.conf").write_bytes(b"")

    def test_excluded_only(self) -> None:
        """
        A directory that holds only excluded mount points, as the layers
        below have it, is left out with them.
        """
        names = self.names(
            lowers=(self.lower,), exclude=("/etc/hosts", "/etc/resolv.conf")
        )
        self.assertEqual(names, [])

    def test_made_for_excluded_only(self) -> None:
        """
        A directory the layers below lack, made only to hold excluded
        mount points (C{/dev/shm} in an image without C{/dev}), is left out.
        """
        (self.upper / "dev" / "shm").mkdir(parents=True)
        names = self.names(
            lowers=(self.lower,),
            exclude=("/etc/hosts", "/etc/resolv.conf", "/dev/shm"),
        )
        self.assertEqual(names, [])

    def test_with_other_changes(self) -> None:
        """A directory with real changes is kept, without the mount points."""
        (self.upper / "etc" / "motd").write_bytes(b"hi")
        names = self.names(
            lowers=(self.lower,), exclude=("/etc/hosts", "/etc/resolv.conf")
        )
        self.assertEqual(names, ["etc", "etc/motd"])

    def test_directory_changed(self) -> None:
        """A directory whose mode changed is kept, without the mount points."""
        (self.upper / "etc").chmod(0o700)
        names = self.names(
            lowers=(self.lower,), exclude=("/etc/hosts", "/etc/resolv.conf")
        )
        self.assertEqual(names, ["etc"])

    def test_not_excluded(self) -> None:
        """Without exclusions the mount points are files like any other."""
        self.assertEqual(
            self.names(lowers=(self.lower,)), ["etc", "etc/hosts", "etc/resolv.conf"]
        )
