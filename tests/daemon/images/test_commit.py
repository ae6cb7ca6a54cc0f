"""
Tests for L{dockserve.daemon.images.commit}: the commit step, through
L{dockserve.daemon.images.service.ImageService.commit_image}.
"""

import io
import json
import os
import stat
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.images.commit import go_config
from dockserve.daemon.images.service import chain_ids
from dockserve.daemon.images.upperdir import EMPTY_LAYER
from dockserve.errors import InvalidParameter, NotFound
from dockserve.testing.images import layer_tar, memory_image_service, save_archive

_CONTAINER = "c" * 64


class _Case(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.service = memory_image_service(self.root / "image")
        self.events: list[dict[str, Any]] = []
        self.service.set_events(self.events.append)
        archive = save_archive(
            [layer_tar({"bin/sh": b"busybox"})],
            ["busybox:latest"],
            config={"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        )
        self.successResultOf(self.service.load(io.BytesIO(archive)))
        self.parent = self.service.lookup("busybox").id
        self.upper = self.root / "upper"
        self.upper.mkdir()
        self.events.clear()

    def commit(self, **kwargs: Any) -> str:
        arguments: dict[str, Any] = {
            "parent": self.parent,
            "upper": self.upper,
            "config": {"Cmd": ["cat", "/f"], "Env": ["PATH=/bin"], "Image": "busybox"},
            "history": {"created_by": "sh -c echo x > /f", "comment": "note"},
            "container": _CONTAINER,
            "container_config": {"Cmd": ["sh", "-c", "echo x > /f"]},
        }
        arguments.update(kwargs)
        return self.successResultOf(self.service.commit_image(**arguments))


class CommitImageTests(_Case):
    """The image a commit makes."""

    def test_layer_and_config(self) -> None:
        """
        The new image has the parent's layers and the new one, the
        merged config in Go's form, the container's ID and config, and a
        history entry with author, comment and command.
        """
        (self.upper / "f").write_bytes(b"x\n")
        image_id = self.commit(
            history={"created_by": "sh -c echo", "author": "me", "comment": "note"}
        )
        record = self.service.store.images[image_id]
        parent = self.service.store.images[self.parent]
        self.assertEqual(len(record.diff_ids), 2)
        self.assertEqual(record.diff_ids[0], parent.diff_ids[0])
        layer = self.service.store.layer_path(record.diff_ids[1])
        self.assertEqual((layer / "f").read_bytes(), b"x\n")
        config = record.config
        self.assertEqual(
            list(config),
            [
                "architecture",
                "author",
                "config",
                "container",
                "container_config",
                "created",
                "docker_version",
                "history",
                "os",
                "rootfs",
            ],
        )
        self.assertEqual(config["container"], _CONTAINER)
        self.assertEqual(config["config"]["Cmd"], ["cat", "/f"])
        self.assertEqual(config["container_config"]["Cmd"], ["sh", "-c", "echo x > /f"])
        self.assertEqual(config["architecture"], parent.config["architecture"])
        self.assertEqual(len(config["history"]), 2)
        self.assertEqual(
            config["history"][-1],
            {
                "created": config["created"],
                "author": "me",
                "created_by": "sh -c echo",
                "comment": "note",
            },
        )

    def test_inspect_and_history(self) -> None:
        """
        C{docker inspect} shows Parent, Author and Comment; C{docker
        history} the new row, then the parent's rows under its ID.
        """
        (self.upper / "f").write_bytes(b"x\n")
        image_id = self.commit(
            history={"created_by": "sh -c echo", "author": "me", "comment": "note"}
        )
        shown = self.service.inspect(image_id)
        self.assertEqual(shown["Parent"], self.parent)
        self.assertEqual(shown["Author"], "me")
        self.assertEqual(shown["Comment"], "note")
        self.assertEqual(shown["Config"]["Cmd"], ["cat", "/f"])
        rows = self.service.history(image_id)
        self.assertEqual(
            [(r["Id"], r["CreatedBy"], r["Comment"], r["Tags"]) for r in rows],
            [
                (image_id, "sh -c echo", "note", None),
                (self.parent, "layer 0", "", ["busybox:latest"]),
            ],
        )
        self.assertEqual(rows[0]["Size"], 2)
        [summary] = [s for s in self.service.list_images() if s["Id"] == image_id]
        self.assertEqual(summary["ParentId"], self.parent)
        self.assertEqual(summary["RepoTags"], [])

    def test_no_changes(self) -> None:
        """
        An upper directory without changes adds no layer; the history
        entry says so (C{empty_layer}), as dockerd's commit.
        """
        image_id = self.commit()
        config = self.service.store.images[image_id].config
        self.assertEqual(
            config["rootfs"]["diff_ids"],
            self.service.store.images[self.parent].diff_ids,
        )
        self.assertTrue(config["history"][-1]["empty_layer"])
        self.assertNotIn(EMPTY_LAYER, config["rootfs"]["diff_ids"])

    def test_empty_layer_step(self) -> None:
        """
        A config-only step (C{empty_layer}) takes no layer even from an
        upper directory with files.
        """
        (self.upper / "f").write_bytes(b"x")
        image_id = self.commit(empty_layer=True)
        config = self.service.store.images[image_id].config
        self.assertEqual(len(config["rootfs"]["diff_ids"]), 1)
        self.assertTrue(config["history"][-1]["empty_layer"])

    def test_scratch(self) -> None:
        """From scratch: the new layer alone, no parent."""
        (self.upper / "f").write_bytes(b"x")
        image_id = self.commit(parent=None)
        record = self.service.store.images[image_id]
        self.assertEqual(len(record.diff_ids), 1)
        self.assertEqual(len(record.config["history"]), 1)
        self.assertEqual(self.service.inspect(image_id)["Parent"], "")

    def test_unknown_parent(self) -> None:
        """A parent the store lacks is a 404."""
        self.assertRaises(
            NotFound,
            self.service.commit_image,
            parent="sha256:" + "0" * 64,
            upper=self.upper,
            config={},
            history={},
        )

    def test_tagged(self) -> None:
        """
        With a name the image is tagged in the same index write, and the
        C{tag} event dockerd sends follows; without one it is untagged and
        no image event is sent.
        """
        untagged = self.commit()
        self.assertEqual(self.events, [])
        self.assertEqual(self.service.inspect(untagged)["RepoTags"], [])
        image_id = self.commit(repo_tag="img2:latest")
        self.assertEqual(self.service.lookup("img2").id, image_id)
        [event] = self.events
        self.assertEqual(
            (event["Type"], event["Action"], event["Actor"]["ID"]),
            ("image", "tag", image_id),
        )
        self.assertEqual(event["Actor"]["Attributes"]["name"], "img2:latest")

    def test_durable(self) -> None:
        """
        What the commit answered is on disk: a store opened anew on the
        same directory has the image, its tag, its layer and its parent.
        """
        (self.upper / "f").write_bytes(b"x\n")
        image_id = self.commit(repo_tag="img2:v1")
        again = memory_image_service(self.root / "image")
        self.assertEqual(again.lookup("img2:v1").id, image_id)
        self.assertEqual(again.inspect(image_id)["Parent"], self.parent)
        diff_id = again.store.images[image_id].diff_ids[-1]
        self.assertEqual((again.store.layer_path(diff_id) / "f").read_bytes(), b"x\n")

    def test_parent_untagged(self) -> None:
        """
        Removing the parent's tag leaves the parent, which the child was
        made on (dockerd keeps it as an intermediate image): the child
        still shows it; removing the child removes it too.
        """
        (self.upper / "f").write_bytes(b"x\n")
        image_id = self.commit()
        self.assertEqual(
            self.successResultOf(self.service.remove("busybox")),
            [{"Untagged": "busybox:latest"}],
        )
        self.assertEqual(self.service.inspect(image_id)["Parent"], self.parent)
        self.assertEqual(
            [r["Id"] for r in self.service.history(image_id)], [image_id, self.parent]
        )
        below, top = chain_ids(self.service.store.images[image_id].diff_ids)
        self.assertEqual(
            self.successResultOf(self.service.remove(image_id)),
            [{"Deleted": image_id}, {"Deleted": top},
             {"Deleted": self.parent}, {"Deleted": below}],
        )  # fmt: skip
        self.assertEqual(self.service.store.images, {})

    def test_whiteouts_reach_the_layer(self) -> None:
        """A deletion in the upper directory is a whiteout in the layer."""
        if os.geteuid() != 0:
            self.skipTest("whiteouts need root")
        os.mknod(self.upper / "gone", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
        image_id = self.commit()
        diff_id = self.service.store.images[image_id].diff_ids[-1]
        info = os.lstat(self.service.store.layer_path(diff_id) / "gone")
        self.assertTrue(stat.S_ISCHR(info.st_mode))


class CommitReferenceTests(SynchronousTestCase):
    """C{repo} and C{tag} of C{POST /commit}, checked as dockerd does."""

    def setUp(self) -> None:
        self.service = memory_image_service(Path(self.mktemp()))

    def test_names(self) -> None:
        """The familiar name, C{latest} unless a tag is given either way."""
        check = self.service.commit_reference
        self.assertIsNone(check(None, None))
        self.assertIsNone(check("", "v1"))
        self.assertEqual(check("img", None), "img:latest")
        self.assertEqual(check("img", "v1"), "img:v1")
        self.assertEqual(check("img:t1", None), "img:t1")
        self.assertEqual(check("img:t1", "t2"), "img:t2")
        self.assertEqual(check("localhost:5000/a/b", ""), "localhost:5000/a/b:latest")

    def test_errors(self) -> None:
        """Bad names are 400s with dockerd's words."""
        check = self.service.commit_reference
        for repo, tag, message in [
            ("BAD", None, "repository name (BAD) must be lowercase"),
            ("ok", "bad!", "invalid tag format"),
            ("ok@sha256:" + "a" * 64, None, "cannot import digest reference"),
        ]:
            error = self.assertRaises(InvalidParameter, check, repo, tag)
            self.assertIn(message, error.message)


class GoConfigTests(SynchronousTestCase):
    """C{container.Config} as Go marshals it."""

    def test_order_and_omissions(self) -> None:
        """
        Every field in the struct's order; the empty C{omitempty} ones
        left out, the others as zero values; what is no field dropped.
        """
        shown = go_config(
            {
                "Labels": {"a": "b"},
                "Cmd": ["sh"],
                "Hostname": "h",
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 0},
                "Unknown": 1,
                "StopSignal": "",
            }
        )
        self.assertEqual(
            json.dumps(shown),
            json.dumps(
                {
                    "Hostname": "h",
                    "Domainname": "",
                    "User": "",
                    "AttachStdin": False,
                    "AttachStdout": False,
                    "AttachStderr": False,
                    "Tty": False,
                    "OpenStdin": False,
                    "StdinOnce": False,
                    "Env": None,
                    "Cmd": ["sh"],
                    "Healthcheck": {"Test": ["CMD", "true"]},
                    "Image": "",
                    "Volumes": None,
                    "WorkingDir": "",
                    "Entrypoint": None,
                    "OnBuild": None,
                    "Labels": {"a": "b"},
                }
            ),
        )
