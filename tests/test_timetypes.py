"""Tests for L{dockserve.timetypes}: moby's time syntax, one reader."""

from twisted.trial.unittest import SynchronousTestCase

from dockserve import timetypes
from dockserve.errors import InvalidParameter

NOW = 1_765_000_000.0


class DurationTests(SynchronousTestCase):
    def test_go_durations(self) -> None:
        for text, seconds in [("90s", 90), ("1h30m", 5400), ("1.5h", 5400),
                              ("500ms", 0.5), ("2m3s", 123), ("-2m", -120),
                              ("0", 0), ("1us", 1e-6), (".5s", 0.5)]:  # fmt: skip
            self.assertAlmostEqual(timetypes.parse_duration(text), seconds)

    def test_not_durations(self) -> None:
        for text in ("10", "1d", "h", "", "1h-2m", "5 m"):
            self.assertRaises(ValueError, timetypes.parse_duration, text)


class GetTimestampTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """Durations before now, Unix seconds, RFC 3339 forms and dates (UTC)."""
        cases = {
            "10m": NOW - 600,
            "1765000000": 1_765_000_000,
            "1765000000.25": 1_765_000_000.25,
            "2025-12-06T05:46:40Z": 1_765_000_000,
            "2025-12-06T05:46:40.5Z": 1_765_000_000.5,
            "2025-12-06T05:46:40.123456789Z": 1_765_000_000.123456,
            "2025-12-06T06:46:40+01:00": 1_765_000_000,
            "2025-12-06T05:46:40": 1_765_000_000,
            "2025-12-06T05:46": 1_764_999_960,
            "2025-12-06T05": 1_764_997_200,
            "2025-12-06": 1_764_979_200,
            "0": 0,
        }
        for value, seconds in cases.items():
            self.assertAlmostEqual(
                timetypes.get_timestamp(value, NOW), seconds, msg=value
            )

    def test_bad(self) -> None:
        for value in ("bogus", "2025-13-40", "1.x", "12:00"):
            error = self.assertRaises(
                InvalidParameter, timetypes.get_timestamp, value, NOW
            )
            self.assertEqual(
                error.message, f'failed to parse value as time or duration: "{value}"'
            )


class ParseTimestampTests(SynchronousTestCase):
    def test_seconds_nanos(self) -> None:
        self.assertEqual(timetypes.parse_timestamp("1765000000.123456789"),
                         1_765_000_000.123456789)  # fmt: skip
        self.assertEqual(timetypes.parse_timestamp(""), 0)
        self.assertEqual(timetypes.parse_timestamp("12"), 12)
        for bad in ("x", "1.", "1.2.3", "2025-12-06"):
            self.assertRaises(InvalidParameter, timetypes.parse_timestamp, bad)


class RFC3339Tests(SynchronousTestCase):
    def test_go_form(self) -> None:
        """Go's RFC3339Nano: trailing zeros of the fraction dropped."""
        self.assertEqual(timetypes.rfc3339(1_765_000_000_000_000_000),
                         "2025-12-06T05:46:40Z")  # fmt: skip
        self.assertEqual(timetypes.rfc3339(1_765_000_000_120_000_000),
                         "2025-12-06T05:46:40.12Z")  # fmt: skip
        self.assertEqual(timetypes.rfc3339(0), timetypes.ZERO_TIME)
