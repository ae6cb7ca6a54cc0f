"""Tests for L{dockserve.daemon.build.platforms}: containerd's platform names."""

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.build import platforms
from dockserve.daemon.build.platforms import Platform
from dockserve.errors import InvalidParameter


class ParseTests(SynchronousTestCase):
    def test_names(self) -> None:
        """Names are normalised; a lone OS or architecture takes the host's rest."""
        here = platforms.host()
        self.assertEqual(here.os, "linux")
        cases = {
            "linux/amd64": Platform("linux", "amd64"),
            "linux/x86_64": Platform("linux", "amd64"),
            "Linux/AArch64": Platform("linux", "arm64"),
            "linux/arm64/v8": Platform("linux", "arm64", "v8"),
            "linux/arm": Platform("linux", "arm"),
            "linux/arm/v6": Platform("linux", "arm", "v6"),
            "linux/armhf": Platform("linux", "arm"),
            "windows/amd64": Platform("windows", "amd64"),
            "linux": Platform("linux", here.architecture, here.variant),
            "arm64": Platform("linux", "arm64"),
            "macos/arm64": Platform("darwin", "arm64"),
        }
        for text, wanted in cases.items():
            self.assertEqual(platforms.parse(text), wanted, text)
        self.assertEqual(str(Platform("linux", "arm", "v7")), "linux/arm/v7")

    def test_errors(self) -> None:
        """containerd's messages, as dockerd passes them on."""
        cases = {
            "bogus": '"bogus": unknown operating system or architecture: '
            "invalid argument",
            "linux/": '"" is an invalid component of "linux/": platform '
            'specifier component must match "^[A-Za-z0-9_-]+$": invalid argument',
            "linux/*": '"linux/*": wildcards not yet supported: invalid argument',
            "a/b/c/d": '"a/b/c/d": cannot parse platform specifier: invalid argument',
        }
        for text, message in cases.items():
            with self.assertRaises(InvalidParameter) as e:
                platforms.parse(text)
            self.assertEqual(e.exception.message, message)


class MatchTests(SynchronousTestCase):
    def test_matches(self) -> None:
        """The same OS and architecture; variants only when both have one."""
        amd64 = platforms.of_image({"os": "linux", "architecture": "amd64"})
        self.assertTrue(platforms.matches(Platform("linux", "amd64"), amd64))
        self.assertFalse(platforms.matches(Platform("linux", "arm64"), amd64))
        self.assertFalse(platforms.matches(Platform("windows", "amd64"), amd64))
        arm = platforms.of_image({"architecture": "arm", "variant": "v6"})
        self.assertTrue(platforms.matches(Platform("linux", "arm"), arm))
        self.assertFalse(platforms.matches(Platform("linux", "arm", "v5"), arm))
        arm64 = platforms.of_image({"os": "linux", "architecture": "arm64"})
        self.assertTrue(platforms.matches(Platform("linux", "arm64", "v8"), arm64))

    def test_mismatch_text(self) -> None:
        """dockerd's words for an image of another platform."""
        self.assertEqual(
            platforms.mismatch(
                "busybox", Platform("linux", "arm64"), Platform("linux", "amd64")
            ),
            "image with reference busybox was found but does not match the "
            "specified platform: wanted linux/arm64, actual: linux/amd64",
        )
