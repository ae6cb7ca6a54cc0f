# -*- test-case-name: tests.daemon.containers.test_committing -*-
"""
Tests for L{dockserve.daemon.containers.committing}: C{docker commit} on
the container service, with the real image service on a temporary
directory and the scripted runtime.
"""

import io
from pathlib import Path
from typing import Any, ClassVar

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers.committing import merge
from dockserve.errors import Conflict, InvalidParameter, NotFound, SystemError_
from dockserve.testing.containers import make_service
from dockserve.testing.images import layer_tar, memory_image_service, save_archive


class MergeTests(SynchronousTestCase):
    """The committed config, as moby's commit C{merge} makes it."""

    container: ClassVar[dict[str, Any]] = {
        "Hostname": "abc",
        "User": "daemon",
        "Env": ["PATH=/bin", "A=1"],
        "Cmd": ["sh"],
        "Entrypoint": None,
        "Labels": {"l": "1"},
        "ExposedPorts": {"80/tcp": {}},
        "Volumes": {"/data": {}},
        "WorkingDir": "/w",
        "StopSignal": "SIGINT",
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5},
        "OnBuild": ["RUN x"],
        "Shell": ["/bin/bash", "-c"],
    }

    def test_fill_from_container(self) -> None:
        """What the body leaves empty comes from the container's config."""
        merged = merge({"Cmd": ["run"], "Env": ["A=2"]}, self.container)
        self.assertEqual(merged["Cmd"], ["run"])
        self.assertEqual(merged["Env"], ["A=2", "PATH=/bin"])
        self.assertEqual(merged["User"], "daemon")
        self.assertEqual(merged["WorkingDir"], "/w")
        self.assertEqual(merged["StopSignal"], "SIGINT")
        self.assertEqual(merged["Labels"], {"l": "1"})
        self.assertEqual(merged["ExposedPorts"], {"80/tcp": {}})
        self.assertEqual(merged["Healthcheck"], self.container["Healthcheck"])
        # Not merged by commit: the body's own, here none.
        self.assertEqual(merged["Hostname"], "")
        self.assertIsNone(merged["OnBuild"])
        self.assertIsNone(merged["Shell"])

    def test_cmd_and_entrypoint(self) -> None:
        """
        The container's Cmd only when the body gives neither Cmd nor
        Entrypoint; its Entrypoint only when the body's is null.
        """
        self.assertEqual(merge({}, self.container)["Cmd"], ["sh"])
        with_entrypoint = merge({"Entrypoint": ["e"]}, self.container)
        self.assertEqual(
            (with_entrypoint["Entrypoint"], with_entrypoint["Cmd"]), (["e"], None)
        )
        container = {**self.container, "Entrypoint": ["/init"]}
        self.assertEqual(merge({"Cmd": ["x"]}, container)["Entrypoint"], ["/init"])

    def test_joined(self) -> None:
        """Ports and volumes are joined with the container's."""
        merged = merge(
            {"ExposedPorts": {"53/udp": {}}, "Volumes": {"/logs": {}}}, self.container
        )
        self.assertEqual(sorted(merged["ExposedPorts"]), ["53/udp", "80/tcp"])
        self.assertEqual(sorted(merged["Volumes"]), ["/data", "/logs"])

    def test_healthcheck_field_by_field(self) -> None:
        """A healthcheck with a new interval keeps the container's test."""
        merged = merge({"Healthcheck": {"Interval": 9}}, self.container)
        self.assertEqual(
            merged["Healthcheck"], {"Test": ["CMD", "true"], "Interval": 9}
        )


class _Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.root.mkdir()
        self.images = memory_image_service(self.root / "image")
        archive = save_archive(
            [layer_tar({"bin/sh": b"busybox"})],
            ["busybox:latest"],
            config={"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        )
        self.successResultOf(self.images.load(io.BytesIO(archive)))
        self.service, self.runtime, self.clock = make_service(
            self.root, images=self.images
        )
        self.events: list[tuple[str, str]] = []
        self.service.set_events(self.container_event)
        self.images.set_events(
            lambda event: self.events.append((event["Type"], event["Action"]))
        )

    def container_event(
        self, type_: str, action: str, actor: str, attributes: dict[str, str]
    ) -> None:
        del actor, attributes
        self.events.append((type_, action))

    def create(self, **body: Any) -> str:
        request = {"Image": "busybox", "Cmd": ["sh", "-c", "echo x > /f"], **body}
        return str(self.service.create("c1", request)["Id"])

    def upper(self, cid: str) -> Path:
        upper = self.service.upper(cid)
        upper.mkdir(parents=True, exist_ok=True)
        return upper

    def commit(self, reference: str = "c1", **kwargs: Any) -> str:
        return self.successResultOf(self.service.commit(reference, **kwargs))

    def layer(self, image_id: str) -> Path:
        diff_id = self.images.store.images[image_id].diff_ids[-1]
        return self.images.store.layer_path(diff_id)


class CommitTests(_Base):
    """What C{docker commit} makes of a container."""

    def test_commit(self) -> None:
        """
        The image has the container's changes, its config with the changes
        applied, the container's command as history, author and comment,
        and the name asked for; C{tag} then C{commit} are announced.
        """
        cid = self.create(Volumes={})  # As the docker CLI sends it.
        (self.upper(cid) / "f").write_bytes(b"x\n")
        image_id = self.commit(
            repo="img2",
            author="me",
            comment="note",
            changes=['CMD ["cat", "/f"]'],
        )
        self.assertEqual(self.images.lookup("img2:latest").id, image_id)
        self.assertEqual((self.layer(image_id) / "f").read_bytes(), b"x\n")
        shown = self.images.inspect(image_id)
        self.assertEqual(shown["Config"]["Cmd"], ["cat", "/f"])
        self.assertEqual(shown["Config"]["Env"], ["PATH=/bin"])
        self.assertEqual(shown["Config"]["Hostname"], cid[:12])
        self.assertEqual(shown["Config"]["Image"], "busybox")
        self.assertIsNone(shown["Config"]["Volumes"])
        self.assertEqual((shown["Author"], shown["Comment"]), ("me", "note"))
        self.assertEqual(shown["Parent"], self.images.lookup("busybox").id)
        config = self.images.store.images[image_id].config
        self.assertEqual(config["container"], cid)
        self.assertEqual(config["container_config"]["Cmd"], ["sh", "-c", "echo x > /f"])
        self.assertEqual(config["history"][-1]["created_by"], "sh -c echo x > /f")
        self.assertEqual(self.events[-2:], [("image", "tag"), ("container", "commit")])

    def test_commit_event_attributes(self) -> None:
        """The commit event carries dockerd's comment, imageID, imageRef."""
        attributes: list[dict[str, str]] = []
        self.service.set_events(
            lambda *event: attributes.append(event[-1])  # type: ignore[arg-type]
        )
        self.create()
        image_id = self.commit(repo="img2", tag="v1", comment="note")
        commit = attributes[-1]
        self.assertEqual(
            {k: commit[k] for k in ("comment", "imageID", "imageRef", "name")},
            {
                "comment": "note",
                "imageID": image_id,
                "imageRef": "img2:v1",
                "name": "c1",
            },
        )
        untagged = self.commit()
        self.assertEqual(attributes[-1]["imageRef"], "")
        self.assertEqual(attributes[-1]["imageID"], untagged)

    def test_runtime_mount_points_left_out(self) -> None:
        """
        The mount points the runtime made for the container's own files
        (/etc/hosts, /etc/resolv.conf, /proc...) are not in the layer, nor
        a directory made only for them.
        """
        cid = self.create()
        upper = self.upper(cid)
        (upper / "etc").mkdir()
        for name in ("hosts", "resolv.conf", "hostname"):
            (upper / "etc" / name).write_bytes(b"")
        (upper / "proc").mkdir()
        (upper / "f").write_bytes(b"x")
        image_id = self.commit()
        self.assertEqual(sorted(p.name for p in self.layer(image_id).iterdir()), ["f"])

    def test_body_config(self) -> None:
        """
        A body (the SDK's C{conf}) replaces the container's config, and
        what it leaves empty is the container's, as moby merges it.
        """
        cid = self.create(Env=["A=1"], WorkingDir="/w")
        image_id = self.commit(config={"Cmd": ["run"], "Env": ["B=2"]})
        shown = self.images.inspect(image_id)["Config"]
        self.assertEqual(shown["Cmd"], ["run"])
        self.assertEqual(shown["Env"], ["B=2", "A=1", "PATH=/bin"])
        self.assertEqual(shown["WorkingDir"], "/w")
        self.assertEqual(shown["Hostname"], "")
        del cid

    def test_no_changes(self) -> None:
        """A container that changed nothing commits without a new layer."""
        self.create()
        image_id = self.commit()
        record = self.images.store.images[image_id]
        self.assertEqual(record.diff_ids, self.images.lookup("busybox").diff_ids)
        self.assertTrue(record.config["history"][-1]["empty_layer"])


class PauseTests(_Base):
    """A running container is paused while it is committed."""

    def watch(self) -> list[str]:
        """Record the runtime's status of c1 when the image is made."""
        seen: list[str] = []
        commit_image = self.images.commit_image

        def watching(**kwargs: Any) -> Deferred[str]:
            seen.append(self.runtime.containers[self.cid].status)
            return commit_image(**kwargs)

        self.images.commit_image = watching  # type: ignore[method-assign]
        return seen

    def setUp(self) -> None:
        super().setUp()
        self.cid = self.create()
        self.successResultOf(self.service.start(self.cid))
        self.events.clear()

    def test_paused_by_default(self) -> None:
        """
        Paused while the image is made, running after; C{pause}, C{commit},
        C{unpause} in dockerd's order.
        """
        seen = self.watch()
        self.commit()
        self.assertEqual(seen, ["paused"])
        self.assertEqual(self.runtime.containers[self.cid].status, "running")
        self.assertEqual(self.service.inspect("c1")["State"]["Status"], "running")
        self.assertEqual(
            self.events,
            [("container", "pause"), ("container", "commit"), ("container", "unpause")],
        )

    def test_no_pause(self) -> None:
        """C{pause=false} leaves it running."""
        seen = self.watch()
        self.commit(pause=False)
        self.assertEqual(seen, ["running"])
        self.assertEqual(self.events, [("container", "commit")])

    def test_already_paused(self) -> None:
        """A container paused before stays paused after."""
        self.successResultOf(self.service.pause("c1"))
        self.events.clear()
        self.commit()
        self.assertEqual(self.service.inspect("c1")["State"]["Status"], "paused")
        self.assertEqual(self.events, [("container", "commit")])

    def test_resumed_after_failure(self) -> None:
        """A commit that fails still resumes the container it paused."""

        def failing(**kwargs: Any) -> Deferred[str]:
            del kwargs
            return fail(SystemError_("disk full"))

        self.images.commit_image = failing  # type: ignore[method-assign]
        failure = self.failureResultOf(self.service.commit("c1"), SystemError_)
        self.assertEqual(failure.value.message, "disk full")
        self.assertEqual(self.service.inspect("c1")["State"]["Status"], "running")
        self.assertEqual(
            self.events, [("container", "pause"), ("container", "unpause")]
        )


class ErrorTests(_Base):
    """dockerd's errors, before anything is paused or written."""

    def test_unknown(self) -> None:
        """An unknown container is a 404; an empty name a 400."""
        error = self.assertRaises(NotFound, self.service.commit, "nope")
        self.assertEqual(error.message, "No such container: nope")
        error = self.assertRaises(InvalidParameter, self.service.commit, "")
        self.assertEqual(error.message, 'invalid name or ID supplied: ""')

    def test_bad_change_pauses_nothing(self) -> None:
        """A bad change is a 400, and the running container was never paused."""
        cid = self.create()
        self.successResultOf(self.service.start(cid))
        self.events.clear()
        error = self.assertRaises(
            InvalidParameter, self.service.commit, "c1", changes=["RUN x"]
        )
        self.assertEqual(error.message, "run is not a valid change command")
        self.assertEqual(self.events, [])
        self.assertEqual(self.runtime.containers[cid].status, "running")

    def test_bad_name(self) -> None:
        """A bad repository is a 400 and no image is made."""
        self.create()
        before = set(self.images.store.images)
        self.assertRaises(InvalidParameter, self.service.commit, "c1", repo="BAD")
        self.assertEqual(set(self.images.store.images), before)

    def test_bad_body(self) -> None:
        """A body field of the wrong type is a 400 with Go's words."""
        self.create()
        error = self.assertRaises(
            InvalidParameter, self.service.commit, "c1", config={"Cmd": 5}
        )
        self.assertIn("cannot unmarshal number", error.message)

    def test_being_removed(self) -> None:
        """A container being removed is a 409, as dockerd's."""
        cid = self.create()
        c = self.service._containers[cid]
        c.record = c.record.with_state(status="removing")
        error = self.assertRaises(Conflict, self.service.commit, "c1")
        self.assertEqual(
            error.message, f"You cannot commit container {cid} which is being removed"
        )
