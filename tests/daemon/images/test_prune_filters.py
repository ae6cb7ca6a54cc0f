"""
Tests for the filters of L{ImageService.prune}: a value dockerd would
refuse is a 400, never a wider prune (review finding 11).
"""

import io
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.errors import InvalidParameter
from dockserve.testing.images import layer_tar, memory_image_service, save_archive


class PruneFilterTests(SynchronousTestCase):
    """C{POST /images/prune} filters as dockerd's C{GetBoolOrDefault} reads them."""

    def setUp(self) -> None:
        self.service = memory_image_service(Path(self.mktemp()))
        self.successResultOf(
            self.service.load(
                io.BytesIO(save_archive([layer_tar({"a": b"a"})], ["unused:1"]))
            )
        )
        self.image_id = self.service.lookup("unused:1").id

    def refused(self, filters: dict[str, list[str]]) -> str:
        """The message of the 400 for C{filters}; nothing is deleted."""
        e = self.assertRaises(InvalidParameter, self.service.prune, filters)
        self.assertEqual(self.service.lookup("unused:1").id, self.image_id)
        return e.message

    def test_bad_dangling(self) -> None:
        """
        C{dangling} other than C{true}, C{1}, C{false}, C{0} (exactly, as
        dockerd) is a 400 with dockerd's words, and the tagged image stays.
        """
        for value in ("maybe", "yes", "flase", "", "TRUE", "False"):
            self.assertEqual(
                self.refused({"dangling": [value]}),
                f"invalid filter 'dangling={value}'",
            )

    def test_conflicting_dangling(self) -> None:
        """C{true} and C{false} at once is a 400, as dockerd's conflicting values."""
        self.assertEqual(
            self.refused({"dangling": ["true", "false"]}),
            "invalid filter 'dangling=true,false'",
        )

    def test_empty_dangling(self) -> None:
        """C{dangling} with no value is a 400 (dockerd: no value to read)."""
        self.assertEqual(self.refused({"dangling": []}), "invalid filter 'dangling'")

    def test_unknown_key(self) -> None:
        """A key dockerd's image prune does not know is a 400."""
        for key in ("reference", "before", "since", "danglingx"):
            self.assertEqual(self.refused({key: ["x"]}), f"invalid filter '{key}'")

    def test_bad_until(self) -> None:
        """A C{until} that is no time is a 400."""
        self.assertEqual(
            self.refused({"until": ["soon"]}), "invalid filter 'until=soon'"
        )

    def test_good_values(self) -> None:
        """
        C{dangling=true}/C{1} keep the tagged image; C{false}/C{0} remove
        it; an extra unknown value beside a boolean is ignored, as by dockerd.
        """
        for value in ("true", "1"):
            result = self.successResultOf(self.service.prune({"dangling": [value]}))
            self.assertIsNone(result["ImagesDeleted"])
        result = self.successResultOf(self.service.prune({"dangling": ["0", "maybe"]}))
        self.assertIn({"Deleted": self.image_id}, result["ImagesDeleted"])
