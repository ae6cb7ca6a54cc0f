# -*- test-case-name: tests.api.test_params -*-
"""Tests for L{dockserve.api.params}: Docker's parameter rules and messages."""

import json
from io import BytesIO
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from dockserve.api import params
from dockserve.errors import InvalidParameter


def request(args: dict[str, list[str]] | None = None, body: bytes = b"") -> Any:
    """A request with query C{args} and C{body}."""
    fake = DummyRequest([b""])
    fake.args = {
        k.encode(): [v.encode() for v in values] for k, values in (args or {}).items()
    }
    fake.content = BytesIO(body)
    return fake


class QueryTests(SynchronousTestCase):
    """Query-string values."""

    def test_query_last(self) -> None:
        """The last of repeated values; C{None} when absent."""
        found = request({"name": ["a", "b"]})
        self.assertEqual(params.query(found, "name"), "b")
        self.assertEqual(params.query_all(found, "name"), ["a", "b"])
        self.assertIsNone(params.query(found, "other"))

    def test_bool(self) -> None:
        """Go's spellings of true and false, and the default when absent."""
        for text in ("1", "t", "true", "True", "TRUE", "yes"):
            self.assertTrue(params.query_bool(request({"all": [text]}), "all"), text)
        for text in ("", "0", "f", "false", "False", "no", "none"):
            self.assertFalse(
                params.query_bool(request({"all": [text]}), "all", default=True), text
            )
        self.assertTrue(params.query_bool(request(), "all", default=True))

    def test_bool_invalid(self) -> None:
        """Anything else is a 400 naming the parameter, quoted as Go does."""
        error = self.assertRaises(
            InvalidParameter, params.query_bool, request({"all": ["maybe"]}), "all"
        )
        self.assertEqual(
            error.message,
            'invalid value for all: strconv.ParseBool: parsing "maybe": invalid syntax',
        )

    def test_int(self) -> None:
        """Integers; empty or absent is the default; junk is a 400."""
        self.assertEqual(params.query_int(request({"limit": ["5"]}), "limit"), 5)
        self.assertEqual(params.query_int(request({"limit": [""]}), "limit", 3), 3)
        self.assertIsNone(params.query_int(request(), "limit"))
        error = self.assertRaises(
            InvalidParameter, params.query_int, request({"limit": ["x"]}), "limit"
        )
        self.assertEqual(
            error.message,
            'invalid value for limit: strconv.Atoi: parsing "x": invalid syntax',
        )

    def test_filters(self) -> None:
        """Both JSON forms of C{filters}; anything else is a 400."""
        self.assertEqual(
            params.query_filters(request({"filters": ['{"label": ["a=b"]}']})),
            {"label": ["a=b"]},
        )
        self.assertEqual(
            params.query_filters(
                request({"filters": ['{"dangling": {"true": true, "x": false}}']})
            ),
            {"dangling": ["true"]},
        )
        self.assertEqual(params.query_filters(request()), {})
        for bad in ("{", "[1]", '{"a": 1}'):
            self.assertRaises(
                InvalidParameter, params.query_filters, request({"filters": [bad]})
            )


class BodyTests(SynchronousTestCase):
    """JSON bodies."""

    def test_object(self) -> None:
        """An object is returned; an empty body is C{{}}."""
        self.assertEqual(params.json_object(request(body=b'{"a": 1}')), {"a": 1})
        self.assertEqual(params.json_object(request(body=b"  ")), {})

    def test_required(self) -> None:
        """An empty body where one is required is a 400."""
        self.assertRaises(
            InvalidParameter, params.json_object, request(), required=True
        )

    def test_malformed(self) -> None:
        """Malformed JSON is a 400 (never a 500)."""
        error = self.assertRaises(
            InvalidParameter, params.json_body, request(body=b"{nope")
        )
        self.assertTrue(error.message.startswith("invalid JSON: "))

    def test_not_object(self) -> None:
        """JSON that is not an object where one is needed is a 400."""
        self.assertRaises(InvalidParameter, params.json_object, request(body=b"[1]"))

    def test_not_object_message(self) -> None:
        """The message names the JSON kind as Go does, not Python's type."""
        error = self.assertRaises(
            InvalidParameter, params.json_object, request(body=b"[1]")
        )
        self.assertEqual(
            error.message,
            "invalid JSON: json: cannot unmarshal array into Go value of type object",
        )

    def test_deep(self) -> None:
        """
        Nesting deeper than L{params.MAX_DEPTH} is a 400 with Go's words,
        never a RecursionError (finding 17); brackets in strings do not
        count.
        """
        for opening, closing in ((b"[", b"]"), (b'{"a":', b"}")):
            deep = opening * 100_000 + b"1" + closing * 100_000
            error = self.assertRaises(
                InvalidParameter, params.json_body, request(body=deep)
            )
            self.assertEqual(
                error.message,
                f"invalid JSON: invalid character '{opening[:1].decode()}' "
                "exceeded max depth",
            )
        limit = params.MAX_DEPTH
        self.assertEqual(
            params.json_body(request(body=b"[" * limit + b"]" * limit)),
            json.loads(b"[" * limit + b"]" * limit),
        )
        self.assertRaises(
            InvalidParameter,
            params.json_body,
            request(body=b"[" * (limit + 1) + b"]" * (limit + 1)),
        )
        text = '{"a": "' + "[" * 100_000 + '\\"{"}'
        self.assertEqual(
            params.json_body(request(body=text.encode())),
            {"a": "[" * 100_000 + '"{'},
        )

    def test_constants(self) -> None:
        """NaN and Infinity are not JSON: Go's syntax errors, as 400s."""
        for text, message in (
            (
                b'{"Memory": NaN}',
                "invalid character 'N' looking for beginning of value",
            ),
            (b"[Infinity]", "invalid character 'I' looking for beginning of value"),
            (b"-Infinity", "invalid character 'I' in numeric literal"),
        ):
            error = self.assertRaises(
                InvalidParameter, params.json_body, request(body=text)
            )
            self.assertEqual(error.message, "invalid JSON: " + message)

    def test_number_text(self) -> None:
        """A fraction keeps its text, for Go's messages about it."""
        value = params.json_body(request(body=b'{"a": 1.50}'))["a"]
        self.assertEqual((value, value.text), (1.5, "1.50"))

    def test_path_nul(self) -> None:
        """A path with a NUL character, which no path can hold, is a 400."""
        self.assertEqual(params.query_path(request({"path": ["/etc"]}), "path"), "/etc")
        self.assertIsNone(params.query_path(request(), "path"))
        error = self.assertRaises(
            InvalidParameter, params.query_path, request({"path": ["/a\x00b"]}), "path"
        )
        self.assertEqual(
            error.message,
            'invalid path "/a\\u0000b": a path cannot contain a NUL character',
        )
