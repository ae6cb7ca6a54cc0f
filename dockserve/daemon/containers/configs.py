# -*- test-case-name: tests.daemon.containers.test_configs -*-
"""
The body of C{POST /containers/create}: checked, then merged with the image.

dockerd decodes the body into Go structs, so a value of the wrong JSON type
is a 400 naming the field and the Go type; then it checks the settings that
conflict (C{daemon.verifyContainerSettings}); then it fills what the user
left out from the image config (C{daemon.merge}). This module does the
same three steps with the same messages.
"""

import os
from typing import Any

from dockserve.daemon.containers import restart, security
from dockserve.errors import InvalidParameter

# Field -> (JSON types accepted, Go type named in the message).
_STR = ((str,), "string")
_INT = ((int,), "int64")
_BOOL = ((bool,), "bool")
_STRS = ((list,), "[]string")
_STRSLICE = ((list, str), "strslice.StrSlice")
_MAP = ((dict,), "map[string]string")
_OBJ = ((dict,), "struct")

_CONFIG_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "Hostname": _STR,
    "Domainname": _STR,
    "User": _STR,
    "AttachStdin": _BOOL,
    "AttachStdout": _BOOL,
    "AttachStderr": _BOOL,
    "Tty": _BOOL,
    "OpenStdin": _BOOL,
    "StdinOnce": _BOOL,
    "Env": _STRS,
    "Cmd": _STRSLICE,
    "Entrypoint": _STRSLICE,
    "Image": _STR,
    "WorkingDir": _STR,
    "Labels": _MAP,
    "StopSignal": _STR,
    "StopTimeout": ((int,), "int"),
    "NetworkDisabled": _BOOL,
    "ExposedPorts": _OBJ,
    "Volumes": _OBJ,
}

_HOST_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "Binds": _STRS,
    "NetworkMode": _STR,
    "RestartPolicy": _OBJ,
    "AutoRemove": _BOOL,
    "Privileged": _BOOL,
    "ReadonlyRootfs": _BOOL,
    "CapAdd": _STRS,
    "CapDrop": _STRS,
    "Dns": _STRS,
    "DnsSearch": _STRS,
    "DnsOptions": _STRS,
    "ExtraHosts": _STRS,
    "Memory": _INT,
    "MemorySwap": _INT,
    "MemoryReservation": _INT,
    "NanoCpus": _INT,
    "CpuShares": _INT,
    "CpuPeriod": _INT,
    "CpuQuota": _INT,
    "CpusetCpus": _STR,
    "PidsLimit": _INT,
    "ShmSize": _INT,
    "Init": _BOOL,
    "Tmpfs": _MAP,
    "Mounts": (((list,)), "[]mount.Mount"),
    "Ulimits": (((list,)), "[]*container.Ulimit"),
    "PidMode": _STR,
    "IpcMode": _STR,
    "UTSMode": _STR,
    "PortBindings": _OBJ,
    "LogConfig": _OBJ,
}

#: dockerd's smallest memory limit.
_MIN_MEMORY = 6 * 1024 * 1024

#: The options a bind's third field may list (moby's volume/mounts parser).
_BIND_MODES = frozenset({
    "rw", "ro", "z", "Z", "nocopy", "consistent", "cached", "delegated",
    "shared", "rshared", "slave", "rslave", "private", "rprivate",
})  # fmt: skip

#: C{POST /containers/{id}/update}'s fields, typed as dockerd decodes them.
_UPDATE_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    name: kind
    for name, kind in _HOST_FIELDS.items()
    if name
    in {
        "Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares",
        "CpuPeriod", "CpuQuota", "CpusetCpus", "PidsLimit", "RestartPolicy",
    }
}  # fmt: skip


def check_update(body: dict[str, Any]) -> None:
    """
    The types in an update body, with dockerd's message naming
    C{UpdateConfig}.

    @raise InvalidParameter: For a value of the wrong JSON type.
    """
    _check_types(body, _UPDATE_FIELDS, "UpdateConfig")


#: The Docker networks a container may join while only these exist.
NETWORK_MODES = ("default", "bridge", "none", "host")


def _go_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _check_types(
    values: dict[str, Any], fields: dict[str, tuple[tuple[type, ...], str]], where: str
) -> None:
    for name, (kinds, go_type) in fields.items():
        value = values.get(name)
        if value is None:
            continue
        ok = isinstance(value, kinds) and not (
            isinstance(value, bool) and bool not in kinds
        )
        if (
            ok
            and isinstance(value, list)
            and go_type in {"[]string", "strslice.StrSlice"}
        ):
            ok = all(isinstance(item, str) for item in value)
        if ok and isinstance(value, dict) and go_type == "map[string]string":
            ok = all(isinstance(item, str) for item in value.values())
        if not ok:
            raise InvalidParameter(
                f"json: cannot unmarshal {_go_type_name(value)} into Go struct "
                f"field {where}.{name} of type {go_type}"
            )


def words(value: Any) -> list[str] | None:
    """A C{StrSlice}: a string is one word, as dockerd reads it."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return list(value)


def check(
    body: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """
    Split a create body into C{Config}, C{HostConfig} and
    C{NetworkingConfig}, rejecting what dockerd rejects.

    @raise InvalidParameter: With dockerd's message.
    """
    host_config = body.get("HostConfig")
    host_config = {} if host_config is None else host_config
    networking = body.get("NetworkingConfig")
    networking = {} if networking is None else networking
    if not isinstance(host_config, dict):
        raise InvalidParameter(
            f"json: cannot unmarshal {_go_type_name(host_config)} into Go struct "
            "field ContainerConfigWrapper.HostConfig of type container.HostConfig"
        )
    if not isinstance(networking, dict):
        raise InvalidParameter(
            f"json: cannot unmarshal {_go_type_name(networking)} into Go struct "
            "field ContainerConfigWrapper.NetworkingConfig of type "
            "network.NetworkingConfig"
        )
    config = {
        k: v for k, v in body.items() if k not in {"HostConfig", "NetworkingConfig"}
    }
    _check_types(config, _CONFIG_FIELDS, "ContainerConfigWrapper.Config")
    _check_types(host_config, _HOST_FIELDS, "ContainerConfigWrapper.HostConfig")
    for key in ("Cmd", "Entrypoint"):
        if key in config:
            config[key] = words(config[key])
    policy = restart.parse(host_config)
    if host_config.get("AutoRemove") and policy.name != "no":
        raise InvalidParameter(
            "can't create 'AutoRemove' container with restart policy"
        )
    memory = host_config.get("Memory") or 0
    if 0 < memory < _MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    nano = host_config.get("NanoCpus") or 0
    if nano and (host_config.get("CpuPeriod") or host_config.get("CpuQuota")):
        raise InvalidParameter(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set"
            if host_config.get("CpuPeriod")
            else "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        )
    cpus = os.cpu_count() or 1
    if nano < 0 or nano > cpus * 1_000_000_000:
        raise InvalidParameter(
            f"Range of CPUs is from 0.01 to {cpus}.00, as there are only "
            f"{cpus} CPUs available"
        )
    if (host_config.get("PidsLimit") or 0) < -1:
        raise InvalidParameter("invalid PidsLimit")
    for bind in host_config.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
            raise InvalidParameter(f"invalid volume specification: '{bind}'")
        if not parts[1].startswith("/"):
            raise InvalidParameter(
                f"invalid volume specification: '{bind}': invalid mount config "
                f"for type \"bind\": invalid mount path: '{parts[1]}' mount "
                "path must be absolute"
            )
        if len(parts) == 3 and not all(m in _BIND_MODES for m in parts[2].split(",")):
            raise InvalidParameter(f"invalid mode: {parts[2]}")
    mode = host_config.get("NetworkMode") or "default"
    if mode.startswith("container:"):
        raise InvalidParameter(
            "container network mode is not supported by this daemon yet"
        )
    # An unknown network is dockerd's 404 at start (check_network), not
    # here: a 404 from create makes the docker CLI try to pull the image.
    security.parse(host_config.get("SecurityOpt"))
    stop_signal = config.get("StopSignal")
    if stop_signal:
        from dockserve.daemon.containers.signals import parse_signal  # noqa: PLC0415

        parse_signal(stop_signal)
    return config, host_config, networking


def check_network(host_config: dict[str, Any]) -> None:
    """
    The network a container joins exists, checked as it starts.

    @raise NotFound: C{network NAME not found}, dockerd's 404.
    """
    mode = host_config.get("NetworkMode") or "default"
    if mode not in NETWORK_MODES:
        from dockserve.errors import NotFound  # noqa: PLC0415

        raise NotFound(f"network {mode} not found")


def merge(config: dict[str, Any], image_config: dict[str, Any]) -> dict[str, Any]:
    """
    The container's C{Config} with the image's defaults filled in, as
    moby's C{daemon.merge} fills them: Cmd only when neither Cmd nor
    Entrypoint was given, Env and Labels per key, the rest when empty.
    """
    image = image_config.get("config") or image_config.get("Config") or {}
    merged = dict(config)
    if not merged.get("Entrypoint"):
        if not merged.get("Cmd"):
            merged["Cmd"] = image.get("Cmd")
        if merged.get("Entrypoint") is None:
            merged["Entrypoint"] = image.get("Entrypoint")
    env = list(merged.get("Env") or [])
    keys = {item.split("=", 1)[0] for item in env}
    env += [i for i in image.get("Env") or [] if i.split("=", 1)[0] not in keys]
    merged["Env"] = env
    labels = dict(image.get("Labels") or {})
    labels.update(merged.get("Labels") or {})
    merged["Labels"] = labels
    for key in (
        "WorkingDir",
        "User",
        "StopSignal",
        "Healthcheck",
        "ExposedPorts",
        "Volumes",
        "OnBuild",
        "Shell",
    ):
        if not merged.get(key) and image.get(key):
            merged[key] = image[key]
    for key, default in (
        ("Hostname", ""),
        ("Domainname", ""),
        ("User", ""),
        ("AttachStdin", False),
        ("AttachStdout", False),
        ("AttachStderr", False),
        ("Tty", False),
        ("OpenStdin", False),
        ("StdinOnce", False),
        ("WorkingDir", ""),
        ("Image", ""),
        ("Cmd", None),
        ("Entrypoint", None),
    ):
        merged.setdefault(key, default)
    return merged
