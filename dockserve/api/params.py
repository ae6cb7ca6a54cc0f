# -*- test-case-name: tests.api.test_params -*-
"""
Query-string and body parsing with Docker's rules and dockerd's error texts.

Every handler reads its parameters through these, so C{?all=1},
C{?all=true} and C{?all=True} mean the same everywhere, and a bad value is a
400 with a message naming the parameter rather than a 500.
"""

import json
from typing import Any

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


def json_body(request: Request, *, required: bool = False) -> Any:
    """
    The request body decoded as JSON; C{None} for an empty body.

    @raise InvalidParameter: For a body that is not JSON (dockerd: 400), or
        an empty body when C{required}.
    """
    content = request.content.read() if request.content is not None else b""
    if not content.strip():
        if required:
            raise InvalidParameter("bad parameter: request body is empty")
        return None
    try:
        return json.loads(content)
    except ValueError as e:
        raise InvalidParameter(f"invalid JSON: {e}") from None


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
            f"{type(body).__name__} into Go value of type object"
        )
    return body
