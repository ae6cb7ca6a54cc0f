# -*- test-case-name: tests.daemon.images.test_changes -*-
"""
The Dockerfile instructions C{docker import --change} and C{docker commit
--change} may apply.

C{CMD}, C{ENTRYPOINT}, C{ENV}, C{EXPOSE}, C{HEALTHCHECK}, C{LABEL},
C{ONBUILD}, C{STOPSIGNAL}, C{USER}, C{VOLUME} and C{WORKDIR}, in exec
(JSON) or shell form, applied to an image's C{config} object as dockerd's
builder does (C{BuildFromConfig}): the shell form runs under the config's
C{Shell} (C{/bin/sh -c} without one), an C{ENTRYPOINT} drops the C{Cmd}
unless a C{CMD} came before it in the same changes, and C{HEALTHCHECK}
takes its C{--interval}, C{--timeout}, C{--start-period},
C{--start-interval} and C{--retries} flags.
"""

import json
import re
import shlex
from typing import Any

from dockserve.errors import InvalidParameter
from dockserve.timetypes import parse_duration

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

#: The shell of the shell form when the config names none.
DEFAULT_SHELL = ("/bin/sh", "-c")

#: HEALTHCHECK's duration flags and the field each sets.
_DURATION_FLAGS = {
    "interval": "Interval",
    "timeout": "Timeout",
    "start-period": "StartPeriod",
    "start-interval": "StartInterval",
}

#: The shortest interval a healthcheck flag may give (moby's
#: C{container.MinimumDuration}), in nanoseconds.
_MINIMUM_DURATION = 1_000_000

#: A container port as EXPOSE takes it: a port or a range, maybe a protocol.
_PORT = re.compile(r"\d+(-\d+)?")


def _exec_form(argument: str) -> list[str] | None:
    """The JSON list of strings C{argument} is, if it is one."""
    stripped = argument.strip()
    if not stripped.startswith("["):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _command(argument: str, shell: list[str] | None = None) -> list[str]:
    """
    Exec form (a JSON list) or shell form, run by C{shell} (the config's
    C{Shell}, L{DEFAULT_SHELL} without one); an empty shell form is the
    shell alone, as dockerd makes it.
    """
    exec_form = _exec_form(argument)
    if exec_form is not None:
        return exec_form
    stripped = argument.strip()
    prefix = list(shell or DEFAULT_SHELL)
    return [*prefix, stripped] if stripped else prefix


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


def _exposed(argument: str) -> list[str]:
    """
    EXPOSE's ports as C{ExposedPorts} keys (C{80/tcp}).

    @raise InvalidParameter: dockerd's C{Invalid containerPort: x}.
    """
    ports = []
    for spec in argument.split():
        port, slash, protocol = spec.partition("/")
        if not _PORT.fullmatch(port):
            raise InvalidParameter(f"Invalid containerPort: {port}")
        ports.append(f"{port}/{protocol.lower() if slash and protocol else 'tcp'}")
    return ports


def _duration_flag(name: str, value: str) -> int:
    """
    A HEALTHCHECK duration flag in nanoseconds (0 when empty or zero).

    @raise InvalidParameter: For a value that is no Go duration, or one
        shorter than a millisecond, with moby's messages.
    """
    if not value:
        return 0
    try:
        nanoseconds = round(parse_duration(value) * 1_000_000_000)
    except ValueError:
        raise InvalidParameter(f'time: invalid duration "{value}"') from None
    if nanoseconds == 0:
        return 0
    if nanoseconds < _MINIMUM_DURATION:
        raise InvalidParameter(f'Interval "{name}" cannot be less than 1ms')
    return nanoseconds


def _healthcheck(argument: str) -> dict[str, Any]:
    """
    A C{HEALTHCHECK [--flag=value...] CMD command} or C{HEALTHCHECK NONE}
    as the config's C{Healthcheck}.

    @raise InvalidParameter: With the messages of moby's builder.
    """
    rest = argument.strip()
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        word, rest = _first_word(rest)
        name, eq, value = word[2:].partition("=")
        if name not in (*_DURATION_FLAGS, "retries"):
            raise InvalidParameter(f"Unknown flag: {name}")
        if not eq:
            raise InvalidParameter(f"Missing a value on flag: {name}")
        flags[name] = value
    if not rest:
        raise InvalidParameter("HEALTHCHECK requires at least one argument")
    kind, rest = _first_word(rest)
    if kind.upper() == "NONE":
        if rest:
            raise InvalidParameter("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind.upper() != "CMD":
        raise InvalidParameter(
            f'Unknown type "{kind.upper()}" in HEALTHCHECK (try CMD)'
        )
    if not rest:
        raise InvalidParameter("Missing command after HEALTHCHECK CMD")
    exec_form = _exec_form(rest)
    test = ["CMD", *exec_form] if exec_form is not None else ["CMD-SHELL", rest]
    check: dict[str, Any] = {"Test": test}
    for flag, field in _DURATION_FLAGS.items():
        nanoseconds = _duration_flag(flag, flags.get(flag, ""))
        if nanoseconds:
            check[field] = nanoseconds
    retries = flags.get("retries", "")
    if retries:
        try:
            count = int(retries)
        except ValueError:
            raise InvalidParameter(
                f'strconv.ParseInt: parsing "{retries}": invalid syntax'
            ) from None
        if count < 0:
            raise InvalidParameter(f"--retries cannot be negative ({count})")
        if count:
            check["Retries"] = count
    return check


def _first_word(text: str) -> tuple[str, str]:
    """The first word of C{text} and what follows it, stripped."""
    parts = text.split(None, 1)
    return parts[0], (parts[1].strip() if len(parts) > 1 else "")


def _instructions(changes: list[str]) -> list[str]:
    """
    The instructions of C{changes} read as one Dockerfile, as dockerd
    joins them: a change may hold several lines, a line ending in a
    backslash goes on on the next, blank lines and comments are skipped.
    """
    found: list[str] = []
    pending = ""
    for line in "\n".join(changes).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            # As BuildKit's parser: the backslash goes, the next line's
            # own spacing stays.
            pending += line.rstrip()[:-1]
            continue
        found.append((pending + line).strip())
        pending = ""
    if pending.strip():
        found.append(pending.strip())
    return found


def apply(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """
    Apply each change line to a copy of C{config} (the image config's
    C{config} member, or a container's C{Config}).

    @raise InvalidParameter: For an instruction that is not allowed, with
        dockerd's message, or a bad argument.
    """
    result = dict(config)
    cmd_set = False
    for text in _instructions(changes):
        instruction, _, argument = text.partition(" ")
        upper = instruction.upper()
        if upper not in ALLOWED:
            raise InvalidParameter(
                f"{instruction.lower()} is not a valid change command"
            )
        shell = result.get("Shell") or None
        if upper == "CMD":
            result["Cmd"] = _command(argument, shell)
            cmd_set = True
        elif upper == "ENTRYPOINT":
            result["Entrypoint"] = _command(argument, shell)
            if not cmd_set and "Cmd" in result:
                # As dockerd's builder: a new entrypoint drops the old
                # command unless these changes set one.
                result["Cmd"] = None
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
            if not argument.strip():
                raise InvalidParameter("EXPOSE requires at least one argument")
            ports = dict(result.get("ExposedPorts") or {})
            for port in _exposed(argument):
                ports[port] = {}
            result["ExposedPorts"] = ports
        elif upper == "VOLUME":
            volumes = dict(result.get("Volumes") or {})
            paths = _exec_form(argument)
            if paths is None:
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
            result["Healthcheck"] = _healthcheck(argument)
    return result
