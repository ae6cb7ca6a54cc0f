"""Tests for L{dockserve.daemon.build.cache}: the classic builder's cache keys."""

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.build.cache import Prober, key

STEP = {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh", "-c", "#(nop) ", "ENV A=1"]}


class KeyTests(SynchronousTestCase):
    def test_fields_a_build_does_not_set(self) -> None:
        """Hostname, Image and empty maps do not change the key."""
        self.assertEqual(
            key({**STEP, "Hostname": "abc", "Image": "sha256:1", "Labels": {}}),
            key(STEP),
        )

    def test_command_and_args_change_it(self) -> None:
        """The step's command (build args included) is the key."""
        self.assertNotEqual(key(STEP), key({**STEP, "Cmd": ["/bin/sh", "-c", "x"]}))
        run = {**STEP, "Cmd": ["|1", "A=1", "/bin/sh", "-c", "echo $A"]}
        other = {**STEP, "Cmd": ["|1", "A=2", "/bin/sh", "-c", "echo $A"]}
        self.assertNotEqual(key(run), key(other))


class ProberTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.images: dict[str, dict[str, Any]] = {}
        self.parents: dict[str, str] = {}

    def add(
        self, image_id: str, parent: str, step: dict[str, Any], created: str
    ) -> None:
        self.images[image_id] = {"container_config": step, "created": created}
        self.parents[image_id] = parent

    def prober(self, **kwargs: Any) -> Prober:
        return Prober(
            lambda p: [c for c, q in self.parents.items() if q == p],
            self.images.get,
            lambda i: self.parents.get(i, ""),
            **kwargs,
        )

    def test_newest_child_with_the_same_step(self) -> None:
        self.add("old", "base", STEP, "2024-01-01T00:00:00Z")
        self.add("new", "base", STEP, "2025-01-01T00:00:00Z")
        self.add("other", "base", {**STEP, "Cmd": ["x"]}, "2026-01-01T00:00:00Z")
        self.assertEqual(self.prober().probe("base", STEP), "new")

    def test_busted_until_reset(self) -> None:
        """After a miss every step misses, until a new stage starts."""
        self.add("hit", "base", STEP, "2025-01-01T00:00:00Z")
        prober = self.prober()
        self.assertIsNone(prober.probe("elsewhere", STEP))
        self.assertIsNone(prober.probe("base", STEP))
        prober.reset()
        self.assertEqual(prober.probe("base", STEP), "hit")

    def test_no_cache(self) -> None:
        self.add("hit", "base", STEP, "2025-01-01T00:00:00Z")
        self.assertIsNone(self.prober(enabled=False).probe("base", STEP))

    def test_cache_from_chains_only(self) -> None:
        """With --cache-from, only images in those images' chains count."""
        self.add("hit", "base", STEP, "2025-01-01T00:00:00Z")
        self.add("top", "hit", {"Cmd": ["y"]}, "2025-01-02T00:00:00Z")
        self.assertEqual(self.prober(cache_from=["top"]).probe("base", STEP), "hit")
        self.assertIsNone(self.prober(cache_from=["unrelated"]).probe("base", STEP))

    def test_gone_image(self) -> None:
        """A child whose image is gone is no hit."""
        self.parents["gone"] = "base"
        self.assertIsNone(self.prober().probe("base", STEP))
