"""
Tests for L{dockserve.daemon.build.remote}: remote contexts and C{ADD
<url>} as dockerd's C{remotecontext} reads them.
"""

import io
import tarfile
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.internet import error as neterror
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from dockserve.daemon.build import remote
from dockserve.daemon.build.context import read_dockerfile, receive
from dockserve.errors import (
    DockerError,
    Forbidden,
    InvalidParameter,
    NotFound,
    SystemError_,
)


class URLTests(SynchronousTestCase):
    def test_kinds(self) -> None:
        """Which remotes are URLs and which Git repositories, as urlutil."""
        self.assertTrue(remote.is_url("http://h/ctx.tar"))
        self.assertTrue(remote.is_url("https://h/ctx.tar"))
        self.assertFalse(remote.is_url("ftp://h/ctx.tar"))
        for git in (
            "https://h/repo.git",
            "http://h/repo.git#main:sub",
            "git://h/repo",
            "git@github.com:o/r.git",
            "ssh://git@h/r",
            "github.com/o/r",
        ):
            self.assertTrue(remote.is_git_url(git), git)
        for other in ("https://h/repo.git.tar", "https://h/ctx.tar", "repo.git"):
            self.assertFalse(remote.is_git_url(other), other)

    def test_filename(self) -> None:
        """ADD <url>'s file is named by the URL's path; a bare host is refused."""
        self.assertEqual(remote.url_filename("http://h/a/b/app.tgz?x=1"), "app.tgz")
        self.assertEqual(remote.url_filename("http://h/a%20b"), "a b")
        for url in ("http://h/", "http://h", "http://h/a/"):
            with self.assertRaises(InvalidParameter) as e:
                remote.url_filename(url)
            self.assertEqual(
                e.exception.message, f"cannot determine filename for source {url}"
            )


class ContentTypeTests(SynchronousTestCase):
    def test_sniff(self) -> None:
        """The part of Go's DetectContentType that decides."""
        self.assertEqual(remote.sniff(b"FROM busybox\n"), "text/plain; charset=utf-8")
        self.assertEqual(
            remote.sniff(b"  <!doctype html><p>"), "text/html; charset=utf-8"
        )
        self.assertEqual(remote.sniff(b"\x1f\x8b\x08\x00"), "application/x-gzip")
        self.assertEqual(remote.sniff(b"a\x00b"), "application/octet-stream")
        self.assertEqual(remote.sniff(b"<?xml v"), "text/xml; charset=utf-8")

    def test_kind(self) -> None:
        """text/plain is a Dockerfile; tar types and bytes an archive."""
        cases = [
            ("text/plain; charset=utf-8", b"<html>", "dockerfile"),
            ("", b"FROM busybox\n", "dockerfile"),
            ("application/octet-stream", b"FROM busybox\n", "dockerfile"),
            ("application/octet-stream", b"x\x00y", "archive"),
            ("application/x-tar", b"x", "archive"),
            ("application/gzip", b"x", "archive"),
            ("application/x-bzip2", b"x", "archive"),
            ("application/x-xz", b"x", "archive"),
        ]
        for header, data, kind in cases:
            self.assertEqual(remote.context_kind(header, data), kind, header)

    def test_refused(self) -> None:
        """Other types are dockerd's unsupported Content-Type; nothing is empty."""
        with self.assertRaises(SystemError_) as e:
            remote.context_kind("text/html", b"<html>")
        self.assertEqual(e.exception.message, 'unsupported Content-Type "text/html"')
        with self.assertRaises(SystemError_) as e:
            remote.context_kind("application/octet-stream", b"<html><body>")
        self.assertEqual(
            e.exception.message, 'unsupported Content-Type "application/octet-stream"'
        )
        with self.assertRaises(SystemError_) as e:
            remote.context_kind("", b"")
        self.assertEqual(e.exception.message, "empty response")


class _Server(Resource):
    """Answers each path with a status, headers and a body."""

    isLeaf = True

    def __init__(self, routes: dict[bytes, tuple[int, dict[bytes, bytes], bytes]]):
        super().__init__()
        self.routes = routes
        self.requests: list[tuple[bytes, bytes]] = []

    def render(self, request: Request) -> bytes:
        assert request.method is not None and request.path is not None
        self.requests.append((request.method, request.path))
        code, headers, body = self.routes.get(
            request.path,
            (404, {b"content-type": b"text/plain"}, b"404 page not found\n"),
        )
        request.setResponseCode(code)
        for name, value in headers.items():
            request.responseHeaders.setRawHeaders(name, [value])
        return body if request.method != b"HEAD" else b""


class FetcherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.server = _Server({
            b"/ctx.tar": (200, {b"content-type": b"application/x-tar",
                                b"last-modified": b"Sat, 14 Nov 2020 22:13:20 GMT"},
                          b"T" * 5000),
            b"/page": (200, {b"content-type": b"text/html"}, b"<html></html>"),
            b"/forbidden": (403, {}, b"  go away \n"),
            b"/broken": (502, {}, b"upstream"),
        })  # fmt: skip
        self.stub = StubTreq(self.server)
        self.fetcher = remote.Fetcher(
            None,
            maybeDeferred,
            client=self.stub,  # type: ignore[arg-type]
            synchronous=True,
        )

    def fetch(self, path: str, **kwargs: Any) -> Deferred[remote.Download]:
        d = Deferred.fromCoroutine(
            self.fetcher.fetch("http://h" + path, self.dir / path.strip("/"), **kwargs)
        )
        self.stub.flush()
        return d

    def test_download(self) -> None:
        """The body lands in the file with its digest, type and time."""
        seen: list[tuple[int, int | None]] = []
        download = self.successResultOf(
            self.fetch("/ctx.tar", progress=lambda n, t: seen.append((n, t)))
        )
        self.assertEqual(download.path.read_bytes(), b"T" * 5000)
        self.assertEqual(download.size, 5000)
        self.assertEqual(len(download.digest), 64)
        self.assertEqual(download.content_type, "application/x-tar")
        self.assertEqual(download.last_modified, 1_605_392_000)
        self.assertEqual(download.total, 5000)
        self.assertEqual(download.preamble, b"T" * remote.PREAMBLE)
        self.assertEqual(seen[-1], (5000, 5000))

    def test_status_errors(self) -> None:
        """A status of 400 or more is dockerd's message, of its kind."""
        cases: list[tuple[str, type[DockerError], str]] = [
            ("/nope", NotFound, "404 Not Found: 404 page not found"),
            ("/forbidden", Forbidden, "403 Forbidden: go away"),
            ("/broken", SystemError_, "502 Bad Gateway: upstream"),
        ]
        for path, kind, text in cases:
            failure = self.failureResultOf(self.fetch(path), kind)
            self.assertEqual(
                failure.value.message,
                f"failed to GET http://h{path} with status {text}",
            )
            self.assertFalse((self.dir / path.strip("/")).exists())

    def test_check_refuses(self) -> None:
        """The check sees the type and first bytes; its refusal wins, no file."""

        def check(content_type: str, preamble: bytes) -> None:
            remote.context_kind(content_type, preamble)

        failure = self.failureResultOf(self.fetch("/page", check=check), SystemError_)
        self.assertEqual(failure.value.message, 'unsupported Content-Type "text/html"')
        self.assertFalse((self.dir / "page").exists())

    def test_limit(self) -> None:
        """A body over the limit is cut and its file removed."""
        self.fetcher.limit = 1000
        failure = self.failureResultOf(self.fetch("/ctx.tar"), SystemError_)
        self.assertEqual(failure.value.message, "more than the limit of 1000 bytes")
        self.assertFalse((self.dir / "ctx.tar").exists())

    def test_smart_git(self) -> None:
        """Only a server that advertises upload-pack can fetch shallow."""
        self.server.routes[b"/repo.git/info/refs"] = (
            200,
            {b"content-type": b"application/x-git-upload-pack-advertisement"},
            b"",
        )
        d = Deferred.fromCoroutine(self.fetcher.smart_git("http://h/repo.git"))
        self.stub.flush()
        self.assertTrue(self.successResultOf(d))
        d = Deferred.fromCoroutine(self.fetcher.smart_git("http://h/dumb.git"))
        self.stub.flush()
        self.assertFalse(self.successResultOf(d))

    def test_unreachable(self) -> None:
        """Go's words for an address that does not answer, or does not resolve."""
        refused = remote.go_reason(
            "http://127.0.0.1:1/x", neterror.ConnectionRefusedError()
        )
        self.assertIsInstance(refused, SystemError_)
        self.assertEqual(
            refused.message,
            'Get "http://127.0.0.1:1/x": dial tcp 127.0.0.1:1: connect: '
            "connection refused",
        )
        unknown = remote.go_reason(
            "https://nowhere.invalid/x", neterror.DNSLookupError()
        )
        self.assertIsInstance(unknown, NotFound)
        self.assertEqual(
            unknown.message,
            'Get "https://nowhere.invalid/x": dial tcp: lookup nowhere.invalid: '
            "no such host",
        )


class GitURLTests(SynchronousTestCase):
    def test_fragments(self) -> None:
        """#ref:dir as dockerd reads it; master when no ref is named."""
        cases = {
            "git://h/r.git": ("git://h/r.git", "master", ""),
            "git://h/r.git#v1": ("git://h/r.git", "v1", ""),
            "https://h/r.git#main:sub/dir": ("https://h/r.git", "main", "sub/dir"),
            "https://h/r.git#:sub": ("https://h/r.git", "master", "sub"),
            "git@h:o/r.git#dev": ("git@h:o/r.git", "dev", ""),
            "github.com/o/r": ("https://github.com/o/r", "master", ""),
        }
        for url, (repo, ref, subdir) in cases.items():
            self.assertEqual(
                remote.parse_git_url(url), remote.GitSource(repo, ref, subdir), url
            )

    def test_option_refused(self) -> None:
        """A ref that git would read as an option is refused."""
        with self.assertRaises(InvalidParameter):
            remote.parse_git_url("git://h/r.git#--upload-pack=touch /x")


class CloneTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.root.mkdir()
        self.calls: list[list[str]] = []
        self.failing: dict[str, tuple[bytes, int]] = {}

    def git(self, directory: Path, args: list[str]) -> Deferred[tuple[bytes, int]]:
        self.assertEqual(directory, self.root)
        self.calls.append(args)
        result = self.failing.get(args[0], (b"", 0))
        if args[0] == "checkout" and result[1] == 0:
            (self.root / "sub").mkdir(exist_ok=True)
            if not (self.root / "link").is_symlink():
                (self.root / "link").symlink_to("/etc")
        return succeed(result)

    def clone(self, url: str, *, smart: bool = True) -> Deferred[Path]:
        return Deferred.fromCoroutine(
            remote.clone(
                remote.parse_git_url(url),
                self.root,
                self.git,  # type: ignore[arg-type]
                lambda _url: succeed(smart),  # type: ignore[arg-type,return-value]
            )
        )

    def test_steps(self) -> None:
        """dockerd's steps: init, origin, a shallow fetch of the ref, checkout."""
        self.assertEqual(
            self.successResultOf(self.clone("git://h/r.git#v1")), self.root
        )
        self.assertEqual(
            self.calls,
            [
                ["init", "-q"],
                ["remote", "add", "origin", "git://h/r.git"],
                ["fetch", "--depth", "1", "origin", "--", "v1"],
                ["checkout", "-q", "v1", "--"],
                ["submodule", "update", "--init", "--recursive", "--depth=1"],
            ],
        )

    def test_dumb_http(self) -> None:
        """A server that cannot fetch shallow gets a full fetch."""
        self.successResultOf(self.clone("http://h/r.git#main:sub", smart=False))
        self.assertIn(["fetch", "origin", "--", "main"], self.calls)

    def test_errors(self) -> None:
        """git's output in dockerd's words."""
        self.failing["fetch"] = (b"fatal: couldn't find remote ref master\n", 128)
        failure = self.failureResultOf(self.clone("git://h/r.git"), SystemError_)
        self.assertEqual(
            failure.value.message,
            "error fetching: fatal: couldn't find remote ref master\n: exit status 128",
        )

    def test_subdir(self) -> None:
        """The fragment's directory; a link stays inside; a file or nothing fails."""
        path = self.successResultOf(self.clone("git://h/r.git#main:sub"))
        self.assertEqual(path, self.root / "sub")
        self.calls.clear()
        (self.root / "sub" / "f").write_text("x")
        failure = self.failureResultOf(
            self.clone("git://h/r.git#main:sub/f"), SystemError_
        )
        self.assertIn(
            "error setting git context, not a directory", failure.value.message
        )
        failure = self.failureResultOf(
            self.clone("git://h/r.git#main:link/nothere"), SystemError_
        )
        # /etc of the link is the checkout's root, not the host's.
        self.assertEqual(
            failure.value.message,
            f"stat {self.root / 'etc' / 'nothere'}: no such file or directory",
        )


class TarDirectoryTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """A checkout becomes a context: files, links as links, owners root."""
        base = Path(self.mktemp())
        tree = base / "tree"
        (tree / ".git").mkdir(parents=True)
        (tree / "Dockerfile").write_text("FROM busybox\n")
        (tree / ".git" / "HEAD").write_text("ref\n")
        (tree / "link").symlink_to("Dockerfile")
        remote.tar_directory(tree, base / "ctx.tar")
        with tarfile.open(base / "ctx.tar") as tar:
            self.assertTrue(all(m.uid == 0 and m.gid == 0 for m in tar.getmembers()))
        with (base / "ctx.tar").open("rb") as src:
            context = receive(io.BytesIO(src.read()), base / "ctx", kind="archive")
        self.assertEqual(read_dockerfile(context, "link")[1], b"FROM busybox\n")
        self.assertIn(".git/HEAD", context.entries)
