# -*- test-case-name: tests.daemon.containers.test_gojson -*-
"""Tests for L{dockserve.daemon.containers.gojson} and its generated table."""

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import apitypes, gojson
from dockserve.errors import InvalidParameter

_STRUCTS = {
    "Thing": gojson.Struct(
        "Thing",
        {
            "Name": gojson.string(),
            "name2": gojson.string(),
            "Small": gojson.integer("uint16"),
            "Limit": gojson.integer("int64", nullable=True),
            "Size": gojson.array(gojson.integer("uint"), "[2]uint", length=2),
            "Words": gojson.strslice(),
            "Ports": gojson.mapping(gojson.empty(), "nat.PortSet"),
            "Inner": gojson.struct("Inner", "pkg.Inner"),
        },
    ),
    "Inner": gojson.Struct("Inner", {"On": gojson.boolean()}),
}


class _Text(float):
    """A float that kept its JSON text, as the API's parser makes them."""

    text = "1.50"


class DecoderTests(SynchronousTestCase):
    def decode(self, value: dict[str, Any]) -> dict[str, Any]:
        return gojson.Decoder(_STRUCTS).struct(value, "Thing", "Thing", ())

    def assertMessage(self, value: dict[str, Any], message: str) -> None:
        error = self.assertRaises(InvalidParameter, self.decode, value)
        self.assertEqual(error.message, message)

    def test_names(self) -> None:
        """An exact name wins; otherwise Go's case-insensitive match."""
        self.assertEqual(self.decode({"name": "a"}), {"Name": "a"})
        self.assertEqual(self.decode({"NAME2": "a"}), {"name2": "a"})
        self.assertEqual(self.decode({"Other": [1]}), {"Other": [1]})

    def test_integers(self) -> None:
        """Go's widths: the literal of a number that does not fit is named."""
        self.assertEqual(self.decode({"Small": 65535}), {"Small": 65535})
        self.assertMessage(
            {"Small": 65536},
            "json: cannot unmarshal number 65536 into Go struct field "
            "Thing.Small of type uint16",
        )
        self.assertMessage(
            {"Small": _Text(1.5)},
            "json: cannot unmarshal number 1.50 into Go struct field "
            "Thing.Small of type uint16",
        )
        self.assertMessage(
            {"Small": True},
            "json: cannot unmarshal bool into Go struct field Thing.Small of "
            "type uint16",
        )

    def test_nulls(self) -> None:
        """nil for pointers, slices, maps and structs; zero for scalars."""
        self.assertEqual(
            self.decode({
                "Name": None, "Small": None, "Limit": None, "Size": None,
                "Words": None, "Ports": {"80/tcp": None}, "Inner": {"On": None},
            }),
            {
                "Name": "", "Small": 0, "Limit": None, "Size": None, "Words": None,
                "Ports": {"80/tcp": {}}, "Inner": {"On": False},
            },
        )  # fmt: skip

    def test_shapes(self) -> None:
        """A fixed array's length, a StrSlice's one word, struct {} emptied."""
        self.assertEqual(
            self.decode({"Size": [1, 2, "x"], "Words": "ls", "Ports": {"1": {"a": 1}}}),
            {"Size": [1, 2], "Words": ["ls"], "Ports": {"1": {}}},
        )
        self.assertEqual(self.decode({"Size": []}), {"Size": [0, 0]})
        self.assertMessage(
            {"Inner": {"On": "yes"}},
            "json: cannot unmarshal string into Go struct field Inner.Inner.On "
            "of type bool",
        )

    def test_nul(self) -> None:
        """A NUL character in a value or a key is refused."""
        self.assertMessage(
            {"Ports": {"8\x000": {}}},
            'invalid Ports: "8\\x000": NUL characters are not allowed',
        )
        self.assertMessage(
            {"Words": ["a", "\x00"]},
            'invalid Words: "\\x00": NUL characters are not allowed',
        )

    def test_surrogate(self) -> None:
        """A lone UTF-16 surrogate becomes U+FFFD, as Go decodes it."""
        self.assertEqual(
            self.decode({"Name": "a\ud800", "Ports": {"\udc00": {}}}),
            {"Name": "a\ufffd", "Ports": {"\ufffd": {}}},
        )

    def test_quote(self) -> None:
        """Go's %q: control characters escaped, quotes and backslashes too."""
        self.assertEqual(gojson.go_quote('a"\\\n\x01é'), '"a\\"\\\\\\n\\x01é"')


class TableTests(SynchronousTestCase):
    def test_every_struct_known(self) -> None:
        """Every struct a field names is in the table."""
        for name, definition in apitypes.STRUCTS.items():
            for field, kind in definition.fields.items():
                inner = kind
                while inner.item is not None:
                    inner = inner.item
                if inner.json == "struct":
                    self.assertIn(inner.struct, apitypes.STRUCTS, f"{name}.{field}")

    def test_go_facts(self) -> None:
        """The Go types the swagger does not give are the table's."""
        host = apitypes.STRUCTS["HostConfig"].fields
        self.assertEqual(host["BlkioWeight"], gojson.integer("uint16"))
        self.assertEqual(host["PidsLimit"], gojson.integer("int64", nullable=True))
        self.assertEqual(host["CapAdd"], gojson.strslice())
        self.assertEqual(host["ConsoleSize"].length, 2)
        self.assertEqual(apitypes.STRUCTS["Ulimit"].fields["Soft"].go, "int64")
