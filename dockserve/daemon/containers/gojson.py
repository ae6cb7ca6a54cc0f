# -*- test-case-name: tests.daemon.containers.test_gojson -*-
"""
A JSON body checked as dockerd's Go decoder checks it, with its messages.

dockerd decodes C{POST /containers/create} and C{/update} into typed Go
structs: a value of the wrong JSON type, a fraction or an overflow in an
integer field is refused before anything else is looked at. Python's
C{json} knows no types, so the decoded body is walked here against a table
of those structs (L{dockserve.daemon.containers.apitypes}, generated from
the Engine API's swagger) and comes back as Go would have stored it:

  - field names matched case-insensitively, as Go does, and spelled as the
    API spells them (C{"memory"} is C{Memory});
  - C{null} left as C{None} where Go has a pointer, slice or map, and the
    zero value (C{""}, C{0}, C{False}) where Go has a plain scalar, so no
    C{None} is ever stored where the daemon expects a string;
  - a C{strslice.StrSlice} (C{Cmd}, C{Entrypoint}, C{CapAdd}...) given as
    one string becomes a one-word list; a fixed Go array (C{ConsoleSize})
    gets its length; the content of a C{struct {}} (C{ExposedPorts} values)
    is dropped;
  - a lone UTF-16 surrogate (a JSON escape from D800 to DFFF) becomes
    U+FFFD, as Go makes it, rather than a string no path or argument can be
    encoded from;
  - names the table does not know are kept as they are, unchecked (Go
    ignores them).

The first wrong value in document order is reported, as Go reports it:
C{json: cannot unmarshal string into Go struct field
Mount.HostConfig.Mounts.Source of type string}. A NUL character in any
string is refused as well: no Docker setting can hold one, and the kernel
calls the daemon hands these strings to cannot.
"""

import re
from collections.abc import Callable, Mapping
from typing import Any

from attrs import field, frozen

from dockserve.errors import InvalidParameter

#: The values a Go integer type holds.
_RANGES: dict[str, tuple[int, int]] = {
    "int": (-(2**63), 2**63 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "time.Duration": (-(2**63), 2**63 - 1),
    "uint": (0, 2**64 - 1),
    "uint64": (0, 2**64 - 1),
    "uint32": (0, 2**32 - 1),
    "fs.FileMode": (0, 2**32 - 1),
    "uint16": (0, 2**16 - 1),
}


@frozen
class Kind:
    """
    The Go type of one field, as far as decoding JSON into it goes.

    @ivar json: C{string}, C{integer}, C{boolean}, C{array}, C{object} (a Go
        map), C{struct}, C{strslice} (a string or an array of strings) or
        C{empty} (C{struct {}}).
    @ivar go: The Go type as Go's messages print it (C{int64},
        C{[]mount.Mount}, C{container.NetworkMode}).
    @ivar item: The element of an array, the value of a map.
    @ivar struct: The L{Struct} of a C{struct}, by its name in the table.
    @ivar nullable: A Go pointer to a scalar: C{null} stays C{None}
        (C{PidsLimit}, C{Init}) instead of becoming the zero value.
    @ivar length: A fixed Go array's length (C{[2]uint}); 0 for a slice.
    """

    json: str
    go: str
    item: "Kind | None" = None
    struct: str = ""
    nullable: bool = False
    length: int = 0


@frozen
class Struct:
    """
    A Go struct: its fields by their JSON names.

    @ivar owner: The struct's name as Go's messages print it (C{Mount}).
    """

    owner: str
    fields: Mapping[str, Kind]
    _folded: Mapping[str, str] = field(init=False)

    @_folded.default
    def _fold(self) -> Mapping[str, str]:
        return {name.casefold(): name for name in self.fields}

    def lookup(self, key: str) -> str | None:
        """
        The field C{key} names: the exact name first, then any that differs
        only in case, as Go's decoder matches them.
        """
        if key in self.fields:
            return key
        return self._folded.get(key.casefold())


def string(go: str = "string") -> Kind:
    """A Go string, or a named string type (C{container.IpcMode})."""
    return Kind("string", go)


def integer(go: str = "int64", *, nullable: bool = False) -> Kind:
    """A Go integer of type C{go} (C{int}, C{uint16}, C{time.Duration}...)."""
    if go not in _RANGES:
        raise ValueError(f"no range for the Go type {go}")
    return Kind("integer", go, nullable=nullable)


def boolean(*, nullable: bool = False) -> Kind:
    """A Go C{bool} (C{*bool} when C{nullable})."""
    return Kind("boolean", "bool", nullable=nullable)


def array(item: Kind, go: str = "", *, length: int = 0) -> Kind:
    """A Go slice of C{item} (an array of C{length} when it is given)."""
    return Kind("array", go or f"[]{item.go}", item=item, length=length)


def mapping(value: Kind, go: str = "") -> Kind:
    """A Go map from strings to C{value}."""
    return Kind("object", go or f"map[string]{value.go}", item=value)


def struct(name: str, go: str) -> Kind:
    """The struct C{name} of the table, C{go} as messages print it."""
    return Kind("struct", go, struct=name)


def strslice() -> Kind:
    """C{strslice.StrSlice}: a string or an array of strings."""
    return Kind("strslice", "strslice.StrSlice")


def empty() -> Kind:
    """C{struct {}}: any object, its content ignored."""
    return Kind("empty", "struct {}")


def _json_name(value: Any) -> str:
    """How Go's decoder names a JSON value's kind in its messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def number_text(value: float) -> str:
    """
    A JSON number as it was written, when the body's parser kept the text
    (L{dockserve.api.params.json_body} does); else Python's spelling.
    """
    text = getattr(value, "text", None)
    return text if isinstance(text, str) else repr(value)


def go_quote(value: str) -> str:
    """C{value} quoted as Go's C{%q} quotes it, control characters escaped."""
    escapes = {
        "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
        "\t": "\\t", "\v": "\\v", '"': '\\"', "\\": "\\\\",
    }  # fmt: skip
    out = []
    for char in value:
        if char in escapes:
            out.append(escapes[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


class Decoder:
    """
    Walks decoded JSON against a table of L{Struct}s.

    @ivar structs: The table, by struct name.
    """

    def __init__(self, structs: Mapping[str, Struct]) -> None:
        self.structs = structs

    def struct(
        self, value: dict[str, Any], name: str, owner: str, path: tuple[str, ...]
    ) -> dict[str, Any]:
        """
        C{value} decoded into the struct C{name}, whose fields are named
        C{owner.path.Field} in messages.

        @raise InvalidParameter: Go's message for the first wrong value.
        """
        decoded: dict[str, Any] = {}
        for key, item in value.items():
            known, decoded_item = self.field(name, key, item, owner, path)
            decoded[known] = decoded_item
        return decoded

    def field(
        self, name: str, key: str, value: Any, owner: str, path: tuple[str, ...]
    ) -> tuple[str, Any]:
        """
        The member C{key} of an object decoded into the struct C{name}: the
        field's own name and its value; an unknown member as it is.

        @raise InvalidParameter: Go's message for the first wrong value.
        """
        key = _text(key, path)
        definition = self.structs[name]
        known = definition.lookup(key)
        if known is None:
            return key, value
        return known, self.value(value, definition.fields[known], owner, (*path, known))

    def value(self, value: Any, kind: Kind, owner: str, path: tuple[str, ...]) -> Any:
        """
        C{value} decoded into C{kind}, the field at C{path} of the struct
        C{owner}.

        @raise InvalidParameter: Go's message for the first wrong value.
        """
        if value is None:
            return _null(kind)
        decode = _DECODERS[kind.json]
        return decode(self, value, kind, owner, path)

    def _string(self, value: Any, kind: Kind, owner: str, path: tuple[str, ...]) -> str:
        if not isinstance(value, str):
            raise _mismatch(_json_name(value), kind.go, owner, path)
        return _text(value, path)

    def _integer(
        self, value: Any, kind: Kind, owner: str, path: tuple[str, ...]
    ) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _mismatch(_json_name(value), kind.go, owner, path)
        low, high = _RANGES[kind.go]
        if isinstance(value, float) or not low <= value <= high:
            text = number_text(value) if isinstance(value, float) else str(value)
            raise _mismatch(f"number {text}", kind.go, owner, path)
        return value

    def _boolean(
        self, value: Any, kind: Kind, owner: str, path: tuple[str, ...]
    ) -> bool:
        if not isinstance(value, bool):
            raise _mismatch(_json_name(value), kind.go, owner, path)
        return value

    def _array(
        self, value: Any, kind: Kind, owner: str, path: tuple[str, ...]
    ) -> list[Any]:
        if not isinstance(value, list):
            raise _mismatch(_json_name(value), kind.go, owner, path)
        item = _element(kind)
        if kind.length:
            # Go decodes a fixed array's first elements, skips the rest
            # unchecked, and leaves the missing ones zero.
            value = value[: kind.length]
            decoded = [self.value(v, item, owner, path) for v in value]
            return decoded + [_null(item)] * (kind.length - len(decoded))
        return [self.value(v, item, owner, path) for v in value]

    def _mapping(
        self, value: Any, kind: Kind, owner: str, path: tuple[str, ...]
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _mismatch(_json_name(value), kind.go, owner, path)
        item = _element(kind)
        decoded = {}
        for key, v in value.items():
            decoded[_text(key, path)] = self.value(v, item, owner, path)
        return decoded

    def _struct(
        self, value: Any, kind: Kind, owner: str, path: tuple[str, ...]
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _mismatch(_json_name(value), kind.go, owner, path)
        inner = self.structs[kind.struct].owner
        return self.struct(value, kind.struct, inner, path)

    def _strslice(
        self,
        value: Any,
        kind: Kind,  # noqa: ARG002 (every decoder of _DECODERS takes it)
        owner: str,
        path: tuple[str, ...],
    ) -> list[str]:
        # StrSlice's own UnmarshalJSON: an array of strings, else a string;
        # its error is the string attempt's, naming the whole value.
        if isinstance(value, str):
            return [_text(value, path)]
        if not isinstance(value, list) or not all(
            v is None or isinstance(v, str) for v in value
        ):
            raise _mismatch(_json_name(value), "string", owner, path)
        return ["" if v is None else _text(v, path) for v in value]

    def _empty(
        self, value: Any, kind: Kind, owner: str, path: tuple[str, ...]
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _mismatch(_json_name(value), kind.go, owner, path)
        return {}


_Decode = Callable[[Decoder, Any, Kind, str, tuple[str, ...]], Any]

_DECODERS: dict[str, _Decode] = {
    "string": Decoder._string,
    "integer": Decoder._integer,
    "boolean": Decoder._boolean,
    "array": Decoder._array,
    "object": Decoder._mapping,
    "struct": Decoder._struct,
    "strslice": Decoder._strslice,
    "empty": Decoder._empty,
}

#: What Go leaves in a non-pointer scalar for a JSON C{null}.
_ZERO: dict[str, Any] = {"string": "", "integer": 0, "boolean": False}


def _null(kind: Kind) -> Any:
    """
    What C{null} decodes to in C{kind}: nil, a scalar's zero value, or
    C{struct {}}'s only value.
    """
    if kind.nullable:
        return None
    if kind.json == "empty":
        return {}
    return _ZERO.get(kind.json)


def _element(kind: Kind) -> Kind:
    if kind.item is None:
        raise TypeError(f"{kind.go} has no element type")
    return kind.item


def _mismatch(
    value: str, go: str, owner: str, path: tuple[str, ...]
) -> InvalidParameter:
    where = ".".join((owner, *path))
    return InvalidParameter(
        f"json: cannot unmarshal {value} into Go struct field {where} of type {go}"
    )


#: A UTF-16 surrogate on its own, which JSON's \u escapes can write and
#: no UTF-8 string (no path, no argument) can hold.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str, path: tuple[str, ...]) -> str:
    """
    A string of the body as Go decodes it: a lone surrogate becomes U+FFFD.

    @raise InvalidParameter: For a NUL character.
    """
    if "\x00" in value:
        raise InvalidParameter(
            f"invalid {'.'.join(path)}: {go_quote(value)}: NUL characters are "
            "not allowed"
        )
    return _SURROGATE.sub("\ufffd", value)


def value_name(value: Any) -> str:
    """L{_json_name}, for the messages about a whole body or section."""
    return _json_name(value)
