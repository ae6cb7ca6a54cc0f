# -*- test-case-name: tests.integration.test_commit -*-
"""
C{docker commit} and the SDK's C{container.commit()} on a real daemon:
runc, overlayfs, the docker CLI 28 and the Docker SDK for Python.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

from tests.integration.test_containers import _DaemonCase

#: What the committed container does to its root, its volume and its bind:
#: a file added, one modified, one deleted, a directory deleted, a
#: directory emptied and refilled (opaque), a hard link, a symlink.
_CHANGES = (
    "echo x > /f; echo changed > /etc/group; rm /etc/passwd; rm -rf /home; "
    "rm -rf /var; mkdir /var; echo new > /var/only; ln /f /f2; "
    "ln -s /f /link; echo vol > /vol/in; echo bind > /bound/in"
)


class CommitTests(_DaemonCase):
    """C{docker commit} as dockerd's."""

    def last_layer(self, image: str) -> dict[str, tarfile.TarInfo]:
        """The entries of C{image}'s top layer, from C{docker save}."""
        saved = self.docker("save", image).stdout
        with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
            names = archive.getnames()
            manifest_file = archive.extractfile("manifest.json")
            assert manifest_file is not None
            manifest = json.load(manifest_file)
            top = manifest[0]["Layers"][-1]
            self.assertIn(top, names)
            layer = archive.extractfile(top)
            assert layer is not None
            with tarfile.open(fileobj=io.BytesIO(layer.read())) as tar:
                return {m.name.rstrip("/"): m for m in tar.getmembers()}

    def test_commit_and_run(self) -> None:
        """
        C{docker commit -c -m -a c img2}: the image runs with the new
        command and sees every change (a deleted directory gone, an
        opaque one with only its new file, the hard link linked), nothing
        of the volume or bind, nor the runtime's /etc/hosts; history,
        inspect and diff show it as dockerd does.
        """
        bound = Path(self.mktemp()).absolute()
        bound.mkdir()
        self.cleanup_container("c1")
        self.ok(
            "run", "--name", "c1", "-v", "/vol", "-v", f"{bound}:/bound",
            "busybox", "sh", "-c", _CHANGES,
        )  # fmt: skip
        self.addCleanup(self.docker, "rmi", "-f", "img2")
        image_id = self.ok(
            "commit", "-c", 'CMD ["cat", "/f"]', "-m", "note", "-a", "me <me@x>",
            "c1", "img2",
        ).strip()  # fmt: skip
        self.assertRegex(image_id, "^sha256:[0-9a-f]{64}$")
        self.assertEqual(self.ok("run", "--rm", "img2"), "x\n")
        seen = self.ok(
            "run", "--rm", "img2", "sh", "-c",
            "cat /etc/group; ls /etc/passwd /home 2>&1; ls /var; stat -c %h /f2;"
            " readlink /link; ls /vol /bound",
        )  # fmt: skip
        self.assertEqual(
            seen.splitlines(),
            [
                "changed",
                "ls: /etc/passwd: No such file or directory",
                "ls: /home: No such file or directory",
                "only",
                "2",
                "/f",
                "/bound:",
                "",
                "/vol:",
            ],
        )
        layer = self.last_layer("img2")
        self.assertIn("etc/.wh.passwd", layer)
        self.assertIn(".wh.home", layer)
        self.assertIn("var/.wh..wh..opq", layer)
        self.assertTrue(layer["f2"].islnk())
        self.assertEqual(layer["link"].linkname, "/f")
        self.assertNotIn("vol/in", layer)
        self.assertNotIn("bound/in", layer)
        for mount_point in ("etc/hosts", "etc/resolv.conf", "proc", "sys"):
            self.assertNotIn(mount_point, layer)
        history = self.ok(
            "history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Comment}}",
            "img2",
        ).splitlines()  # fmt: skip
        busybox = self.inspect("busybox", "{{.Id}}")
        self.assertEqual(history[0], f"{image_id}|sh -c {_CHANGES}|note")
        self.assertEqual(history[1].split("|")[0], busybox)
        self.assertEqual(
            self.inspect("img2", "{{.Parent}}|{{.Author}}|{{.Comment}}"),
            f"{busybox}|me <me@x>|note",
        )
        self.assertEqual(self.inspect("img2", "{{json .Config.Cmd}}"), '["cat","/f"]')
        # The container itself is as it was.
        self.assertIn("D /etc/passwd", self.ok("diff", "c1"))

    def test_running_container_paused(self) -> None:
        """
        A running container is paused while it is committed and running
        again after (C{pause}, C{commit}, C{unpause}); C{--pause=false}
        leaves it running; a paused one stays paused.
        """
        self.cleanup_container("r1")
        self.ok(
            "run", "-d", "--name", "r1", "busybox", "sh", "-c",
            "echo hi > /hi; sleep 300",
        )  # fmt: skip
        self.until(lambda: "/hi" in self.ok("diff", "r1"), "the file")
        since = str(time.time())
        first = self.ok("commit", "r1").strip()
        self.addCleanup(self.docker, "rmi", "-f", first)
        self.assertEqual(self.inspect("r1", "{{.State.Status}}"), "running")
        second = self.ok("commit", "--pause=false", "r1", "r1img:v1").strip()
        self.addCleanup(self.docker, "rmi", "-f", second)
        self.ok("pause", "r1")
        third = self.ok("commit", "r1").strip()
        self.addCleanup(self.docker, "rmi", "-f", third)
        self.assertEqual(self.inspect("r1", "{{.State.Status}}"), "paused")
        self.ok("unpause", "r1")
        actions = self.ok(
            "events", "--since", since, "--until", str(time.time()),
            "--filter", "container=r1", "--format", "{{.Action}}",
        ).split()  # fmt: skip
        self.assertEqual(
            actions,
            [
                "pause", "commit", "unpause",
                "commit",
                "pause", "commit", "unpause",
            ],
        )  # fmt: skip
        self.assertEqual(self.ok("run", "--rm", "r1img:v1", "cat", "/hi"), "hi\n")

    def test_sdk(self) -> None:
        """
        The SDK's C{container.commit()} with changes and a C{conf} body,
        and its errors.
        """
        import docker  # noqa: PLC0415

        client = self.sdk()
        self.cleanup_container("s1")
        container = client.containers.run(
            "busybox", ["sh", "-c", "echo sdk > /s"], name="s1", detach=True
        )
        container.wait()
        self.addCleanup(self.docker, "rmi", "-f", "sdkimg:t1")
        image = container.commit(
            repository="sdkimg",
            tag="t1",
            message="m",
            author="a",
            changes=["ENV X=1", 'CMD ["cat", "/s"]'],
        )
        self.assertEqual(image.tags, ["sdkimg:t1"])
        self.assertEqual((image.attrs["Author"], image.attrs["Comment"]), ("a", "m"))
        self.assertIn("X=1", image.attrs["Config"]["Env"])
        self.assertEqual(client.containers.run(image.id, remove=True), b"sdk\n")
        conf = container.commit(conf={"Cmd": ["echo", "conf"]})
        self.addCleanup(self.docker, "rmi", "-f", conf.id)
        self.assertEqual(client.containers.run(conf.id, remove=True), b"conf\n")
        with self.assertRaises(docker.errors.APIError) as caught:
            container.commit(repository="BAD")
        self.assertEqual(caught.exception.status_code, 400)
        with self.assertRaises(docker.errors.NotFound) as missing:
            client.api.commit("nope")
        self.assertEqual(missing.exception.explanation, "No such container: nope")

    def test_errors(self) -> None:
        """The CLI shows dockerd's words; nothing is made."""
        self.cleanup_container("e1")
        self.ok("create", "--name", "e1", "busybox")
        before = self.ok("images", "-q")
        self.assertIn(
            "Error response from daemon: No such container: nope",
            self.fails("commit", "nope"),
        )
        self.assertIn(
            "run is not a valid change command",
            self.fails("commit", "-c", "RUN true", "e1"),
        )
        self.assertEqual(self.ok("images", "-q"), before)

    def test_survives_a_crash(self) -> None:
        """
        What commit answered is on disk: after a SIGKILL of the daemon the
        image is there and runs.
        """
        self.cleanup_container("k1")
        self.ok("run", "--name", "k1", "busybox", "sh", "-c", "echo kept > /k")
        self.ok("commit", "k1", "kept:v1")
        self.daemon.kill()
        self.daemon.start()
        self.assertEqual(self.ok("run", "--rm", "kept:v1", "cat", "/k"), "kept\n")
