# -*- test-case-name: tests.daemon.build.test_remote -*-
"""
What a build fetches from elsewhere, as dockerd's C{builder/remotecontext}
fetches it: a remote context (C{POST /build?remote=...}, which the Docker
SDK sends for C{images.build(path="https://...")}; the docker CLI fetches
URLs and clones repositories itself and sends a tar) and C{ADD <url>}'s
files.

  - An http(s) URL is downloaded (redirects followed, as Go's
    C{http.Get}); a status of 400 or more is an error with the status
    line and the body, dockerd's C{failed to GET <url> with status 404 Not
    Found: ...}, of the kind the status says (404: not found, 401, 403,
    400; any other a server error). An address that does not answer is
    Go's C{Get "<url>": dial tcp 127.0.0.1:1: connect: connection refused}.
  - A remote context's type comes from its C{Content-Type}, or from its
    first 100 bytes when the server says nothing or
    C{application/octet-stream} (the part of Go's
    C{http.DetectContentType} that decides): C{text/plain} is a Dockerfile
    alone, a tar type (plain or compressed) or bytes are an archive, and
    anything else (C{text/html}...) dockerd's C{unsupported Content-Type}.
  - A Git URL (dockerd's C{urlutil.IsGitURL}: an http(s) URL ending in
    C{.git} with an optional C{#ref:dir} fragment, or one starting with
    C{git://}, C{git@}, C{ssh://}, C{github.com/}) is fetched with the
    C{git} program as dockerd's C{gitutils} does: C{init}, C{remote add
    origin}, C{fetch --depth 1 origin <ref>} (a full fetch from a "dumb"
    HTTP server, which cannot make a shallow one), C{checkout}, submodules;
    the ref is C{master} unless the fragment names one, and the context is
    the checkout (its C{.git} too) or the fragment's directory in it. git
    runs with no configuration of the daemon's (no global or system file,
    no prompt for a password, C{ssh} in batch mode) and only the C{git},
    C{http}, C{https} and C{ssh} transports: a submodule cannot point at a
    file of this machine.

Every download is bounded (L{LIMIT} bytes, and the free space under the
data root as for a context sent with the request) and streams to a file
through a worker thread, the connection paused while the disk falls
behind.
"""

import contextlib
import email.utils
import hashlib
import os
import posixpath
import queue
import re
import shutil
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit, urlunsplit

from attrs import frozen

from treq.client import HTTPClient
from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss

from dockserve.daemon.build import context as contexts
from dockserve.errors import (
    DockerError,
    Forbidden,
    InvalidParameter,
    NotFound,
    SystemError_,
    Unauthorized,
)

#: The most a remote context or an C{ADD <url>} file may weigh.
LIMIT = 8 << 30
#: How much of a remote context decides its type (dockerd's
#: C{maxPreambleLength}).
PREAMBLE = 100
#: Pause the connection when this much waits for the disk.
_HIGH_WATER = 8 << 20
#: Check the free space every this many bytes written.
_CHECK_EVERY = 16 << 20
#: How much of an error page goes into the message.
_ERROR_BODY = 64 << 10

_GIT_URL = re.compile(r"\.git(?:#.+)?$")
_ACCEPTABLE = re.compile(
    r"(?:application/(?:(?:x\-)?tar|octet\-stream|((?:x\-)?(?:gzip|bzip2?|xz)))"
    r"|(?:text/plain))"
)
_SMART_GIT = "application/x-git-upload-pack-advertisement"

#: The transports git may use for a context and its submodules.
GIT_PROTOCOLS = "git:http:https:ssh"


def is_url(text: str) -> bool:
    """An http(s) URL (dockerd's C{urlutil.IsURL})."""
    return text.startswith(("http://", "https://"))


def is_git_url(text: str) -> bool:
    """A Git repository's URL (dockerd's C{urlutil.IsGitURL})."""
    if is_url(text) and _GIT_URL.search(text):
        return True
    return text.startswith(("git://", "github.com/", "git@", "ssh://"))


# --- what a remote context is ---------------------------------------------

_HTML_TAGS = (
    b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1",
    b"<DIV", b"<FONT", b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B",
    b"<BODY", b"<BR", b"<P", b"<!--",
)  # fmt: skip
_SIGNATURES = (
    (b"<?xml", "text/xml; charset=utf-8"),
    (b"%PDF-", "application/pdf"),
    (b"%!PS-Adobe-", "application/postscript"),
    (b"\xfe\xff", "text/plain; charset=utf-16be"),
    (b"\xff\xfe", "text/plain; charset=utf-16le"),
    (b"\xef\xbb\xbf", "text/plain; charset=utf-8"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"BM", "image/bmp"),
    (b"\x1f\x8b\x08", "application/x-gzip"),
    (b"PK\x03\x04", "application/zip"),
    (b"Rar!\x1a\x07", "application/x-rar-compressed"),
    (b"\x00asm", "application/wasm"),
    (b"OggS\x00", "application/ogg"),
)
_BINARY = frozenset([*range(0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])


def sniff(data: bytes) -> str:
    """
    The media type Go's C{http.DetectContentType} gives C{data}, for the
    kinds that decide whether a remote context is taken (text, markup,
    documents, images, archives; anything else is bytes).
    """
    stripped = data.lstrip(b"\t\n\x0c\r ")
    upper = stripped.upper()
    for tag in _HTML_TAGS:
        rest = upper[len(tag) : len(tag) + 1]
        if upper.startswith(tag) and rest in {b" ", b">"}:
            return "text/html; charset=utf-8"
    for signature, kind in _SIGNATURES:
        source = stripped if signature == b"<?xml" else data
        if source.startswith(signature):
            return kind
    if any(b in _BINARY for b in data):
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def context_kind(content_type: str, preamble: bytes) -> str:
    """
    C{"dockerfile"} or C{"archive"}: what a remote context is, from the
    server's C{Content-Type} and its first bytes (dockerd's
    C{inspectResponse}).

    @raise SystemError_: C{unsupported Content-Type "text/html"}, or
        C{empty response}.
    """
    if not preamble:
        raise SystemError_("empty response")
    kind = content_type
    if not kind or kind == "application/octet-stream":
        kind = sniff(preamble[:PREAMBLE])
    kind = kind.split(";", 1)[0].strip().lower()
    match = _ACCEPTABLE.search(kind)
    if match is None:
        raise SystemError_(f'unsupported Content-Type "{content_type}"')
    return "dockerfile" if match.group(0) == "text/plain" else "archive"


def url_filename(url: str) -> str:
    """
    The name C{ADD <url>} gives its file: the last element of the URL's
    path (dockerd's C{downloadSource}).

    @raise InvalidParameter: C{cannot determine filename for source <url>}.
    """
    name = posixpath.basename(unquote(urlsplit(url).path))
    if not name or name in {".", ".."}:
        raise InvalidParameter(f"cannot determine filename for source {url}")
    return name


def rewrapped(error: DockerError, prefix: str) -> DockerError:
    """C{error}, of the same kind, with C{prefix} before its message."""
    return type(error)(prefix + error.message)


# --- downloads ------------------------------------------------------------


@frozen
class Download:
    """
    A downloaded body.

    @ivar path: The file it was written to.
    @ivar size: Its length.
    @ivar digest: Its content's sha256 (hex).
    @ivar content_type: The server's C{Content-Type} (C{""}: none).
    @ivar preamble: Its first bytes (up to L{PREAMBLE}).
    @ivar last_modified: C{Last-Modified} in seconds, or C{None}.
    @ivar total: C{Content-Length}, or C{None}.
    """

    path: Path
    size: int
    digest: str
    content_type: str
    preamble: bytes
    last_modified: float | None
    total: int | None


class _TooLarge(Exception):
    pass


class _Receiver(Protocol):
    """
    A response body to a worker thread through a queue: the connection is
    paused while more than L{_HIGH_WATER} bytes wait; past C{limit} bytes
    it is cut.

    @ivar head: Fires once the first L{PREAMBLE} bytes are in (or the body
        ended sooner).
    @ivar done: Fires when the body ended, fails when it was cut.
    """

    def __init__(self, chunks: "queue.Queue[bytes | None]", limit: int) -> None:
        self.chunks = chunks
        self.limit = limit
        self.progress: Callable[[int], None] | None = None
        self.received = 0
        self.queued = 0
        self.paused = False
        self.preamble = b""
        self.head: Deferred[None] = Deferred()
        self.done: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.received += len(data)
        if self.received > self.limit:
            self.stop()
            self._end(Failure(_TooLarge()))  # type: ignore[no-untyped-call]
            return
        if len(self.preamble) < PREAMBLE:
            self.preamble += data[: PREAMBLE - len(self.preamble)]
            if len(self.preamble) >= PREAMBLE:
                self.head.callback(None)
        self.chunks.put(data)
        self.queued += len(data)
        if self.queued > _HIGH_WATER and not self.paused and self.transport:
            self.paused = True
            cast("Any", self.transport).pauseProducing()
        if self.progress is not None:
            self.progress(self.received)

    def drained(self, amount: int) -> None:
        """The worker wrote C{amount} (on the reactor thread)."""
        self.queued -= amount
        if self.paused and self.queued < _HIGH_WATER // 2 and self.transport:
            self.paused = False
            cast("Any", self.transport).resumeProducing()

    def stop(self) -> None:
        """Stop the download (the disk failed, or it is too large)."""
        if self.transport is not None:
            cast("Any", self.transport).stopProducing()

    def _end(self, reason: Failure | None) -> None:
        if not self.head.called:
            self.head.callback(None)
        if self.done.called:
            return
        if reason is None:
            self.done.callback(None)
        else:
            self.done.errback(reason)

    def connectionLost(self, reason: Failure = ResponseDone) -> None:  # type: ignore[assignment]
        self.chunks.put(None)
        if isinstance(reason.value, ResponseDone | PotentialDataLoss):
            self._end(None)
        else:
            self._end(reason)


def go_reason(url: str, error: BaseException) -> DockerError:
    """
    What Go's C{http.Get} says when C{url} cannot be fetched: C{Get
    "<url>": dial tcp 127.0.0.1:1: connect: connection refused}; a name
    that does not resolve is dockerd's not found.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(error, neterror.DNSLookupError):
        return NotFound(f'Get "{url}": dial tcp: lookup {host}: no such host')
    if isinstance(error, neterror.ConnectionRefusedError):
        reason = f"dial tcp {address}: connect: connection refused"
    elif isinstance(error, neterror.TimeoutError | neterror.TCPTimedOutError):
        reason = f"dial tcp {address}: i/o timeout"
    elif isinstance(error, neterror.NoRouteError):
        reason = f"dial tcp {address}: connect: no route to host"
    elif hasattr(error, "reasons"):
        reason = "; ".join(str(r.value) for r in error.reasons)
    else:
        reason = str(error) or type(error).__name__
    return SystemError_(f'Get "{url}": {reason}')


class Fetcher:
    """
    Downloads over HTTP(S) for a build (one per daemon, its connections
    pooled).

    @param in_thread: Runs blocking work in a worker thread.
    @param client: The HTTP client (tests give a C{StubTreq}'s).
    @param limit: The most a download may weigh.
    """

    def __init__(
        self,
        reactor: Any,
        in_thread: Callable[..., Deferred[Any]],
        *,
        client: HTTPClient | None = None,
        limit: int = LIMIT,
        synchronous: bool = False,
    ) -> None:
        self._reactor = reactor
        self._in_thread = in_thread
        self._client = client
        self.limit = limit
        self._synchronous = synchronous

    def client(self) -> HTTPClient:
        """The HTTP client, made at first use."""
        if self._client is None:
            pool = HTTPConnectionPool(self._reactor)  # type: ignore[no-untyped-call]
            agent = Agent(self._reactor, pool=pool)  # type: ignore[no-untyped-call]
            self._client = HTTPClient(agent)
        return self._client

    async def _get(self, url: str, method: str = "GET") -> Any:
        try:
            return await self.client().request(method, url, unbuffered=True)
        except CancelledError:
            raise
        except Exception as e:
            raise go_reason(url, e) from None

    async def fetch(
        self,
        url: str,
        target: Path,
        *,
        check: Callable[[str, bytes], None] | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Download:
        """
        Download C{url} to the new file C{target}.

        @param check: Called with the C{Content-Type} and the first bytes
            before the rest is taken; raises to refuse the body.
        @param progress: Told the bytes received so far and the expected
            total (or C{None}), as they arrive, once C{check} has passed.
        @raise DockerError: Of dockerd's kinds and texts (see the module).
        """
        response = await self._get(url)
        headers = response.headers
        if response.code >= 400:
            raise await self._status_error(url, response)
        content_type = (headers.getRawHeaders(b"content-type") or [b""])[0].decode(
            "latin-1"
        )
        total = response.length if isinstance(response.length, int) else None
        modified = (headers.getRawHeaders(b"last-modified") or [b""])[0].decode(
            "latin-1"
        )
        chunks: queue.Queue[bytes | None] = queue.Queue()
        receiver = _Receiver(chunks, self.limit)

        def drained(amount: int) -> None:
            if self._synchronous:
                receiver.drained(amount)
            else:
                self._reactor.callFromThread(receiver.drained, amount)

        writing = None
        if not self._synchronous:
            writing = self._in_thread(_write, chunks, target, drained)
            writing.addErrback(_stopping, receiver)
        response.original.deliverBody(receiver)
        try:
            await receiver.head
            if check is not None:
                check(content_type, receiver.preamble)
            if progress is not None:
                progress(receiver.received, total)
                receiver.progress = lambda n: progress(n, total)
            await receiver.done
            if writing is None:
                writing = self._in_thread(_write, chunks, target, drained)
            size, digest = await writing
        except BaseException as e:
            receiver.stop()
            chunks.put(None)
            disk: DockerError | None = None
            try:
                await (writing or self._in_thread(_write, chunks, target, drained))
            except DockerError as failed:
                disk = failed
            except Exception:  # noqa: S110 - the first error wins
                pass
            await self._in_thread(_unlink, target)
            if disk is not None:
                raise disk from None
            if isinstance(e, _TooLarge):
                raise SystemError_(
                    f"more than the limit of {self.limit} bytes"
                ) from None
            if isinstance(e, DockerError | CancelledError):
                raise
            raise SystemError_(_failure_text(e)) from None
        return Download(
            target,
            size,
            digest,
            content_type,
            receiver.preamble,
            _http_time(modified),
            total,
        )

    async def _status_error(self, url: str, response: Any) -> DockerError:
        """The error of a status of 400 or more (dockerd's C{GetWithStatusError})."""
        body = b""
        with contextlib.suppress(Exception):
            body = (await response.content())[:_ERROR_BODY]
        phrase = response.phrase.decode("latin-1") if response.phrase else ""
        status = f"{response.code} {phrase}".rstrip()
        message = (
            f"failed to GET {url} with status {status}: "
            f"{body.strip().decode('utf-8', 'replace')}"
        )
        kind = {
            404: NotFound,
            400: InvalidParameter,
            401: Unauthorized,
            403: Forbidden,
        }.get(response.code, SystemError_)
        return kind(message)

    async def smart_git(self, url: str) -> bool:
        """
        Whether the Git repository at the http(s) C{url} is served by a
        smart server (which can make shallow fetches), as dockerd checks.
        """
        service = url + "/info/refs?service=git-upload-pack"
        for method in ("HEAD", "GET"):
            try:
                response = await self._get(service, method)
                await response.content()
            except DockerError:
                continue
            if response.code != 200:
                continue
            kind = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
            return bool(kind.decode("latin-1") == _SMART_GIT)
        return False


def _stopping(failure: Failure, receiver: _Receiver) -> Failure:
    """The disk failed: stop the download rather than queue it forever."""
    receiver.stop()
    return failure


def _failure_text(error: BaseException) -> str:
    if hasattr(error, "reasons"):
        return "; ".join(str(r.value) for r in error.reasons)
    if isinstance(error, Failure):
        return str(error.value)
    return str(error) or type(error).__name__


def _write(
    chunks: "queue.Queue[bytes | None]", target: Path, drained: Callable[[int], None]
) -> tuple[int, str]:
    """Blocking: the queued chunks to C{target}; its size and sha256."""
    hasher = hashlib.sha256()
    size = 0
    next_check = 0
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with target.open("xb") as out:
        while (chunk := chunks.get()) is not None:
            hasher.update(chunk)
            out.write(chunk)
            size += len(chunk)
            drained(len(chunk))
            if size >= next_check:
                next_check = size + _CHECK_EVERY
                if contexts.free_space(target.parent) < contexts.RESERVE:
                    raise contexts.ContextError("no space left on device")
    return size, hasher.hexdigest()


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _http_time(text: str) -> float | None:
    """An HTTP date (C{Last-Modified}) in seconds, or C{None}."""
    if not text:
        return None
    try:
        return email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# --- Git ------------------------------------------------------------------


@frozen
class GitSource:
    """
    A Git context: the repository, the ref to check out and the
    directory of the checkout that is the context (C{""}: all of it).
    """

    remote: str
    ref: str
    subdir: str


def parse_git_url(url: str) -> GitSource:
    """
    C{url} as dockerd's C{parseRemoteURL} reads it: C{#ref:dir} in the
    fragment, the ref C{master} when none is named, C{https://} before a
    URL that names no transport (C{github.com/...}).

    @raise InvalidParameter: For a ref that would read as an option.
    """
    if not (is_url(url) or url.startswith(("git://", "git@", "ssh://"))):
        url = "https://" + url
    if url.startswith("git@"):
        remote, _, fragment = url.partition("#")
    else:
        parts = urlsplit(url)
        fragment = parts.fragment
        remote = urlunsplit(parts._replace(fragment=""))
    ref, _, subdir = fragment.partition(":")
    ref = ref or "master"
    if ref.startswith("-"):
        raise InvalidParameter(f"invalid git ref: {ref}")
    return GitSource(remote, ref, subdir)


RunGit = Callable[[Path, list[str]], Awaitable[tuple[bytes, int]]]


def git_runner(reactor: Any, home: Path) -> RunGit:
    """
    Runs C{git} from the reactor in a directory, with none of this
    machine's git or ssh settings in the way: its combined output and exit
    status.
    """

    async def run(directory: Path, args: list[str]) -> tuple[bytes, int]:
        executable = shutil.which("git")
        if executable is None:
            return b'exec: "git": executable file not found in $PATH', -1
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ALLOW_PROTOCOL": GIT_PROTOCOLS,
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        }
        git_dir = str(directory / ".git")
        argv = ["--work-tree", str(directory), "--git-dir", git_dir, *args]
        out, err, code = await getProcessOutputAndValue(  # type: ignore[no-untyped-call]
            executable, argv, env=env, path=str(directory), reactor=reactor
        )
        return bytes(out) + bytes(err), int(code)

    return run


async def clone(
    source: GitSource,
    root: Path,
    run: RunGit,
    smart: Callable[[str], Awaitable[bool]],
) -> Path:
    """
    Fetch C{source} into the empty directory C{root} (dockerd's
    C{cloneGitRepo}); the directory that is the context.

    @raise SystemError_: With git's output, in dockerd's words.
    """
    output, code = await run(root, ["init", "-q"])
    if code != 0:
        raise SystemError_(f"failed to init repo at {root}: {_exit(output, code)}")
    output, code = await run(root, ["remote", "add", "origin", source.remote])
    if code != 0:
        raise SystemError_(
            f"failed add origin repo at {source.remote}: {_exit(output, code)}"
        )
    fetch = ["fetch"]
    if not is_url(source.remote) or await smart(source.remote):
        fetch += ["--depth", "1"]
    output, code = await run(root, [*fetch, "origin", "--", source.ref])
    if code != 0:
        raise SystemError_(f"error fetching: {_exit(output, code)}")
    output, code = await run(root, ["checkout", "-q", source.ref, "--"])
    if code != 0:
        fallback, code2 = await run(root, ["checkout", "-q", "FETCH_HEAD", "--"])
        if code2 != 0:
            raise SystemError_(
                f"error checking out {source.ref}: {_exit(output, code)}"
            )
        del fallback
    output, code = await run(
        root, ["submodule", "update", "--init", "--recursive", "--depth=1"]
    )
    if code != 0:
        raise SystemError_(f"error initializing submodules: {_exit(output, code)}")
    if not source.subdir:
        return root
    return _subdir(root, source.subdir)


def _exit(output: bytes, code: int) -> str:
    """Go's C{<output>: exit status N}."""
    return f"{output.decode('utf-8', 'replace')}: exit status {code}"


def _subdir(root: Path, subdir: str) -> Path:
    """
    The fragment's directory in the checkout, its symlinks followed only
    inside it (dockerd's C{FollowSymlinkInScope}).
    """
    resolved = root
    pending = [p for p in subdir.split("/") if p not in {"", "."}]
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved != root:
                resolved = resolved.parent
            continue
        candidate = resolved / part
        if candidate.is_symlink():
            links += 1
            if links > 40:
                raise SystemError_(
                    f'error setting git context, "{subdir}" not within git root'
                )
            target = str(candidate.readlink())
            if target.startswith("/"):
                resolved = root
            pending = [p for p in target.split("/") if p not in {"", "."}] + pending
            continue
        resolved = candidate
    if not resolved.exists():
        raise SystemError_(f"stat {resolved}: no such file or directory")
    if not resolved.is_dir():
        raise SystemError_(f"error setting git context, not a directory: {resolved}")
    return resolved


def tar_directory(directory: Path, out: Path) -> None:
    """
    Blocking: the tree at C{directory} as a tar at C{out} (links kept as
    links, owners root), the context a Git checkout becomes.
    """

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(out, "x", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name, recursive=True, filter=owned_by_root)
