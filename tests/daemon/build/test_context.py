"""Tests for L{dockserve.daemon.build.context}: receiving and indexing a context."""

import bz2
import gzip
import hashlib
import io
import lzma
import tarfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.build.context import (
    ContextError,
    Entry,
    apply_dockerignore,
    read_dockerfile,
    receive,
)
from dockserve.errors import InvalidParameter


def make_tar(members: list[tuple[str, bytes | str | None, str]]) -> bytes:
    """
    A tar of C{(name, data, kind)}: kind C{f} file (data), C{d} directory,
    C{l} symlink (data is the target), C{h} hard link (data is the target).
    """
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tar.addfile(info)
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(info)
            elif kind == "h":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
                tar.addfile(info)
            else:
                raw = data if isinstance(data, bytes) else str(data).encode()
                info.size, info.mode = len(raw), 0o640
                tar.addfile(info, io.BytesIO(raw))
    return out.getvalue()


class ReceiveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = Path(self.mktemp())
        self.base.mkdir()
        self.target = self.base / "ctx"

    def test_plain_and_compressed(self) -> None:
        """Plain, gzip, bzip2 and xz tars give the same context."""
        raw = make_tar([("Dockerfile", b"FROM a\n", "f"), ("d", None, "d"),
                        ("d/x", b"x", "f")])  # fmt: skip
        for number, body in enumerate(
            [raw, gzip.compress(raw), bz2.compress(raw), lzma.compress(raw)]
        ):
            target = self.base / str(number)
            ctx = receive(io.BytesIO(body), target)
            self.assertEqual(ctx.entries["d"], Entry("dir", 0o750, mtime=1_700_000_000))
            x = ctx.entries["d/x"]
            self.assertEqual((x.kind, x.mode, x.size), ("file", 0o640, 1))
            self.assertEqual(x.digest, "sha256:" + hashlib.sha256(b"x").hexdigest())
            self.assertEqual(x.mtime, 1_700_000_000)
            self.assertEqual(ctx.read(x), b"x")
            with ctx.open(x) as data:
                self.assertEqual(data.read(), b"x")
            self.assertEqual(read_dockerfile(ctx, "")[1], b"FROM a\n")

    def test_kept_as_one_tar(self) -> None:
        """
        Nothing is unpacked: the context's directory holds the plain tar
        it came as (decompressed), which the index points into.
        """
        raw = make_tar([(f"d/f{n}", b"%d" % n * 1000, "f") for n in range(50)])
        ctx = receive(io.BytesIO(gzip.compress(raw)), self.target)
        self.assertEqual([p.name for p in self.target.iterdir()], ["context.tar"])
        self.assertEqual(ctx.archive.read_bytes(), raw)
        self.assertEqual(ctx.read(ctx.entries["d/f7"]), b"7" * 1000)
        self.assertEqual(ctx.entries["d"].kind, "dir")

    def test_bare_dockerfile(self) -> None:
        """A body that is no tar is the Dockerfile itself."""
        ctx = receive(io.BytesIO(b"FROM busybox\nRUN true\n"), self.target)
        self.assertEqual(
            read_dockerfile(ctx, "Dockerfile")[1], b"FROM busybox\nRUN true\n"
        )
        self.assertEqual(sorted(ctx.entries), ["Dockerfile"])

    def test_never_through_a_symlink(self) -> None:
        """
        A member under a symlink the context made is skipped, and a link
        resolves only inside the context, whatever it says.
        """
        outside = self.base / "outside"
        outside.mkdir()
        (outside / "secret").write_text("no")
        body = make_tar([
            ("link", str(outside), "l"),
            ("link/escaped", b"no", "f"),
            ("../up", b"no", "f"),
            ("rel", "../outside", "l"),
            ("rel/escaped", b"no", "f"),
            ("ok", b"yes", "f"),
            ("hard", "/etc/passwd", "h"),
            ("file", b"", "f"),
            ("file/under", b"no", "f"),
            ("up", "../../ok", "l"),
        ])  # fmt: skip
        ctx = receive(io.BytesIO(body), self.target)
        self.assertEqual(list(outside.iterdir()), [outside / "secret"])
        self.assertFalse((self.base / "up").exists())
        self.assertEqual(sorted(ctx.entries), ["file", "link", "ok", "rel", "up"])
        self.assertEqual(ctx.entries["link"], Entry("symlink", 0o777, str(outside),
                                                    mtime=1_700_000_000))  # fmt: skip
        self.assertIsNone(ctx.resolve("link/secret"))
        self.assertIsNone(ctx.resolve("rel/secret"))
        self.assertIsNone(ctx.resolve("rel/.."))
        self.assertEqual(ctx.resolve("up"), "ok")
        self.assertEqual(ctx.resolve("up", follow=False), "up")

    def test_hard_link_inside(self) -> None:
        """A hard link to a file of the context shares its data."""
        body = make_tar([("a", b"data", "f"), ("b", "a", "h"), ("c", "nope", "h")])
        ctx = receive(io.BytesIO(body), self.target)
        self.assertEqual(ctx.entries["b"], ctx.entries["a"])
        self.assertEqual(ctx.read(ctx.entries["b"]), b"data")
        self.assertNotIn("c", ctx.entries)

    def test_last_one_wins(self) -> None:
        """
        A later member of the same name replaces the earlier one, as an
        unpacked tar would have it (a directory and all it held).
        """
        body = make_tar([
            ("a", b"first", "f"), ("a", None, "d"), ("a/b", b"b", "f"),
            ("d", None, "d"), ("d/x", b"x", "f"), ("d/e/y", b"y", "f"),
            ("d", b"now a file", "f"),
            ("f", b"one", "f"), ("f", b"two", "f"),
        ])  # fmt: skip
        ctx = receive(io.BytesIO(body), self.target)
        self.assertEqual(sorted(ctx.entries), ["a", "a/b", "d", "f"])
        self.assertEqual(ctx.entries["a"].kind, "dir")
        self.assertEqual(ctx.read(ctx.entries["d"]), b"now a file")
        self.assertEqual(ctx.read(ctx.entries["f"]), b"two")

    def test_implied_directories(self) -> None:
        """A directory no member names is one, 0755, of the receive's time."""
        ctx = receive(io.BytesIO(make_tar([("a/b/c", b"", "f")])), self.target)
        self.assertEqual(ctx.entries["a"], ctx.entries["a/b"])
        self.assertEqual(ctx.entries["a"], Entry("dir", 0o755, mtime=ctx.received))

    def test_no_end_blocks(self) -> None:
        """
        The docker CLI's C{-f -} context ends right after its last member's
        data; a member cut inside its data still fails.
        """
        raw = make_tar([("Dockerfile", b"FROM a\n", "f")])
        ctx = receive(io.BytesIO(raw[: 512 + 7]), self.target)
        self.assertEqual(read_dockerfile(ctx, "")[1], b"FROM a\n")
        with self.assertRaises(InvalidParameter):
            receive(io.BytesIO(raw[: 512 + 3]), self.base / "cut")

    def test_disk_full(self) -> None:
        """Under the reserve: dockerd's error; the caller removes the rest."""
        body = make_tar([("big", b"x" * 100, "f")])
        with self.assertRaises(ContextError) as e:
            receive(io.BytesIO(body), self.target, space=lambda _: 10, reserve=20)
        self.assertEqual(e.exception.message, "no space left on device")

    def test_not_an_archive(self) -> None:
        with self.assertRaises(InvalidParameter):
            receive(io.BytesIO(gzip.compress(b"not a tar" * 100)), self.target)

    def test_missing_dockerfile(self) -> None:
        ctx = receive(io.BytesIO(make_tar([("a", b"", "f")])), self.target)
        with self.assertRaises(ContextError) as e:
            read_dockerfile(ctx, "sub/Dockerfile.dev")
        wanted = "Cannot locate specified Dockerfile: sub/Dockerfile.dev"
        self.assertEqual(e.exception.message, wanted)

    def test_lowercase_dockerfile(self) -> None:
        body = make_tar([("dockerfile", b"FROM a", "f")])
        ctx = receive(io.BytesIO(body), self.target)
        self.assertEqual(read_dockerfile(ctx, ""), ("dockerfile", b"FROM a"))

    def test_dockerfile_link_stays_inside(self) -> None:
        """A Dockerfile that is a symlink resolves inside the context."""
        body = make_tar([("real", b"FROM a", "f"), ("Dockerfile", "/real", "l"),
                         ("sub/Dockerfile", "../../../real", "l")])  # fmt: skip
        ctx = receive(io.BytesIO(body), self.target)
        self.assertEqual(read_dockerfile(ctx, "Dockerfile")[1], b"FROM a")
        self.assertEqual(read_dockerfile(ctx, "sub/Dockerfile")[1], b"FROM a")


class DockerignoreTests(SynchronousTestCase):
    def test_apply(self) -> None:
        """
        Ignored files go; exceptions stay; the Dockerfile and .dockerignore
        go only when listed.
        """
        body = make_tar([
            ("Dockerfile", b"FROM a", "f"),
            (".dockerignore", b"*.log\ndocs\n!docs/keep\nDockerfile\n", "f"),
            ("a.log", b"", "f"), ("b.txt", b"", "f"),
            ("docs", None, "d"), ("docs/keep", b"", "f"), ("docs/drop", b"", "f"),
        ])  # fmt: skip
        target = Path(self.mktemp())
        ctx = receive(io.BytesIO(body), target)
        apply_dockerignore(ctx, "Dockerfile")
        self.assertEqual(sorted(ctx.entries), [".dockerignore", "b.txt", "docs",
                                               "docs/keep"])  # fmt: skip

    def test_directory_without_exceptions(self) -> None:
        """An ignored directory goes with all it holds."""
        body = make_tar([
            (".dockerignore", b"node_modules\n", "f"),
            ("node_modules/a/b", b"", "f"), ("node_modules/c", b"", "f"),
            ("node_modules-not", b"", "f"), ("src/x", b"", "f"),
        ])  # fmt: skip
        ctx = receive(io.BytesIO(body), Path(self.mktemp()))
        apply_dockerignore(ctx, "Dockerfile")
        self.assertEqual(sorted(ctx.entries), [".dockerignore", "node_modules-not",
                                               "src", "src/x"])  # fmt: skip


class ReceiveKindTests(SynchronousTestCase):
    """What a remote context may be, once its server said which."""

    def setUp(self) -> None:
        self.base = Path(self.mktemp())
        self.base.mkdir()

    def test_archive_only(self) -> None:
        """A body that should be a tar and is not: Go's tar reader's errors."""
        with self.assertRaises(InvalidParameter) as short:
            receive(io.BytesIO(b"not a tar"), self.base / "a", kind="archive")
        self.assertEqual(short.exception.message, "unexpected EOF")
        with self.assertRaises(InvalidParameter) as junk:
            receive(io.BytesIO(b"\x01" * 3000), self.base / "b", kind="archive")
        self.assertEqual(junk.exception.message, "archive/tar: invalid tar header")
        context = receive(
            io.BytesIO(gzip.compress(make_tar([("Dockerfile", b"FROM x\n", "f")]))),
            self.base / "c",
            kind="archive",
        )
        self.assertEqual(read_dockerfile(context, "Dockerfile")[1], b"FROM x\n")

    def test_dockerfile_only(self) -> None:
        """A text/plain body is the Dockerfile, whatever it looks like."""
        context = receive(
            io.BytesIO(b"FROM busybox\n"), self.base / "d", kind="dockerfile"
        )
        self.assertEqual(read_dockerfile(context, "Dockerfile")[1], b"FROM busybox\n")

    def test_owners_indexed(self) -> None:
        """The index keeps each member's owner (ADD of a local tar uses it)."""
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            info = tarfile.TarInfo("f")
            info.size, info.uid, info.gid = 1, 11, 12
            tar.addfile(info, io.BytesIO(b"x"))
        context = receive(io.BytesIO(out.getvalue()), self.base / "e")
        entry = context.entries["f"]
        self.assertEqual((entry.uid, entry.gid), (11, 12))
