# -*- test-case-name: tests.daemon.containers.test_service -*-
"""
How containers look to clients: C{docker inspect}, C{docker ps} and its
filters (moby's C{daemon/list.go}), the status text, and the predefined
networks' member lists. Reads records; changes nothing.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dockserve.daemon.containers import (
    mounts,
    names,
    record,
)
from dockserve.daemon.containers.record import ContainerRecord
from dockserve.daemon.containers.table import (
    LOG_DRIVER,
    LOG_FILE,
    ContainerParts,
)
from dockserve.errors import (
    DockerError,
    InvalidParameter,
    NotFound,
)
from dockserve.timetypes import get_timestamp


def _human_duration(seconds: float) -> str:
    """Docker's C{units.HumanDuration}, for C{Up 3 seconds}."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = whole // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def _host_config_view(host_config: dict[str, Any]) -> dict[str, Any]:
    """C{HostConfig} as inspect shows it: Docker's defaults filled in."""
    defaults: dict[str, Any] = {
        "Binds": None,
        "ContainerIDFile": "",
        "LogConfig": {"Type": LOG_DRIVER, "Config": {}},
        "NetworkMode": "bridge",
        "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False,
        "VolumeDriver": "",
        "VolumesFrom": None,
        "CapAdd": None,
        "CapDrop": None,
        "Dns": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": None,
        "IpcMode": "private",
        "Privileged": False,
        "PublishAllPorts": False,
        "ReadonlyRootfs": False,
        "SecurityOpt": None,
        "Tmpfs": None,
        "UTSMode": "",
        "ShmSize": 67108864,
        "Runtime": "runc",
        "Memory": 0,
        "MemorySwap": 0,
        "MemoryReservation": 0,
        "NanoCpus": 0,
        "CpuShares": 0,
        "CpuPeriod": 0,
        "CpuQuota": 0,
        "CpusetCpus": "",
        "PidsLimit": None,
        "Ulimits": None,
        "Init": None,
        "Mounts": None,
        "ConsoleSize": [0, 0],
    }
    defaults.update({
        "GroupAdd": None, "Links": None, "DeviceCgroupRules": None,
        "DeviceRequests": None, "KernelMemory": 0, "KernelMemoryTCP": 0,
        "MemorySwappiness": None, "CgroupnsMode": _CGROUPNS_DEFAULT,
    })  # fmt: skip
    if not host_config.get("Privileged"):
        from dockserve.daemon.containers.spec import (  # noqa: PLC0415
            MASKED_PATHS,
            READONLY_PATHS,
        )

        defaults["MaskedPaths"] = list(MASKED_PATHS)
        defaults["ReadonlyPaths"] = list(READONLY_PATHS)
    # What the client left at its zero value shows dockerd's default.
    unset = {"ShmSize": 0, "IpcMode": "", "CgroupnsMode": "", "NetworkMode": ""}
    for key, value in host_config.items():
        if value is None or unset.get(key, object()) == value:
            continue
        if key == "PidsLimit" and isinstance(value, int) and value <= 0:
            continue
        if key == "MemorySwappiness" and value == -1:
            continue
        defaults[key] = value
    return defaults


#: dockerd's default cgroup namespace mode: private on cgroup v2, host on v1.
_CGROUPNS_DEFAULT = (
    "private" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "host"
)


def _labels_match(rec: ContainerRecord, filters: dict[str, list[str]]) -> bool:
    labels = rec.config.get("Labels") or {}

    def has(spec: str) -> bool:
        key, eq, value = spec.partition("=")
        return key in labels and (not eq or labels[key] == value)

    if not all(has(spec) for spec in filters.get("label", [])):
        return False
    return not any(has(spec) for spec in filters.get("label!", []))


def _check_until(filters: dict[str, list[str]], now: float) -> list[float]:
    """The C{until} filters as Unix seconds (moby's GetTimestamp syntax)."""
    return [get_timestamp(u, now) for u in filters.get("until", [])]


def _before_until(rec: ContainerRecord, limits: list[float]) -> bool:
    created = record.parse_rfc3339(rec.created)
    return all(created <= limit for limit in limits)


_LIST_FILTERS = {
    "id", "name", "label", "status", "exited", "ancestor", "before", "since",
    "volume", "network", "health", "isolation", "is-task", "publish", "expose",
}  # fmt: skip


_STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}


def _on_network(networks: dict[str, Any], value: str) -> bool:
    return value in networks or any(
        (n or {}).get("NetworkID", "").startswith(value) for n in networks.values()
    )


def _filter(
    records: list[ContainerRecord],
    filters: dict[str, list[str]],
    names_: dict[str, str],
    *,
    all_: bool,
    mount_points: Callable[[ContainerRecord], list[mounts.MountPoint]],
    networks: Callable[[ContainerRecord], dict[str, Any]],
) -> list[ContainerRecord]:
    """
    C{GET /containers/json} filters, as moby's C{daemon/list.go}.

    @param networks: A container's inspect C{NetworkSettings.Networks}
        (C{network=} matches a name there or a prefix of its C{NetworkID}).
    """
    for key in filters:
        if key not in _LIST_FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
    for status in filters.get("status", []):
        if status not in _STATUSES:
            raise InvalidParameter(f"invalid filter 'status={status}'")
    for health in filters.get("health", []):
        if health not in {"starting", "healthy", "unhealthy", "none"}:
            raise InvalidParameter(f"Unrecognised filter value for health: {health}")
    exited: list[int] = []
    for value in filters.get("exited", []):
        try:
            exited.append(int(value))
        except ValueError:
            raise InvalidParameter(f"invalid filter 'exited={value}'") from None

    def position(reference: str) -> str:
        try:
            found = names.lookup(reference, [r.id for r in records], names_)
        except NotFound:
            raise InvalidParameter(f"No such container: {reference}") from None
        return found

    before = [position(r) for r in filters.get("before", [])]
    since = [position(r) for r in filters.get("since", [])]
    if filters.get("status") or exited or before or since:
        all_ = True
    result = []
    ids = [r.id for r in records]
    for rec in records:
        if not all_ and not rec.state.running and rec.state.status != "restarting":
            continue
        if filters.get("id") and not any(rec.id.startswith(i) for i in filters["id"]):
            continue
        if filters.get("name") and not any(
            n.lstrip("/") in rec.name for n in filters["name"]
        ):
            continue
        if not _labels_match(rec, filters):
            continue
        if filters.get("status") and rec.state.status not in filters["status"]:
            continue
        if exited and (
            rec.state.status != "exited" or rec.state.exit_code not in exited
        ):
            continue
        if filters.get("ancestor") and not any(
            a in {rec.image, rec.image_id}
            or rec.image_id.removeprefix("sha256:").startswith(a)
            for a in filters["ancestor"]
        ):
            continue
        if before and ids.index(rec.id) <= max(ids.index(b) for b in before):
            continue
        if since and ids.index(rec.id) >= min(ids.index(s) for s in since):
            continue
        if filters.get("volume") and not any(
            any(
                m["Source"] == v or m["Destination"] == v
                for m in mounts.view(mount_points(rec))
            )
            for v in filters["volume"]
        ):
            continue
        if filters.get("health"):
            health = (rec.state.health or {}).get("Status") or "none"
            if health not in filters["health"]:
                continue
        if filters.get("network") and not any(
            _on_network(networks(rec), n) for n in filters["network"]
        ):
            continue
        result.append(rec)
    return result


class ContainerViews(ContainerParts):
    """Inspect and list views of the container service."""

    def inspect(self, reference: str, *, size: bool = False) -> dict[str, Any]:
        """C{GET /containers/{id}/json}."""
        c = self._get(reference)
        rec = c.record
        state = rec.state
        value: dict[str, Any] = {
            "Id": rec.id,
            "Created": rec.created,
            "Path": rec.path,
            "Args": list(rec.args),
            "State": {
                "Status": state.status,
                # dockerd counts a restarting container as running.
                "Running": state.running or state.status == "restarting",
                "Paused": state.status == "paused",
                "Restarting": state.status == "restarting",
                "OOMKilled": state.oom_killed,
                "Dead": state.status == "dead",
                "Pid": state.pid,
                "ExitCode": state.exit_code,
                "Error": state.error,
                "StartedAt": state.started_at,
                "FinishedAt": state.finished_at,
                **({"Health": state.health} if state.health else {}),
            },
            "Image": rec.image_id,
            "ResolvConfPath": str(c.directory / "resolv.conf"),
            "HostnamePath": str(c.directory / "hostname"),
            "HostsPath": str(c.directory / "hosts"),
            "LogPath": str(c.directory / LOG_FILE),
            "Name": rec.name,
            "RestartCount": rec.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": list(c.exec_ids) or None,
            "HostConfig": _host_config_view(rec.host_config),
            "GraphDriver": {
                "Name": "overlay2",
                "Data": {
                    "MergedDir": str(self._bundles.rootfs(c.directory)),
                    "UpperDir": str(self._bundles.upper(c.directory)),
                },
            },
            "Mounts": mounts.view(self._mount_points(rec)),
            "Config": {
                **rec.config,
                "Volumes": rec.config.get("Volumes") or None,
            },
            "NetworkSettings": self.network_settings(rec),
        }
        if size:
            value["SizeRw"], value["SizeRootFs"] = self._sizes(c)
        return value

    def _status_text(self, rec: ContainerRecord) -> str:
        state = rec.state
        now = self._reactor.seconds()
        if state.status in {"running", "paused"}:
            since = record.parse_rfc3339(state.started_at)
            text = f"Up {_human_duration(now - since)}"
            if state.status == "paused":
                return text + " (Paused)"
            health = (state.health or {}).get("Status")
            if health == "starting":
                return text + " (health: starting)"
            return f"{text} ({health})" if health else text
        if state.status == "restarting":
            since = record.parse_rfc3339(state.finished_at)
            return f"Restarting ({state.exit_code}) {_human_duration(now - since)} ago"
        if state.status == "removing":
            return "Removal In Progress"
        if state.status == "dead":
            return "Dead"
        if state.status == "created" or not rec.has_been_started:
            return "Created"
        since = record.parse_rfc3339(state.finished_at)
        return f"Exited ({state.exit_code}) {_human_duration(now - since)} ago"

    def list_containers(
        self,
        *,
        all: bool = False,  # noqa: A002 - the API's own parameter name.
        limit: int | None = None,
        size: bool = False,
        filters: dict[str, list[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """C{GET /containers/json}: newest first, as dockerd lists them."""
        filters = filters or {}
        records = sorted(
            (c.record for c in self._containers.values()),
            key=lambda r: r.created,
            reverse=True,
        )
        records = _filter(
            records,
            filters,
            self._names,
            all_=all or (limit is not None and limit > 0),
            mount_points=self._mount_points,
            networks=lambda rec: self.network_settings(rec)["Networks"],
        )
        if limit is not None and limit > 0:
            records = records[:limit]
        result = []
        for rec in records:
            # As dockerd lists it: an argument with a space in single quotes.
            command = " ".join(
                [rec.path, *(f"'{a}'" if " " in a else a for a in rec.args)]
            )
            item: dict[str, Any] = {
                "Id": rec.id,
                "Names": [rec.name],
                "Image": self._image_shown(rec),
                "ImageID": rec.image_id,
                "Command": command,
                "Created": int(record.parse_rfc3339(rec.created)),
                "Ports": self.ports_list(rec),
                "Labels": rec.config.get("Labels") or {},
                "State": rec.state.status,
                "Status": self._status_text(rec),
                "HostConfig": {
                    "NetworkMode": rec.host_config.get("NetworkMode", "bridge")
                },
                "NetworkSettings": {"Networks": self.network_settings(rec)["Networks"]},
                "Mounts": mounts.view(self._mount_points(rec)),
            }
            if size:
                sizes = self._sizes(self._containers[rec.id])
                item["SizeRw"], item["SizeRootFs"] = sizes
            result.append(item)
        return result

    def _image_shown(self, rec: ContainerRecord) -> str:
        """
        The image as dockerd lists it: the name it was created from while
        that name still means the same image (not after an rmi -f or a pull
        that moved the tag), else the image's ID.
        """
        try:
            same = self._images.resolve(rec.image).id == rec.image_id
        except DockerError:
            same = False
        return rec.image if same else rec.image_id
