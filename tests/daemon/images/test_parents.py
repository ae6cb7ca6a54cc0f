"""
Tests for L{dockserve.daemon.images.service}: images made on other images
(a build's steps, commits) listed, pruned and removed as dockerd does
(C{daemon/images/images.go}, C{image_prune.go}, C{image_delete.go}).
"""

import io
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.images.service import ImageService, chain_ids
from dockserve.errors import Conflict
from dockserve.testing.images import layer_tar, memory_image_service, save_archive
from tests.daemon.images.test_service import _Users


class _Chain(SynchronousTestCase):
    """
    busybox, then a build's steps on it: C{ENV} (no layer), C{RUN} (a
    layer), C{CMD} (no layer) tagged C{app:latest}.
    """

    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.service: ImageService = memory_image_service(self.root / "images")
        self.events: list[dict[str, Any]] = []
        self.service.set_events(self.events.append)
        archive = save_archive([layer_tar({"bin/sh": b"busybox"})], ["busybox:latest"])
        self.successResultOf(self.service.load(io.BytesIO(archive)))
        self.busybox = self.service.lookup("busybox").id
        self.env, self.run, self.app = self.build("app:latest", "one")
        self.events.clear()

    def step(self, parent: str, text: str | None, repo_tag: str | None = None) -> str:
        upper = None
        if text is not None:
            upper = self.root / f"upper-{len(self.service.store.images)}"
            upper.mkdir()
            (upper / "f").write_text(text)
        return self.successResultOf(
            self.service.commit_image(
                parent=parent,
                upper=upper,
                config={"Cmd": ["sh"], "Env": [f"STEP={text}"]},
                history={"created_by": f"step {text}"},
                empty_layer=upper is None,
                repo_tag=repo_tag,
            )
        )

    def build(self, tag: str, cmd: str) -> tuple[str, str, str]:
        """The three steps; the ENV and RUN steps are found in the cache."""
        env = self.cached(self.busybox) or self.step(self.busybox, None)
        run = self.cached(env) or self.step(env, "ran")
        return env, run, self.step(run, None, tag) if cmd == "one" else self.cmd(run)

    def cached(self, parent: str) -> str | None:
        children = self.service.children_of(parent)
        return children[0] if children else None

    def cmd(self, parent: str) -> str:
        return self.successResultOf(
            self.service.commit_image(
                parent=parent, upper=None, config={"Cmd": ["other"]},
                history={"created_by": "CMD other"}, empty_layer=True,
                repo_tag="app:latest",
            )
        )  # fmt: skip

    def listed(
        self, filters: dict[str, list[str]] | None = None, **kw: Any
    ) -> set[str]:
        return {
            (s["RepoTags"] or ["<none>"])[0] + " " + s["Id"]
            for s in self.service.list_images(filters, **kw)
        }

    def named(self, *pairs: tuple[str, str]) -> set[str]:
        return {f"{name} {image_id}" for name, image_id in pairs}

    def layer_of(self, image_id: str) -> str:
        return chain_ids(self.service.store.images[image_id].diff_ids)[-1]


class ListTests(_Chain):
    def test_intermediates_only_with_all(self) -> None:
        """
        The build's untagged steps show only with C{all}; C{dangling=true}
        finds none (each was made on), C{dangling=false} leaves them out.
        """
        tops = self.named(("app:latest", self.app), ("busybox:latest", self.busybox))
        self.assertEqual(self.listed(), tops)
        self.assertEqual(
            self.listed(all_images=True),
            tops | self.named(("<none>", self.env), ("<none>", self.run)),
        )
        self.assertEqual(self.listed({"dangling": ["true"]}), set())
        self.assertEqual(self.listed({"dangling": ["true"]}, all_images=True), set())
        self.assertEqual(self.listed({"dangling": ["false"]}), tops)
        self.assertEqual(self.listed({"dangling": ["false"]}, all_images=True), tops)

    def test_replaced_result_dangles(self) -> None:
        """
        A rebuild that moves the tag leaves the old result untagged with
        nothing made on it: dangling, and listed without C{all}.
        """
        old = self.app
        _, _, new = self.build("app:latest", "other")
        self.assertEqual(
            self.listed({"dangling": ["true"]}), self.named(("<none>", old))
        )
        self.assertIn(f"<none> {old}", self.listed())
        self.assertIn(f"app:latest {new}", self.listed())

    def test_untagged_base_hidden(self) -> None:
        """C{rmi busybox} only untags it: images were made on it; it hides."""
        removed = self.successResultOf(self.service.remove("busybox"))
        self.assertEqual(removed, [{"Untagged": "busybox:latest"}])
        self.assertEqual(self.listed(), self.named(("app:latest", self.app)))
        self.assertIn(f"<none> {self.busybox}", self.listed(all_images=True))


class RemoveTests(_Chain):
    def test_parents_go_with_the_image(self) -> None:
        """
        C{rmi app} deletes the image, then each untagged parent nothing
        else holds, up to the tagged base; each with its released layers.
        """
        run_layer = self.layer_of(self.run)
        removed = self.successResultOf(self.service.remove("app"))
        self.assertEqual(removed, [
            {"Untagged": "app:latest"}, {"Deleted": self.app},
            {"Deleted": self.run}, {"Deleted": run_layer}, {"Deleted": self.env},
        ])  # fmt: skip
        self.assertEqual(list(self.service.store.images), [self.busybox])
        self.assertEqual(
            [(e["Action"], e["Actor"]["ID"]) for e in self.events],
            [("untag", self.app), ("delete", self.app), ("delete", self.run),
             ("delete", self.env)],
        )  # fmt: skip

    def test_noprune(self) -> None:
        """With C{noprune} the parents stay; the last one now dangles."""
        removed = self.successResultOf(self.service.remove("app", noprune=True))
        self.assertEqual(removed, [{"Untagged": "app:latest"}, {"Deleted": self.app}])
        self.assertEqual(
            self.listed({"dangling": ["true"]}), self.named(("<none>", self.run))
        )

    def test_stops_at_shared_parent(self) -> None:
        """A parent another image was made on stays, and all below it."""
        other = self.step(self.run, "other", "other:1")
        removed = self.successResultOf(self.service.remove("app"))
        self.assertEqual(removed, [{"Untagged": "app:latest"}, {"Deleted": self.app}])
        self.assertIn(self.run, self.service.store.images)
        self.assertIn(other, self.service.store.images)

    def test_stops_at_used_parent(self) -> None:
        """A parent a container uses stays (quietly), and all below it."""
        self.service.set_users(_Users({self.run: [("c" * 64, False)]}))
        removed = self.successResultOf(self.service.remove("app"))
        self.assertEqual(removed, [{"Untagged": "app:latest"}, {"Deleted": self.app}])
        self.assertEqual(
            set(self.service.store.images), {self.busybox, self.env, self.run}
        )

    def test_with_children_cannot_be_forced(self) -> None:
        """An image other images were made on: dockerd's hard conflict."""
        for image_id in (self.busybox, self.run):
            for force in (False, True):
                f = self.failureResultOf(
                    self.service.remove(image_id, force=force), Conflict
                )
                self.assertEqual(
                    f.value.message,
                    f"conflict: unable to delete {image_id[7:19]} (cannot be "
                    "forced) - image has dependent child images",
                )
        self.assertEqual(len(self.service.store.images), 4)
        self.assertEqual(self.service.lookup("busybox").id, self.busybox)

    def test_forced_held_image_parents(self) -> None:
        """
        C{rmi -f} of an image a stopped container uses deletes it (held for
        the container) and its untagged parents; their layers stay for it.
        """
        self.service.set_users(_Users({self.app: [("d" * 64, False)]}))
        removed = self.successResultOf(self.service.remove("app", force=True))
        self.assertEqual(removed, [
            {"Untagged": "app:latest"}, {"Deleted": self.app},
            {"Deleted": self.run}, {"Deleted": self.env},
        ])  # fmt: skip
        self.assertEqual(list(self.service.store.images), [self.busybox])
        self.assertEqual(self.service.resolve(self.app).id, self.app)
        run_layer = self.service.store.layer_path(
            self.service.store.held[self.app].diff_ids[-1]
        )
        self.assertTrue((run_layer / "f").exists())


class PruneTests(_Chain):
    def test_keeps_the_build_chain(self) -> None:
        """C{image prune}: a build's steps are no dangling images."""
        result = self.successResultOf(self.service.prune())
        self.assertEqual(result, {"ImagesDeleted": None, "SpaceReclaimed": 0})
        self.assertEqual(len(self.service.store.images), 4)

    def test_dangling_result_alone(self) -> None:
        """
        The old result of a rebuild goes; the steps it shares with the new
        one stay.
        """
        old = self.app
        self.build("app:latest", "other")
        result = self.successResultOf(self.service.prune())
        self.assertEqual(result["ImagesDeleted"], [{"Deleted": old}])
        self.assertNotIn(old, self.service.store.images)
        self.assertIn(self.run, self.service.store.images)

    def test_dangling_result_with_its_steps(self) -> None:
        """A dangling image's untagged parents nothing else holds go with it."""
        self.successResultOf(self.service.remove("app", noprune=True))
        run_layer = self.layer_of(self.run)
        result = self.successResultOf(self.service.prune())
        self.assertEqual(
            result["ImagesDeleted"],
            [{"Deleted": self.run}, {"Deleted": run_layer}, {"Deleted": self.env}],
        )
        self.assertEqual(result["SpaceReclaimed"], len(b"ran"))
        self.assertEqual(list(self.service.store.images), [self.busybox])

    def test_all(self) -> None:
        """
        C{prune -a}: every unused image, the intermediate ones with the
        image made on them.
        """
        result = self.successResultOf(self.service.prune({"dangling": ["false"]}))
        self.assertEqual(self.service.store.images, {})
        deleted = [e["Deleted"] for e in result["ImagesDeleted"] if "Deleted" in e]
        for image_id in (self.app, self.run, self.env, self.busybox):
            self.assertIn(image_id, deleted)
        self.assertEqual(
            [e for e in result["ImagesDeleted"] if "Untagged" in e],
            [{"Untagged": "app:latest"}, {"Untagged": "busybox:latest"}],
        )

    def test_all_keeps_what_a_container_uses(self) -> None:
        """
        C{prune -a} with a container on the result: the result and its
        chain stay; the base loses its tag (as dockerd: it is no intermediate
        image while tagged, and stays once untagged, images being made on it).
        """
        self.service.set_users(_Users({self.app: [("c" * 64, True)]}))
        result = self.successResultOf(self.service.prune({"dangling": ["false"]}))
        self.assertEqual(result["ImagesDeleted"], [{"Untagged": "busybox:latest"}])
        self.assertEqual(len(self.service.store.images), 4)
