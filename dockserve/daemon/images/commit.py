# -*- test-case-name: tests.daemon.images.test_commit -*-
"""
The commit step: a container's changes become a new image, as C{docker
commit} makes one and as the classic builder makes one per step.

The API (what C{docker commit} and the builder call), on
L{dockserve.daemon.images.service.ImageService}::

    image_id = await images.commit_image(
        parent="sha256:...",          # the image below; None: FROM scratch
        upper=Path(".../upper"),      # the changes: an overlayfs upper
                                      # directory (None: no changes)
        config={...},                 # the new image's Config (Cmd, Env...)
        history={"created_by": "/bin/sh -c make",
                 "author": "", "comment": ""},
        empty_layer=False,            # True: a config-only step (ENV, CMD...):
                                      # no layer, history "empty_layer"
        container="<64 hex>",         # the image's "container" field
        container_config={...},       # its "container_config" (the step's
                                      # or the container's Config)
        exclude=frozenset({"/etc/hosts", ...}),  # upper paths never put in
                                      # the layer (a container's mount points)
        repo_tag="img:latest",        # tag it (L{ImageService.commit_reference}
                                      # checks one); None: untagged
    )

It fires with the new image's ID once the image is durably on disk: the
layer blob and its unpacked directory synced, the config blob, the parent
link (L{Parents}) and the index, each written before the next (the store's
discipline: an image is in the index only when all it needs is on disk).
An upper directory with no changes gives no layer and an C{empty_layer}
history entry, as dockerd's (its diff is the empty tar). The image config
is dockerd's C{NewChildImage}: the parent's C{diff_ids} plus the new
layer's, its history plus the new entry, its architecture and OS, the
C{Config} and C{container_config} in the field order and with the
omissions of Go's C{container.Config}. The parent link shows in C{docker
inspect} (C{Parent}), C{docker history} (the parent's rows carry its ID)
and C{docker images} (C{ParentId}); L{Parents.children} is the builder's
cache probe (a child of the current image whose C{container_config}
matches the step's).

The layer is the upper directory as a tar with the OCI whiteouts
(L{dockserve.daemon.images.upperdir.write_layer}, which never follows a
link the container made).
"""

from __future__ import annotations

import hashlib
import os
from typing import IO, TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from dockserve import __version__
from dockserve.daemon import store as records
from dockserve.daemon.images import layers, upperdir
from dockserve.daemon.images.store import (
    ImageRecord,
    ImageStore,
    dump_config,
    now_rfc3339,
)
from dockserve.errors import NotFound

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path


#: The fields of Go's C{container.Config}, in its order, and whether an
#: empty value is left out (C{omitempty}).
_CONFIG_FIELDS: tuple[tuple[str, bool, Any], ...] = (
    ("Hostname", False, ""),
    ("Domainname", False, ""),
    ("User", False, ""),
    ("AttachStdin", False, False),
    ("AttachStdout", False, False),
    ("AttachStderr", False, False),
    ("ExposedPorts", True, None),
    ("Tty", False, False),
    ("OpenStdin", False, False),
    ("StdinOnce", False, False),
    ("Env", False, None),
    ("Cmd", False, None),
    ("Healthcheck", True, None),
    ("ArgsEscaped", True, False),
    ("Image", False, ""),
    ("Volumes", False, None),
    ("WorkingDir", False, ""),
    ("Entrypoint", False, None),
    ("NetworkDisabled", True, False),
    ("MacAddress", True, ""),
    ("OnBuild", False, None),
    ("Labels", False, None),
    ("StopSignal", True, ""),
    ("StopTimeout", True, None),
    ("Shell", True, None),
)

#: Go's C{HealthConfig}, every field C{omitempty}.
_HEALTH_FIELDS = (
    "Test",
    "Interval",
    "Timeout",
    "StartPeriod",
    "StartInterval",
    "Retries",
)


def go_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """
    C{config} as Go marshals a C{container.Config}: every field in the
    struct's order, zero values for the missing, the C{omitempty} ones
    left out when empty, and nothing that is not a field.
    """
    config = config or {}
    result: dict[str, Any] = {}
    for name, omit_empty, zero in _CONFIG_FIELDS:
        value = config.get(name, zero)
        if name == "Healthcheck" and value:
            value = {k: value[k] for k in _HEALTH_FIELDS if value.get(k)} or None
        if omit_empty and not value:
            continue
        result[name] = zero if value is None else value
    return result


def history_entry(
    *,
    created: str,
    created_by: str = "",
    author: str = "",
    comment: str = "",
    empty_layer: bool = False,
) -> dict[str, Any]:
    """An image history entry as Go's C{image.History} marshals it."""
    entry: dict[str, Any] = {"created": created}
    if author:
        entry["author"] = author
    if created_by:
        entry["created_by"] = created_by
    if comment:
        entry["comment"] = comment
    if empty_layer:
        entry["empty_layer"] = True
    return entry


def child_config(  # noqa: PLR0917 - NewChildImage's ChildConfig, flat
    parent: dict[str, Any] | None,
    config: dict[str, Any],
    diff_id: str | None,
    history: dict[str, Any],
    container: str,
    container_config: dict[str, Any] | None,
    created: str,
) -> dict[str, Any]:
    """
    The image config of a child of C{parent} (an image config, or C{None}
    for scratch), as dockerd's C{image.NewChildImage} makes it; the keys
    sorted, as dockerd stores them.

    @param diff_id: The new layer's, or C{None} for no layer.
    @param history: C{created_by}, C{author}, C{comment} of the new entry.
    """
    parent = parent or {}
    rootfs = parent.get("rootfs") or {}
    diff_ids = list(rootfs.get("diff_ids") or [])
    if diff_id is not None:
        diff_ids.append(diff_id)
    author = str(history.get("author") or "")
    entry = history_entry(
        created=created,
        created_by=str(history.get("created_by") or ""),
        author=author,
        comment=str(history.get("comment") or ""),
        empty_layer=diff_id is None,
    )
    image: dict[str, Any] = {
        "architecture": parent.get("architecture") or _go_arch(),
        "config": go_config(config),
        "container_config": go_config(container_config),
        "created": created,
        "docker_version": __version__,
        "history": [*(parent.get("history") or []), entry],
        "os": parent.get("os") or "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if author:
        image["author"] = author
    if container:
        image["container"] = container
    if not diff_ids:
        del image["rootfs"]["diff_ids"]
    for key in ("variant", "os.version", "os.features"):
        if parent.get(key):
            image[key] = parent[key]
    return dict(sorted(image.items()))


def _go_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine
    )


class _HashingFile:
    """Writes to a file and hashes what it writes."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.out.write(data)


# --- parent links -------------------------------------------------------


class Parents:
    """
    Which image each committed image was made on (dockerd's image
    metadata C{parent}): C{parents.json} in the store's directory, a small
    map rewritten durably (temp, fsync, rename) before the index names
    the child. Read and changed on the reactor thread, like the index.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._map: dict[str, str] | None = None

    def _links(self) -> dict[str, str]:
        if self._map is None:
            try:
                value = records.read_json(self._path)
            except (OSError, ValueError):
                value = {}
            self._map = {
                str(k): str(v)
                for k, v in (value if isinstance(value, dict) else {}).items()
            }
        return self._map

    def get(self, image_id: str) -> str:
        """The parent of C{image_id}, or C{""}."""
        return self._links().get(image_id, "")

    def children(self, image_id: str) -> list[str]:
        """The images made on C{image_id}, sorted."""
        return sorted(c for c, p in self._links().items() if p == image_id)

    def set(self, child: str, parent: str, alive: Iterable[str]) -> None:
        """
        Record C{parent} as C{child}'s, durably; links of images no longer
        C{alive} (every image in the store, C{child} included) go.
        """
        keep = set(alive) | {child}
        links = {c: p for c, p in self._links().items() if c in keep}
        links[child] = parent
        records.write_json(self._path, links)
        self._map = links


# --- the step ---------------------------------------------------------


class Committer:
    """
    Makes the image of one commit step in an image store; see the
    module's docstring (C{ImageService.commit_image} is its door).
    """

    def __init__(
        self,
        store: ImageStore,
        parents: Parents,
        in_thread: Callable[..., Deferred[Any]],
    ) -> None:
        """
        @param in_thread: Runs blocking work off the reactor thread
            (C{ImageService.in_thread}).
        """
        self._store = store
        self._parents = parents
        self._in_thread = in_thread

    def commit(
        self,
        *,
        parent: str | None,
        upper: Path | None,
        config: dict[str, Any],
        history: dict[str, Any],
        empty_layer: bool = False,
        container: str = "",
        container_config: dict[str, Any] | None = None,
        exclude: Iterable[str] = (),
        reference: str | None = None,
    ) -> Deferred[str]:
        """
        The new image's ID, once it is durably in the store.

        @param reference: The full reference (C{docker.io/library/x:tag})
            to point at it.
        @raise NotFound: When C{parent} is no image of the store.
        """
        base = self._parent(parent)
        return Deferred.fromCoroutine(
            self._commit(
                base,
                None if empty_layer else upper,
                config,
                history,
                container,
                container_config,
                frozenset(exclude),
                reference,
            )
        )

    def _parent(self, parent: str | None) -> ImageRecord | None:
        if not parent:
            return None
        record = self._store.images.get(parent) or self._store.held.get(parent)
        if record is None:
            raise NotFound(f"No such image: {parent}")
        return record

    async def _commit(  # noqa: PLR0917 - commit's parts, private
        self,
        base: ImageRecord | None,
        upper: Path | None,
        config: dict[str, Any],
        history: dict[str, Any],
        container: str,
        container_config: dict[str, Any] | None,
        exclude: frozenset[str],
        reference: str | None,
    ) -> str:
        store = self._store
        store.begin()
        try:
            diff_id = None
            if upper is not None:
                lowers = [
                    store.layer_path(d) for d in reversed(base.diff_ids if base else [])
                ]
                diff_id = await self._in_thread(
                    self._make_layer, upper, lowers, exclude
                )
            image = child_config(
                base.config if base else None,
                config,
                diff_id,
                history,
                container,
                container_config,
                now_rfc3339(),
            )
            raw = dump_config(image)
            image_id: str = await self._in_thread(store.put_blob, raw)
            alive = [*store.images, *store.held]
            if base is not None:
                self._parents.set(image_id, base.id, alive)
            store.add_image(image_id, image, len(raw))
            if reference is not None:
                store.set_ref(reference, image_id)
            store.save_index()
            return image_id
        finally:
            store.end()

    def _make_layer(
        self, upper: Path, lowers: list[Path], exclude: frozenset[str]
    ) -> str | None:
        """
        Blocking: the layer of C{upper} stored (blob and unpacked
        directory, both synced); C{None} when it is empty.
        """
        store = self._store
        temp = store.temp_path("commit-")
        try:
            with temp.open("wb") as out:
                hashing = _HashingFile(out)
                wrote = upperdir.write_layer(
                    upper, hashing.write, lowers=lowers, exclude=exclude
                )
                layers.fsync_file(out)
            if not wrote:
                return None
            diff_id = "sha256:" + hashing.digest.hexdigest()
            store.commit_blob(temp, diff_id)
        finally:
            temp.unlink(missing_ok=True)
        store.ensure_unpacked(diff_id)
        return diff_id


__all__ = [
    "Committer",
    "Parents",
    "child_config",
    "go_config",
    "history_entry",
]
