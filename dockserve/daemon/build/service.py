# -*- test-case-name: tests.daemon.build.test_service -*-
"""
L{BuildService}: C{POST /build} and C{POST /build/prune} on the daemon's
image store and container service.

A build receives its context into C{<data-root>/build/tmp/} (from a
thread of its own: the body comes at the client's pace), reads and parses
the Dockerfile (a 400 before the stream when it is bad), then runs
L{dockserve.daemon.build.builder.Build}, each step's image made by the
image area's commit step (L{dockserve.daemon.images.commit}) and each
RUN in a container of the container service. The context and each step's
scratch files are removed at the end, whatever the end; a build cancelled
by its client (it went away) kills and removes its RUN container.

The build cache is the images the builder made (dockerd's classic cache
lives among the images too): C{cache.json} remembers them, so that
C{docker system df} counts them as C{Build Cache} and C{docker builder
prune} removes those no tag and no container holds.
"""

import base64
import binascii
import contextlib
import functools
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger

from dockserve.daemon import store as records
from dockserve.daemon.build import context as contexts
from dockserve.daemon.build import dockerfile, remote
from dockserve.daemon.build.builder import Build, BuildOptions
from dockserve.daemon.build.cache import Prober
from dockserve.daemon.build.output import Output
from dockserve.daemon.build.steps import RunFailed
from dockserve.daemon.images import reference
from dockserve.errors import DockerError, InvalidParameter, NotFound, SystemError_

_log = Logger()

#: The build's own container service calls, to end a RUN the client left.
_KILL_GRACE = 0
#: Seconds between two progress messages of a remote context's download.
_PROGRESS_SECONDS = 0.5


class _Engine:
    """L{dockserve.daemon.build.steps.Engine} over the daemon's areas."""

    def __init__(self, service: "BuildService") -> None:
        self._service = service
        self._images: Any = service.images
        self._containers: Any = service.containers

    def commit(
        self,
        *,
        parent: str,
        upper: Path | None,
        config: dict[str, Any],
        history: dict[str, Any],
        empty_layer: bool,
        container: str,
        container_config: dict[str, Any],
        exclude: frozenset[str],
    ) -> Deferred[str]:
        d: Deferred[str] = self._images.commit_image(
            parent=parent or None,
            upper=upper,
            config=config,
            history=history,
            empty_layer=empty_layer,
            container=container,
            container_config=container_config,
            exclude=exclude,
        )
        return d.addCallback(self._service.remember, history)

    def layers_of(self, image_id: str) -> tuple[str, ...]:
        store = self._images.store
        record = store.images.get(image_id) or store.held.get(image_id)
        if record is None:
            raise NotFound(f"No such image: {image_id}")
        return tuple(str(store.layer_path(d)) for d in record.diff_ids)

    def create(self, body: dict[str, Any]) -> str:
        return str(self._containers.create(None, body)["Id"])

    def run(
        self, container_id: str, output: Callable[[int, bytes], None]
    ) -> Deferred[int]:
        return Deferred.fromCoroutine(self._run(container_id, output))

    async def _run(
        self, container_id: str, output: Callable[[int, bytes], None]
    ) -> int:
        containers = self._containers
        attachment = containers.attach(
            container_id, output, stdin=False, stdout=True, stderr=True, stream=True
        )
        try:
            await containers.start(container_id)
            result = await containers.wait(container_id, "not-running")
            # Everything the process wrote reaches the stream before the
            # step's next line.
            closing: Deferred[None] = attachment.closed
            closing.addTimeout(5, self._service.reactor)
            with contextlib.suppress(Exception):
                await closing
        except CancelledError:
            # The client went away: the RUN ends, and its container with it.
            attachment.detach()
            with contextlib.suppress(DockerError):
                await containers.remove(container_id, force=True, volumes=True)
            raise
        return int(result.get("StatusCode", 0))

    def upper(self, container_id: str) -> Path:
        return Path(self._containers.upper(container_id))

    def remove(self, container_id: str) -> Deferred[None]:
        d: Deferred[None] = self._containers.remove(
            container_id, force=True, volumes=True
        )
        return d

    def in_thread(self, work: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = self._images.in_thread(work, *args)
        return d

    def scratch(self) -> Path:
        return self._service.tmp / f"step-{uuid.uuid4().hex}"

    def download(
        self, url: str, target: Path, progress: Callable[[int, int | None], None]
    ) -> Deferred[remote.Download]:
        return Deferred.fromCoroutine(
            self._service.fetcher.fetch(url, target, progress=progress)
        )


class _Images:
    """L{dockserve.daemon.build.builder.Images} over the image service."""

    def __init__(self, service: "BuildService") -> None:
        self._service = service
        self._images: Any = service.images

    def base(
        self,
        name: str,
        *,
        pull: bool,
        auth: dict[str, Any],
        platform: str = "",
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> Deferred[str]:
        return Deferred.fromCoroutine(
            self._base(name, pull, auth, platform, progress or _ignore)
        )

    async def _base(
        self,
        name: str,
        pull: bool,
        auth: dict[str, Any],
        platform: str,
        progress: Callable[[dict[str, Any]], None],
    ) -> str:
        images = self._images
        if not pull:
            try:
                return str(images.lookup(name).id)
            except NotFound:
                pass
        ref = reference.parse(name)
        await images.pull(
            ref.familiar_repository,
            ref.digest or ref.tag,
            registry_auth(auth, ref.domain),
            progress,
            platform or None,
        )
        return str(images.lookup(name).id)

    def image_config(self, image_id: str) -> dict[str, Any] | None:
        store = self._images.store
        record = store.images.get(image_id) or store.held.get(image_id)
        return None if record is None else dict(record.config)

    def tag(self, image_id: str, full: str) -> None:
        ref = reference.parse(full)
        self._images.tag(image_id, ref.familiar_repository, ref.tag)

    def prober(self, options: BuildOptions) -> Prober:
        images = self._images
        sources = []
        for name in options.cache_from:
            with contextlib.suppress(DockerError):
                sources.append(images.lookup(name).id)
        return Prober(
            images.parents.children,
            self.image_config,
            images.parent_of,
            enabled=not options.nocache,
            cache_from=sources,
        )


class BuildService:
    """
    The builder of a daemon.

    @ivar root: C{<data-root>/build}: C{cache.json}, and C{tmp/} (contexts
        and steps' scratch files, emptied at every start).
    """

    def __init__(self, root: Path, images: Any, containers: Any, reactor: Any) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.images = images
        self.containers = containers
        self.reactor = reactor
        self._cache_path = root / "cache.json"
        self._cache: dict[str, dict[str, Any]] | None = None
        self._fetcher: remote.Fetcher | None = None

    @property
    def fetcher(self) -> remote.Fetcher:
        """Downloads of remote contexts and C{ADD <url>} (made at first use)."""
        if self._fetcher is None:
            self._fetcher = remote.Fetcher(
                self.reactor,
                self.images.in_thread,
                synchronous=bool(self.images.synchronous),
            )
        return self._fetcher

    def restore(self) -> None:
        """Blocking, at start: what a crash left in C{tmp/} goes."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(mode=0o700)

    # --- the cache's records ------------------------------------------------

    def _entries(self) -> dict[str, dict[str, Any]]:
        if self._cache is None:
            try:
                value = records.read_json(self._cache_path)
            except (OSError, ValueError):
                value = {}
            self._cache = dict(value) if isinstance(value, dict) else {}
        return self._cache

    def _save(self) -> None:
        alive = self.images.store.images
        entries = {k: v for k, v in self._entries().items() if k in alive}
        self._cache = entries
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        records.write_json(self._cache_path, entries)

    def remember(self, image_id: str, history: dict[str, Any]) -> str:
        """An image a step made: part of the build cache from now on."""
        entries = self._entries()
        now = time.time()
        entry = entries.setdefault(
            image_id,
            {"created_by": history.get("created_by", ""), "created": now, "usage": 0},
        )
        entry["last_used"] = now
        entry["usage"] = int(entry.get("usage", 0)) + 1
        return image_id

    # --- a build ------------------------------------------------------------

    def check(self, query: dict[str, Any]) -> BuildOptions:
        """
        The build's options from the API's values, checked before the
        stream starts (dockerd's 400s).
        """
        tags: list[tuple[str, str]] = []
        for name in query.get("tags") or []:
            ref = reference.parse(name)
            if ref.digest:
                raise InvalidParameter(f"invalid reference format: {name}")
            tags.append((ref.tagged(), ref.familiar()))
        return BuildOptions(
            dockerfile=str(query.get("dockerfile") or "Dockerfile"),
            tags=tags,
            build_args=dict(query.get("buildargs") or {}),
            labels=dict(query.get("labels") or {}),
            target=str(query.get("target") or ""),
            nocache=bool(query.get("nocache")),
            pull=bool(query.get("pull")),
            rm=bool(query.get("rm", True)),
            forcerm=bool(query.get("forcerm")),
            quiet=bool(query.get("q")),
            cache_from=list(query.get("cachefrom") or []),
            host_config=dict(query.get("host_config") or {}),
            auth=dict(query.get("auth") or {}),
            remote=str(query.get("remote") or ""),
            platform=str(query.get("platform") or ""),
        )

    def prepare(
        self,
        options: BuildOptions,
        body: IO[bytes],
        send: Callable[[dict[str, Any]], None],
    ) -> Deferred["Prepared"]:
        """
        Receive the context (the body, or C{remote}'s) and parse its
        Dockerfile; fails with dockerd's errors. Only a remote context's
        download says anything (to C{send}) before the build: an error
        after that is the stream's, one before a plain status.
        """
        return Deferred.fromCoroutine(self._prepare(options, body, send))

    async def _prepare(
        self,
        options: BuildOptions,
        body: IO[bytes],
        send: Callable[[dict[str, Any]], None],
    ) -> "Prepared":
        target = self.tmp / f"context-{uuid.uuid4().hex}"
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            wanted = options.dockerfile
            if options.remote:
                context, wanted = await self._remote(options, target, send)
            else:
                context = await self.images.in_reader_thread(
                    body, contexts.receive, body, target
                )

            def read() -> tuple[str, bytes]:
                name, data = contexts.read_dockerfile(context, wanted)
                contexts.apply_dockerignore(context, name)
                return name, data

            name, data = await self.images.in_thread(read)
            parsed = await self.images.in_thread(dockerfile.parse, data, name)
        except BaseException:
            await self.images.in_thread(shutil.rmtree, target, True)
            raise
        return Prepared(context, parsed)

    async def _remote(
        self,
        options: BuildOptions,
        target: Path,
        send: Callable[[dict[str, Any]], None],
    ) -> tuple[contexts.Context, str]:
        """
        C{remote}'s context (see L{dockserve.daemon.build.remote}) and the
        Dockerfile to read in it (a Dockerfile served alone is the one).
        """
        url = options.remote
        if remote.is_git_url(url):
            return await self._git_context(url, target), options.dockerfile
        if not remote.is_url(url):
            raise SystemError_(f"remoteURL ({url}) could not be recognized as URL")
        out = Output(send, quiet=options.quiet)
        kinds: list[str] = []
        checked: list[DockerError] = []

        def check(content_type: str, preamble: bytes) -> None:
            try:
                kinds.append(remote.context_kind(content_type, preamble))
            except DockerError as e:
                checked.append(
                    remote.rewrapped(
                        e, f"error detecting content type for remote {url}: "
                    )
                )
                raise checked[-1] from None

        last = [self.reactor.seconds()]

        def progress(current: int, _total: int | None) -> None:
            now = self.reactor.seconds()
            if now - last[0] >= _PROGRESS_SECONDS:
                last[0] = now
                out.context_progress(url, current)

        downloaded = self.tmp / f"remote-{uuid.uuid4().hex}"
        try:
            download = await self.fetcher.fetch(
                url, downloaded, check=check, progress=progress
            )
        except DockerError as e:
            if checked:
                raise
            raise remote.rewrapped(
                e, f"error downloading remote context {url}: "
            ) from None
        try:
            out.context_progress(url, download.size)
            context = await self.images.in_thread(
                _receive_file, download.path, target, kinds[0]
            )
        finally:
            await self.images.in_thread(download.path.unlink, True)
        return context, "Dockerfile" if kinds[0] == "dockerfile" else options.dockerfile

    async def _git_context(self, url: str, target: Path) -> contexts.Context:
        """A Git repository's checkout as the context."""
        source = remote.parse_git_url(url)
        work = self.tmp / f"git-{uuid.uuid4().hex}"
        run = remote.git_runner(self.reactor, self.tmp)
        repo = work / "repo"
        try:
            await self.images.in_thread(
                functools.partial(repo.mkdir, 0o700, parents=True)
            )
            checkout = await remote.clone(source, repo, run, self.fetcher.smart_git)
            archive = work / "context.tar"
            await self.images.in_thread(remote.tar_directory, checkout, archive)
            context: contexts.Context = await self.images.in_thread(
                _receive_file, archive, target, "archive"
            )
            return context
        finally:
            await self.images.in_thread(shutil.rmtree, work, True)

    def build(
        self,
        options: BuildOptions,
        prepared: "Prepared",
        send: Callable[[dict[str, Any]], None],
    ) -> Deferred[str]:
        """
        Run the build, its lines to C{send}; fires with the image's ID
        (errors are the stream's last message, and the Deferred fails with
        them too). Cancelling it ends the build: a running RUN's container
        is removed.
        """
        return Deferred.fromCoroutine(self._build(options, prepared, send))

    async def _build(
        self,
        options: BuildOptions,
        prepared: "Prepared",
        send: Callable[[dict[str, Any]], None],
    ) -> str:
        out = Output(send, quiet=options.quiet)
        build = Build(
            prepared.dockerfile,
            options,
            prepared.context,
            _Engine(self),
            _Images(self),
            out,
        )
        try:
            image_id = await build.run()
        except CancelledError:
            await self._clean(build, force=True)
            raise
        except RunFailed as e:
            await self._clean(build, force=options.forcerm)
            out.error(e.message, e.code)
            raise
        except DockerError as e:
            await self._clean(build, force=options.forcerm)
            out.error(e.message)
            raise
        except Exception as e:
            await self._clean(build, force=options.forcerm)
            _log.failure("build failed")
            out.error(f"build failed: {e}")
            raise
        finally:
            with contextlib.suppress(Exception):
                self._save()
            # After the answer: the client need not wait for the context's
            # files to go (tmp/ is emptied at the next start anyway).
            removing = self.images.in_thread(shutil.rmtree, prepared.context.root, True)
            removing.addErrback(lambda f: _log.failure("removing a context", f))
        return image_id

    async def _clean(self, build: Build, *, force: bool) -> None:
        """The containers of failed steps go with C{forcerm} (or a cancel)."""
        if not force:
            return
        for container_id in list(build.leftovers):
            with contextlib.suppress(DockerError):
                await self.containers.remove(container_id, force=True, volumes=True)

    # --- the cache ----------------------------------------------------------

    def cache_usage(self) -> list[dict[str, Any]]:
        """C{GET /system/df}'s C{BuildCache}: the images steps made."""
        store = self.images.store
        rows = []
        for image_id, entry in sorted(self._entries().items()):
            record = store.images.get(image_id)
            if record is None:
                continue
            parent = self.images.parent_of(image_id)
            parent_layers = (
                set(store.images[parent].diff_ids) if parent in store.images else set()
            )
            own = [d for d in record.diff_ids if d not in parent_layers]
            size = sum(store.layer_disk_size(d) for d in own)
            in_use = bool(store.refs_of(image_id)) or bool(
                self.containers.containers_using(image_id)
            )
            rows.append({
                "ID": image_id.removeprefix("sha256:")[:25],
                "Parent": parent.removeprefix("sha256:")[:25],
                "Parents": [parent.removeprefix("sha256:")[:25]] if parent else [],
                "Type": "regular",
                "Description": str(entry.get("created_by", "")),
                "InUse": in_use,
                "Shared": False,
                "Size": size,
                "CreatedAt": _rfc3339(float(entry.get("created", 0))),
                "LastUsedAt": _rfc3339(float(entry.get("last_used", 0))),
                "UsageCount": int(entry.get("usage", 0)),
            })  # fmt: skip
        return rows

    def prune(self, *, all_: bool = False) -> Deferred[dict[str, Any]]:
        """
        C{POST /build/prune}: the cache's images that no tag and no
        container holds go (untagged results of builds among them), newest
        first so that each goes as a leaf.
        """
        return Deferred.fromCoroutine(self._prune(all_=all_))

    async def _prune(self, *, all_: bool) -> dict[str, Any]:
        del all_  # Every unused cache entry goes either way: nothing is shared.
        usage = {row["ID"]: row for row in self.cache_usage()}
        entries = self._entries()
        store = self.images.store
        order = sorted(
            (i for i in entries if i in store.images),
            key=lambda i: float(entries[i].get("created", 0)),
            reverse=True,
        )
        deleted: list[str] = []
        reclaimed = 0
        for image_id in order:
            if store.refs_of(image_id) or self.containers.containers_using(image_id):
                continue
            if any(c in store.images for c in self.images.parents.children(image_id)):
                # A kept image is made on it: its layers stay anyway.
                continue
            try:
                await self.images.remove(image_id, force=False, noprune=True)
            except DockerError:
                continue
            row = usage.get(image_id.removeprefix("sha256:")[:25])
            reclaimed += int(row["Size"]) if row else 0
            deleted.append(image_id.removeprefix("sha256:"))
            entries.pop(image_id, None)
        self._save()
        return {"CachesDeleted": deleted, "SpaceReclaimed": reclaimed}


class Prepared:
    """A received context and its parsed Dockerfile."""

    def __init__(
        self, context: contexts.Context, parsed: dockerfile.Dockerfile
    ) -> None:
        self.context = context
        self.dockerfile = parsed

    def discard(self) -> Deferred[None]:
        """Remove the context (a build that does not run)."""
        self.context.remove()
        return succeed(None)


#: The key of Docker Hub's credentials (dockerd's C{IndexServer}).
_HUB_KEY = "https://index.docker.io/v1/"


def registry_auth(auth: dict[str, Any], domain: str) -> dict[str, Any] | None:
    """
    The credentials of C{X-Registry-Config} for the registry C{domain}, as
    dockerd's C{ResolveAuthConfig} finds them: by its name (Docker Hub's
    by its index URL), else by any key that is a URL or path of that host;
    an entry's C{auth} (base64 C{user:password}) read as its user and
    password.
    """
    official = domain == reference.DEFAULT_DOMAIN
    key = _HUB_KEY if official else domain
    found = auth.get(key)
    if found is None and not official:
        for name, value in auth.items():
            host = name.removeprefix("http://").removeprefix("https://")
            if host.split("/", 1)[0] == key:
                found = value
                break
    if not isinstance(found, dict):
        return None
    found = dict(found)
    encoded = found.get("auth")
    if encoded and not found.get("username"):
        with contextlib.suppress(ValueError, binascii.Error):
            user, _, password = base64.b64decode(encoded).decode().partition(":")
            found["username"], found["password"] = user, password
    return found


def _ignore(_message: dict[str, Any]) -> None:
    """Progress nobody reads."""


def _receive_file(path: Path, target: Path, kind: str) -> contexts.Context:
    """Blocking: the context in the file at C{path} (a download, a checkout's tar)."""
    with path.open("rb") as src:
        return contexts.receive(src, target, kind=kind)


def _rfc3339(seconds: float) -> str:
    if not seconds:
        return "0001-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
