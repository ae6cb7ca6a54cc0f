# -*- test-case-name: tests.daemon.containers.test_configs -*-
"""
The body of C{POST /containers/create}: checked, then merged with the image.

dockerd decodes the body into Go structs, so a value of the wrong JSON type
is a 400 naming the field and the Go type (L{gojson}, over the table of
L{apitypes}); then it checks the settings (C{verifyContainerSettings}:
L{validate}); then it fills what the user left out from the image config
(C{daemon.merge}). This module does the same three steps with the same
messages, so that nothing is stored that a client could not read back or
that could only fail at start.

Go's messages name the body's own fields from C{ContainerConfigWrapper}
(C{ContainerConfigWrapper.Config.Env}, C{ContainerConfigWrapper.HostConfig.Memory}),
nested ones from their own struct (C{Mount.HostConfig.Mounts.Source}), as
dockerd 20.10 does.
"""

from typing import Any

from dockserve.daemon.containers import apitypes, gojson, validate
from dockserve.errors import InvalidParameter

_DECODER = gojson.Decoder(apitypes.STRUCTS)

#: How Go's messages name the create body's struct, and its two sections
#: besides the Config fields, with their Go types.
_WRAPPER = "ContainerConfigWrapper"
_SECTIONS = {
    "HostConfig": "container.HostConfig",
    "NetworkingConfig": "network.NetworkingConfig",
}

#: The Docker networks a container may join while only these exist.
NETWORK_MODES = ("default", "bridge", "none", "host")


def words(value: Any) -> list[str] | None:
    """A C{StrSlice}: a string is one word, as dockerd reads it."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return list(value)


def _section(key: str) -> str | None:
    """The section C{key} names (Go matches it case-insensitively), if any."""
    for name in _SECTIONS:
        if key == name or key.casefold() == name.casefold():
            return name
    return None


def decode(
    body: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """
    A create body as Go decodes it: C{Config}'s fields, C{HostConfig} and
    C{NetworkingConfig}, each an object (empty when absent or null).

    @raise InvalidParameter: Go's message for the first wrong value.
    """
    config: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    for key, value in body.items():
        section = _section(key)
        if section is None:
            name, decoded = _DECODER.field("Config", key, value, _WRAPPER, ("Config",))
            config[name] = decoded
        elif value is None:
            sections[section] = {}
        elif not isinstance(value, dict):
            raise InvalidParameter(
                f"json: cannot unmarshal {gojson.value_name(value)} into Go struct "
                f"field {_WRAPPER}.{section} of type {_SECTIONS[section]}"
            )
        else:
            sections[section] = _DECODER.struct(value, section, _WRAPPER, (section,))
    return config, sections["HostConfig"], sections["NetworkingConfig"]


def check(
    body: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """
    Split a create body into C{Config}, C{HostConfig} and
    C{NetworkingConfig}, decoded as Go decodes them, rejecting what dockerd
    rejects.

    @raise InvalidParameter: With dockerd's message.
    """
    config, host_config, networking = decode(body)
    validate.check_create(validate.Body(config, host_config, networking))
    return config, host_config, networking


def _changed(key: str, value: Any) -> bool:
    """
    Whether dockerd's update applies C{key}: a resource only when it is not
    zero (C{PidsLimit} when given at all), the restart policy only when it
    is named. The docker CLI sends every resource, zero for the ones the
    user did not ask to change.
    """
    if key == "PidsLimit":
        return value is not None
    if key == "RestartPolicy":
        return bool((value or {}).get("Name"))
    return value not in (None, 0, "", [], {})


def check_update(body: dict[str, Any]) -> dict[str, Any]:
    """
    An update body (C{UpdateConfig}: the resources and the restart policy)
    decoded and checked as dockerd does. C{body} itself is replaced by what
    dockerd would change, which the caller goes on to merge: names as Go
    matches them (C{"memory"} is C{Memory}), and without the values
    dockerd leaves as they are (zero resources, an unnamed policy).

    @return: C{body}.
    @raise InvalidParameter: With dockerd's message, naming C{UpdateConfig}.
    """
    decoded = _DECODER.struct(body, "UpdateConfig", "UpdateConfig", ())
    validate.check_update(decoded)
    body.clear()
    body.update({k: v for k, v in decoded.items() if _changed(k, v)})
    return body


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
    # The healthcheck merges field by field (moby's commit.go merge): a
    # --health-interval keeps the image's test.
    image_check = image.get("Healthcheck") or {}
    own_check = merged.get("Healthcheck") or {}
    if image_check and own_check.get("Test") != ["NONE"]:
        combined = dict(image_check)
        combined.update({k: v for k, v in own_check.items() if v})
        merged["Healthcheck"] = combined
    for key in (
        "WorkingDir",
        "User",
        "StopSignal",
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
