"""
The image endpoints against a running daemon, through the real docker CLI,
the Docker SDK for Python, and Debian's docker-registry on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.integration.images import (
    busybox_rootfs_tar,
    busybox_save_archive,
    have_busybox,
)

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ImagesOnlyDaemon:
    """
    The image API alone on a unix socket, for when the full daemon's harness
    (tests/integration/harness.py) is not there yet.
    """

    def __init__(self, test_case: SynchronousTestCase) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="dockserve-img-"))
        self.socket_path = str(self._dir / "docker.sock")
        self.data_root = str(self._dir / "root")
        self.docker_host = "unix://" + self.socket_path
        self.env = {**os.environ, "DOCKER_HOST": self.docker_host}
        self._process: subprocess.Popen[bytes] | None = None
        self.start()
        test_case.addCleanup(self._cleanup)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        Path(self.socket_path).unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.images",
                self.socket_path,
                self.data_root,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(self._dir / "daemon.log").open("ab"),
        )
        deadline = time.monotonic() + 20
        while not Path(self.socket_path).exists():
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError((self._dir / "daemon.log").read_text())
            time.sleep(0.05)

    def kill(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait()

    def restart(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait()
        self.start()

    def _cleanup(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)


def start(test_case: SynchronousTestCase) -> Any:
    """The harness's daemon when it exists, else the images-only one."""
    if not have_busybox():
        raise SkipTest(
            "no /bin/busybox (apt-get install busybox-static) to build images from"
        )
    if not Path(DOCKER).exists():
        raise SkipTest("no docker CLI at /usr/local/bin/docker")
    try:
        from tests.integration.harness import start_daemon  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:
        return _ImagesOnlyDaemon(test_case)
    return start_daemon(test_case)


def _need_error_mapping() -> None:
    import importlib.util  # noqa: PLC0415

    if importlib.util.find_spec("dockserve.api.middleware") is None:
        raise SkipTest(
            "errors become statuses in dockserve.api.middleware, not there yet"
        )


class Registry:
    """Debian's docker-registry on 127.0.0.1 and a free port."""

    def __init__(
        self,
        test_case: SynchronousTestCase,
        htpasswd: str | None = None,
        *,
        tls: bool = False,
    ) -> None:
        if not Path(REGISTRY).exists():
            raise SkipTest("no docker-registry (apt-get install docker-registry)")
        self._dir = Path(tempfile.mkdtemp(prefix="dockserve-reg-"))
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = self._dir / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {self._dir / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
        )
        scheme = "http"
        if tls:
            scheme = "https"
            key, cert = self._dir / "key.pem", self._dir / "cert.pem"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                 "-keyout", str(key), "-out", str(cert), "-days", "1",
                 "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                check=True, capture_output=True,
            )  # fmt: skip
            with config.open("a") as f:
                f.write(f"  tls:\n    certificate: {cert}\n    key: {key}\n")
        if htpasswd is not None:
            (self._dir / "htpasswd").write_text(htpasswd)
            with config.open("a") as f:
                f.write(
                    "auth:\n  htpasswd:\n    realm: basic-realm\n"
                    f"    path: {self._dir / 'htpasswd'}\n"
                )
        self._process = subprocess.Popen(
            [REGISTRY, "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        test_case.addCleanup(self._cleanup)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(  # noqa: S310 - our own loopback registry
                    f"{scheme}://{self.host}/v2/", timeout=1, context=_unverified()
                ).close()
                break
            except urllib.error.HTTPError:
                break  # 401: up, and asking for credentials
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _cleanup(self) -> None:
        self._process.terminate()
        self._process.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)


class CLIMixin:
    daemon: Any

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.daemon.env, "DOCKER_API_VERSION": "1.50"}
        result = subprocess.run(
            [DOCKER, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr}")
        return result

    def inspect(self, name: str) -> dict[str, Any]:
        return json.loads(self.docker("image", "inspect", name).stdout)[0]  # type: ignore[no-any-return]


class ImageCLITests(CLIMixin, SynchronousTestCase):
    """What a person does with images through the docker CLI."""

    def setUp(self) -> None:
        self.daemon = start(self)
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir(parents=True)

    def test_import_tag_list_remove(self) -> None:
        """docker import, images, tag, history, rmi."""
        tarball = busybox_rootfs_tar(self.tmp / "rootfs.tar")
        out = self.docker(
            "import",
            "-c",
            'CMD ["sh"]',
            "-m",
            "from busybox",
            str(tarball),
            "busybox:latest",
        ).stdout
        self.assertTrue(out.strip().startswith("sha256:"), out)
        image_id = out.strip()
        self.docker("tag", "busybox", "me/bb:2")
        listed = self.docker(
            "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"
        ).stdout.split("\n")
        self.assertIn(f"busybox:latest {image_id[7:19]}", listed)
        self.assertIn(f"me/bb:2 {image_id[7:19]}", listed)
        info = self.inspect("me/bb:2")
        self.assertEqual(info["Config"]["Cmd"], ["sh"])
        self.assertEqual(info["Comment"], "from busybox")
        self.assertIn("from busybox", self.docker("history", "busybox").stdout)
        self.assertEqual(
            self.docker("rmi", "me/bb:2").stdout.strip(), "Untagged: me/bb:2"
        )
        out = self.docker("rmi", "busybox").stdout
        self.assertIn(f"Deleted: {image_id}", out)
        self.assertEqual(self.docker("images", "-q").stdout.strip(), "")

    def test_load_save(self) -> None:
        """docker load; docker save twice gives the same bytes, which load again."""
        archive = busybox_save_archive(self.tmp / "in.tar", "busybox:1")
        self.assertIn(
            "Loaded image: busybox:1", self.docker("load", "-i", str(archive)).stdout
        )
        image_id = self.inspect("busybox:1")["Id"]
        self.docker("save", "-o", str(self.tmp / "a.tar"), "busybox:1")
        self.docker("save", "-o", str(self.tmp / "b.tar"), "busybox:1")
        self.assertEqual(
            (self.tmp / "a.tar").read_bytes(), (self.tmp / "b.tar").read_bytes()
        )
        self.docker("rmi", "busybox:1")
        self.assertIn(
            "Loaded image: busybox:1",
            self.docker("load", "-i", str(self.tmp / "a.tar")).stdout,
        )
        self.assertEqual(self.inspect("busybox:1")["Id"], image_id)

    def test_push_pull(self) -> None:
        """Push to docker-registry, remove, pull back: same image, a RepoDigest."""
        registry = Registry(self)
        archive = busybox_save_archive(self.tmp / "in.tar", "busybox:latest")
        self.docker("load", "-i", str(archive))
        image_id = self.inspect("busybox")["Id"]
        name = f"{registry.host}/tools/busybox:v1"
        self.docker("tag", "busybox", name)
        pushed = self.docker("push", name).stdout
        self.assertIn("v1: digest: sha256:", pushed)
        digest = pushed.split("digest: ")[1].split()[0]
        self.docker("rmi", name, "busybox")
        self.assertEqual(self.docker("images", "-q").stdout.strip(), "")
        pulled = self.docker("pull", name).stdout
        self.assertIn(f"Digest: {digest}", pulled)
        self.assertIn(f"Status: Downloaded newer image for {name}", pulled)
        info = self.inspect(name)
        self.assertEqual(info["Id"], image_id)
        self.assertEqual(
            info["RepoDigests"], [f"{registry.host}/tools/busybox@{digest}"]
        )
        again = self.docker("pull", name).stdout
        self.assertIn("Image is up to date", again)
        by_digest = self.docker(
            "pull", f"{registry.host}/tools/busybox@{digest}"
        ).stdout
        self.assertIn(digest, by_digest)

    def test_pull_missing(self) -> None:
        """Pulling a tag the registry lacks is dockerd's 404 message."""
        _need_error_mapping()
        registry = Registry(self)
        missing = self.docker(
            "pull", f"{registry.host}/tools/busybox:nope", check=False
        )
        self.assertNotEqual(missing.returncode, 0)
        self.assertIn(
            f"manifest for {registry.host}/tools/busybox:nope not found", missing.stderr
        )


class ImageSDKTests(CLIMixin, SynchronousTestCase):
    """The Docker SDK for Python against the daemon."""

    def setUp(self) -> None:
        self.daemon = start(self)
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir(parents=True)

    def test_sdk(self) -> None:
        """load, list, get, tag, save and remove through docker-py."""
        import docker  # noqa: PLC0415

        client = docker.DockerClient(base_url=self.daemon.docker_host, version="1.50")
        self.addCleanup(client.close)
        archive = busybox_save_archive(self.tmp / "in.tar", "busybox:sdk")
        [image] = client.images.load(archive.read_bytes())
        self.assertEqual(image.tags, ["busybox:sdk"])
        self.assertEqual([i.id for i in client.images.list()], [image.id])
        image.tag("other", "x")
        self.assertEqual(
            sorted(client.images.get(image.id).tags), ["busybox:sdk", "other:x"]
        )
        data = b"".join(image.save(named=True))
        self.assertGreater(len(data), 1 << 20)
        client.images.remove("other:x")
        client.images.remove(image.id)
        self.assertEqual(client.images.list(), [])

    def test_sdk_not_found(self) -> None:
        """An unknown image is the SDK's ImageNotFound (a 404)."""
        _need_error_mapping()
        import docker  # noqa: PLC0415

        client = docker.DockerClient(base_url=self.daemon.docker_host, version="1.50")
        self.addCleanup(client.close)
        with self.assertRaises(docker.errors.ImageNotFound):
            client.images.get("busybox:sdk")


def _unverified() -> Any:
    import ssl  # noqa: PLC0415

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _bcrypt(password: str) -> str | None:
    try:
        import crypt  # noqa: PLC0415 - deprecated, but the only bcrypt here
    except ImportError:
        return None
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))  # noqa: S324
    return hashed if hashed and hashed.startswith("$2") else None


class RegistryAuthTests(CLIMixin, SynchronousTestCase):
    """X-Registry-Auth credentials reach a registry that demands them."""

    def setUp(self) -> None:
        self.daemon = start(self)
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir(parents=True)

    def test_basic_auth_push_pull(self) -> None:
        """With credentials push and pull work; without, they are refused."""
        hashed = _bcrypt("secret")
        if hashed is None:
            raise SkipTest("no bcrypt to write an htpasswd file with")
        registry = Registry(self, htpasswd=f"tester:{hashed}\n")
        import docker  # noqa: PLC0415

        client = docker.DockerClient(base_url=self.daemon.docker_host, version="1.50")
        self.addCleanup(client.close)
        name = f"{registry.host}/private/busybox"
        archive = busybox_save_archive(self.tmp / "in.tar", f"{name}:1")
        client.images.load(archive.read_bytes())
        auth = {"username": "tester", "password": "secret"}
        refused = client.images.push(
            name, "1", auth_config={"username": "tester", "password": "wrong"}
        )
        self.assertIn("error", refused)
        out = client.images.push(name, "1", auth_config=auth)
        self.assertIn('"Digest"', out)
        client.images.remove(f"{name}:1")
        image = client.images.pull(name, "1", auth_config=auth)
        self.assertEqual(image.tags, [f"{name}:1"])


class InsecureTLSTests(CLIMixin, SynchronousTestCase):
    """A loopback registry with a self-signed certificate is used over HTTPS."""

    def setUp(self) -> None:
        self.daemon = start(self)
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir(parents=True)

    def test_self_signed_loopback(self) -> None:
        """Push and pull work against an HTTPS registry nobody vouches for."""
        if shutil.which("openssl") is None:
            raise SkipTest("no openssl to make a certificate with")
        registry = Registry(self, tls=True)
        name = f"{registry.host}/tls/busybox:1"
        self.docker("load", "-i", str(busybox_save_archive(self.tmp / "a.tar", name)))
        self.assertIn("1: digest: sha256:", self.docker("push", name).stdout)
        self.docker("rmi", name)
        self.assertIn("Downloaded newer image", self.docker("pull", name).stdout)


class CrashTests(CLIMixin, SynchronousTestCase):
    """SIGKILL in the middle of a load or a pull leaves a consistent store."""

    def setUp(self) -> None:
        self.daemon = start(self)
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir(parents=True)

    def _big_archive(self, tag: str) -> Path:
        return busybox_save_archive(
            self.tmp / "big.tar", tag, {"big.bin": os.urandom(96 << 20)}
        )

    def _wait_for_work(self) -> None:
        tmp = Path(self.daemon.data_root) / "image" / "tmp"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if tmp.exists() and any(tmp.iterdir()):
                return
            time.sleep(0.005)
        self.fail("the daemon never started the work")

    def _check_consistent(self) -> None:
        root = Path(self.daemon.data_root) / "image"
        self.assertEqual(list((root / "tmp").iterdir()), [])
        for line in self.docker("images", "-q", "--no-trunc").stdout.split():
            info = self.inspect(line)
            for diff_id in info["RootFS"]["Layers"]:
                self.assertTrue((root / "layers" / diff_id[7:]).is_dir())
            self.docker("save", "-o", str(self.tmp / "check.tar"), line)

    def test_kill_during_load(self) -> None:
        """A load killed half-way shows no image; the next load works."""
        self.docker(
            "load", "-i", str(busybox_save_archive(self.tmp / "small.tar", "small:1"))
        )
        self.docker("save", "-o", str(self.tmp / "before.tar"), "small:1")
        archive = self._big_archive("big:1")
        env = {**self.daemon.env, "DOCKER_API_VERSION": "1.50"}
        loading = subprocess.Popen(
            [DOCKER, "load", "-i", str(archive)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_for_work()
        self.daemon.kill()
        loading.wait(30)
        self.daemon.restart()
        self._check_consistent()
        self.assertEqual(
            self.docker("images", "--format", "{{.Repository}}").stdout.split(),
            ["small"],
        )
        self.docker("save", "-o", str(self.tmp / "after.tar"), "small:1")
        self.assertEqual(
            (self.tmp / "after.tar").read_bytes(),
            (self.tmp / "before.tar").read_bytes(),
        )
        self.assertIn(
            "Loaded image: big:1", self.docker("load", "-i", str(archive)).stdout
        )
        self._check_consistent()

    def test_kill_during_pull(self) -> None:
        """A pull killed half-way shows no image; the next pull works."""
        registry = Registry(self)
        name = f"{registry.host}/big:1"
        self.docker("load", "-i", str(self._big_archive(name)))
        self.docker("push", name)
        self.docker("rmi", name)
        env = {**self.daemon.env, "DOCKER_API_VERSION": "1.50"}
        pulling = subprocess.Popen(
            [DOCKER, "pull", name],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_for_work()
        self.daemon.kill()
        pulling.wait(30)
        self.daemon.restart()
        self._check_consistent()
        self.assertEqual(self.docker("images", "-q").stdout.strip(), "")
        self.assertIn("Downloaded newer image", self.docker("pull", name).stdout)
        self._check_consistent()
