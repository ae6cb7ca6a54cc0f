# -*- test-case-name: tests.daemon.build.test_dockerfile -*-
"""
A Dockerfile read as the classic builder reads it: stages, instructions,
their flags and arguments, checked before the build starts.

The text is parsed by BuildKit's own parser (the PyPI package
C{dockerfile}, which wraps it): directives (C{syntax}, C{escape}),
continuations, comments, JSON and shell forms, heredocs. This module adds
what dockerd's C{instructions} package adds on top: the instruction set
of the classic builder, the number of arguments each takes, its flags
(C{--name=value}, as C{BFlags}), stages (C{FROM ... AS name}) and the
C{ARG}s before the first C{FROM}. Nothing is expanded here: C{$VARS}
are substituted at the step that uses them (L{dockserve.daemon.build.expand}).

Errors are dockerd's, raised as L{DockerfileError} (a 400 before the
stream starts): the parser's own as C{failed to parse Dockerfile: ...},
an instruction's as C{dockerfile parse error line N: ...}.
"""

import re
from collections.abc import Iterable

import dockerfile as _parser
from attrs import field, frozen

from dockserve.errors import InvalidParameter


class DockerfileError(InvalidParameter):
    """The Dockerfile cannot be built; the message is dockerd's."""


#: The instructions the classic builder knows.
KEYWORDS = frozenset({
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM",
    "HEALTHCHECK", "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL",
    "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
})  # fmt: skip

#: Each instruction's flags: C{str} takes C{--name=value}, C{bool} may be
#: given bare.
FLAGS: dict[str, dict[str, type]] = {
    "FROM": {"platform": str},
    "COPY": {"from": str, "chown": str, "chmod": str, "link": bool},
    "ADD": {"chown": str, "chmod": str, "link": bool, "checksum": str,
            "keep-git-dir": bool},
    "RUN": {"mount": str, "network": str, "security": str},
    "HEALTHCHECK": {"interval": str, "timeout": str, "start-period": str,
                    "start-interval": str, "retries": str},
}  # fmt: skip

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_\.]*$")


@frozen
class Heredoc:
    """
    A here-document of an instruction (C{RUN <<EOF ... EOF}).

    @ivar name: Its delimiter word.
    @ivar content: Its text, with the leading tabs gone when C{chomp}.
    @ivar expand: Its delimiter was not quoted: variables in it expand.
    @ivar chomp: It was opened with C{<<-}.
    """

    name: str
    content: str
    expand: bool = True
    chomp: bool = False


@frozen
class Instruction:
    """
    One instruction as the parser gave it.

    @ivar keyword: C{RUN}, C{COPY}... upper case.
    @ivar args: Its arguments: the words of the JSON form, or the parser's
        split of the shell form (one string for RUN, CMD, ENTRYPOINT).
    @ivar json: It was written in the JSON (exec) form.
    @ivar original: The instruction's text as written (continuations
        joined), what C{Step N/M :} shows.
    @ivar line: Its first line.
    @ivar flags: Its C{--flags} by name (C{True} for a bare boolean one).
    @ivar heredocs: Its here-documents.
    @ivar trigger: For C{ONBUILD}, the instruction it stores, as text.
    """

    keyword: str
    args: tuple[str, ...]
    json: bool
    original: str
    line: int
    flags: dict[str, str | bool] = field(factory=dict)
    heredocs: tuple[Heredoc, ...] = ()
    trigger: str = ""


@frozen
class Stage:
    """
    A C{FROM} and the instructions up to the next.

    @ivar index: Its position, from 0 (C{COPY --from=0}).
    @ivar name: Its C{AS} name, lower case, or C{""}.
    @ivar base: The image or stage it starts from, not yet expanded.
    @ivar platform: Its C{--platform}, not yet expanded, or C{""}.
    @ivar origin: The C{FROM} instruction itself.
    @ivar instructions: What follows it.
    """

    index: int
    name: str
    base: str
    platform: str
    origin: Instruction
    instructions: tuple[Instruction, ...]


@frozen
class Dockerfile:
    r"""
    A parsed Dockerfile.

    @ivar meta_args: The C{ARG}s before the first C{FROM}.
    @ivar stages: The stages in order.
    @ivar escape: The escape character (C{\\} or the directive's).
    """

    meta_args: tuple[Instruction, ...]
    stages: tuple[Stage, ...]
    escape: str = "\\"

    def stage(self, name: str) -> Stage | None:
        """The stage named C{name} (case-insensitive), or C{None}."""
        wanted = name.lower()
        for stage in self.stages:
            if stage.name and stage.name == wanted:
                return stage
        return None


def directives(text: str) -> dict[str, str]:
    """
    The parser directives at the top of a Dockerfile (C{# escape=`},
    C{# syntax=...}): C{# key=value} lines before anything else, each key
    once.
    """
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        match = re.match(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$", line)
        if match is None:
            break
        key = match.group(1).lower()
        if key in found:
            break
        found[key] = match.group(2)
    return found


def parse(data: bytes, name: str = "Dockerfile") -> Dockerfile:
    """
    Parse a Dockerfile.

    @param name: The Dockerfile's name in the context, for messages.
    @raise DockerfileError: With dockerd's message.
    """
    text = data.decode("utf-8", "replace").removeprefix("\ufeff")
    if not text.strip():
        raise DockerfileError(f"the Dockerfile ({name}) cannot be empty")
    escape = directives(text).get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(
            f"failed to parse Dockerfile: invalid escape token '{escape}' does "
            "not match ` or \\"
        )
    try:
        commands = _parser.parse_string(text)
    except _parser.GoParseError as e:
        raise DockerfileError(f"failed to parse Dockerfile: {e}") from None
    instructions = [_instruction(c) for c in commands]
    return _stages(instructions, escape)


def parse_trigger(expression: str) -> Instruction:
    """
    An C{ONBUILD} trigger (C{RUN echo hi}) as the instruction it names.

    @raise DockerfileError: When it is not exactly one instruction.
    """
    try:
        commands = _parser.parse_string(expression + "\n")
    except _parser.GoParseError as e:
        raise DockerfileError(f"failed to parse Dockerfile: {e}") from None
    if len(commands) != 1:
        raise DockerfileError("onbuild trigger should be a single expression")
    return _instruction(commands[0])


def _located(line: int, message: str) -> DockerfileError:
    return DockerfileError(f"dockerfile parse error line {line}: {message}")


def _instruction(command: object) -> Instruction:
    keyword = str(getattr(command, "cmd", "")).upper()
    line = int(getattr(command, "start_line", 0))
    if keyword not in KEYWORDS:
        raise _located(line, f"unknown instruction: {keyword}")
    original = str(getattr(command, "original", ""))
    args = tuple(str(a) for a in getattr(command, "value", ()))
    json_form = bool(getattr(command, "json", False))
    flags = _flags(keyword, getattr(command, "flags", ()), line)
    heredocs = tuple(
        _heredoc(h, original) for h in getattr(command, "heredocs", ()) or ()
    )
    trigger = ""
    if keyword == "ONBUILD":
        sub = str(getattr(command, "sub_cmd", "") or "").upper()
        if not sub:
            raise _located(line, "ONBUILD requires at least one argument")
        if sub == "ONBUILD":
            raise _located(line, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if sub in {"MAINTAINER", "FROM"}:
            raise _located(line, f"{sub} isn't allowed as an ONBUILD trigger")
        if sub not in KEYWORDS:
            raise _located(line, f"unknown instruction: {sub}")
        trigger = re.sub(r"(?i)^\s*ONBUILD\s*", "", original, count=1)
    instruction = Instruction(
        keyword=keyword,
        args=args,
        json=json_form,
        original=original,
        line=line,
        flags=flags,
        heredocs=heredocs,
        trigger=trigger,
    )
    _check(instruction)
    return instruction


def _heredoc(heredoc: object, original: str) -> Heredoc:
    name = str(getattr(heredoc, "name", ""))
    content = str(getattr(heredoc, "content", ""))
    opener = re.search(r"<<(-?)([\"']?)" + re.escape(name) + r"\2", original)
    chomp = bool(opener and opener.group(1))
    quoted = bool(opener and opener.group(2))
    if chomp:
        content = "".join(
            line.lstrip("\t") for line in content.splitlines(keepends=True)
        )
    return Heredoc(name=name, content=content, expand=not quoted, chomp=chomp)


def _flags(keyword: str, raw: Iterable[str], line: int) -> dict[str, str | bool]:
    """An instruction's C{--flags}, checked as BuildKit's C{BFlags} does."""
    allowed = FLAGS.get(keyword, {})
    flags: dict[str, str | bool] = {}
    for text in raw:
        word = str(text)
        if not word.startswith("--"):
            raise _located(line, f"Arg should start with -- : {word}")
        if word == "--":
            break
        name, equals, value = word[2:].partition("=")
        kind = allowed.get(name)
        if kind is None:
            raise _located(line, f"Unknown flag: {name}")
        if name in flags:
            raise _located(line, f"Duplicate flag specified: {name}")
        if kind is bool:
            if equals and not value:
                raise _located(line, f"Missing a value on flag: {name}")
            lowered = value.lower()
            if lowered not in {"", "true", "false"}:
                raise _located(
                    line, f"Expecting boolean value for flag {name}, not: {value}"
                )
            flags[name] = lowered != "false"
        else:
            if not equals:
                raise _located(line, f"Missing a value on flag: {name}")
            flags[name] = value
    return flags


def _check(i: Instruction) -> None:
    """The argument counts and forms dockerd's instructions package checks."""
    k, n = i.keyword, len(i.args)
    exactly_one = {"WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER"}
    if k in exactly_one and n != 1:
        raise _located(i.line, f"{k} requires exactly one argument")
    if k in {"ENV", "LABEL", "EXPOSE", "VOLUME", "ARG"} and n == 0:
        raise _located(i.line, f"{k} requires at least one argument")
    if k in {"COPY", "ADD"}:
        sources = n + len(i.heredocs) - (1 if n else 0)
        if n < 2 and not (n == 1 and i.heredocs):
            raise _located(
                i.line,
                f"{k} requires at least two arguments, but only one was "
                "provided. Destination could not be determined",
            )
        if sources < 1:
            raise _located(i.line, f"{k} requires at least two arguments")
    if k == "SHELL" and not i.json:
        raise _located(i.line, "SHELL requires the arguments to be in JSON form")
    if k == "SHELL" and n == 0:
        raise _located(i.line, "SHELL requires at least one argument")
    if k == "HEALTHCHECK":
        _check_healthcheck(i)
    if k == "FROM":
        _stage_name(i)


def _check_healthcheck(i: Instruction) -> None:
    if not i.args:
        raise _located(i.line, "HEALTHCHECK requires at least one argument")
    kind = i.args[0].upper()
    if kind == "NONE":
        if len(i.args) != 1:
            raise _located(i.line, "HEALTHCHECK NONE takes no arguments")
        return
    if kind != "CMD":
        raise _located(i.line, f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    if len(i.args) < 2 or (not i.json and not i.args[1].strip()):
        raise _located(i.line, "Missing command after HEALTHCHECK CMD")
    for name in ("interval", "timeout", "start-period", "start-interval"):
        value = i.flags.get(name)
        if isinstance(value, str) and value:
            try:
                seconds = go_duration(value)
            except ValueError as e:
                raise _located(i.line, str(e)) from None
            if seconds < 0.001:
                raise _located(i.line, f'Interval "{name}" cannot be less than 1ms')
    retries = i.flags.get("retries")
    if isinstance(retries, str) and retries:
        try:
            count = int(retries)
        except ValueError:
            raise _located(
                i.line, f'strconv.ParseInt: parsing "{retries}": invalid syntax'
            ) from None
        if count < 1:
            raise _located(i.line, f"--retries must be at least 1 (not {count})")


def _stage_name(i: Instruction) -> str:
    """The C{AS} name of a C{FROM}, lower case, or C{""}."""
    if len(i.args) == 3 and i.args[1].lower() == "as":
        name = i.args[2].lower()
        if not _STAGE_NAME.match(name):
            raise _located(
                i.line,
                f'invalid name for build stage: "{name}", name can\'t start '
                "with a number or contain symbols",
            )
        return name
    if len(i.args) != 1:
        raise _located(i.line, "FROM requires either one or three arguments")
    return ""


def _stages(instructions: list[Instruction], escape: str) -> Dockerfile:
    meta: list[Instruction] = []
    stages: list[Stage] = []
    current: Instruction | None = None
    body: list[Instruction] = []

    def close() -> None:
        if current is not None:
            stages.append(
                Stage(
                    index=len(stages),
                    name=_stage_name(current),
                    base=current.args[0],
                    platform=str(current.flags.get("platform", "")),
                    origin=current,
                    instructions=tuple(body),
                )
            )

    for i in instructions:
        if i.keyword == "FROM":
            close()
            current, body = i, []
        elif current is None:
            if i.keyword != "ARG":
                raise DockerfileError("no build stage in current context")
            meta.append(i)
        else:
            body.append(i)
    close()
    if not stages:
        raise DockerfileError("no build stage in current context")
    return Dockerfile(meta_args=tuple(meta), stages=tuple(stages), escape=escape)


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
          "m": 60.0, "h": 3600.0}  # fmt: skip


def go_duration(text: str) -> float:
    """
    Seconds of a Go duration (C{1m30s}, C{500ms}, C{0}), as
    C{time.ParseDuration} reads it.

    @raise ValueError: With Go's message.
    """
    rest = text
    sign = 1.0
    if rest[:1] in "+-" and rest:
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    while pos < len(rest):
        match = _DURATION.match(rest, pos)
        if match is None:
            if re.match(r"(\d+(?:\.\d*)?|\.\d+)", rest[pos:]):
                unit_at = re.match(r"(\d+(?:\.\d*)?|\.\d+)", rest[pos:])
                assert unit_at is not None  # noqa: S101 - matched just above
                after = rest[pos + unit_at.end() :]
                if not after or not after[0].isalpha():
                    raise ValueError(f'time: missing unit in duration "{text}"')
                unit = re.match(r"[^\d.]+", after)
                raise ValueError(
                    f'time: unknown unit "{unit.group(0) if unit else after}" '
                    f'in duration "{text}"'
                )
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return sign * total
