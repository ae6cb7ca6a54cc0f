# -*- test-case-name: tests.daemon.images.test_registry -*-
"""
A Registry HTTP API v2 client: pull and push with dockerd's progress.

Manifests (Docker schema 2, OCI, manifest lists and OCI indexes with
platform selection) are small and read whole; blobs stream through a
bounded queue to a worker thread that hashes and writes them, pausing the
connection when the disk falls behind. Every blob's digest is checked
before it enters the store. Two pulls that need the same blob share one
download.

Loopback registries and those named by C{--insecure-registry} are reached
over plain HTTP (dockerd tries HTTPS first and falls back; a registry
that speaks only HTTP is what these options are for). Docker Hub pulls try
each C{--registry-mirror} first.
"""

import base64
import gzip
import hashlib
import ipaddress
import json
import queue
import re
import shutil
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlencode, urljoin, urlsplit

import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from dockserve.daemon.images import layers, reference
from dockserve.daemon.images.store import ImageStore, LayerSource, hex_of
from dockserve.errors import (
    DockerError,
    InvalidParameter,
    NotFound,
    SystemError_,
    Unauthorized,
)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
_ACCEPT = f"{OCI_INDEX}, {DOCKER_LIST}, {OCI_MANIFEST}, {DOCKER_MANIFEST}"

_HUB = "registry-1.docker.io"

#: Bytes queued for the writer thread before the connection is paused.
_HIGH_WATER = 8 << 20

Progress = Callable[[dict[str, Any]], None]


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _go_arch() -> tuple[str, str]:
    import os  # noqa: PLC0415

    machine = os.uname().machine
    return {
        "x86_64": ("amd64", ""),
        "aarch64": ("arm64", "v8"),
        "armv7l": ("arm", "v7"),
        "i686": ("386", ""),
    }.get(machine, (machine, ""))


def _is_loopback(domain: str) -> bool:
    host = domain.rsplit(":", 1)[0] if not domain.endswith("]") else domain
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Auth:
    """Credentials for one registry, and the bearer tokens they earned."""

    def __init__(self, credentials: dict[str, Any] | None) -> None:
        creds = credentials or {}
        self.username = creds.get("username") or ""
        self.password = creds.get("password") or ""
        self.identity_token = creds.get("identitytoken") or ""
        self.registry_token = creds.get("registrytoken") or ""
        self.tokens: dict[str, str] = {}
        self.basic = False

    def basic_header(self) -> bytes | None:
        if not self.username:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return b"Basic " + base64.b64encode(raw)


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class _BlobReceiver(Protocol):
    """
    Takes a response body and hands it, chunk by chunk, to a worker
    thread through a bounded queue; pauses the connection when the queue
    is full.
    """

    def __init__(
        self, chunks: "queue.Queue[bytes | None]", on_bytes: Callable[[int], None]
    ) -> None:
        self.chunks = chunks
        self.queued = 0
        self.paused = False
        self.done: Deferred[None] = Deferred()
        self._on_bytes = on_bytes

    def dataReceived(self, data: bytes) -> None:
        self.chunks.put(data)
        self._on_bytes(len(data))
        self.queued += len(data)
        if self.queued > _HIGH_WATER and not self.paused and self.transport:
            self.paused = True
            cast("Any", self.transport).pauseProducing()

    def drained(self, amount: int) -> None:
        """Called (on the reactor thread) when the worker wrote C{amount}."""
        self.queued -= amount
        if self.paused and self.queued < _HIGH_WATER // 2 and self.transport:
            self.paused = False
            cast("Any", self.transport).resumeProducing()

    def connectionLost(self, reason: Failure = ResponseDone) -> None:  # type: ignore[assignment]
        self.chunks.put(None)
        if isinstance(reason.value, ResponseDone | PotentialDataLoss):
            self.done.callback(None)
        else:
            self.done.errback(reason)


@implementer(IPolicyForHTTPS)
class _NoVerification:
    """TLS without certificate checks, for C{--insecure-registry}."""

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        """Any certificate is accepted (dockerd's InsecureSkipVerify)."""
        del hostname, port
        return CertificateOptions(verify=False)


_T = TypeVar("_T")


class RegistryHost(typing.Protocol):
    """
    What the registry client asks of the image service it works for
    (L{dockserve.daemon.images.service.ImageService}): its store, its
    reactor, the registry settings and its thread pool. Named here rather
    than imported, so that the service imports this module and this module
    never imports the service: no cycle between the two.
    """

    store: ImageStore
    _reactor: Any
    insecure_registries: tuple[str, ...]
    registry_mirrors: tuple[str, ...]

    @property
    def synchronous(self) -> bool:
        """Whether thread work runs at once on the caller's thread (tests)."""

    def in_thread(self, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """Run blocking C{f} in the thread pool."""


class Distribution:
    """Pull, push and search for the image service (a L{RegistryHost})."""

    def __init__(self, service: RegistryHost) -> None:
        self._service = service
        self._store = service.store
        self._reactor = service._reactor
        #: A client that serves every URL (tests put a StubTreq here).
        self._http: HTTPClient | None = None
        self._clients: dict[bool, HTTPClient] = {}
        self._chosen: dict[str, str] = {}
        self._auth: dict[str, _Auth] = {}
        self._downloads: dict[str, list[Deferred[tuple[str, int]]]] = {}

    # --- HTTP ---------------------------------------------------------------

    def _client(self, url: str = "") -> HTTPClient:
        """
        The HTTP client for C{url}: certificates unchecked for an HTTPS
        registry that is insecure (loopback or C{--insecure-registry}).
        """
        if self._http is not None:
            return self._http
        netloc = urlsplit(url).netloc
        unverified = url.startswith("https://") and (
            _is_loopback(netloc) or self._insecure(netloc)
        )
        client = self._clients.get(unverified)
        if client is None:
            pool = HTTPConnectionPool(self._reactor)  # type: ignore[no-untyped-call]
            pool.maxPersistentPerHost = 6
            if unverified:
                agent = Agent(self._reactor, _NoVerification(), pool=pool)  # type: ignore[no-untyped-call]
            else:
                agent = Agent(self._reactor, pool=pool)  # type: ignore[no-untyped-call]
            client = self._clients[unverified] = HTTPClient(agent)
        return client

    def _base(self, domain: str) -> list[str]:
        """The base URLs to try for a registry, in order."""
        if domain == reference.DEFAULT_DOMAIN:
            mirrors = [m.rstrip("/") for m in self._service.registry_mirrors]
            return [*mirrors, f"https://{_HUB}"]
        if _is_loopback(domain) or self._insecure(domain):
            # As dockerd: HTTPS without checking the certificate, then HTTP.
            return [f"https://{domain}", f"http://{domain}"]
        return [f"https://{domain}"]

    async def _endpoints(self, domain: str) -> list[str]:
        """
        L{_base}, narrowed for an insecure registry to the scheme it
        answers on (C{GET /v2/} gives 200 or 401), remembered per registry.
        """
        bases = self._base(domain)
        if len(bases) == 1 or domain == reference.DEFAULT_DOMAIN:
            return bases
        if domain in self._chosen:
            return [self._chosen[domain]]
        for base in bases:
            try:
                response = await self._client(base).get(f"{base}/v2/", timeout=15)
                await response.content()
            except Exception:  # noqa: S112 - the next scheme may answer
                continue
            if response.code in (200, 401):
                self._chosen[domain] = base
                return [base]
        return bases[-1:]

    def _insecure(self, domain: str) -> bool:
        host = domain.rsplit(":", 1)[0]
        for entry in self._service.insecure_registries:
            if entry in (domain, host):
                return True
            try:
                network = ipaddress.ip_network(entry, strict=False)
                if ipaddress.ip_address(host) in network:
                    return True
            except ValueError:
                continue
        return False

    async def _request(
        self,
        method: str,
        url: str,
        auth: _Auth,
        scope: str,
        *,
        headers: dict[str, str] | None = None,
        data: Any = None,
        unbuffered: bool = False,
    ) -> Any:
        """One request, answering a 401 challenge once."""
        for attempt in range(2):
            hdrs = Headers({k: [v] for k, v in (headers or {}).items()})
            token = auth.tokens.get(scope) or auth.registry_token
            if token:
                hdrs.setRawHeaders(b"Authorization", [f"Bearer {token}".encode()])
            elif auth.basic and auth.basic_header():
                hdrs.setRawHeaders(b"Authorization", [auth.basic_header() or b""])
            body = data() if callable(data) else data
            try:
                response = await self._client(url).request(
                    method, url, headers=hdrs, data=body, unbuffered=unbuffered
                )
            except Exception as e:
                raise SystemError_(f'{method.title()} "{url}": {_reason(e)}') from None
            if response.code != 401 or attempt:
                return response
            challenge = (response.headers.getRawHeaders(b"WWW-Authenticate") or [b""])[
                0
            ]
            await response.content()
            scheme, params = _parse_challenge(challenge.decode("latin-1"))
            if scheme == "bearer":
                auth.tokens[scope] = await self._token(params, auth, scope)
            elif scheme == "basic" and auth.username:
                auth.basic = True
            else:
                return response
        raise AssertionError  # pragma: no cover

    async def _token(self, params: dict[str, str], auth: _Auth, scope: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise Unauthorized("the registry's bearer challenge has no realm")
        query: dict[str, str] = {}
        if params.get("service"):
            query["service"] = params["service"]
        if scope:
            query["scope"] = scope
        headers = Headers()
        basic = auth.basic_header()
        if basic:
            headers.setRawHeaders(b"Authorization", [basic])
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        try:
            if auth.identity_token:
                # docker login left an OAuth refresh token: trade it.
                form = {
                    **query,
                    "grant_type": "refresh_token",
                    "refresh_token": auth.identity_token,
                    "client_id": "docker",
                }
                response = await self._client(realm).post(
                    realm,
                    data=urlencode(form).encode(),
                    headers=Headers(
                        {b"Content-Type": [b"application/x-www-form-urlencoded"]}
                    ),
                )
            else:
                response = await self._client(url).get(url, headers=headers)
        except Exception as e:
            raise SystemError_(f'Get "{url}": {_reason(e)}') from None
        body = await response.content()
        if response.code == 401:
            raise Unauthorized(
                'Get "' + url + '": unauthorized: incorrect username or password'
            )
        if response.code != 200:
            raise SystemError_(f"getting a token from {realm}: HTTP {response.code}")
        try:
            value = json.loads(body)
        except ValueError:
            raise SystemError_(f"getting a token from {realm}: not JSON") from None
        return str(value.get("token") or value.get("access_token") or "")

    def _auth_for(self, domain: str, credentials: dict[str, Any] | None) -> _Auth:
        key = json.dumps([domain, credentials or {}], sort_keys=True)
        if key not in self._auth:
            self._auth[key] = _Auth(credentials)
        return self._auth[key]

    # --- pull ---------------------------------------------------------------

    def pull(
        self,
        image: str,
        tag: str | None,
        credentials: dict[str, Any] | None,
        progress: Progress,
        platform: str | None = None,
        *,
        all_tags: bool = False,
    ) -> Deferred[None]:
        """
        Pull C{image} (with C{tag}, a tag or a digest) into the store.

        @param all_tags: With neither tag nor digest, pull every tag of the
            repository (C{docker pull -a}) rather than C{latest}.
        """
        from twisted.internet.defer import ensureDeferred  # noqa: PLC0415

        return ensureDeferred(
            self._pull(image, tag, credentials, progress, platform, all_tags=all_tags)
        ).addErrback(_disk_error)

    async def _pull(
        self,
        image: str,
        tag: str | None,
        credentials: dict[str, Any] | None,
        progress: Progress,
        platform: str | None,
        *,
        all_tags: bool = False,
    ) -> None:
        ref = reference.parse(image, default_tag=False)
        if tag:
            if tag.startswith("sha256:"):
                ref = ref.with_digest(tag)
            else:
                reference.validate_tag(tag)
                ref = ref.with_tag(tag)
        if ref.tag is None and ref.digest is None:
            if all_tags:
                await self._pull_all_tags(ref, credentials, progress, platform)
                return
            ref = ref.with_tag("latest")
        await self._pull_ref(ref, credentials, progress, platform)

    async def _pull_all_tags(
        self,
        ref: reference.Reference,
        credentials: dict[str, Any] | None,
        progress: Progress,
        platform: str | None,
    ) -> None:
        """C{docker pull -a}: every tag the registry lists, one status."""
        auth = self._auth_for(ref.domain, credentials)
        scope = f"repository:{ref.path}:pull"
        tags: list[str] = []
        last_error: DockerError | None = None
        for base in await self._endpoints(ref.domain):
            try:
                tags = await self._list_tags(base, ref, auth, scope)
            except DockerError as e:
                last_error = e
                continue
            break
        else:
            assert last_error is not None  # noqa: S101 - at least one base
            raise last_error
        new = False
        for tag in tags:
            new = (
                await self._pull_ref(
                    ref.with_tag(tag), credentials, progress, platform, status=False
                )
                or new
            )
        shown = ref.familiar_repository
        if new:
            progress({"status": f"Status: Downloaded newer image for {shown}"})
        else:
            progress({"status": f"Status: Image is up to date for {shown}"})

    async def _list_tags(
        self, base: str, ref: reference.Reference, auth: _Auth, scope: str
    ) -> list[str]:
        """The repository's tags (C{GET /v2/<name>/tags/list}, every page)."""
        tags: list[str] = []
        url: str | None = f"{base}/v2/{ref.path}/tags/list"
        pages = 0
        while url is not None and pages < 100:
            pages += 1
            response = await self._request("GET", url, auth, scope)
            body = await response.content()
            if response.code == 404 and b"NAME_UNKNOWN" in body:
                raise NotFound(
                    f"repository {ref.familiar_repository} not found: name unknown: "
                    + _registry_message(body, "repository name not known to registry")
                )
            if response.code in (401, 403, 404):
                raise NotFound(
                    f"pull access denied for {ref.familiar_repository}, repository "
                    "does not exist or may require 'docker login'"
                )
            if response.code != 200:
                raise SystemError_(
                    f"listing the tags of {ref.familiar_repository}: "
                    f"HTTP {response.code}"
                )
            tags += [str(t) for t in json.loads(body).get("tags") or []]
            link = (response.headers.getRawHeaders(b"Link") or [b""])[0].decode()
            url = None
            if link.startswith("<") and 'rel="next"' in link:
                url = urljoin(f"{base}/", link[1 : link.index(">")])
        return tags

    async def _pull_ref(
        self,
        ref: reference.Reference,
        credentials: dict[str, Any] | None,
        progress: Progress,
        platform: str | None,
        *,
        status: bool = True,
    ) -> bool:
        """Pull one tag or digest; whether anything new came."""
        wanted_os, (wanted_arch, wanted_variant) = "linux", _go_arch()
        if platform:
            parts = platform.split("/")
            wanted_os = parts[0] or wanted_os
            if len(parts) > 1:
                wanted_arch, wanted_variant = (
                    parts[1],
                    (parts[2] if len(parts) > 2 else ""),
                )
        auth = self._auth_for(ref.domain, credentials)
        scope = f"repository:{ref.path}:pull"
        last_error: DockerError | None = None
        bases = await self._endpoints(ref.domain)
        for index, base in enumerate(bases):
            try:
                return await self._pull_from(
                    base,
                    ref,
                    auth,
                    scope,
                    progress,
                    (wanted_os, wanted_arch, wanted_variant),
                    status=status,
                )
            except DockerError as e:
                # A mirror that fails or lacks the image: on to the next,
                # and finally Docker Hub itself, as dockerd does.
                last_error = e
                if index == len(bases) - 1:
                    raise
                continue
        assert last_error is not None  # noqa: S101 - at least one base
        raise last_error

    async def _get_manifest(
        self, base: str, ref: reference.Reference, target: str, auth: _Auth, scope: str
    ) -> tuple[bytes, str, str]:
        url = f"{base}/v2/{ref.path}/manifests/{target}"
        response = await self._request(
            "GET", url, auth, scope, headers={"Accept": _ACCEPT}
        )
        body: bytes = await response.content()
        shown = ref.familiar_repository + (
            f"@{target}" if target.startswith("sha256:") else f":{target}"
        )
        if response.code == 404:
            if b"NAME_UNKNOWN" in body:
                raise NotFound(
                    f"pull access denied for {ref.familiar_repository}, repository "
                    "does not exist or may require 'docker login'"
                )
            raise NotFound(
                f"manifest for {shown} not found: manifest unknown: manifest unknown"
            )
        if response.code in (401, 403):
            raise NotFound(
                f"pull access denied for {ref.familiar_repository}, repository does "
                "not exist or may require 'docker login': denied: requested access "
                "to the resource is denied"
            )
        if response.code != 200:
            raise SystemError_(
                f"error pulling {shown}: HTTP {response.code} from {url}"
            )
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if target.startswith("sha256:") and digest != target:
            raise InvalidParameter(f"manifest verification failed for digest {target}")
        media_type = (response.headers.getRawHeaders(b"Content-Type") or [b""])[0]
        return body, digest, media_type.decode("latin-1").split(";")[0].strip()

    async def _pull_from(  # noqa: PLR0917 - one repository's four facts
        self,
        base: str,
        ref: reference.Reference,
        auth: _Auth,
        scope: str,
        progress: Progress,
        wanted: tuple[str, str, str],
        *,
        status: bool = True,
    ) -> bool:
        target = ref.digest or ref.tag or "latest"
        body, top_digest, media_type = await self._get_manifest(
            base, ref, target, auth, scope
        )
        progress(
            {
                "status": f"Pulling from {ref.path}",
                "id": ref.tag or ref.digest or "latest",
            }
        )
        manifest = json.loads(body)
        media_type = manifest.get("mediaType", media_type)
        bodies = [(top_digest, body)]
        if media_type in (OCI_INDEX, DOCKER_LIST) or "manifests" in manifest:
            chosen = _select(manifest.get("manifests") or [], wanted)
            if chosen is None:
                raise NotFound(
                    f"no matching manifest for {'/'.join(p for p in wanted if p)} "
                    "in the manifest list entries"
                )
            body, digest, media_type = await self._get_manifest(
                base, ref, chosen, auth, scope
            )
            bodies.append((digest, body))
            manifest = json.loads(body)
        if manifest.get("schemaVersion") == 1:
            raise InvalidParameter(
                "support for Docker Image Format v1 and Docker Image manifest "
                "version 2, schema 1 has been removed"
            )
        config_desc = manifest.get("config") or {}
        config_digest = config_desc.get("digest", "")
        hex_of(config_digest)
        raw_config = await self._fetch_small(base, ref, config_digest, auth, scope)
        config = json.loads(raw_config)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        descriptors = manifest.get("layers") or []
        if len(diff_ids) != len(descriptors):
            raise InvalidParameter(
                "the image config and manifest disagree on the layers"
            )
        existing = self._store.images.get(config_digest)
        self._store.begin()
        try:
            sources: dict[str, LayerSource] = {}
            work = []
            for descriptor, diff_id in zip(descriptors, diff_ids, strict=True):
                short = _short(descriptor["digest"])
                sources[diff_id] = LayerSource(
                    descriptor["digest"],
                    int(descriptor.get("size", 0)),
                    descriptor.get("mediaType", DOCKER_LAYER_GZIP),
                    ref.repository,
                )
                if self._store.layer_path(diff_id).is_dir() and self._store.has_blob(
                    diff_id
                ):
                    if existing is None:
                        # As dockerd: an image already here shows no layers.
                        progress(
                            {
                                "status": "Already exists",
                                "progressDetail": {},
                                "id": short,
                            }
                        )
                    continue
                progress(
                    {"status": "Pulling fs layer", "progressDetail": {}, "id": short}
                )
                work.append((descriptor, diff_id))
            results = await DeferredList(
                [
                    Deferred.fromCoroutine(
                        self._pull_layer(base, ref, auth, scope, d, diff_id, progress)
                    )
                    for d, diff_id in work
                ],
                consumeErrors=True,
            )
            for ok, value in results:
                if not ok:
                    cast("Failure", value).raiseException()
            for digest, manifest_body in bodies:
                await self._service.in_thread(self._store.put_blob, manifest_body)
                del digest
            image_id = await self._service.in_thread(self._store.put_blob, raw_config)
            if image_id != config_digest:
                raise InvalidParameter(
                    f"config digest mismatch: expected {config_digest}, got {image_id}"
                )
            # Every layer's registry form is remembered, its blob kept or
            # not: a push reuses it where the registry has it.
            self._store.add_image(image_id, config, len(raw_config), sources)
            record = self._store.images[image_id]
            from attrs import evolve  # noqa: PLC0415

            self._store.images[image_id] = evolve(
                record, manifests={**record.manifests, ref.repository: top_digest}
            )
            # The digest is a reference too (RepoDigests; rmi repo@digest).
            self._store.refs[ref.with_digest(top_digest).full()] = image_id
            before = None
            if ref.tag is not None:
                before = self._store.refs.get(ref.tagged())
                self._store.set_ref(ref.tagged(), image_id, tagged=False)
            self._store.save_index()
        finally:
            self._store.end()
        progress({"status": f"Digest: {top_digest}"})
        shown = ref.familiar()
        new = not (existing is not None and (ref.tag is None or before == image_id))
        if not status:
            return new
        if new:
            progress({"status": f"Status: Downloaded newer image for {shown}"})
        else:
            progress({"status": f"Status: Image is up to date for {shown}"})
        return new

    async def _fetch_small(
        self, base: str, ref: reference.Reference, digest: str, auth: _Auth, scope: str
    ) -> bytes:
        url = f"{base}/v2/{ref.path}/blobs/{digest}"
        response = await self._request("GET", url, auth, scope)
        body: bytes = await response.content()
        if response.code != 200:
            raise SystemError_(f"fetching blob {digest}: HTTP {response.code}")
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise InvalidParameter(f"digest mismatch for blob {digest}")
        return body

    async def _pull_layer(  # noqa: PLR0917 - one repository's four facts
        self,
        base: str,
        ref: reference.Reference,
        auth: _Auth,
        scope: str,
        descriptor: dict[str, Any],
        diff_id: str,
        progress: Progress,
    ) -> None:
        digest = descriptor["digest"]
        short = _short(digest)
        waiter: Deferred[tuple[str, int]] = Deferred()
        waiters = self._downloads.get(digest)
        if waiters is not None:
            # Another pull is fetching this blob: wait for its result.
            waiters.append(waiter)
        else:
            waiters = self._downloads[digest] = [waiter]
            download = Deferred.fromCoroutine(
                self._download(base, ref, auth, scope, descriptor, progress)
            )
            download.addBoth(self._downloaded, digest)
        got_diff, _ = await waiter
        if got_diff != diff_id:
            raise InvalidParameter(
                f"layer {digest}: its content has diff ID {got_diff}, the config "
                f"says {diff_id}"
            )
        progress({"status": "Pull complete", "progressDetail": {}, "id": short})

    async def _download(  # noqa: PLR0917 - one repository's four facts
        self,
        base: str,
        ref: reference.Reference,
        auth: _Auth,
        scope: str,
        descriptor: dict[str, Any],
        progress: Progress,
    ) -> tuple[str, int]:
        digest = descriptor["digest"]
        total = int(descriptor.get("size", 0))
        short = _short(digest)
        url = f"{base}/v2/{ref.path}/blobs/{digest}"
        response = await self._request("GET", url, auth, scope, unbuffered=True)
        if response.code != 200:
            await response.content()
            raise SystemError_(f"fetching layer {digest}: HTTP {response.code}")
        received = [0, 0]

        def on_bytes(n: int) -> None:
            received[0] += n
            if received[0] - received[1] >= 512 * 1024 or received[0] == total:
                received[1] = received[0]
                progress(
                    {
                        "status": "Downloading",
                        "progressDetail": {"current": received[0], "total": total},
                        "progress": layers.progress_bar(received[0], total),
                        "id": short,
                    }
                )

        temp = self._store.temp_path("pull-")
        try:
            got, size = await self.receive(response, temp, on_bytes)
        except DockerError as e:
            raise SystemError_(f"downloading {digest}: {e.message}") from None
        progress({"status": "Verifying Checksum", "progressDetail": {}, "id": short})
        if got != digest:
            temp.unlink(missing_ok=True)
            raise InvalidParameter(
                f"filesystem layer verification failed for digest {digest}"
            )
        progress({"status": "Download complete", "progressDetail": {}, "id": short})
        progress(
            {
                "status": "Extracting",
                "progressDetail": {"current": size, "total": size},
                "progress": layers.progress_bar(size, size),
                "id": short,
            }
        )

        def extract() -> tuple[str, int]:
            self._store.commit_blob(temp, digest)
            with self._store.blob_path(digest).open("rb") as f:
                return self._store.ingest_layer(f)

        return await self._service.in_thread(extract)

    async def receive(
        self, response: Any, temp: Path, on_bytes: Callable[[int], None]
    ) -> tuple[str, int]:
        """
        Stream a response body to the file C{temp} through a worker thread
        that hashes and writes it, pausing the connection when the disk
        falls behind.

        @return: C{(digest, size)} of the body.
        @raise SystemError_: When the connection or the disk fails; C{temp}
            is removed then.
        """
        chunks: queue.Queue[bytes | None] = queue.Queue()
        receiver = _BlobReceiver(chunks, on_bytes)

        def drained(amount: int) -> None:
            if self._service.synchronous:
                receiver.drained(amount)
            else:
                self._reactor.callFromThread(receiver.drained, amount)

        def write() -> tuple[str, int]:
            hasher = hashlib.sha256()
            size = 0
            with temp.open("wb") as out:
                while True:
                    chunk = chunks.get()
                    if chunk is None:
                        break
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    drained(len(chunk))
                layers.fsync_file(out)
            return "sha256:" + hasher.hexdigest(), size

        # With a synchronous pool (unit tests) the writer runs after the
        # body has arrived; for real, it runs alongside it.
        sync = self._service.synchronous
        writing = None if sync else self._service.in_thread(write)
        if writing is not None:
            writing.addErrback(self._writer_failed, receiver)
        response.original.deliverBody(receiver)
        try:
            await receiver.done
        except Exception as e:
            chunks.put(None)
            try:
                await (writing or self._service.in_thread(write))
            finally:
                await self._service.in_thread(temp.unlink, True)
            raise SystemError_(_reason(e)) from None
        if writing is None:
            writing = self._service.in_thread(write)
        return await writing

    async def fetch(self, url: str, temp: Path) -> int:
        """
        Download C{url} (for C{docker import URL}) to C{temp}.

        @return: Its size.
        @raise SystemError_: When it cannot be fetched.
        """
        try:
            response = await self._client(url).get(url, unbuffered=True)
        except Exception as e:
            raise SystemError_(f'Get "{url}": {_reason(e)}') from None
        if response.code != 200:
            await response.content()
            raise SystemError_(f'Get "{url}": HTTP {response.code}')
        try:
            _, size = await self.receive(response, temp, lambda _: None)
        except SystemError_ as e:
            raise SystemError_(f'Get "{url}": {e.message}') from None
        return size

    @staticmethod
    def _writer_failed(failure: Failure, receiver: _BlobReceiver) -> Failure:
        """The disk failed: stop the download rather than queue it forever."""
        if receiver.transport is not None:
            cast("Any", receiver.transport).stopProducing()
        return failure

    def _downloaded(self, result: Any, digest: str) -> None:
        """Give a finished download's result to every pull waiting on it."""
        for waiter in self._downloads.pop(digest, []):
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    # --- push ---------------------------------------------------------------

    def push(
        self,
        name: str,
        tag: str | None,
        credentials: dict[str, Any] | None,
        progress: Progress,
    ) -> Deferred[None]:
        """Push the local image C{name} (and C{tag}) to its registry."""
        from twisted.internet.defer import ensureDeferred  # noqa: PLC0415

        return ensureDeferred(self._push(name, tag, credentials, progress)).addErrback(
            _disk_error
        )

    async def _push(
        self,
        name: str,
        tag: str | None,
        credentials: dict[str, Any] | None,
        progress: Progress,
    ) -> None:
        ref = reference.parse(name, default_tag=False)
        if ref.digest:
            raise InvalidParameter("cannot push a digest reference")
        if tag:
            reference.validate_tag(tag)
            ref = ref.with_tag(tag)
        if ref.tag is not None:
            tags = [ref.tagged()] if ref.tagged() in self._store.refs else []
        else:
            tags = sorted(
                r
                for r in self._store.refs
                if "@" not in r and r.rsplit(":", 1)[0] == ref.repository
            )
        if not tags:
            shown = ref.familiar_repository
            raise NotFound(f"An image does not exist locally with the tag: {shown}")
        progress({"status": f"The push refers to repository [{ref.repository}]"})
        auth = self._auth_for(ref.domain, credentials)
        scope = f"repository:{ref.path}:pull,push"
        # Pushes go to the registry itself, never to a mirror.
        base = (
            (await self._endpoints(ref.domain))[0]
            if ref.domain != reference.DEFAULT_DOMAIN
            else f"https://{_HUB}"
        )
        for tagged in tags:
            await self._push_one(base, reference.parse(tagged), auth, scope, progress)

    async def _push_one(
        self,
        base: str,
        ref: reference.Reference,
        auth: _Auth,
        scope: str,
        progress: Progress,
    ) -> None:
        image_id = self._store.refs[ref.tagged()]
        record = self._store.images[image_id]
        self._store.begin()
        try:
            for diff_id in reversed(record.diff_ids):
                progress(
                    {"status": "Preparing", "progressDetail": {}, "id": _short(diff_id)}
                )
            sources = dict(record.sources)
            in_registry: set[str] = set()
            for diff_id in record.diff_ids:
                source = sources.get(diff_id)
                if source is not None and not self._store.has_blob(source.digest):
                    # Pulled, its blob not kept: reuse it if this registry
                    # has it (or mounts it from where it came), as dockerd.
                    if await self._in_registry(
                        base, ref, auth, scope, source, _short(diff_id), progress
                    ):
                        in_registry.add(diff_id)
                    else:
                        source = None
                if source is None:
                    source = await self._service.in_thread(self._compress, diff_id)
                    sources[diff_id] = source
            from attrs import evolve  # noqa: PLC0415

            if sources != record.sources:
                record = evolve(self._store.images[image_id], sources=sources)
                self._store.images[image_id] = record
                self._store.save_index()
            oci = any(
                s.media_type.startswith("application/vnd.oci.")
                for s in sources.values()
            )
            layer_descs = []
            uploads = []
            for diff_id in record.diff_ids:
                source = sources[diff_id]
                media_type = source.media_type
                if oci and media_type == DOCKER_LAYER_GZIP:
                    media_type = OCI_LAYER_GZIP
                if not oci and media_type == OCI_LAYER_GZIP:
                    media_type = DOCKER_LAYER_GZIP
                layer_descs.append(
                    {
                        "mediaType": media_type,
                        "size": source.size,
                        "digest": source.digest,
                    }
                )
                if diff_id in in_registry:
                    continue
                uploads.append(
                    Deferred.fromCoroutine(
                        self._upload(
                            base,
                            ref,
                            auth,
                            scope,
                            source.digest,
                            _short(diff_id),
                            progress,
                        )
                    )
                )
            results = await DeferredList(uploads, consumeErrors=True)
            for ok, value in results:
                if not ok:
                    cast("Failure", value).raiseException()
            await self._upload(base, ref, auth, scope, record.id, None, progress)
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
                    "size": record.config_size,
                    "digest": record.id,
                },
                "layers": layer_descs,
            }
            body = json.dumps(manifest, indent=3).encode()
            url = f"{base}/v2/{ref.path}/manifests/{ref.tag}"
            response = await self._request(
                "PUT",
                url,
                auth,
                scope,
                headers={"Content-Type": str(manifest["mediaType"])},
                data=body,
            )
            answer = await response.content()
            if response.code not in (200, 201, 202):
                raise SystemError_(
                    f"pushing the manifest of {ref.familiar()}: HTTP {response.code}: "
                    + answer.decode("utf-8", "replace")[:200]
                )
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            await self._service.in_thread(self._store.put_blob, body)
            record = self._store.images[image_id]
            self._store.images[image_id] = evolve(
                record, manifests={**record.manifests, ref.repository: digest}
            )
            self._store.refs[ref.with_digest(digest).full()] = image_id
            self._store.save_index()
        finally:
            self._store.end()
        progress({"status": f"{ref.tag}: digest: {digest} size: {len(body)}"})
        progress(
            {
                "progressDetail": {},
                "aux": {"Tag": ref.tag, "Digest": digest, "Size": len(body)},
            }
        )

    async def _in_registry(  # noqa: PLR0917 - one blob's facts
        self,
        base: str,
        ref: reference.Reference,
        auth: _Auth,
        scope: str,
        source: LayerSource,
        short: str,
        progress: Progress,
    ) -> bool:
        """
        Whether the registry at C{base} has C{source}'s blob in C{ref}'s
        repository, mounting it from the repository it was pulled from
        when that is on the same registry.
        """
        head = await self._request(
            "HEAD", f"{base}/v2/{ref.path}/blobs/{source.digest}", auth, scope
        )
        await head.content()
        if head.code == 200:
            progress(
                {"status": "Layer already exists", "progressDetail": {}, "id": short}
            )
            return True
        if not source.repository:
            return False
        origin = reference.parse(source.repository, default_tag=False)
        if origin.domain != ref.domain or origin.path == ref.path:
            return False
        query = urlencode({"mount": source.digest, "from": origin.path})
        mount = await self._request(
            "POST",
            f"{base}/v2/{ref.path}/blobs/uploads/?{query}",
            auth,
            # With a token for this repository only, a registry answers 202
            # (a plain upload) instead of mounting: the layer is then
            # compressed here and uploaded.
            scope,
        )
        await mount.content()
        if mount.code != 201:
            return False
        progress(
            {
                "status": f"Mounted from {origin.path}",
                "progressDetail": {},
                "id": short,
            }
        )
        return True

    def _compress(self, diff_id: str) -> LayerSource:
        """
        Blocking: gzip a layer reproducibly into a blob: no time and no file
        name in the header, so every daemon pushes the same bytes.
        """
        temp = self._store.temp_path("gzip-")
        try:
            with (
                self._store.blob_path(diff_id).open("rb") as src,
                temp.open("wb") as raw,
            ):
                with gzip.GzipFile(
                    filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=6
                ) as out:
                    shutil.copyfileobj(src, out, layers.CHUNK)
                layers.fsync_file(raw)
            digest, size = layers.hash_file(temp)
            self._store.commit_blob(temp, digest)
        finally:
            temp.unlink(missing_ok=True)
        return LayerSource(digest, size, DOCKER_LAYER_GZIP)

    async def _upload(  # noqa: PLR0917 - one repository's four facts
        self,
        base: str,
        ref: reference.Reference,
        auth: _Auth,
        scope: str,
        digest: str,
        short: str | None,
        progress: Progress,
    ) -> None:
        head = await self._request(
            "HEAD", f"{base}/v2/{ref.path}/blobs/{digest}", auth, scope
        )
        await head.content()
        if head.code == 200:
            if short:
                progress(
                    {
                        "status": "Layer already exists",
                        "progressDetail": {},
                        "id": short,
                    }
                )
            return
        if head.code in (401, 403):
            raise Unauthorized("denied: requested access to the resource is denied")
        start = await self._request(
            "POST", f"{base}/v2/{ref.path}/blobs/uploads/", auth, scope
        )
        await start.content()
        if start.code in (401, 403):
            raise Unauthorized("denied: requested access to the resource is denied")
        if start.code != 202:
            raise SystemError_(f"starting an upload to {base}: HTTP {start.code}")
        location = (start.headers.getRawHeaders(b"Location") or [b""])[0].decode()
        upload_url = urljoin(f"{base}/v2/{ref.path}/blobs/uploads/", location)
        upload_url += ("&" if "?" in upload_url else "?") + urlencode(
            {"digest": digest}
        )
        path = self._store.blob_path(digest)
        size = path.stat().st_size
        if short:
            progress(
                {
                    "status": "Pushing",
                    "progressDetail": {"current": 0, "total": size},
                    "progress": layers.progress_bar(0, size),
                    "id": short,
                }
            )

        opened: list[Any] = []

        def body() -> Any:
            opened.append(self.upload_body(path))
            return opened[-1]

        try:
            response = await self._request(
                "PUT",
                upload_url,
                auth,
                scope,
                headers={"Content-Type": "application/octet-stream"},
                data=body,
            )
            answer = await response.content()
        finally:
            for f in opened:
                if hasattr(f, "close"):
                    f.close()
        if response.code not in (201, 204):
            raise SystemError_(
                f"uploading {digest}: HTTP {response.code}: "
                + answer.decode("utf-8", "replace")[:200]
            )
        if short:
            progress(
                {
                    "status": "Pushing",
                    "progressDetail": {"current": size, "total": size},
                    "progress": layers.progress_bar(size, size),
                    "id": short,
                }
            )
            progress({"status": "Pushed", "progressDetail": {}, "id": short})

    def upload_body(self, path: Path) -> Any:
        """
        The body of a blob upload: the open file, which treq streams in
        chunks (tests replace this with the bytes, for StubTreq).
        """
        return path.open("rb")

    # --- search -------------------------------------------------------------

    def search(self, term: str, limit: int | None) -> Deferred[list[dict[str, Any]]]:
        """
        Search Docker Hub's index; a clear error when it cannot be reached.
        """
        from twisted.internet.defer import ensureDeferred  # noqa: PLC0415

        return ensureDeferred(self._search(term, limit))

    async def _search(self, term: str, limit: int | None) -> list[dict[str, Any]]:
        query = {"q": term, "n": str(limit or 25)}
        url = "https://index.docker.io/v1/search?" + urlencode(query)
        try:
            response = await treq.get(url, timeout=10, reactor=self._reactor)
            body = await response.content()
        except Exception as e:
            raise SystemError_(
                f"Error searching the registry index index.docker.io: it cannot "
                f"be reached from this daemon ({_reason(e)})"
            ) from None
        if response.code != 200:
            raise SystemError_(
                f"Error searching the registry index: HTTP {response.code}"
            )
        value = json.loads(body)
        return [
            {
                "name": r.get("name", ""),
                "description": r.get("description", ""),
                "star_count": r.get("star_count", 0),
                "is_official": r.get("is_official", False),
                "is_automated": r.get("is_automated", False),
            }
            for r in value.get("results", [])
        ]


def _registry_message(body: bytes, default: str) -> str:
    """The first error message of a registry's JSON error body."""
    try:
        errors = json.loads(body).get("errors") or []
        return str(errors[0].get("message") or default)
    except (ValueError, AttributeError, IndexError, TypeError):
        return default


def _disk_error(failure: Failure) -> Failure:
    """A local file error (disk full...) as a Docker error with its text."""
    if isinstance(failure.value, OSError):
        raise SystemError_(f"failed to register layer: {failure.value}")
    return failure


def _select(entries: list[dict[str, Any]], wanted: tuple[str, str, str]) -> str | None:
    """The digest of the manifest list entry for platform C{wanted}."""
    os_name, arch, variant = wanted
    best = None
    for entry in entries:
        platform = entry.get("platform") or {}
        if platform.get("os") != os_name or platform.get("architecture") != arch:
            continue
        if variant and platform.get("variant") not in (None, "", variant):
            continue
        if platform.get("variant", "") == variant:
            return str(entry["digest"])
        if best is None:
            best = str(entry["digest"])
    return best


def _reason(error: BaseException) -> str:
    text = str(error)
    if "ConnectionRefused" in type(error).__name__ or "refused" in text.lower():
        return "connect: connection refused"
    if hasattr(error, "reasons"):
        return "; ".join(str(r.value) for r in error.reasons)
    return text or type(error).__name__
