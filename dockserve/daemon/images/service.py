# -*- test-case-name: tests.daemon.images.test_service -*-
"""
L{ImageService}: what C{/images} does, over the store on disk.

It satisfies L{dockserve.api.images.ImageBackend} and
L{dockserve.daemon.contracts.ImageSource}. File work runs in a thread pool;
the index is read and changed on the reactor thread only, so requests never
see a half-changed index.
"""

import fnmatch
import hashlib
import json
import operator
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from dockserve.daemon.contracts import ImageUsers, NoImageUsers, ResolvedImage
from dockserve.daemon.images import (
    archive_load,
    archive_save,
    changes,
    commit,
    reference,
)
from dockserve.daemon.images.store import (
    ImageRecord,
    ImageStore,
    LayerSource,
    dump_config,
    go_time,
    now_rfc3339,
)
from dockserve.errors import Conflict, DockerError, InvalidParameter, NotFound

_T = TypeVar("_T")

#: A progress callback: one JSON message of the stream.
Progress = Callable[[dict[str, Any]], None]

_ZERO_TIME = "0001-01-01T00:00:00Z"


def _go_arch() -> str:
    import os  # noqa: PLC0415

    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine
    )


def _parse_time(text: str | None) -> float:
    """Unix seconds of an RFC 3339 time (0 when unparseable)."""
    if not text:
        return 0.0
    from datetime import datetime  # noqa: PLC0415

    cleaned = text.replace("Z", "+00:00")
    if "." in cleaned:
        head, _, rest = cleaned.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        cleaned = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        return datetime.fromisoformat(cleaned).timestamp()
    except ValueError:
        return 0.0


def _rfc3339(seconds: float) -> str:
    if not seconds:
        return _ZERO_TIME
    return go_time(
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        + f".{int((seconds % 1) * 1e9):09d}Z"
    )


def chain_ids(diff_ids: list[str]) -> list[str]:
    """
    The chain IDs of a stack of layers, as Docker names its layers: the
    first layer's diff ID, then C{sha256(parent_chain + " " + diff_id)}.
    """
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
            continue
        link = f"{chains[-1]} {diff_id}".encode()
        chains.append("sha256:" + hashlib.sha256(link).hexdigest())
    return chains


def short_id(image_id: str) -> str:
    """The 12-hex short form of an ID."""
    return image_id.removeprefix("sha256:")[:12]


class ImageService:
    """
    The image area of the daemon.

    @ivar store: The store on disk.
    """

    def __init__(
        self,
        root: Path,
        reactor: Any,
        threadpool: ThreadPool | None = None,
        insecure_registries: tuple[str, ...] | list[str] = (),
        registry_mirrors: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.store = ImageStore(root)
        #: Which image each committed image was made on.
        self.parents = commit.Parents(root / "parents.json")
        self._reactor = reactor
        self._threadpool = threadpool
        self._users: ImageUsers = NoImageUsers()
        self.insecure_registries = tuple(insecure_registries)
        self.registry_mirrors = tuple(registry_mirrors)
        self._registry: Any = None
        self._publish: Callable[[dict[str, Any]], None] | None = None

    @classmethod
    def for_config(cls, config: Any, reactor: Any) -> "ImageService":
        """
        The service for a L{dockserve.daemon.config.DaemonConfig}: the store
        under C{<data-root>/image}, its registry settings.
        """
        return cls(
            Path(config.data_root) / "image",
            reactor,
            insecure_registries=config.insecure_registries,
            registry_mirrors=config.registry_mirrors,
        )

    # --- plumbing --------------------------------------------------------

    def set_users(self, users: ImageUsers) -> None:
        """Tell the store who uses images, so C{rmi} can refuse."""
        self._users = users

    def set_events(self, publish: Callable[[dict[str, Any]], None]) -> None:
        """
        Send image events to C{publish} (the event bus behind C{/events}):
        one C{EventMessage} of the API (C{Type "image"}, C{Action}, C{Actor},
        C{scope}, C{time}, C{timeNano}) per change, on the reactor thread,
        as dockerd logs them: C{pull}, C{push}, C{tag}, C{untag}, C{delete},
        C{import}, C{load}, C{save}, C{prune}.
        """
        self._publish = publish

    def _event(
        self, action: str, actor_id: str, attributes: dict[str, str] | None = None
    ) -> None:
        if self._publish is None:
            return
        now = time.time_ns()
        self._publish(
            {
                "Type": "image",
                "Action": action,
                "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
                "scope": "local",
                "time": now // 1_000_000_000,
                "timeNano": now,
            }
        )

    def _image_event(
        self,
        action: str,
        image_id: str,
        name: str,
        record: ImageRecord | None = None,
    ) -> None:
        """An event about an image: its labels, and C{name}."""
        attributes: dict[str, str] = {}
        record = record or self.store.images.get(image_id)
        if record is not None:
            labels = (record.config.get("config") or {}).get("Labels") or {}
            attributes.update({str(k): str(v) for k, v in labels.items()})
        attributes["name"] = name
        self._event(action, image_id, attributes)

    @property
    def synchronous(self) -> bool:
        """Whether "thread" work runs at once on the caller's thread (tests)."""
        return bool(getattr(self._threadpool, "synchronous", False))

    def in_thread(self, f: Callable[..., _T], *args: Any) -> "Deferred[_T]":
        """Run blocking C{f} in the thread pool."""
        pool = self._threadpool
        if pool is None:
            pool = self._reactor.getThreadPool()
        if getattr(pool, "synchronous", False):
            return maybeDeferred(f, *args)
        return deferToThreadPool(self._reactor, pool, f, *args)

    def in_reader_thread(
        self, source: IO[bytes], f: Callable[..., _T], *args: Any
    ) -> "Deferred[_T]":
        """
        Run blocking C{f}, which reads C{source}, off the reactor thread: in
        a thread of its own when C{source} is an upload still arriving (it
        waits on the client, maybe for long, and must not hold one of the
        pool's few threads meanwhile), else in the pool.
        """
        seekable = getattr(source, "seekable", None)
        if self.synchronous or seekable is None or seekable():
            return self.in_thread(f, *args)
        d: Deferred[_T] = Deferred()
        call_from_thread = self._reactor.callFromThread

        def run() -> None:
            try:
                result = f(*args)
            except BaseException:
                failure = Failure()  # type: ignore[no-untyped-call]
                call_from_thread(d.errback, failure)
            else:
                call_from_thread(d.callback, result)

        threading.Thread(target=run, name="dockserve-upload", daemon=True).start()
        return d

    def restore(self) -> "Deferred[None]":
        """Sweep temporary files, load the index, collect garbage."""
        return self.in_thread(self.store.restore)

    def count(self) -> int:
        """How many images the store holds (for C{/info})."""
        return len(self.store.images)

    # --- names -----------------------------------------------------------

    def lookup(self, name: str) -> ImageRecord:
        """
        The image a user means by C{name}, as dockerd finds it: a reference
        (C{busybox}, C{busybox:1.36}, C{repo@sha256:...}), a full ID, or a
        unique prefix of one.

        @raise NotFound: C{No such image: <name>}, the name as dockerd
            shows it (C{busybox:latest} for C{busybox}); also for a prefix
            that matches several images, which dockerd then takes for a
            name (C{No such image: 4:latest}, 404).
        @raise InvalidParameter: For a name that is no reference
            (C{invalid reference format}).
        """
        images = self.store.images
        bare = name.removeprefix("sha256:")
        if reference.is_full_id(name):
            record = images.get("sha256:" + bare)
            if record is not None:
                return record
            raise NotFound(f"No such image: {name}")
        ref: reference.Reference | None
        try:
            ref = reference.parse(name)
        except InvalidParameter as e:
            ref, invalid = None, e
        if ref is not None:
            key = ref.with_digest(ref.digest).full() if ref.digest else ref.tagged()
            image_id = self.store.refs.get(key)
            if image_id is not None:
                return images[image_id]
        if bare and all(c in "0123456789abcdef" for c in bare):
            matches = [r for i, r in images.items() if i[7:].startswith(bare)]
            if len(matches) == 1:
                return matches[0]
        if ref is None:
            raise invalid
        raise NotFound(f"No such image: {ref.familiar()}")

    def resolve(self, name: str) -> ResolvedImage:
        """
        L{dockserve.daemon.contracts.ImageSource.resolve}; by its full ID
        also an image held for the containers that use it (L{_hold}).
        """
        try:
            record = self.lookup(name)
        except NotFound:
            held = self.store.held.get("sha256:" + name.removeprefix("sha256:"))
            if held is None or not reference.is_full_id(name):
                raise
            record = held
        return ResolvedImage(
            id=record.id,
            config=record.config,
            layer_dirs=tuple(str(self.store.layer_path(d)) for d in record.diff_ids),
            repo_tags=tuple(self._repo_tags(record.id)),
        )

    def _repo_tags(self, image_id: str) -> list[str]:
        return [
            reference.familiar(r) for r in self.store.refs_of(image_id) if "@" not in r
        ]

    def _repo_digests(self, record: ImageRecord) -> list[str]:
        return [
            reference.familiar(r) for r in self.store.refs_of(record.id) if "@" in r
        ]

    # --- reading ---------------------------------------------------------

    def _size(self, record: ImageRecord) -> int:
        return sum(self.store.layer_disk_size(d) for d in record.diff_ids)

    def _summary(self, record: ImageRecord) -> dict[str, Any]:
        config = record.config
        return {
            "Id": record.id,
            "ParentId": self.parent_of(record.id),
            "RepoTags": self._repo_tags(record.id),
            "RepoDigests": self._repo_digests(record),
            "Created": int(_parse_time(config.get("created"))),
            "Size": self._size(record),
            "SharedSize": -1,
            "Labels": (config.get("config") or {}).get("Labels") or {},
            "Containers": -1,
        }

    def disk_usage(self) -> tuple[int, list[dict[str, Any]]]:
        """
        C{GET /system/df}'s images: what all layers take, each counted once
        (C{LayersSize}), and the summary of every image C{docker images}
        lists (as dockerd's: a build's intermediate images are left out)
        with its C{SharedSize}, what its layers that other images also have
        take.
        """
        records = list(self.store.images.values())
        holders: dict[str, int] = {}
        for record in records:
            for diff_id in set(record.diff_ids):
                holders[diff_id] = holders.get(diff_id, 0) + 1
        layers_size = sum(self.store.layer_disk_size(d) for d in holders)
        parents = self._parents_in_store()
        summaries = []
        for record in records:
            if record.id in parents and not self.store.refs_of(record.id):
                continue
            summary = self._summary(record)
            summary["SharedSize"] = sum(
                self.store.layer_disk_size(d)
                for d in set(record.diff_ids)
                if holders[d] > 1
            )
            summaries.append(summary)
        return layers_size, summaries

    def list_images(
        self,
        filters: dict[str, list[str]] | None = None,
        *,
        all_images: bool = False,
        digests: bool = False,
    ) -> list[dict[str, Any]]:
        """
        C{GET /images/json}: summaries, newest first.

        As dockerd's (C{daemon/images/images.go}): an image with neither
        tag nor digest that other images were made on (a build's
        intermediate step) shows only with C{all_images}; C{dangling=true}
        takes the images nothing was made on and no tag names (those with
        only digests too), C{dangling=false} leaves out those with neither
        tag nor digest.

        @raise InvalidParameter: For an unknown filter or a bad value.
        """
        del digests
        filters = filters or {}
        for key in filters:
            if key not in (
                "dangling",
                "label",
                "before",
                "since",
                "reference",
                "until",
            ):
                raise InvalidParameter(f"invalid filter '{key}'")
        records = list(self.store.images.values())
        dangling: bool | None = None
        if filters.get("dangling"):
            value = filters["dangling"][-1].lower()
            if value not in ("true", "false", "1", "0"):
                raise InvalidParameter(
                    f"invalid filter 'dangling={filters['dangling'][-1]}'"
                )
            dangling = value in ("true", "1")
        parents = self._parents_in_store()
        if dangling:
            records = [r for r in records if r.id not in parents]
        for label in filters.get("label", []):
            key, eq, value = label.partition("=")
            records = [
                r
                for r in records
                if key in ((r.config.get("config") or {}).get("Labels") or {})
                and (
                    not eq
                    or ((r.config.get("config") or {}).get("Labels") or {})[key]
                    == value
                )
            ]
        for key, keep in (("before", operator.lt), ("since", operator.gt)):
            for name in filters.get(key, []):
                pivot = _parse_time(self.lookup(name).config.get("created"))
                records = [
                    r
                    for r in records
                    if keep(_parse_time(r.config.get("created")), pivot)
                ]
        cutoff = _until(filters)
        if cutoff is not None:
            records = [
                r for r in records if _parse_time(r.config.get("created")) < cutoff
            ]
        patterns = filters.get("reference", [])
        summaries = []
        for record in records:
            refs = self.store.refs_of(record.id)
            if patterns:
                # As dockerd: only the names that match are shown.
                refs = self._matching_refs(record, patterns)
            tags = [reference.familiar(r) for r in refs if "@" not in r]
            if dangling and tags:
                continue
            if not refs and (
                (not all_images and record.id in parents)
                or dangling is False
                or patterns
            ):
                continue
            summary = self._summary(record)
            summary["RepoTags"] = tags
            summary["RepoDigests"] = [reference.familiar(r) for r in refs if "@" in r]
            summaries.append(summary)
        summaries.sort(key=lambda s: (s["Created"], s["Id"]), reverse=True)
        return summaries

    def _parents_in_store(self) -> set[str]:
        """The images other images of the store were made on."""
        return {p for c in self.store.images if (p := self.parents.get(c))}

    def children_of(self, image_id: str) -> list[str]:
        """
        The images of the store made on C{image_id} (dockerd's
        C{imageStore.Children}: an image deleted but held for a container's
        sake is none).
        """
        return [c for c in self.store.images if self.parents.get(c) == image_id]

    def _matching_refs(self, record: ImageRecord, patterns: list[str]) -> list[str]:
        """The references of C{record} that match one of C{patterns}."""
        matching = []
        for ref_text in self.store.refs_of(record.id):
            ref = reference.parse(ref_text, default_tag=False)
            for pattern in patterns:
                candidates = [ref.familiar(), ref.full()]
                if ":" not in pattern.rsplit("/", 1)[-1] and "@" not in pattern:
                    candidates += [ref.familiar_repository, ref.repository]
                if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
                    matching.append(ref_text)
                    break
        return matching

    def inspect(self, name: str) -> dict[str, Any]:
        """C{GET /images/{name}/json}."""
        record = self.lookup(name)
        config = record.config
        dirs = [str(self.store.layer_path(d)) for d in record.diff_ids]
        graph: dict[str, str] = {}
        if dirs:
            graph["UpperDir"] = dirs[-1]
            graph["MergedDir"] = ""
            graph["WorkDir"] = ""
            if len(dirs) > 1:
                graph["LowerDir"] = ":".join(reversed(dirs[:-1]))
        result: dict[str, Any] = {
            "Id": record.id,
            "RepoTags": self._repo_tags(record.id),
            "RepoDigests": self._repo_digests(record),
            "Parent": self.parent_of(record.id),
            "Comment": _comment(config),
            "Created": go_time(config.get("created") or _ZERO_TIME),
            "DockerVersion": config.get("docker_version", ""),
            "Author": config.get("author", ""),
            "Config": config.get("config") or {},
            "Architecture": config.get("architecture", ""),
            "Os": config.get("os", ""),
            "Size": self._size(record),
            "GraphDriver": {"Name": "overlay2", "Data": graph},
            "RootFS": {"Type": "layers", "Layers": record.diff_ids},
            "Metadata": {"LastTagTime": _rfc3339(record.last_tag_time)},
        }
        if config.get("variant"):
            result["Variant"] = config["variant"]
        if config.get("os.version"):
            result["OsVersion"] = config["os.version"]
        return result

    def history(self, name: str) -> list[dict[str, Any]]:
        """C{GET /images/{name}/history}: newest first."""
        record = self.lookup(name)
        entries = record.config.get("history") or []
        diff_ids = record.diff_ids
        rows: list[dict[str, Any]] = []
        layer = 0
        for entry in entries:
            size = 0
            if not entry.get("empty_layer") and layer < len(diff_ids):
                size = self.store.layer_disk_size(diff_ids[layer])
                layer += 1
            rows.append(
                {
                    "Id": "<missing>",
                    "Created": int(_parse_time(entry.get("created"))),
                    "CreatedBy": entry.get("created_by", ""),
                    "Tags": None,
                    "Size": size,
                    "Comment": entry.get("comment", ""),
                }
            )
        if not rows:
            rows.append(
                {
                    "Id": "<missing>",
                    "Created": int(_parse_time(record.config.get("created"))),
                    "CreatedBy": "",
                    "Tags": None,
                    "Size": self._size(record),
                    "Comment": "",
                }
            )
        rows.reverse()
        # As dockerd: the newest rows are the image's, then its parent's,
        # and so on while the parent is here; the rest stay <missing>.
        image_id = record.id
        for row in rows:
            row["Id"] = image_id
            row["Tags"] = self._repo_tags(image_id) or None
            image_id = self.parent_of(image_id)
            if not image_id:
                break
        return rows

    def parent_of(self, image_id: str) -> str:
        """The image C{image_id} was committed on, while it is here; or C{""}."""
        parent = self.parents.get(image_id)
        return parent if parent in self.store.images else ""

    # --- commit -------------------------------------------------------------

    def commit_reference(self, repo: str | None, tag: str | None) -> str | None:
        """
        The reference C{POST /commit?repo=&tag=} names, checked before any
        work as dockerd's C{RepoTagReference}: C{latest} when neither
        C{repo} nor C{tag} has a tag; C{None} without C{repo}.

        @return: Its familiar form (C{img:latest}).
        @raise InvalidParameter: With dockerd's message.
        """
        if not repo:
            return None
        ref = reference.parse(repo, default_tag=False)
        if ref.digest:
            raise InvalidParameter("cannot import digest reference")
        if tag:
            try:
                reference.validate_tag(tag)
            except InvalidParameter:
                raise InvalidParameter("invalid tag format") from None
            ref = ref.with_tag(tag)
        elif ref.tag is None:
            ref = ref.with_tag("latest")
        return ref.familiar()

    def apply_changes(
        self, config: dict[str, Any], instructions: list[str]
    ) -> dict[str, Any]:
        """
        C{config} with the Dockerfile C{instructions} of C{commit --change}
        applied (L{changes.apply}).

        @raise InvalidParameter: With dockerd's message.
        """
        return changes.apply(config, instructions)

    def commit_image(
        self,
        *,
        parent: str | None,
        upper: Path | None,
        config: dict[str, Any],
        history: dict[str, Any],
        empty_layer: bool = False,
        container: str = "",
        container_config: dict[str, Any] | None = None,
        exclude: frozenset[str] = frozenset(),
        repo_tag: str | None = None,
    ) -> "Deferred[str]":
        """
        The commit step (L{dockserve.daemon.images.commit}): a new image
        on C{parent} with the changes in C{upper}, durably stored, tagged
        C{repo_tag} (a familiar name, from L{commit_reference}) with the
        C{tag} event dockerd sends.
        """
        full = None
        if repo_tag is not None:
            full = reference.parse(repo_tag).tagged()
        committer = commit.Committer(self.store, self.parents, self.in_thread)
        d = committer.commit(
            parent=parent,
            upper=upper,
            config=config,
            history=history,
            empty_layer=empty_layer,
            container=container,
            container_config=container_config,
            exclude=exclude,
            reference=full,
        )

        def tagged(image_id: str) -> str:
            if repo_tag is not None:
                self._image_event("tag", image_id, repo_tag)
            return image_id

        return d.addCallback(tagged)

    # --- tags and removal -------------------------------------------------

    def tag(self, name: str, repo: str, tag: str | None) -> None:
        """
        C{POST /images/{name}/tag}.

        @raise InvalidParameter: For a bad repository or tag.
        """
        record = self.lookup(name)
        if not repo:
            raise InvalidParameter("repository name must have at least one component")
        ref = reference.parse(repo, default_tag=False)
        if ref.digest:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        if tag:
            reference.validate_tag(tag)
            ref = ref.with_tag(tag)
        self.store.set_ref(ref.tagged(), record.id)
        self.store.save_index()
        self._image_event("tag", record.id, ref.familiar())

    def _check_users(self, record: ImageRecord, force: bool, how: str) -> bool:
        """
        Raise dockerd's conflict when containers use the image.

        @return: Whether stopped containers use it (so it must stay).
        """
        users = self._users.containers_using(record.id)
        for container_id, running in users:
            if running:
                raise Conflict(
                    f"conflict: unable to {how} (cannot be forced) - image is "
                    f"being used by running container {container_id[:12]}"
                )
        if users and not force:
            raise Conflict(
                f"conflict: unable to {how} (must be forced) - image is being "
                f"used by stopped container {users[0][0][:12]}"
            )
        return bool(users)

    def remove(
        self, name: str, *, force: bool = False, noprune: bool = False
    ) -> "Deferred[list[dict[str, str]]]":
        """
        C{DELETE /images/{name}}: untag, and delete once nothing names it;
        then, unless C{noprune}, its parents that nothing else holds, as
        dockerd's C{ImageDelete} (a build's intermediate images go with
        the image they led to).

        @raise Conflict: dockerd's messages for an image in use, named in
            several repositories, or that other images were made on.
        """
        try:
            record = self.lookup(name)
        except DockerError:
            return maybeDeferred(self._remove, name, force, noprune, [])
        image_id = record.id
        parents: list[str] = []

        def events(result: list[dict[str, str]]) -> list[dict[str, str]]:
            for entry in result:
                if "Untagged" in entry:
                    self._image_event("untag", image_id, image_id, record)
            if {"Deleted": image_id} in result:
                self._event("delete", image_id, {"name": image_id})
            for parent in parents:
                self._event("delete", parent, {"name": parent})
            return result

        removing = maybeDeferred(self._remove, name, force, noprune, parents)
        return removing.addCallback(events)

    def _remove(
        self, name: str, force: bool, noprune: bool, parents: list[str]
    ) -> "Deferred[list[dict[str, str]]]":
        """
        L{remove}'s work; the parents it deletes are added to C{parents}.
        Layers are pruned by dockerd with or without C{noprune}; it keeps
        only the untagged parents.
        """
        record = self.lookup(name)
        refs = self.store.refs_of(record.id)
        by_reference = False
        bare = name.removeprefix("sha256:")
        by_id = reference.is_full_id(name) or (
            all(c in "0123456789abcdef" for c in bare)
            and record.id[7:].startswith(bare)
        )
        if not by_id:
            ref = reference.parse(name)
            key = ref.with_digest(ref.digest).full() if ref.digest else ref.tagged()
            by_reference = key in refs
        result: list[dict[str, str]] = []
        if by_reference:
            ref = reference.parse(name)
            key = ref.with_digest(ref.digest).full() if ref.digest else ref.tagged()
            removed = [key]
            if not ref.digest and not any(
                r != key and "@" not in r and r.rsplit(":", 1)[0] == ref.repository
                for r in refs
            ):
                # The repository's last tag goes: its digests go with it,
                # as dockerd does.
                removed += [r for r in refs if r.startswith(ref.repository + "@")]
            remaining = [r for r in refs if r not in removed]
            users = running = False
            if not remaining:
                using = self._users.containers_using(record.id)
                if using and not force:
                    raise Conflict(
                        f'conflict: unable to remove repository reference "{name}" '
                        f"(must force) - container {using[0][0][:12]} is using its "
                        f"referenced image {short_id(record.id)}"
                    )
                users = bool(using)
                # Forced: the name goes; the image goes too unless a
                # running container uses it (dockerd's hard conflict).
                running = any(up for _, up in using)
            for ref_text in removed:
                del self.store.refs[ref_text]
                result.append({"Untagged": reference.familiar(ref_text)})
            if remaining or (users and running) or self.children_of(record.id):
                # Untagged only: named otherwise, running, or other images
                # were made on it (it stays, as an intermediate image).
                self.store.save_index()
                return maybeDeferred(lambda: result)
            if users:
                return maybeDeferred(self._hold, record, result, noprune, parents)
        else:
            if self.children_of(record.id):
                raise Conflict(
                    f"conflict: unable to delete {short_id(record.id)} (cannot be "
                    "forced) - image has dependent child images"
                )
            repositories = {
                reference.parse(r, default_tag=False).repository for r in refs
            }
            if len(repositories) > 1 and not force:
                raise Conflict(
                    f"conflict: unable to delete {short_id(record.id)} (must be "
                    "forced) - image is referenced in multiple repositories"
                )
            users = self._check_users(record, force, f"delete {short_id(record.id)}")
            for ref_text in refs:
                del self.store.refs[ref_text]
                result.append({"Untagged": reference.familiar(ref_text)})
            if users:
                return maybeDeferred(self._hold, record, result, noprune, parents)
        parent = self.parents.get(record.id)
        self._delete(record, result)
        if not noprune:
            self._delete_parents(parent, result, parents)
        self.store.save_index()
        return self._collect_garbage().addCallback(lambda _: result)

    def _delete(self, record: ImageRecord, result: list[dict[str, str]]) -> int:
        """
        Take C{record} out of the index (not saved yet), its deletion and
        the layers no image has any more added to C{result}; the size
        those layers took.
        """
        del self.store.images[record.id]
        result.append({"Deleted": record.id})
        released = self._released_layers(record)
        result += [{"Deleted": chain} for chain, _ in released]
        return sum(size for _, size in released)

    def _delete_parents(
        self, parent: str, result: list[dict[str, str]], deleted: list[str]
    ) -> int:
        """
        Delete C{parent}, then its parent, and so on, as dockerd prunes the
        parents of a deleted image: up to the first that a tag or a digest
        names, that another image was made on, or that a container uses
        (quietly: that one is no error). The IDs go to C{deleted}; the size
        their layers took is returned.
        """
        reclaimed = 0
        while parent:
            record = self.store.images.get(parent)
            if (
                record is None
                or self.store.refs_of(parent)
                or self.children_of(parent)
                or self._users.containers_using(parent)
            ):
                break
            above = self.parents.get(parent)
            reclaimed += self._delete(record, result)
            deleted.append(parent)
            parent = above
        return reclaimed

    def _hold(
        self,
        record: ImageRecord,
        result: list[dict[str, str]],
        noprune: bool,
        parents: list[str],
    ) -> "Deferred[list[dict[str, str]]]":
        """
        C{rmi -f} of an image only stopped containers use: deleted, as
        dockerd deletes it (C{Deleted: sha256:...}, gone from every list
        and lookup), but held with its layers for those containers, which
        still start from it, until none uses it (L{_collect_garbage}). Its
        parents go as for any deletion (the held image keeps their layers).
        """
        del self.store.images[record.id]
        self.store.held[record.id] = record
        result.append({"Deleted": record.id})
        if not noprune:
            self._delete_parents(self.parents.get(record.id), result, parents)
        self.store.save_index()
        if not parents:
            return maybeDeferred(lambda: result)
        return self._collect_garbage().addCallback(lambda _: result)

    def _collect_garbage(self) -> "Deferred[int]":
        """
        Delete the blobs and layers no image refers to, once containers
        being removed have let go of theirs (an overlayfs root still
        mounted on a layer is unmounted first); a held image no container
        uses any more goes too.
        """

        def collect(_: object) -> "Deferred[int]":
            unused = [
                image_id
                for image_id in self.store.held
                if not self._users.containers_using(image_id)
            ]
            for image_id in unused:
                del self.store.held[image_id]
            if unused:
                self.store.save_index()
            return self.in_thread(self.store.collect_garbage, self.store.referenced())

        return self._users.settled().addCallback(collect)

    def _released_layers(self, gone: ImageRecord) -> list[tuple[str, int]]:
        """
        The layers of C{gone} (just out of the index) that no image has
        any more (nor an image held for a container), top first, as dockerd
        reports them: by chain ID, with the size each took.
        """
        kept: set[str] = set()
        for record in [*self.store.images.values(), *self.store.held.values()]:
            kept.update(chain_ids(record.diff_ids))
        chains = chain_ids(gone.diff_ids)
        return [
            (chain, self.store.layer_disk_size(diff_id))
            for chain, diff_id in reversed(
                list(zip(chains, gone.diff_ids, strict=True))
            )
            if chain not in kept
        ]

    def prune(
        self, filters: dict[str, list[str]] | None = None
    ) -> "Deferred[dict[str, Any]]":
        """
        C{POST /images/prune}: remove unused (by default dangling) images,
        as dockerd's C{ImagePrune}: dangling ones are those nothing was made
        on and no tag names; with C{dangling=false}, every image but the
        intermediate ones (untagged, with children), which go instead with
        the last image made on them. Images containers use stay, and so
        does what they were made on.
        """
        filters = filters or {}
        for key in filters:
            if key not in ("dangling", "until", "label", "label!"):
                raise InvalidParameter(f"invalid filter '{key}'")
        dangling_only = _prune_dangling(filters)
        cutoff = _until(filters)
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        # Newest first: an image before what it was made on.
        records = sorted(
            self.store.images.values(),
            key=lambda r: (_parse_time(r.config.get("created")), r.id),
            reverse=True,
        )
        for record in records:
            if record.id not in self.store.images:
                continue  # it went as the parent of one before
            tags = self.store.refs_of(record.id)
            children = self.children_of(record.id)
            if children and (dangling_only or not tags):
                continue
            if dangling_only and any("@" not in t for t in tags):
                continue
            if self._users.containers_using(record.id):
                continue
            if (
                cutoff is not None
                and _parse_time(record.config.get("created")) >= cutoff
            ):
                continue
            labels = (record.config.get("config") or {}).get("Labels") or {}
            if not all(_label_match(labels, f) for f in filters.get("label", [])):
                continue
            if any(_label_match(labels, f) for f in filters.get("label!", [])):
                continue
            for ref_text in tags:
                del self.store.refs[ref_text]
                deleted.append({"Untagged": reference.familiar(ref_text)})
                self._image_event("untag", record.id, record.id)
            if children:
                # Untagged only, as dockerd: it goes with its last child.
                continue
            parent = self.parents.get(record.id)
            reclaimed += self._delete(record, deleted)
            self._event("delete", record.id, {"name": record.id})
            parents: list[str] = []
            reclaimed += self._delete_parents(parent, deleted, parents)
            for gone in parents:
                self._event("delete", gone, {"name": gone})
        self.store.save_index()

        def report(_: object) -> dict[str, Any]:
            self._event("prune", "", {"reclaimed": str(reclaimed)})
            return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

        return self._collect_garbage().addCallback(report)

    # --- import, load, save -----------------------------------------------

    def import_image(
        self,
        source: IO[bytes],
        *,
        repo: str | None = None,
        tag: str | None = None,
        message: str = "",
        change: list[str] | tuple[str, ...] = (),
        platform: str | None = None,
        source_name: str = "-",
    ) -> "Deferred[str]":
        """
        C{POST /images/create?fromSrc=-}: a rootfs tarball (plain, gzip, xz,
        zstd, bzip2) becomes a one-layer image.

        @return: A L{Deferred} firing with the new image ID.
        @raise InvalidParameter: For a bad reference, change or archive.
        """
        ref = None
        if repo:
            ref = reference.parse(repo, default_tag=False)
            if tag:
                reference.validate_tag(tag)
                ref = ref.with_tag(tag)
            elif ref.tag is None and ref.digest is None:
                ref = ref.with_tag("latest")
        inner = changes.apply({}, list(change))
        os_name, arch = "linux", _go_arch()
        if platform:
            parts = platform.split("/")
            os_name = parts[0] or os_name
            if len(parts) > 1:
                arch = parts[1]
        self.store.begin()

        def ingest() -> tuple[str, int]:
            return self.store.ingest_layer(source)

        def made(layer: tuple[str, int]) -> "Deferred[str]":
            diff_id, _ = layer
            created = now_rfc3339()
            config: dict[str, Any] = {
                "architecture": arch,
                "config": inner,
                "created": created,
                "history": [
                    {
                        "created": created,
                        "comment": message or f"Imported from {source_name}",
                    }
                ],
                "os": os_name,
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
            if message:
                config["comment"] = message
            raw = dump_config(config)
            return self.in_thread(self.store.put_blob, raw).addCallback(
                lambda image_id: self._index(image_id, config, len(raw), ref)
            )

        def imported(image_id: str) -> str:
            self._image_event("import", image_id, image_id)
            return image_id

        d = self.in_reader_thread(source, ingest).addCallback(made)
        return d.addCallback(imported).addBoth(self._end)

    def import_url(
        self,
        url: str,
        *,
        repo: str | None = None,
        tag: str | None = None,
        message: str = "",
        change: list[str] | tuple[str, ...] = (),
        platform: str | None = None,
    ) -> "Deferred[str]":
        """
        C{POST /images/create?fromSrc=URL}: download the rootfs tarball,
        then import it as L{import_image} does.

        @raise InvalidParameter: For a source that is not an http(s) URL.
        """
        if not url.startswith(("http://", "https://")):
            raise InvalidParameter(
                f"invalid fromSrc: {url!r}: an http or https URL, or -"
            )
        changes.apply({}, list(change))
        temp = self.store.temp_path("import-")
        return Deferred.fromCoroutine(
            self._import_url(url, temp, repo, tag, message, list(change), platform)
        )

    async def _import_url(  # noqa: PLR0917 - import_url's parameters
        self,
        url: str,
        temp: Path,
        repo: str | None,
        tag: str | None,
        message: str,
        change: list[str],
        platform: str | None,
    ) -> str:
        try:
            await self._registry_client().fetch(url, temp)
            source: IO[bytes] = await self.in_thread(lambda: temp.open("rb"))
            try:
                return await self.import_image(
                    source,
                    repo=repo,
                    tag=tag,
                    message=message,
                    source_name=url,
                    change=change,
                    platform=platform,
                )
            finally:
                source.close()
        finally:
            await self.in_thread(temp.unlink, True)

    def _end(self, result: _T) -> _T:
        self.store.end()
        return result

    def _index(
        self,
        image_id: str,
        config: dict[str, Any],
        size: int,
        ref: reference.Reference | None,
        sources: dict[str, LayerSource] | None = None,
    ) -> str:
        self.store.add_image(image_id, config, size, sources)
        if ref is not None:
            self.store.set_ref(ref.tagged(), image_id)
        self.store.save_index()
        return image_id

    def load(
        self,
        source: IO[bytes],
        *,
        quiet: bool = True,
        platform: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> "Deferred[list[str]]":
        """
        C{POST /images/load}: a C{docker save} archive or an OCI layout.

        @param quiet: Whether C{progress} is left out.
        @param platform: Only the images of this OCI platform.
        @param progress: Told (on the reactor thread) of each layer loading.
        @return: A L{Deferred} firing with the lines dockerd reports
            (C{Loaded image: busybox:latest}, ...).
        """
        report: Progress | None = None
        if progress is not None and not quiet:
            if self.synchronous:
                report = progress
            else:
                call_from_thread = self._reactor.callFromThread

                def report(message: dict[str, Any]) -> None:
                    call_from_thread(progress, message)

        self.store.begin()
        d: Deferred[Any] = self.in_reader_thread(
            source, archive_load.load, self.store, source, platform, report
        )
        d.addCallback(self._loaded)
        return d.addBoth(self._end)

    def _loaded(self, images: list[archive_load.LoadedImage]) -> list[str]:
        lines: list[str] = []
        for image in images:
            self.store.add_image(image.id, image.config, image.config_size)
            for tag in image.repo_tags:
                before = self.store.set_ref(tag, image.id, tagged=False)
                if before is not None and before != image.id:
                    lines.append(
                        f"The image {reference.familiar(tag)} already exists, "
                        f"renaming the old one with ID {before} to empty string"
                    )
                lines.append(f"Loaded image: {reference.familiar(tag)}")
            if not image.repo_tags:
                lines.append(f"Loaded image ID: {image.id}")
        self.store.save_index()
        for image in images:
            self._image_event("load", image.id, image.id)
        return lines

    def prepare_save(
        self, names: list[str], platform: dict[str, Any] | None = None
    ) -> list[archive_save.SaveItem]:
        """
        What C{docker save NAME...} will write, resolved now so a missing
        image is a 404 before the archive starts.

        @param platform: The OCI platform every image must be of.
        @raise NotFound: For a name that names no image, or an image of
            another platform than C{platform} (dockerd's words).
        """
        items: dict[str, set[str]] = {}
        order: list[str] = []
        for name in names:
            record = self.lookup(name)
            config = record.config
            have = {
                "os": config.get("os", ""),
                "architecture": config.get("architecture", ""),
                "variant": config.get("variant", ""),
            }
            if not archive_load.platform_matches(platform, have):
                raise NotFound(
                    f"image with reference {name} was found but its platform "
                    f"({_platform_text(have)}) does not match the specified "
                    f"platform ({_platform_text(platform or {})})"
                )
            if record.id not in items:
                items[record.id] = set()
                order.append(record.id)
            if reference.is_full_id(name) or record.id[7:].startswith(
                name.removeprefix("sha256:")
            ):
                continue
            ref = reference.parse(name, default_tag=False)
            if ref.digest:
                continue
            if ref.tag is None:
                for r in self.store.refs_of(record.id):
                    if "@" not in r and r.rsplit(":", 1)[0] == ref.repository:
                        items[record.id].add(r)
                for r, image_id in self.store.refs.items():
                    if "@" not in r and r.rsplit(":", 1)[0] == ref.repository:
                        if image_id not in items:
                            items[image_id] = set()
                            order.append(image_id)
                        items[image_id].add(r)
            else:
                items[record.id].add(ref.tagged())
        return [
            archive_save.SaveItem(self.store.images[i], tuple(sorted(items[i])))
            for i in order
        ]

    def save(
        self, items: list[archive_save.SaveItem], out: IO[bytes]
    ) -> "Deferred[None]":
        """Write the archive of C{items} to C{out} from a thread."""
        self.store.begin()

        def saved(_: object) -> None:
            for item in items:
                self._image_event("save", item.record.id, item.record.id)

        d: Deferred[None] = self.in_thread(archive_save.save, self.store, items, out)
        d.addBoth(self._end)
        return d.addCallback(saved)

    # --- registries --------------------------------------------------------

    def _registry_client(self) -> Any:
        if self._registry is None:
            from dockserve.daemon.images.registry import Distribution  # noqa: PLC0415

            self._registry = Distribution(self)
        return self._registry

    def pull(
        self,
        image: str,
        tag: str | None,
        auth: dict[str, Any] | None,
        progress: Progress,
        platform: str | None = None,
        *,
        all_tags: bool = False,
    ) -> "Deferred[None]":
        """
        C{POST /images/create?fromImage=}: pull from a registry.

        @param all_tags: Every tag of a repository named without tag or
            digest (C{docker pull -a}).
        """
        d = maybeDeferred(
            self._registry_client().pull,
            image,
            tag,
            auth,
            progress,
            platform,
            all_tags=all_tags,
        )
        return d.addCallback(self._registry_event, "pull", image, tag)

    def push(
        self,
        name: str,
        tag: str | None,
        auth: dict[str, Any] | None,
        progress: Progress,
    ) -> "Deferred[None]":
        """C{POST /images/{name}/push}: push to a registry."""
        d = maybeDeferred(self._registry_client().push, name, tag, auth, progress)
        return d.addCallback(self._registry_event, "push", name, tag)

    def _registry_event(
        self, result: None, action: str, name: str, tag: str | None
    ) -> None:
        """The events of a pull or push: the reference is the actor."""
        try:
            ref = reference.parse(name)
            if tag and tag.startswith("sha256:"):
                ref = ref.with_digest(tag)
            elif tag:
                ref = ref.with_tag(tag)
        except DockerError:
            return result
        attributes: dict[str, str] = {}
        key = ref.with_digest(ref.digest).full() if ref.digest else ref.tagged()
        image_id = self.store.refs.get(key)
        if image_id is not None:
            labels = (self.store.images[image_id].config.get("config") or {}).get(
                "Labels"
            ) or {}
            attributes.update({str(k): str(v) for k, v in labels.items()})
        attributes["name"] = ref.familiar_repository
        self._event(action, ref.familiar(), attributes)
        return result

    def search(
        self, term: str, limit: int | None = None
    ) -> "Deferred[list[dict[str, Any]]]":
        """C{GET /images/search}: there is no index this daemon can reach."""
        return maybeDeferred(self._registry_client().search, term, limit)


def _platform_text(platform: dict[str, Any]) -> str:
    """C{os/architecture[/variant]}."""
    return "/".join(
        str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k)
    )


def _comment(config: dict[str, Any]) -> str:
    """The image's comment, or its last history entry's, as dockerd shows it."""
    comment = config.get("comment") or ""
    history = config.get("history") or []
    if not comment and history:
        comment = history[-1].get("comment") or ""
    return str(comment)


def _prune_dangling(filters: dict[str, list[str]]) -> bool:
    """
    Whether a prune takes dangling images only: the C{dangling} filter read
    as dockerd's C{GetBoolOrDefault} reads it (C{true}/C{1} or
    C{false}/C{0}, exactly; true without it). Anything else is refused
    rather than guessed, since a wrong guess deletes every unused image.

    @raise InvalidParameter: For no value, no boolean, or both booleans.
    """
    if "dangling" not in filters:
        return True
    values = filters["dangling"]
    if not values:
        raise InvalidParameter("invalid filter 'dangling'")
    is_true = "true" in values or "1" in values
    is_false = "false" in values or "0" in values
    if is_true == is_false:
        raise InvalidParameter(f"invalid filter 'dangling={','.join(values)}'")
    return is_true


def _label_match(labels: dict[str, str], spec: str) -> bool:
    key, eq, value = spec.partition("=")
    return key in labels and (not eq or labels[key] == value)


def _until(filters: dict[str, list[str]]) -> float | None:
    """
    The C{until} filter as Unix seconds: a timestamp (RFC 3339 or Unix
    seconds) or a duration before now (C{10m}, C{1h30m}); C{None} without.

    @raise InvalidParameter: For a value that is neither.
    """
    values = filters.get("until")
    if not values:
        return None
    value = values[-1]
    try:
        if value[-1:].isalpha() and value[-1:] != "Z":
            return time.time() - _duration(value)
        return float(value)
    except ValueError:
        seconds = _parse_time(value)
        if not seconds:
            raise InvalidParameter(f"invalid filter 'until={value}'") from None
        return seconds


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    total = 0.0
    number = ""
    for char in text:
        if char.isdigit() or char == ".":
            number += char
        elif char in units and number:
            total += float(number) * units[char]
            number = ""
        else:
            raise ValueError(text)
    if number:
        raise ValueError(text)
    return total


__all__ = ["ImageService", "json"]
