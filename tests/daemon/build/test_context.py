"""Tests for L{dockserve.daemon.build.context}: receiving a context safely."""

import bz2
import gzip
import io
import lzma
import tarfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.build.context import (
    ContextError,
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
            self.assertEqual((target / "d" / "x").read_bytes(), b"x")
            self.assertEqual(ctx.entries["d"].mode, 0o750)
            self.assertEqual(ctx.entries["d/x"].size, 1)
            self.assertEqual((target / "d" / "x").stat().st_mtime, 1_700_000_000)
            self.assertEqual(read_dockerfile(ctx, "")[1], b"FROM a\n")

    def test_bare_dockerfile(self) -> None:
        """A body that is no tar is the Dockerfile itself."""
        ctx = receive(io.BytesIO(b"FROM busybox\nRUN true\n"), self.target)
        self.assertEqual(
            read_dockerfile(ctx, "Dockerfile")[1], b"FROM busybox\nRUN true\n"
        )

    def test_never_through_a_symlink(self) -> None:
        """
        A member under a symlink the context made is skipped: nothing is
        written outside the context, whatever the links say.
        """
        outside = self.base / "outside"
        outside.mkdir()
        body = make_tar([
            ("link", str(outside), "l"),
            ("link/escaped", b"no", "f"),
            ("../up", b"no", "f"),
            ("rel", "../outside", "l"),
            ("rel/escaped", b"no", "f"),
            ("ok", b"yes", "f"),
            ("hard", "/etc/passwd", "h"),
        ])  # fmt: skip
        ctx = receive(io.BytesIO(body), self.target)
        self.assertEqual(list(outside.iterdir()), [])
        self.assertFalse((self.base / "up").exists())
        self.assertEqual((self.target / "link").readlink(), outside)
        self.assertEqual(sorted(ctx.entries), ["link", "ok", "rel"])

    def test_hard_link_inside(self) -> None:
        body = make_tar([("a", b"data", "f"), ("b", "a", "h")])
        receive(io.BytesIO(body), self.target)
        self.assertEqual(
            (self.target / "a").stat().st_ino, (self.target / "b").stat().st_ino
        )

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
        body = make_tar([("real", b"FROM a", "f"), ("Dockerfile", "/real", "l")])
        ctx = receive(io.BytesIO(body), self.target)
        self.assertEqual(read_dockerfile(ctx, "Dockerfile")[1], b"FROM a")


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
        self.assertFalse((target / "a.log").exists())
        self.assertFalse((target / "Dockerfile").exists())
        self.assertFalse((target / "docs" / "drop").exists())
