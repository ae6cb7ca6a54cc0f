# -*- test-case-name: tests.api.test_params -*-
"""
Query-string and body parsing with Docker's rules and dockerd's error texts.

Every handler reads its parameters through these, so C{?all=1},
C{?all=true} and C{?all=True} mean the same everywhere, and a bad value is a
400 with a message naming the parameter rather than a 500.
"""

import json
import re
import weakref
from typing import Any, Self

from twisted.web.server import Request

from dockserve.errors import InvalidParameter

# Go's strconv.ParseBool spellings, plus the yes/no/none dockerd also reads.
_TRUE = frozenset({"1", "t", "T", "true", "True", "TRUE", "yes"})
_FALSE = frozenset({"", "0", "f", "F", "false", "False", "FALSE", "no", "none"})


def _go_quote(value: str) -> str:
    """C{value} quoted as Go's C{%q} does, as dockerd's messages show it."""
    return json.dumps(value, ensure_ascii=False)


def query(request: Request, name: str) -> str | None:
    """
    The last value of query parameter C{name}, decoded, or C{None}.
    """
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    return bytes(values[-1]).decode("utf-8", "replace")


def query_all(request: Request, name: str) -> list[str]:
    """
    Every value of a repeatable query parameter (C{names=a&names=b}).
    """
    return [
        bytes(v).decode("utf-8", "replace")
        for v in request.args.get(name.encode("ascii"), [])
    ]


def query_bool(request: Request, name: str, default: bool = False) -> bool:
    """
    A boolean query parameter as Go's C{strconv.ParseBool} reads it.

    @raise InvalidParameter: For a value that is neither true nor false.
    """
    value = query(request, name)
    if value is None:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidParameter(
        f"invalid value for {name}: strconv.ParseBool: parsing {_go_quote(value)}: "
        "invalid syntax"
    )


def query_int(request: Request, name: str, default: int | None = None) -> int | None:
    """
    An integer query parameter, or C{default} when absent or empty.

    @raise InvalidParameter: For a value that is not an integer.
    """
    value = query(request, name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(
            f"invalid value for {name}: strconv.Atoi: parsing {_go_quote(value)}: "
            "invalid syntax"
        ) from None


def query_filters(request: Request) -> dict[str, list[str]]:
    """
    The C{filters} parameter: JSON C{{"key": ["v", ...]}} or the old
    C{{"key": {"v": true}}} form, as dockerd accepts both.

    @raise InvalidParameter: For JSON that is neither form.
    """
    raw = query(request, "filters")
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError:
        raise InvalidParameter(f"invalid filter: {raw!r}") from None
    if not isinstance(decoded, dict):
        raise InvalidParameter(f"invalid filter: {raw!r}")
    result: dict[str, list[str]] = {}
    for key, values in decoded.items():
        if isinstance(values, list):
            result[key] = [str(v) for v in values]
        elif isinstance(values, dict):
            result[key] = [str(v) for v, on in values.items() if on]
        else:
            raise InvalidParameter(f"invalid filter: {raw!r}")
    return result


#: The deepest nesting of arrays and objects a JSON body may have. Go's
#: decoder allows 10000; Python's parser, and everything that later walks a
#: stored record (json.dumps), recurse once per level, and a body deeper
#: than Python's recursion limit would end in a RecursionError (a 500). No
#: Docker body nests beyond a dozen levels.
MAX_DEPTH = 512

#: A JSON string (skipped: its brackets are text), or a bracket.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)

#: Go's syntax errors for the constants Python's parser would accept.
_CONSTANTS = {
    "NaN": "invalid character 'N' looking for beginning of value",
    "Infinity": "invalid character 'I' looking for beginning of value",
    "-Infinity": "invalid character 'I' in numeric literal",
}


class JSONNumber(float):
    """
    A JSON number with a fraction or an exponent, keeping its text: Go's
    messages quote a number as it was written (C{number 1.50}).

    @ivar text: The number as the body wrote it.
    """

    text: str

    def __new__(cls, text: str) -> Self:
        """The number C{text} writes."""
        number = super().__new__(cls, text)
        number.text = text
        return number


def _check_depth(content: bytes) -> None:
    """
    Refuse nesting deeper than L{MAX_DEPTH}, before the parser recurses
    into it, at the first bracket too deep, as Go's scanner does.

    @raise InvalidParameter: Go's C{exceeded max depth}.
    """
    if content.count(b"[") + content.count(b"{") <= MAX_DEPTH:
        return
    depth = 0
    for token in _TOKENS.finditer(content):
        bracket = token.group()
        if bracket in {b"[", b"{"}:
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidParameter(
                    f"invalid JSON: invalid character '{bracket.decode()}' "
                    "exceeded max depth"
                )
        elif bracket in {b"]", b"}"}:
            depth -= 1


def _constant(name: str) -> Any:
    raise ValueError(_CONSTANTS[name])


#: Each request's body as decoded, or the message of why it is not JSON:
#: the body is read once, for the policy (which may add a label to it) and
#: the handler alike.
_DECODED: "weakref.WeakKeyDictionary[Request, tuple[Any, str | None]]" = (
    weakref.WeakKeyDictionary()
)


def _decode(request: Request) -> tuple[Any, str | None]:
    content = request.content.read() if request.content is not None else b""
    if not content.strip():
        return None, None
    try:
        _check_depth(content)
        return json.loads(
            content, parse_float=JSONNumber, parse_constant=_constant
        ), None
    except InvalidParameter as e:
        return None, e.message
    except RecursionError:
        return None, "invalid JSON: exceeded max depth"
    except ValueError as e:
        return None, f"invalid JSON: {e}"


def json_body(request: Request, *, required: bool = False) -> Any:
    """
    The request body decoded as JSON; C{None} for an empty body. Numbers
    with a fraction are L{JSONNumber}s. The body is read at the first call;
    later calls for the same request get the same object.

    @raise InvalidParameter: For a body that is not JSON (dockerd: 400),
        nested deeper than L{MAX_DEPTH}, or an empty body when C{required}.
    """
    decoded = _DECODED.get(request)
    if decoded is None:
        decoded = _decode(request)
        _DECODED[request] = decoded
    body, error = decoded
    if error is not None:
        raise InvalidParameter(error)
    if body is None and required:
        raise InvalidParameter("bad parameter: request body is empty")
    return body


def set_json_body(request: Request, body: Any) -> None:
    """
    What L{json_body} gives for C{request} from now on: a policy that adds
    its owner label to a create whose body was empty.
    """
    _DECODED[request] = (body, None)


def json_kind(value: Any) -> str:
    """How Go names a JSON value's kind."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def json_object(request: Request, *, required: bool = False) -> dict[str, Any]:
    """
    The request body as a JSON object; C{{}} for an empty body.

    @raise InvalidParameter: When the body is JSON but not an object.
    """
    body = json_body(request, required=required)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidParameter(
            "invalid JSON: json: cannot unmarshal "
            f"{json_kind(body)} into Go value of type object"
        )
    return body


def query_path(request: Request, name: str) -> str | None:
    """
    A query parameter naming a path in a container (C{?path=}).

    @raise InvalidParameter: For a NUL character, which no path can hold
        (the system call would fail on it: a 500).
    """
    value = query(request, name)
    if value is not None:
        check_path(value)
    return value


def check_path(path: str) -> None:
    """
    A path a client sent, in a query or a body.

    @raise InvalidParameter: When it holds a NUL character.
    """
    if "\x00" in path:
        raise InvalidParameter(
            f"invalid path {_go_quote(path)}: a path cannot contain a NUL character"
        )
