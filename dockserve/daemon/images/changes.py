# -*- test-case-name: tests.daemon.images.test_changes -*-
"""
The Dockerfile instructions C{docker import --change} may apply.

C{CMD}, C{ENTRYPOINT}, C{ENV}, C{EXPOSE}, C{LABEL}, C{ONBUILD}, C{STOPSIGNAL},
C{USER}, C{VOLUME} and C{WORKDIR}, in exec (JSON) or shell form, applied
to an image's C{config} object as dockerd's builder does.
"""

import json
import shlex
from typing import Any

from dockserve.errors import InvalidParameter

ALLOWED = (
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "HEALTHCHECK",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
)


def _command(argument: str) -> list[str]:
    """Exec form (a JSON list) or shell form (run by C{/bin/sh -c})."""
    stripped = argument.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", stripped]


def _pairs(argument: str, instruction: str) -> list[tuple[str, str]]:
    """C{k=v k2="v 2"} pairs, or the legacy C{KEY value} form."""
    try:
        words = shlex.split(argument)
    except ValueError as e:
        raise InvalidParameter(f"{instruction}: {e}") from None
    if not words:
        raise InvalidParameter(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        key, _, value = argument.strip().partition(" ")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidParameter(f"{instruction} names can not be blank")
        pairs.append((key, value))
    return pairs


def apply(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """
    Apply each change line to a copy of C{config} (the image config's
    C{config} member).

    @raise InvalidParameter: For an instruction import does not allow, with
        dockerd's message.
    """
    result = dict(config)
    for line in changes:
        text = line.strip()
        if not text:
            continue
        instruction, _, argument = text.partition(" ")
        upper = instruction.upper()
        if upper not in ALLOWED:
            raise InvalidParameter(
                f"{instruction.lower()} is not a valid change command"
            )
        if upper == "CMD":
            result["Cmd"] = _command(argument)
        elif upper == "ENTRYPOINT":
            result["Entrypoint"] = _command(argument)
        elif upper == "ENV":
            env = list(result.get("Env") or [])
            for key, value in _pairs(argument, "ENV"):
                env = [e for e in env if e.split("=", 1)[0] != key]
                env.append(f"{key}={value}")
            result["Env"] = env
        elif upper == "LABEL":
            labels = dict(result.get("Labels") or {})
            labels.update(_pairs(argument, "LABEL"))
            result["Labels"] = labels
        elif upper == "EXPOSE":
            ports = dict(result.get("ExposedPorts") or {})
            for port in argument.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
            result["ExposedPorts"] = ports
        elif upper == "VOLUME":
            volumes = dict(result.get("Volumes") or {})
            paths = _command(argument)
            if paths[:2] == ["/bin/sh", "-c"]:
                paths = argument.split()
            for path in paths:
                volumes[path] = {}
            result["Volumes"] = volumes
        elif upper == "WORKDIR":
            result["WorkingDir"] = argument.strip()
        elif upper == "USER":
            result["User"] = argument.strip()
        elif upper == "STOPSIGNAL":
            result["StopSignal"] = argument.strip()
        elif upper == "ONBUILD":
            result["OnBuild"] = [*(result.get("OnBuild") or []), argument.strip()]
        elif upper == "HEALTHCHECK":
            words = argument.split(None, 1)
            if words and words[0].upper() == "NONE":
                result["Healthcheck"] = {"Test": ["NONE"]}
            elif len(words) == 2 and words[0].upper() == "CMD":
                cmd = _command(words[1])
                test = (
                    ["CMD", *cmd]
                    if cmd[:2] != ["/bin/sh", "-c"]
                    else [
                        "CMD-SHELL",
                        cmd[2],
                    ]
                )
                result["Healthcheck"] = {"Test": test}
    return result
