# -*- test-case-name: tests.daemon.test_archive -*-
"""Tests for L{dockserve.daemon.archive}: safe docker cp, export and changes."""

import gzip
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from dockserve.daemon import archive


class _Fixture(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.base)
        self.root = self.base / "root"
        self.outside = self.base / "outside"
        self.root.mkdir()
        self.outside.mkdir()
        (self.outside / "secret").write_bytes(b"SECRET")
        (self.root / "etc").mkdir()
        (self.root / "etc" / "passwd").write_text(
            "root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/:/bin/sh\n"
        )
        (self.root / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")

    def tar_names(self, path: str) -> list[str]:
        out = io.BytesIO()
        archive.tar_out(self.root, path, out.write)
        out.seek(0)
        with tarfile.open(fileobj=out) as t:
            return [m.name + ("/" if m.isdir() else "") for m in t]

    def tar_bytes(self, path: str) -> bytes:
        out = io.BytesIO()
        archive.tar_out(self.root, path, out.write)
        return out.getvalue()

    def make_tar(self, *members: tuple[tarfile.TarInfo, bytes]) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as t:
            for info, data in members:
                info.size = len(data) if info.isreg() else 0
                t.addfile(info, io.BytesIO(data) if info.isreg() else None)
        return out.getvalue()

    def put(self, path: str, data: bytes, **kw: object) -> None:
        stream = io.BytesIO(data)
        archive.tar_in(
            self.root,
            path,
            stream.read,
            no_overwrite_dir_non_dir=bool(kw.get("no", False)),
            copy_uidgid=bool(kw.get("copy", False)),
            user=str(kw.get("user", "")),
        )


class ResolveTests(_Fixture):
    def test_absolute_symlink_stays_in_root(self) -> None:
        """An absolute symlink is relative to the container's root."""
        (self.root / "link").symlink_to(self.outside)
        with self.assertRaises(FileNotFoundError):
            archive.resolve(self.root, "/link/secret", follow_final=True)
        (self.root / "etc2").symlink_to("/etc")
        with archive.resolve(self.root, "/etc2/passwd", follow_final=True) as r:
            self.assertEqual(r.path, "/etc/passwd")

    def test_dotdot_clamped(self) -> None:
        """C{..} in a path or in a symlink target never climbs above the root."""
        (self.root / "up").symlink_to("../../../outside")
        with self.assertRaises(FileNotFoundError):
            archive.resolve(self.root, "/up/secret", follow_final=True)
        with archive.resolve(self.root, "/../../etc/passwd", follow_final=True) as r:
            self.assertEqual(r.path, "/etc/passwd")

    def test_loop(self) -> None:
        """A symlink loop is an error, not a hang."""
        (self.root / "a").symlink_to("b")
        (self.root / "b").symlink_to("a")
        with self.assertRaises(archive.SymlinkLoop):
            archive.resolve(self.root, "/a", follow_final=True)

    def test_final_not_followed(self) -> None:
        """With C{follow_final=False} the fd is the symlink itself."""
        (self.root / "l").symlink_to("/etc")
        with archive.resolve(self.root, "/l", follow_final=False) as r:
            self.assertEqual(os.readlink("", dir_fd=r.fd), "/etc")


class StatTests(_Fixture):
    def test_file(self) -> None:
        """The stat record has Go's mode bits and RFC 3339 mtime."""
        p = self.root / "etc" / "passwd"
        os.utime(p, ns=(0, 1_500_000_000_250_000_000))
        s = archive.stat_path(self.root, "etc/passwd")
        self.assertEqual(s["name"], "passwd")
        self.assertEqual(s["size"], p.stat().st_size)
        self.assertEqual(s["mode"], p.stat().st_mode & 0o777)
        self.assertEqual(s["mtime"], "2017-07-14T02:40:00.25Z")
        self.assertEqual(s["linkTarget"], "")

    def test_dir_and_symlink(self) -> None:
        """Directories carry 1<<31; a symlink 1<<27 and its resolved target."""
        (self.root / "etc").chmod(0o755)
        self.assertEqual(
            archive.stat_path(self.root, "/etc")["mode"], (1 << 31) | 0o755
        )
        (self.root / "l").symlink_to("etc/../etc/passwd")
        s = archive.stat_path(self.root, "/l")
        self.assertTrue(s["mode"] & (1 << 27))
        self.assertEqual(s["linkTarget"], "/etc/passwd")
        self.assertEqual(archive.stat_path(self.root, "/")["name"], "/")

    def test_missing(self) -> None:
        with self.assertRaises(FileNotFoundError):
            archive.stat_path(self.root, "/nope")
        with self.assertRaises(FileNotFoundError):
            archive.stat_path(self.root, "/etc/passwd/x")


class TarOutTests(_Fixture):
    def test_names(self) -> None:
        """Entries start with the base name; C{/.} gives the contents."""
        self.assertEqual(self.tar_names("/etc"), ["etc/", "etc/group", "etc/passwd"])
        self.assertEqual(self.tar_names("/etc/."), ["./", "./group", "./passwd"])
        self.assertEqual(self.tar_names("/etc/passwd"), ["passwd"])

    def test_symlink_not_followed(self) -> None:
        """A symlink to outside is archived as a symlink, never its target."""
        (self.root / "l").symlink_to(self.outside)
        (self.root / "etc" / "l2").symlink_to(self.outside / "secret")
        data = self.tar_bytes("/l") + self.tar_bytes("/etc")
        self.assertNotIn(b"SECRET", data)
        with self.assertRaises(FileNotFoundError):
            self.tar_bytes("/l/.")

    def test_racing_swap(self) -> None:
        """A thread swapping a directory for a symlink never leaks outside."""
        d = self.root / "d"
        d.mkdir()
        for i in range(50):
            (d / f"f{i}").write_bytes(b"x")
        stop = threading.Event()

        def swap() -> None:
            while not stop.is_set():
                d.rename(self.root / "d.real")
                d.symlink_to(self.outside)
                d.unlink()
                (self.root / "d.real").rename(d)

        t = threading.Thread(target=swap)
        t.start()
        try:
            for _ in range(100):
                try:
                    data = self.tar_bytes("/")
                except FileNotFoundError:
                    continue
                self.assertNotIn(b"SECRET", data)
        finally:
            stop.set()
            t.join()

    def test_round_trip(self) -> None:
        """What tar_out writes, tar_in puts back elsewhere."""
        (self.root / "etc" / "hl").hardlink_to(self.root / "etc" / "group")
        (self.root / "dst").mkdir()
        self.put("/dst", self.tar_bytes("/etc"))
        self.assertEqual(
            (self.root / "dst/etc/passwd").read_bytes(),
            (self.root / "etc/passwd").read_bytes(),
        )
        self.assertEqual(
            (self.root / "dst/etc/hl").stat().st_ino,
            (self.root / "dst/etc/group").stat().st_ino,
        )

    def test_export(self) -> None:
        out = io.BytesIO()
        archive.export(self.root, out.write)
        out.seek(0)
        with tarfile.open(fileobj=out) as t:
            self.assertEqual(sorted(t.getnames()), ["etc", "etc/group", "etc/passwd"])


class TarInTests(_Fixture):
    def test_dotdot_member(self) -> None:
        info = tarfile.TarInfo("../../x")
        with self.assertRaises(archive.ArchiveBreakout):
            self.put("/etc", self.make_tar((info, b"evil")))
        self.assertFalse((self.base / "x").exists())

    def test_member_through_symlink(self) -> None:
        """A symlink member followed by a member through it stays in root."""
        link = tarfile.TarInfo("l")
        link.type = tarfile.SYMTYPE
        link.linkname = str(self.outside)
        f = tarfile.TarInfo("l/secret")
        self.put("/", self.make_tar((link, b""), (f, b"evil")))
        self.assertEqual((self.outside / "secret").read_bytes(), b"SECRET")
        self.assertEqual(
            (self.root / self.outside.relative_to("/") / "secret").read_bytes(), b"evil"
        )

    def test_existing_symlink_final(self) -> None:
        """A member replaces a symlink, never writes through it."""
        (self.root / "etc" / "s").symlink_to(self.outside / "secret")
        self.put("/etc", self.make_tar((tarfile.TarInfo("s"), b"new")))
        self.assertEqual((self.outside / "secret").read_bytes(), b"SECRET")
        self.assertEqual((self.root / "etc/s").read_bytes(), b"new")

    def test_hardlink_outside(self) -> None:
        h = tarfile.TarInfo("h")
        h.type = tarfile.LNKTYPE
        h.linkname = "../../outside/secret"
        with self.assertRaises(archive.ArchiveBreakout):
            self.put("/etc", self.make_tar((h, b"")))
        (self.root / "abs").symlink_to(self.outside)
        h.linkname = "abs/secret"
        with self.assertRaises(FileNotFoundError):
            self.put("/", self.make_tar((h, b"")))

    def test_not_directory(self) -> None:
        with self.assertRaises(archive.NotADirectoryForExtraction):
            self.put("/etc/passwd", self.make_tar())
        with self.assertRaises(FileNotFoundError):
            self.put("/nope", self.make_tar())

    def test_no_overwrite(self) -> None:
        with self.assertRaises(archive.OverwriteConflict):
            self.put("/", self.make_tar((tarfile.TarInfo("etc"), b"x")), no=True)
        self.put("/", self.make_tar((tarfile.TarInfo("etc"), b"x")))
        self.assertEqual((self.root / "etc").read_bytes(), b"x")

    def test_copy_uidgid(self) -> None:
        """With copy_uidgid the container user's ids from its own passwd."""
        self.put(
            "/",
            self.make_tar((tarfile.TarInfo("f"), b"x")),
            copy=True,
            user="bob:staff",
        )
        s = (self.root / "f").stat()
        self.assertEqual((s.st_uid, s.st_gid), (1000, 50))

    def test_bad_and_gzip(self) -> None:
        with self.assertRaises(archive.BadArchive):
            self.put("/", b"not a tar" * 100)
        self.put("/", gzip.compress(self.make_tar((tarfile.TarInfo("g"), b"gz"))))
        self.assertEqual((self.root / "g").read_bytes(), b"gz")


class ChangesTests(_Fixture):
    def test_changes(self) -> None:
        """Whiteouts and opaque dirs are deletions; lower files modified."""
        lower = self.base / "lower"
        upper = self.base / "upper"
        (lower / "etc").mkdir(parents=True)
        (lower / "etc" / "passwd").write_text("x")
        (lower / "gone").write_text("x")
        (lower / "opq").mkdir()
        (upper / "etc").mkdir(parents=True)
        (upper / "etc" / "passwd").write_text("y")
        (upper / "new").write_text("n")
        os.mknod(upper / "gone", 0o600 | 0o020000, 0)
        (upper / "opq").mkdir()
        os.setxattr(upper / "opq", "trusted.overlay.opaque", b"y")
        got = archive.changes(upper, [lower])
        self.assertEqual(
            got,
            [
                {"Path": "/etc", "Kind": 0},
                {"Path": "/etc/passwd", "Kind": 0},
                {"Path": "/gone", "Kind": 2},
                {"Path": "/new", "Kind": 1},
                {"Path": "/opq", "Kind": 2},
            ],
        )


class OverlayChangesTests(_Fixture):
    def test_real_overlay(self) -> None:
        """Changes made through a real overlayfs mount are reported as moby does."""
        if os.geteuid() != 0:
            raise SkipTest("mounting overlayfs needs root")
        lower, upper, work, merged = (self.base / n for n in ("l", "u", "w", "m"))
        for d in (lower, upper, work, merged):
            d.mkdir()
        (lower / "keep").mkdir()
        (lower / "keep" / "old").write_text("o")
        (lower / "rm").write_text("r")
        (lower / "dir").mkdir()
        (lower / "dir" / "x").write_text("x")
        opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
        done = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=False
        )
        if done.returncode:
            raise SkipTest("overlayfs mount failed")
        self.addCleanup(subprocess.run, ["umount", str(merged)], check=False)
        (merged / "keep" / "old").write_text("changed")
        (merged / "rm").unlink()
        shutil.rmtree(merged / "dir")
        (merged / "dir").mkdir()
        (merged / "added").write_text("a")
        got = archive.changes(upper, [lower])
        self.assertEqual(
            got,
            [
                {"Path": "/added", "Kind": 1},
                {"Path": "/dir", "Kind": 2},
                # moby skips a copied-up directory whose size, mode and
                # mtime match the lower one; only adds and deletes list it.
                {"Path": "/keep/old", "Kind": 0},
                {"Path": "/rm", "Kind": 2},
            ],
        )
        # And the merged view is what tar_out sees as a container root.
        self.root = merged
        self.assertEqual(self.tar_names("/keep"), ["keep/", "keep/old"])
        # The root's entries are named /added as dockerd names them (Python's
        # reader shows them without the slash, so look at the bytes).
        self.assertIn(b"/added\0", self.tar_bytes("/"))


class MoreTests(_Fixture):
    def test_contents_round_trip(self) -> None:
        """A C{/.} tar extracts its contents straight into the destination."""
        (self.root / "dst").mkdir()
        self.put("/dst", self.tar_bytes("/etc/."))
        self.assertEqual(
            sorted(p.name for p in (self.root / "dst").iterdir()), ["group", "passwd"]
        )

    def test_copy_resource_follows(self) -> None:
        """The seed's /copy follows the final symlink and names the target."""
        (self.root / "l").symlink_to("/etc/passwd")
        out = io.BytesIO()
        archive.copy_resource(self.root, "/l", out.write)
        out.seek(0)
        with tarfile.open(fileobj=out) as t:
            self.assertEqual(t.getnames(), ["passwd"])

    def test_truncated(self) -> None:
        """A tar cut short in a member's data is a BadArchive."""
        data = self.make_tar((tarfile.TarInfo("big"), b"x" * 5000))
        with self.assertRaises(archive.BadArchive):
            self.put("/", data[:1500])

    def test_container_file_not_found(self) -> None:
        e = archive.container_file_not_found("/x", "abc")
        self.assertEqual(e.message, "Could not find the file /x in container abc")
