"""
Images move between dockserve and a real dockerd without losing a byte: a
C{docker save} archive from one loads into the other and runs there, and an
image pushed by one to a loopback C{docker-registry} pulls into the other
with the same ID and digest.

Each test starts a dockerd of its own (own socket, data root, exec root,
C{--bridge none --iptables=false}) and stops it by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.integration.harness import unix_get
from tests.integration.images import busybox_save_archive, import_busybox
from tests.integration.test_images import DOCKER, Registry, start

DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"

#: The fields of C{docker image inspect} that say what an image is (not
#: where this daemon keeps it): they match between the two daemons.
_IDENTITY = (
    "Id",
    "RepoTags",
    "Created",
    "Author",
    "Comment",
    "Architecture",
    "Os",
    "RootFS",
)


class Dockerd:
    """A real dockerd on its own temp roots, stopped by its PID."""

    def __init__(self, test_case: SynchronousTestCase) -> None:
        if not Path(DOCKERD).exists():
            raise SkipTest(f"no dockerd at {DOCKERD} (apt-get install docker.io)")
        if os.geteuid() != 0:
            raise SkipTest("dockerd needs root")
        self.dir = Path(tempfile.mkdtemp(prefix="dockserve-dd-"))
        test_case.addCleanup(shutil.rmtree, str(self.dir), True)
        self.socket_path = str(self.dir / "d.sock")
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket_path}"}
        self.env.pop("DOCKER_API_VERSION", None)
        self._log = (self.dir / "dockerd.log").open("wb")
        test_case.addCleanup(self._log.close)
        self.process = subprocess.Popen(
            [
                DOCKERD,
                "--data-root", str(self.dir / "root"),
                "--exec-root", str(self.dir / "exec"),
                "--pidfile", str(self.dir / "d.pid"),
                "-H", f"unix://{self.socket_path}",
                "--bridge", "none",
                "--iptables=false",
                "--ip6tables=false",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        test_case.addCleanup(self.stop)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise SkipTest(f"dockerd did not start here:\n{self.log()[-2000:]}")
            try:
                if unix_get(self.socket_path, "/_ping", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"dockerd did not answer:\n{self.log()[-2000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return (self.dir / "dockerd.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _identity(info: dict[str, Any]) -> dict[str, Any]:
    """What must match: the identity fields, and the config's set fields."""
    result = {k: info.get(k) for k in _IDENTITY}
    result["Config"] = {k: v for k, v in (info.get("Config") or {}).items() if v}
    return result


class InteropTests(SynchronousTestCase):
    """dockserve and dockerd read each other's images."""

    def setUp(self) -> None:
        self.dockserve = start(self)
        self.dockerd = Dockerd(self)
        self.tmp = Path(tempfile.mkdtemp(prefix="dockserve-interop-"))
        self.addCleanup(shutil.rmtree, str(self.tmp), True)

    def docker(self, env: dict[str, str], *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [DOCKER, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr}{result.stdout}"
            )
        return result.stdout

    def ds(self, *args: str) -> str:
        return self.docker(self.dockserve.env, *args)

    def dd(self, *args: str) -> str:
        return self.docker(self.dockerd.env, *args)

    def inspect(self, env: dict[str, str], name: str) -> dict[str, Any]:
        return json.loads(self.docker(env, "image", "inspect", name))[0]  # type: ignore[no-any-return]

    def test_dockserve_save_runs_in_dockerd(self) -> None:
        """
        An image imported into dockserve, saved by it, loads into dockerd with
        the same ID and runs there.
        """
        image_id = import_busybox(
            self.dockserve.docker_host,
            "interop/made-here:1",
            extra_files={"marker": b"saved by dockserve\n"},
        )
        archive = self.tmp / "ds.tar"
        self.ds("save", "-o", str(archive), "interop/made-here:1")
        loaded = self.dd("load", "-i", str(archive))
        self.assertIn("Loaded image: interop/made-here:1", loaded)
        there = self.inspect(self.dockerd.env, "interop/made-here:1")
        self.assertEqual(there["Id"], image_id)
        self.assertEqual(
            _identity(there), _identity(self.inspect(self.dockserve.env, image_id))
        )
        out = self.dd("run", "--rm", "--net", "none", "interop/made-here:1",
                      "cat", "/marker")  # fmt: skip
        self.assertEqual(out, "saved by dockserve\n")

    def test_dockerd_save_loads_into_dockserve(self) -> None:
        """
        An image dockerd made (a committed container: a new file, a deleted
        directory, two layers) and saved loads into dockserve with the same
        ID, inspects the same, keeps the deletion, and runs.
        """
        base = busybox_save_archive(self.tmp / "base.tar", "interop/base:1")
        self.dd("load", "-i", str(base))
        self.dd("run", "--name", "maker", "--net", "none", "interop/base:1", "sh",
                "-c", "echo made by dockerd > /made && rm -rf /home")  # fmt: skip
        self.dd("commit", "-c", 'CMD ["cat", "/made"]', "maker", "interop/dd:2")
        self.dd("rm", "maker")
        expected = self.inspect(self.dockerd.env, "interop/dd:2")
        self.assertEqual(len(expected["RootFS"]["Layers"]), 2)
        archive = self.tmp / "dd.tar"
        self.dd("save", "-o", str(archive), "interop/dd:2")

        self.assertIn("Loaded image: interop/dd:2", self.ds("load", "-i", str(archive)))
        here = self.inspect(self.dockserve.env, "interop/dd:2")
        self.assertEqual(_identity(here), _identity(expected))
        self.assertEqual(self.ds("run", "--rm", "interop/dd:2"), "made by dockerd\n")
        listing = self.ds("run", "--rm", "interop/dd:2", "ls", "/")
        self.assertNotIn("home", listing.split())
        self.assertIn("made", listing.split())

    def test_registry_both_ways(self) -> None:
        """
        dockserve pushes, dockerd pulls: same ID and digest; dockerd pushes,
        dockserve pulls: same ID and digest, and it runs.
        """
        registry = Registry(self)
        image_id = import_busybox(
            self.dockserve.docker_host,
            extra_files={"marker": b"pushed by dockserve\n"},
        )
        name = f"{registry.host}/interop/from-ds:1"
        self.ds("tag", image_id, name)
        pushed = self.ds("push", name)
        digest = pushed.split("digest: ")[1].split()[0]
        self.dd("pull", name)
        there = self.inspect(self.dockerd.env, name)
        self.assertEqual(there["Id"], image_id)
        self.assertEqual(there["RepoDigests"], [f"{name.rsplit(':', 1)[0]}@{digest}"])
        out = self.dd("run", "--rm", "--net", "none", name, "cat", "/marker")
        self.assertEqual(out, "pushed by dockserve\n")

        base = busybox_save_archive(
            self.tmp / "base.tar",
            "interop/base:2",
            extra_files={"marker": b"pushed by dockerd\n"},
        )
        self.dd("load", "-i", str(base))
        other = f"{registry.host}/interop/from-dd:1"
        self.dd("tag", "interop/base:2", other)
        pushed = self.dd("push", other)
        digest = pushed.split("digest: ")[1].split()[0]
        expected = self.inspect(self.dockerd.env, other)
        self.ds("pull", other)
        here = self.inspect(self.dockserve.env, other)
        self.assertEqual(here["Id"], expected["Id"])
        self.assertEqual(here["RepoDigests"], expected["RepoDigests"])
        self.assertEqual(
            here["RepoDigests"], [f"{registry.host}/interop/from-dd@{digest}"]
        )
        self.assertEqual(
            self.ds("run", "--rm", other, "cat", "/marker"), "pushed by dockerd\n"
        )

    def test_repush_of_a_pull_is_dockerds_manifest(self) -> None:
        """
        dockerd pushes a two-layer image whose base dockserve already has;
        dockserve pulls it (the base "Already exists", so its compressed
        form never came) and pushes it to another repository: the same
        manifest digest, the base mounted from where it came.
        """
        registry = Registry(self)
        base = busybox_save_archive(self.tmp / "base.tar", "interop/base:3")
        self.dd("load", "-i", str(base))
        self.dd("run", "--name", "maker", "--net", "none", "interop/base:3",
                "sh", "-c", "echo top > /top")  # fmt: skip
        name = f"{registry.host}/interop/two:1"
        self.dd("commit", "maker", name)
        self.dd("rm", "maker")
        digest = self.dd("push", name).split("digest: ")[1].split()[0]

        self.ds("load", "-i", str(base))
        pulled = self.ds("pull", name)
        self.assertIn("Already exists", pulled)
        again = f"{registry.host}/interop/again:1"
        self.ds("tag", name, again)
        pushed = self.ds("push", again)
        self.assertIn("Mounted from interop/two", pushed)
        self.assertIn(f"digest: {digest}", pushed)
