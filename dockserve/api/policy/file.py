# -*- test-case-name: tests.api.policy.test_file -*-
"""
The policy file: TOML, read with Python's C{tomllib}, checked whole before
the daemon serves anything.

Any mistake is a L{PolicyFileError} naming the file, the line and the key,
and what was expected; C{twistd dockserve --policy FILE} then exits 2 as
for any other bad option. docs/policy.md describes every key.
"""

import difflib
import fnmatch
import grp
import os
import pwd
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, NoReturn

import attrs

from dockserve.api.policy import routes
from dockserve.api.policy.images import normalize_registry
from dockserve.api.policy.lines import KeyLines
from dockserve.api.policy.lines import Path as KeyPath
from dockserve.api.policy.model import (
    DEFAULT_OWNER_LABEL,
    NAMESPACES,
    UNRESTRICTED,
    BodyRules,
    Limits,
    Match,
    Policy,
    PolicyFile,
    Principal,
    fold_email,
)

#: The policies every file has: all routes, the routes that change
#: nothing, and none (but C{/_ping}, which is never refused).
PRESETS: Final = ("full", "read-only", "none")

_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE"})
_CAPABILITY: Final = re.compile(r"[A-Z][A-Z0-9_]*")
_TOP: Final = ("mode", "owner_label", "default", "listener", "principal", "policy")
_LISTENER: Final = ("policy", "name", "owner")
_PRINCIPAL: Final = ("name", "policy", "owner", "match")
_MATCH: Final = (
    "listener", "cn", "o", "ou", "dns", "uri", "email", "uid", "gid", "user", "group",
)  # fmt: skip
_POLICY: Final = ("preset", "scope", "mode", "rule", "body", "limits")
_RULE: Final = ("name", "allow", "deny", "methods")
_BODY: Final = (
    "privileged", "capabilities", "devices", "host_namespaces", "unconfined",
    "bind_sources", "volumes_from", "registries", "exec_privileged", "exec_root",
    "build_args",
)  # fmt: skip
_LIMITS: Final = ("requests_per_second", "burst", "streams")

#: A label key as Docker takes one: no spaces, no C{=}.
_LABEL_KEY: Final = re.compile(r"[^\s=]+")

#: tomllib's position suffix.
_POSITION: Final = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


class PolicyFileError(ValueError):
    """
    A policy file that cannot be used.

    @ivar path: The file.
    @ivar line: The line the mistake is on (1 when it is about the file).
    @ivar reason: What is wrong.
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


def _dotted(path: KeyPath) -> str:
    """C{("principal", 1, "match")} as C{principal[2].match}."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part + 1}]"
        else:
            shown = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'
            text += f".{shown}" if text else shown
    return text


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


class _Reader:
    """Reads values out of the parsed document, failing with their line."""

    def __init__(self, path: str, lines: KeyLines) -> None:
        self.path = path
        self._lines = lines

    def fail(self, where: KeyPath, message: str) -> NoReturn:
        reason = f"{_dotted(where)}: {message}" if where else message
        raise PolicyFileError(self.path, self._lines.line_of(where), reason)

    def table(
        self, value: object, where: KeyPath, known: Iterable[str]
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"expected a table, got {_kind(value)}")
        known = tuple(known)
        for key in value:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(
                    (*where, key),
                    f"unknown key{hint}; expected one of {', '.join(known)}",
                )
        return value

    def boolean(self, table: Mapping[str, Any], key: str, where: KeyPath) -> bool:
        value = table[key]
        if not isinstance(value, bool):
            self.fail((*where, key), f"expected true or false, got {_kind(value)}")
        return value

    def string(self, table: Mapping[str, Any], key: str, where: KeyPath) -> str:
        value = table[key]
        if not isinstance(value, str) or not value:
            self.fail((*where, key), f"expected a non-empty string, got {_kind(value)}")
        return value

    def strings(
        self, table: Mapping[str, Any], key: str, where: KeyPath
    ) -> tuple[str, ...]:
        """A string or an array of strings."""
        value = table[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(
            isinstance(v, str) and v for v in value
        ):
            self.fail(
                (*where, key),
                f"expected a string or an array of strings, got {_kind(value)}",
            )
        return tuple(value)

    def integers(
        self, table: Mapping[str, Any], key: str, where: KeyPath
    ) -> tuple[int, ...]:
        value = table[key]
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
        ):
            self.fail(
                (*where, key),
                "expected a number or an array of numbers (0 or more), got "
                f"{_kind(value)}",
            )
        return tuple(value)

    def number(
        self, table: Mapping[str, Any], key: str, where: KeyPath, *, minimum: float
    ) -> float:
        value = table[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not value >= minimum
            or value == float("inf")
        ):
            self.fail(
                (*where, key),
                f"expected a number of at least {minimum:g}, got {_kind(value)}",
            )
        return float(value)


def load(path: str, *, canonical: Callable[[str], str] | None = None) -> PolicyFile:
    """
    Read and check the policy file at C{path}.

    @param canonical: The canonical text of a listener the file names (a
        C{-H} value); raises L{ValueError} with the reason for a listener
        the daemon does not have. Without it listeners are taken as written.
    @raise PolicyFileError: For a file that cannot be read, is not TOML,
        or says something this daemon cannot do.
    """
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise PolicyFileError(path, 1, f"cannot read the policy file: {reason}") from e
    return parse(source, path=path, canonical=canonical)


def parse(
    source: str,
    *,
    path: str = "<policy>",
    canonical: Callable[[str], str] | None = None,
) -> PolicyFile:
    """The policy file whose text is C{source}; see L{load}."""
    try:
        document = tomllib.loads(source)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        position = _POSITION.search(message)
        line = int(position.group(1)) if position else 1
        if position:
            message = f"{message[: position.start()]} (column {position.group(2)})"
        raise PolicyFileError(path, line, f"not valid TOML: {message}") from None
    reader = _Reader(path, KeyLines(source))
    return _File(reader, canonical or (lambda text: text)).read(document)


class _File:
    """One document being read."""

    def __init__(self, reader: _Reader, canonical: Callable[[str], str]) -> None:
        self._r = reader
        self._canonical = canonical

    def read(self, document: dict[str, Any]) -> PolicyFile:
        top = self._r.table(document, (), _TOP)
        learn = self._mode(top, ()) if "mode" in top else False
        owner_label = DEFAULT_OWNER_LABEL
        if "owner_label" in top:
            owner_label = self._r.string(top, "owner_label", ())
            if not _LABEL_KEY.fullmatch(owner_label):
                self._r.fail(("owner_label",), "a label key has no spaces and no '='")
        policies: dict[str, Policy] = {name: _preset(name, learn) for name in PRESETS}
        defined = top.get("policy", {})
        if not isinstance(defined, dict):
            self._r.fail(
                ("policy",), f"expected [policy.NAME] tables, got {_kind(defined)}"
            )
        for name, spec in defined.items():
            where: KeyPath = ("policy", name)
            if name in PRESETS:
                self._r.fail(where, f"{name!r} is a preset's name; choose another")
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                self._r.fail(where, "a policy's name is letters, digits, '_', '-', '.'")
            policies[name] = self._policy(name, spec, where, learn)
        default_name = "none"
        if "default" in top:
            default_name = self._policy_name(top, "default", (), policies)
        default = Principal("anonymous", policies[default_name], "anonymous")
        listeners = self._listeners(top.get("listener", {}), policies)
        principals = self._principals(top.get("principal", []), policies)
        return PolicyFile(
            principals=principals,
            listeners=listeners,
            default=default,
            owner_label=owner_label,
            learn=learn,
            policies=policies,
        )

    def _mode(self, table: Mapping[str, Any], where: KeyPath) -> bool:
        mode = self._r.string(table, "mode", where)
        if mode not in {"enforce", "learn"}:
            self._r.fail(
                (*where, "mode"), f'expected "enforce" or "learn", got {mode!r}'
            )
        return mode == "learn"

    def _policy_name(
        self,
        table: Mapping[str, Any],
        key: str,
        where: KeyPath,
        policies: Mapping[str, Policy],
    ) -> str:
        name = self._r.string(table, key, where)
        if name not in policies:
            self._r.fail(
                (*where, key),
                f"no policy is named {name!r}; the presets are "
                f"{', '.join(PRESETS)}, others are [policy.NAME] tables",
            )
        return name

    def _listeners(
        self, value: object, policies: Mapping[str, Policy]
    ) -> dict[str, Principal]:
        where: KeyPath = ("listener",)
        if not isinstance(value, dict):
            self._r.fail(where, f"expected a table, got {_kind(value)}")
        result: dict[str, Principal] = {}
        for text, spec in value.items():
            at: KeyPath = (*where, text)
            entry = self._r.table(spec, at, _LISTENER)
            if "policy" not in entry:
                self._r.fail(at, 'a listener needs a policy (policy = "read-only")')
            try:
                listener = self._canonical(text)
            except ValueError as e:
                self._r.fail(at, str(e))
            if listener in result:
                self._r.fail(at, f"{listener} is named twice")
            name = self._r.string(entry, "name", at) if "name" in entry else listener
            owner = self._r.string(entry, "owner", at) if "owner" in entry else name
            policy = policies[self._policy_name(entry, "policy", at, policies)]
            result[listener] = Principal(name, policy, owner)
        return result

    def _principals(
        self, value: object, policies: Mapping[str, Policy]
    ) -> tuple[Principal, ...]:
        if not isinstance(value, list):
            self._r.fail(
                ("principal",),
                f"expected [[principal]] tables, got {_kind(value)}",
            )
        result: list[Principal] = []
        names: set[str] = set()
        for index, spec in enumerate(value):
            where: KeyPath = ("principal", index)
            entry = self._r.table(spec, where, _PRINCIPAL)
            for required in ("name", "policy"):
                if required not in entry:
                    self._r.fail(where, f"a principal needs a {required}")
            name = self._r.string(entry, "name", where)
            if name in names:
                self._r.fail((*where, "name"), f"{name!r} is named twice")
            names.add(name)
            owner = self._r.string(entry, "owner", where) if "owner" in entry else name
            policy = policies[self._policy_name(entry, "policy", where, policies)]
            match = self._match(entry.get("match", {}), (*where, "match"))
            result.append(Principal(name, policy, owner, match))
        return tuple(result)

    def _match(self, value: object, where: KeyPath) -> Match:
        table = self._r.table(value, where, _MATCH)
        strings = {
            key: self._r.strings(table, key, where)
            for key in ("listener", "cn", "o", "ou", "dns", "uri", "email")
            if key in table
        }
        listeners: set[str] = set()
        for text in strings.get("listener", ()):
            try:
                listeners.add(self._canonical(text))
            except ValueError as e:
                self._r.fail((*where, "listener"), str(e))
        uids = set(self._r.integers(table, "uid", where)) if "uid" in table else set()
        gids = set(self._r.integers(table, "gid", where)) if "gid" in table else set()
        for user in self._r.strings(table, "user", where) if "user" in table else ():
            try:
                uids.add(pwd.getpwnam(user).pw_uid)
            except KeyError:
                self._r.fail((*where, "user"), f"no user is named {user!r}")
        for group in self._r.strings(table, "group", where) if "group" in table else ():
            try:
                gids.add(grp.getgrnam(group).gr_gid)
            except KeyError:
                self._r.fail((*where, "group"), f"no group is named {group!r}")
        return Match(
            listeners=frozenset(listeners),
            cn=frozenset(strings.get("cn", ())),
            o=frozenset(strings.get("o", ())),
            ou=frozenset(strings.get("ou", ())),
            dns=strings.get("dns", ()),
            uri=frozenset(strings.get("uri", ())),
            email=frozenset(fold_email(e) for e in strings.get("email", ())),
            uids=frozenset(uids),
            gids=frozenset(gids),
        )

    def _policy(self, name: str, value: object, where: KeyPath, learn: bool) -> Policy:
        spec = self._r.table(value, where, _POLICY)
        preset = None
        if "preset" in spec:
            preset = self._r.string(spec, "preset", where)
            if preset not in PRESETS:
                self._r.fail(
                    (*where, "preset"),
                    f"no preset is named {preset!r}; expected one of "
                    f"{', '.join(PRESETS)}",
                )
        own = False
        if "scope" in spec:
            scope = self._r.string(spec, "scope", where)
            if scope not in {"own", "all"}:
                self._r.fail(
                    (*where, "scope"), f'expected "own" or "all", got {scope!r}'
                )
            own = scope == "own"
        if "mode" in spec:
            learn = self._mode(spec, where)
        rules = spec.get("rule", [])
        if not isinstance(rules, list):
            self._r.fail(
                (*where, "rule"),
                f"expected [[policy.{name}.rule]] tables, got {_kind(rules)}",
            )
        decisions = self._decisions(name, rules, where, preset)
        start = UNRESTRICTED if preset == "full" else BodyRules()
        body = self._body(spec.get("body", {}), (*where, "body"), start)
        limits = self._limits(spec.get("limits", {}), (*where, "limits"))
        return Policy(
            name=name,
            decisions=decisions,
            default_rule=f"{name}.default",
            body=body,
            limits=limits,
            own_scope=own,
            learn=learn,
        )

    def _decisions(
        self, name: str, rules: list[Any], where: KeyPath, preset: str | None
    ) -> dict[str, tuple[bool, str]]:
        compiled: list[tuple[frozenset[str], bool, str]] = []
        for index, value in enumerate(rules):
            at: KeyPath = (*where, "rule", index)
            rule = self._r.table(value, at, _RULE)
            if ("allow" in rule) == ("deny" in rule):
                self._r.fail(at, "a rule has either allow = [...] or deny = [...]")
            allow = "allow" in rule
            key = "allow" if allow else "deny"
            names: set[str] = set()
            for pattern in self._r.strings(rule, key, at):
                matched = fnmatch.filter(routes.NAMES, pattern)
                if not matched:
                    close = difflib.get_close_matches(
                        pattern, sorted(routes.NAMES), n=1
                    )
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    self._r.fail(
                        (*at, key),
                        f"{pattern!r} names no route{hint}; routes are named as "
                        "containers.create, images.pull, exec.* (docs/policy.md)",
                    )
                names.update(matched)
            if "methods" in rule:
                methods = {m.upper() for m in self._r.strings(rule, "methods", at)}
                unknown = sorted(methods - _METHODS)
                if unknown:
                    self._r.fail(
                        (*at, "methods"),
                        f"{unknown[0]!r} is not a method; expected "
                        f"{', '.join(sorted(_METHODS))}",
                    )
                names = {n for n in names if routes.ROUTES[n][0] in methods}
            label = self._r.string(rule, "name", at) if "name" in rule else None
            rule_id = f"{name}.rule.{label}" if label else f"{name}.rule[{index + 1}]"
            compiled.append((frozenset(names), allow, rule_id))
        decisions: dict[str, tuple[bool, str]] = {}
        preset_table = _preset(preset, False).decisions if preset else {}
        for route in routes.NAMES:
            for named, allow, rule_id in compiled:
                if route in named:
                    decisions[route] = (allow, rule_id)
                    break
            else:
                if preset_table.get(route, (False, ""))[0]:
                    decisions[route] = (True, f"{name}.preset.{preset}")
        return decisions

    def _body(self, value: object, where: KeyPath, start: BodyRules) -> BodyRules:
        table = self._r.table(value, where, _BODY)
        changes: dict[str, Any] = {}
        for key in ("privileged", "devices", "unconfined", "volumes_from"):
            if key in table:
                changes[key] = self._r.boolean(table, key, where)
        for key in ("exec_privileged", "exec_root"):
            if key in table:
                changes[key] = self._r.boolean(table, key, where)
        if "capabilities" in table:
            capabilities = set()
            for text in self._r.strings(table, "capabilities", where):
                capability = text.upper().removeprefix("CAP_")
                if not _CAPABILITY.fullmatch(capability):
                    self._r.fail(
                        (*where, "capabilities"), f"{text!r} is not a capability"
                    )
                capabilities.add(capability)
            changes["capabilities"] = frozenset(capabilities)
        if "host_namespaces" in table:
            kinds = set(self._r.strings(table, "host_namespaces", where))
            unknown = sorted(kinds - set(NAMESPACES))
            if unknown:
                self._r.fail(
                    (*where, "host_namespaces"),
                    f"{unknown[0]!r} is not a namespace; expected "
                    f"{', '.join(NAMESPACES)}",
                )
            changes["host_namespaces"] = frozenset(kinds)
        if "bind_sources" in table:
            prefixes = []
            for text in self._r.strings(table, "bind_sources", where):
                if not text.startswith("/"):
                    self._r.fail(
                        (*where, "bind_sources"), f"{text!r} is not an absolute path"
                    )
                prefixes.append(os.path.realpath(text))
            changes["bind_sources"] = tuple(prefixes)
        if "registries" in table:
            registries = []
            for text in self._r.strings(table, "registries", where):
                try:
                    registries.append(normalize_registry(text))
                except ValueError as e:
                    self._r.fail((*where, "registries"), str(e))
            changes["registries"] = tuple(registries)
        if "build_args" in table:
            changes["build_args"] = frozenset(
                self._r.strings(table, "build_args", where)
            )
        return attrs.evolve(start, **changes)

    def _limits(self, value: object, where: KeyPath) -> Limits:
        table = self._r.table(value, where, _LIMITS)
        rate = None
        if "requests_per_second" in table:
            rate = self._r.number(table, "requests_per_second", where, minimum=0.001)
        burst = max(1.0, rate or 1.0)
        if "burst" in table:
            if rate is None:
                self._r.fail((*where, "burst"), "burst needs requests_per_second")
            burst = self._r.number(table, "burst", where, minimum=1)
        streams = None
        if "streams" in table:
            streams = int(self._r.number(table, "streams", where, minimum=0))
            if streams != table["streams"]:
                self._r.fail((*where, "streams"), "expected a whole number")
        return Limits(rate=rate, burst=burst, streams=streams)


def _preset(name: str, learn: bool) -> Policy:
    """One of L{PRESETS} as a policy."""
    if name == "full":
        return Policy(
            name, dict.fromkeys(routes.NAMES, (True, "full")), "full", UNRESTRICTED,
            learn=learn,
        )  # fmt: skip
    if name == "read-only":
        return Policy(
            name, dict.fromkeys(routes.READ_ONLY, (True, "read-only")), "read-only",
            learn=learn,
        )  # fmt: skip
    return Policy(name, {}, "none", learn=learn)
