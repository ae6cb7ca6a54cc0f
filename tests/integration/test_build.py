# -*- test-case-name: tests.integration.test_build -*-
"""
docker build with the classic builder against a real daemon: the docker
CLI 28 without buildx (C{DOCKER_BUILDKIT=0}), the Docker SDK's
C{images.build} and Debian's docker-compose 1.29, with what a user sees:
the step lines, the image that runs, the cache on a rebuild, the errors.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest

from tests.integration.test_compose import COMPOSE
from tests.integration.test_containers import DOCKER, _DaemonCase
from tests.integration.test_images import Registry, _bcrypt, _free_port
from tests.integration.test_networking import _LabCase

TWO_STAGES = """\
ARG BASE=busybox
FROM $BASE AS build
ARG GREETING=hello
ENV OUT=/src/out
WORKDIR /src
COPY a.txt ./
RUN echo "$GREETING from $(cat a.txt)" > $OUT && echo to-stderr >&2
FROM busybox
COPY --from=build /src/out /out
LABEL purpose=test
EXPOSE 8080/tcp
USER nobody
VOLUME /data
HEALTHCHECK --interval=5s CMD true
STOPSIGNAL SIGTERM
ENTRYPOINT ["cat"]
CMD ["/out"]
"""


class _BuildCase(_DaemonCase):
    def setUp(self) -> None:
        super().setUp()
        self.daemon.env["DOCKER_BUILDKIT"] = "0"
        self.ctx = Path(self.mktemp()).absolute()
        self.ctx.mkdir()

    def write(self, name: str, text: str) -> Path:
        path = self.ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def build(
        self, *args: str, stdin: bytes | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [DOCKER, "build", *args],
            input=stdin,
            capture_output=True,
            env=self.daemon.env,
            cwd=str(cwd or self.ctx),
            timeout=120,
            check=False,
        )

    def built(self, *args: str, stdin: bytes | None = None) -> str:
        result = self.build(*args, stdin=stdin)
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        return result.stdout.decode()


class CLIBuildTests(_BuildCase):
    def test_two_stages(self) -> None:
        """
        A two-stage build prints dockerd's lines, runs, leaves out what
        .dockerignore names, and has every setting and step in its image.
        """
        self.write("Dockerfile", TWO_STAGES)
        self.write("a.txt", "a.txt")
        self.write("secret.key", "do not send")
        self.write(".dockerignore", "*.key\n")
        out = self.built("-t", "t1", "--build-arg", "GREETING=hi", ".")
        lines = out.splitlines()
        self.assertIn("Step 1/17 : ARG BASE=busybox", lines)
        self.assertIn('Step 7/17 : RUN echo "$GREETING from $(cat a.txt)" > $OUT '
                      "&& echo to-stderr >&2", lines)  # fmt: skip
        self.assertTrue(any(line.startswith(" ---> Running in ") for line in lines))
        self.assertTrue(
            any(
                line.startswith(" ---> Removed intermediate container ")
                for line in lines
            )
        )
        self.assertEqual(lines[-2][:19], "Successfully built ")
        self.assertEqual(lines[-1], "Successfully tagged t1:latest")
        self.assertEqual(self.ok("run", "--rm", "t1"), "hi from a.txt\n")
        self.assertEqual(self.ok("ps", "-aq"), "")
        config = json.loads(self.inspect("t1", "{{json .Config}}"))
        self.assertEqual(config["User"], "nobody")
        self.assertEqual(config["ExposedPorts"], {"8080/tcp": {}})
        self.assertEqual(config["Volumes"], {"/data": {}})
        self.assertEqual(config["Labels"], {"purpose": "test"})
        self.assertEqual(config["StopSignal"], "SIGTERM")
        self.assertEqual(config["Healthcheck"]["Test"], ["CMD-SHELL", "true"])
        self.assertEqual(config["Entrypoint"], ["cat"])
        history = self.ok("history", "--no-trunc", "--format", "{{.CreatedBy}}", "t1")
        self.assertIn('/bin/sh -c #(nop)  ENTRYPOINT ["cat"]', history)
        self.assertIn("/bin/sh -c #(nop) COPY file:", history)
        # The ignored file never reached the daemon's context.
        self.write("Dockerfile.ls", "FROM busybox\nCOPY . /ctx\nRUN ls /ctx\n")
        listing = self.built("-f", "Dockerfile.ls", ".")
        self.assertIn("a.txt", listing)
        self.assertNotIn("secret.key", listing)

    def test_cache(self) -> None:
        """
        A rebuild is all cache hits and the same image; a changed file
        breaks the cache from its COPY on; --no-cache rebuilds it all.
        """
        self.write(
            "Dockerfile", "FROM busybox\nENV A=1\nCOPY a.txt /\nRUN cat /a.txt\n"
        )
        self.write("a.txt", "one\n")
        first = self.built("-q", ".").strip()
        again = self.built(".")
        self.assertEqual(again.count(" ---> Using cache"), 3)
        self.assertIn(f"Successfully built {first[7:19]}", again)
        self.write("a.txt", "two\n")
        changed = self.built(".")
        self.assertEqual(changed.count(" ---> Using cache"), 1)
        self.assertIn("two", changed)
        fresh = self.built("--no-cache", ".")
        self.assertNotIn("Using cache", fresh)

    def test_context_links_and_add(self) -> None:
        """
        ADD of a local tar.gz unpacks it; a COPY through a symlink of the
        context follows it inside the context; a link that points out of
        the context leads nowhere (the context is never unpacked: its files
        are read from the tar the CLI sent).
        """
        inner = self.ctx / "inner"
        (inner / "in").mkdir(parents=True)
        (inner / "in" / "x.txt").write_text("from the tar\n")
        subprocess.run(["tar", "-czf", str(self.ctx / "pkg.tar.gz"), "-C",
                        str(inner), "in"], check=True)  # fmt: skip
        self.write("real/f.txt", "through the link\n")
        (self.ctx / "via").symlink_to("real")
        (self.ctx / "out").symlink_to("/etc")
        self.write(".dockerignore", "inner\n")
        self.write("Dockerfile", "FROM busybox\nADD pkg.tar.gz /add/\n"
                   "COPY via/f.txt /f.txt\nCOPY real /real/\n")  # fmt: skip
        self.built("-t", "ctxfiles", ".")
        self.assertEqual(
            self.ok("run", "--rm", "ctxfiles", "cat", "/add/in/x.txt", "/f.txt",
                    "/real/f.txt"),
            "from the tar\nthrough the link\nthrough the link\n",
        )  # fmt: skip
        self.write("Dockerfile", "FROM busybox\nCOPY out/hostname /h\n")
        result = self.build(".")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(
            "COPY failed: file not found in build context", result.stderr.decode()
        )

    def test_dockerfile_forms(self) -> None:
        """-f of a nested file, -f - with a context, and a Dockerfile on stdin."""
        self.write("sub/Dockerfile.dev", "FROM busybox\nCOPY a.txt /a\nCMD cat /a\n")
        self.write("a.txt", "nested\n")
        self.built("-f", "sub/Dockerfile.dev", "-t", "nested", ".")
        self.assertEqual(self.ok("run", "--rm", "nested"), "nested\n")
        piped = b"FROM busybox\nCOPY a.txt /b\nCMD cat /b\n"
        self.built("-f", "-", "-t", "piped", ".", stdin=piped)
        self.assertEqual(self.ok("run", "--rm", "piped"), "nested\n")
        alone = b"FROM busybox\nRUN echo alone > /c\nCMD cat /c\n"
        self.built("-t", "alone", "-", stdin=alone)
        self.assertEqual(self.ok("run", "--rm", "alone"), "alone\n")

    def test_args_target_label_quiet(self) -> None:
        """--build-arg, --target, --label, -q and --iidfile."""
        self.write(
            "Dockerfile",
            "FROM busybox AS base\nARG WHO=nobody\nRUN echo $WHO > /who\n"
            "FROM base AS second\nRUN false\n",
        )
        iid = self.ctx / "iid"
        out = self.built("-q", "--target", "base", "--build-arg", "WHO=me",
                         "--label", "k=v", "--iidfile", str(iid), "-t", "args",
                         ".")  # fmt: skip
        self.assertEqual(out.strip(), iid.read_text().strip())
        self.assertTrue(out.startswith("sha256:"))
        self.assertEqual(self.ok("run", "--rm", "args", "cat", "/who"), "me\n")
        self.assertEqual(self.inspect("args", "{{.Config.Labels.k}}"), "v")

    def test_failures(self) -> None:
        """A failing RUN gives its exit code; bad Dockerfiles their line."""
        self.write("Dockerfile", "FROM busybox\nRUN echo a\nRUN exit 3\n")
        result = self.build(".")
        self.assertEqual(result.returncode, 3)
        self.assertIn(
            "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
            result.stderr.decode(),
        )
        self.write("Dockerfile", "FROM busybox\nNOPE x\n")
        result = self.build(".")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(
            "dockerfile parse error line 2: unknown instruction: NOPE",
            result.stderr.decode(),
        )
        self.write(
            "Dockerfile", "FROM busybox\nRUN --mount=type=cache,target=/x true\n"
        )
        result = self.build(".")
        self.assertIn("the --mount option requires BuildKit", result.stderr.decode())
        self.write("Dockerfile", "FROM busybox\nCOPY missing /x\n")
        result = self.build(".")
        self.assertIn(
            "COPY failed: file not found in build context", result.stderr.decode()
        )

    def test_onbuild(self) -> None:
        """ONBUILD triggers run at the start of a child build."""
        self.write("Dockerfile", "FROM busybox\nONBUILD RUN touch /trig\n")
        self.built("-t", "parent", ".")
        self.write("Dockerfile", "FROM parent\nRUN ls /trig\n")
        out = self.built(".")
        self.assertIn("# Executing 1 build trigger", out)
        self.assertIn("/trig", out)

    def test_cancel_leaves_nothing(self) -> None:
        """A client that goes away ends its build: no container is left."""
        self.write("Dockerfile", "FROM busybox\nRUN echo run''ning; sleep 60\n")
        process = subprocess.Popen(
            [DOCKER, "build", "."], cwd=str(self.ctx), env=self.daemon.env,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert process.stdout is not None
        seen = b""
        deadline = time.monotonic() + 30
        # The step's line says "run''ning"; the RUN's own output "running".
        while b"\nrunning\n" not in seen and time.monotonic() < deadline:
            seen += process.stdout.read1(4096)
        self.assertIn(b"\nrunning\n", seen)
        self.assertEqual(len(self.ok("ps", "-q").split()), 1)
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.until(lambda: self.ok("ps", "-aq") == "", "the RUN container to go")

    def test_prune_and_df(self) -> None:
        """system df counts the build cache; builder prune empties it."""
        self.write("Dockerfile", "FROM busybox\nRUN echo x > /x\n")
        self.built(".")
        df = self.ok("system", "df", "--format", "{{.Type}} {{.TotalCount}}")
        self.assertIn("Build Cache 1", df)
        pruned = self.ok("builder", "prune", "-f")
        self.assertIn("Total reclaimed space", pruned)
        df = self.ok("system", "df", "--format", "{{.Type}} {{.TotalCount}}")
        self.assertIn("Build Cache 0", df)


class StepDetailsTests(_BuildCase):
    """What the builder's first report left open, now as dockerd does it."""

    def test_add_tar_owners(self) -> None:
        """ADD of a local tar keeps its members' owners (--chown or not)."""
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w") as archive:
            info = tarfile.TarInfo("app/owned")
            info.size, info.uid, info.gid, info.mode = 2, 1234, 5678, 0o640
            archive.addfile(info, io.BytesIO(b"x\n"))
        (self.ctx / "app.tar").write_bytes(tar.getvalue())
        self.write("plain", "p\n")
        self.write(
            "Dockerfile",
            "FROM busybox\nADD app.tar /srv/\nADD --chown=7:8 app.tar /chowned/\n"
            "COPY --chown=7:8 plain /plain\n"
            "RUN stat -c '%u:%g %a %n' /srv/app/owned /chowned/app/owned /plain\n",
        )
        out = self.built(".")
        self.assertIn(
            "1234:5678 640 /srv/app/owned\n1234:5678 640 /chowned/app/owned\n"
            "7:8 644 /plain\n",
            out,
        )

    def test_config_steps_make_containers(self) -> None:
        """
        A step that only changes the config makes (and, with --rm, removes)
        a container as dockerd's does: its ID in Running in and in create
        and destroy events; --rm=false leaves it.
        """
        self.write("Dockerfile", "FROM busybox\nENV A=1\n")
        since = str(time.time() - 1)
        out = self.built("--no-cache", "-t", "meta", ".")
        running = [
            line.split()[-1]
            for line in out.splitlines()
            if line.startswith(" ---> Running in ")
        ]
        self.assertEqual(len(running), 1)
        self.assertIn(f" ---> Removed intermediate container {running[0]}", out)
        events = self.ok(
            "events", "--since", since, "--until", str(time.time() + 1),
            "--filter", "type=container", "--format", "{{.Action}} {{.ID}}",
        ).split("\n")  # fmt: skip
        actions = [e.split()[0] for e in events if running[0] in e]
        self.assertEqual(actions, ["create", "destroy"])
        self.assertEqual(self.ok("ps", "-aq"), "")
        kept = self.built("--no-cache", "--rm=false", ".")
        self.assertNotIn("Removed intermediate container", kept)
        self.assertEqual(len(self.ok("ps", "-aq").split()), 1)

    def test_from_platform(self) -> None:
        """
        FROM --platform of this machine builds; another is refused with
        dockerd's text; one that does not parse with containerd's.
        """
        here = json.loads(self.inspect("busybox", "{{json .}}"))
        mine = f"{here['Os']}/{here['Architecture']}"
        other = "linux/arm64" if here["Architecture"] != "arm64" else "linux/amd64"
        self.write("Dockerfile", f"FROM --platform={mine} busybox\nRUN true\n")
        self.built(".")
        self.write(
            "Dockerfile", "ARG P=" + other + "\nFROM --platform=$P busybox\nRUN true\n"
        )
        result = self.build(".")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(
            "image with reference busybox was found but does not match the "
            f"specified platform: wanted {other}, actual: {mine}",
            result.stderr.decode(),
        )
        self.write("Dockerfile", "FROM --platform=bogus busybox\n")
        self.assertIn(
            'failed to parse platform bogus: "bogus": unknown operating system or '
            "architecture: invalid argument",
            self.build(".").stderr.decode(),
        )
        self.write("Dockerfile", "FROM busybox\nRUN true\n")
        self.assertIn(
            f"wanted {other}, actual: {mine}",
            self.build("--platform", other, ".").stderr.decode(),
        )

    def test_failed_run_left(self) -> None:
        """
        A failed RUN's container stays (stopped, its output in docker logs)
        as dockerd leaves it; --force-rm removes it.
        """
        self.write("Dockerfile", "FROM busybox\nRUN echo before-failing; exit 4\n")
        self.assertEqual(self.build(".").returncode, 4)
        left = self.ok("ps", "-aq").split()
        self.assertEqual(len(left), 1)
        self.assertEqual(self.inspect(left[0], "{{.State.ExitCode}}"), "4")
        self.assertEqual(self.ok("logs", left[0]), "before-failing\n")
        self.ok("rm", left[0])
        self.assertEqual(self.build("--force-rm", ".").returncode, 4)
        self.assertEqual(self.ok("ps", "-aq"), "")


class IntermediateImagesTests(_BuildCase):
    def images(self, *args: str) -> list[str]:
        """C{docker images} rows as C{repo:tag id}, sorted."""
        out = self.ok("images", *args, "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
        return sorted(out.splitlines())

    def test_list_prune_rmi(self) -> None:
        """
        As dockerd: docker images shows the build's result, not its steps
        (-a does); image prune keeps the steps; rmi of the result deletes
        the steps nothing else holds, up to the tagged base.
        """
        busybox = self.ok("images", "-q", "busybox").strip()
        self.write("Dockerfile", "FROM busybox\nENV A=1\nRUN echo hi > /hi\n"
                   'CMD ["cat", "/hi"]\n')  # fmt: skip
        self.built("-t", "app", ".")
        app = self.ok("images", "-q", "app").strip()
        tops = sorted([f"app:latest {app}", f"busybox:latest {busybox}"])
        self.assertEqual(self.images(), tops)
        steps = [row for row in self.images("-a") if row not in tops]
        self.assertEqual(len(steps), 2)
        self.assertTrue(all(row.startswith("<none>:<none> ") for row in steps))
        self.assertEqual(self.images("-f", "dangling=true"), [])
        self.assertEqual(self.ok("info", "--format", "{{.Images}}").strip(), "4")
        self.assertEqual(
            self.ok("image", "prune", "-f").strip(), "Total reclaimed space: 0B"
        )
        self.assertEqual(len(self.images("-a")), 4)
        # The base has children: rmi by ID cannot, rmi by name only untags.
        refused = self.docker("rmi", "-f", busybox)
        self.assertIn(
            f"conflict: unable to delete {busybox} (cannot be forced) - image "
            "has dependent child images",
            refused.stderr.decode(),
        )
        self.assertEqual(self.ok("rmi", "busybox"), "Untagged: busybox:latest\n")
        self.assertEqual(self.images(), [f"app:latest {app}"])
        removed = self.ok("rmi", "app").splitlines()
        self.assertEqual(removed[0], "Untagged: app:latest")
        deleted = [line.split(":", 2)[2][:12] for line in removed[1:]]
        step_ids = [row.split()[1] for row in steps]
        for image_id in [app, *step_ids, busybox]:
            self.assertIn(image_id, deleted)
        self.assertEqual(self.images("-a"), [])

    def test_prune_takes_a_replaced_result(self) -> None:
        """
        A rebuild that moves the tag leaves the old result dangling:
        image prune deletes it and nothing of the new build.
        """
        self.write("Dockerfile", 'FROM busybox\nRUN echo hi > /hi\nCMD ["a"]\n')
        self.built("-t", "app", ".")
        old = self.ok("images", "-q", "app").strip()
        self.write("Dockerfile", 'FROM busybox\nRUN echo hi > /hi\nCMD ["b"]\n')
        self.built("-t", "app", ".")
        self.assertEqual(self.images("-f", "dangling=true"), [f"<none>:<none> {old}"])
        before = self.images("-a")
        pruned = self.ok("image", "prune", "-f")
        self.assertIn(f"deleted: sha256:{old}", pruned)
        self.assertEqual(self.images("-a"), [r for r in before if not r.endswith(old)])
        self.assertEqual(self.ok("run", "--rm", "app", "cat", "/hi"), "hi\n")


class SDKBuildTests(_BuildCase):
    def test_images_build(self) -> None:
        """images.build returns the Image with its tags; a failure raises."""
        import docker  # noqa: PLC0415

        self.write("Dockerfile", "FROM busybox\nRUN echo sdk > /s\nCMD cat /s\n")
        client = self.sdk()
        image, logs = client.images.build(path=str(self.ctx), tag="sdk1")
        image.tag("sdk2")
        self.assertEqual(sorted(client.images.get("sdk1").tags),
                         ["sdk1:latest", "sdk2:latest"])  # fmt: skip
        self.assertTrue(any("Successfully built" in c.get("stream", "") for c in logs))
        self.write("Dockerfile", "FROM busybox\nRUN exit 7\n")
        with self.assertRaises(docker.errors.BuildError) as e:
            client.images.build(path=str(self.ctx))
        self.assertIn("returned a non-zero code: 7", str(e.exception))


class DiskFullTests(_BuildCase):
    """A context bigger than the data root's free space, on a small tmpfs."""

    #: The data root's size; the context is bigger than what is free.
    SIZE_MB = 160

    def setUp(self) -> None:
        from tests.integration.harness import RunningDaemon  # noqa: PLC0415
        from tests.integration.images import import_busybox  # noqa: PLC0415

        # Short, under /tmp: a unix socket's path must stay under 108 bytes,
        # which a trial temp path under a deep checkout does not.
        directory = Path(tempfile.mkdtemp(prefix="dockserve-it-"))
        self.addCleanup(shutil.rmtree, str(directory), True)
        data = directory / "data"
        data.mkdir(parents=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.SIZE_MB}m", "tmpfs", data],
            check=True,
        )
        self.addCleanup(subprocess.run, ["umount", "-l", str(data)], check=False)
        self.daemon = RunningDaemon(directory, [])
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        import_busybox(self.daemon.docker_host)
        self.daemon.env["DOCKER_BUILDKIT"] = "0"
        self.ctx = Path(self.mktemp()).absolute()
        self.ctx.mkdir()
        self.data = data

    def used(self) -> int:
        st = os.statvfs(self.data)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def test_context_over_free_space(self) -> None:
        """
        The build fails with dockerd's 'no space left on device' and leaves
        the disk as it found it; the daemon goes on, a small build works.
        """
        self.write("Dockerfile", "FROM busybox\nCOPY . /c\n")
        for n in range(4):  # random: the CLI's gzip cannot shrink it
            with (self.ctx / f"blob{n}").open("wb") as f:
                for _ in range(50):
                    f.write(os.urandom(1 << 20))
        before = self.used()
        result = self.build("-t", "toobig", ".")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("no space left on device", result.stderr.decode())
        self.assertLess(self.used() - before, 4 << 20)
        self.assertEqual(self.docker("image", "inspect", "toobig").returncode, 1)
        for n in range(4):
            (self.ctx / f"blob{n}").unlink()
        self.write("small", "fits\n")
        self.built("-t", "small", ".")
        out = self.ok("run", "--rm", "small", "cat", "/c/small")
        self.assertEqual(out, "fits\n")


class ComposeBuildTests(_BuildCase):
    skip = _BuildCase.skip or (None if COMPOSE else "docker-compose is not installed")

    def test_compose_build(self) -> None:
        """docker-compose build makes the service's image."""
        self.write("app/Dockerfile", "FROM busybox\nRUN echo composed > /c\n")
        self.write(
            "docker-compose.yml",
            json.dumps({"version": "2.4", "services": {"app": {"build": "./app"}}}),
        )
        env: dict[str, Any] = {
            k: v for k, v in self.daemon.env.items()
            if k not in {"PYTHONPATH", "PYTHONHOME"}
        }  # fmt: skip
        result = subprocess.run(
            [str(COMPOSE), "-p", "proj", "build"], cwd=str(self.ctx), env=env,
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        self.assertEqual(self.ok("run", "--rm", "proj_app", "cat", "/c"), "composed\n")


class _Files:
    """A directory served over HTTP on 127.0.0.1 by a thread of the test."""

    def __init__(self, test_case: Any, root: Path) -> None:
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        test_case.addCleanup(self.server.server_close)
        test_case.addCleanup(self.server.shutdown)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=str(cwd), check=True, capture_output=True,
    )  # fmt: skip


class RemoteContextTests(_BuildCase):
    """
    C{remote=}: what the SDK sends for a URL or a Git repository (the CLI
    fetches those itself and sends a tar), served from loopback: an HTTP
    server of the test, C{git daemon} (C{git://}, which dockerd accepts)
    and a bare repository over plain ("dumb") HTTP.
    """

    skip = _BuildCase.skip or (None if shutil.which("git") else "git is not installed")

    def setUp(self) -> None:
        super().setUp()
        self.www = Path(self.mktemp()).absolute()
        context = self.www / "src"
        (context / "sub").mkdir(parents=True)
        (context / "Dockerfile").write_text(
            'FROM busybox\nCOPY a.txt /a.txt\nCMD ["cat", "/a.txt"]\n'
        )
        (context / "a.txt").write_text("from the remote context\n")
        (context / "sub" / "Dockerfile.alt").write_text(
            'FROM busybox\nCOPY sub/s.txt /s\nCMD ["cat", "/s"]\n'
        )
        (context / "sub" / "s.txt").write_text("alternative\n")
        subprocess.run(["tar", "-czf", str(self.www / "ctx.tar.gz"), "-C",
                        str(context), "."], check=True)  # fmt: skip
        (self.www / "Dockerfile").write_text("FROM busybox\nRUN echo plain > /p\n")
        (self.www / "page.html").write_text("<html><body>hi</body></html>\n")
        (self.www / "junk.bin").write_bytes(bytes(range(256)) * 20)
        self.files = _Files(self, self.www)

    def test_sdk_url(self) -> None:
        """
        images.build(path=URL): a tar.gz (its download's progress in the
        stream; -f inside it), a Dockerfile served alone; dockerd's errors
        for a 404 and an HTML page (plain statuses) and for bytes that are
        no tar (in the stream, after the download).
        """
        import docker  # noqa: PLC0415

        client = self.sdk()
        url = self.files.url("ctx.tar.gz")
        _image, logs = client.images.build(path=url, tag="remote-tar")
        progress = [m for m in logs if m.get("id") == "Downloading context"]
        self.assertEqual(progress[-1]["status"], url)
        self.assertEqual(
            self.ok("run", "--rm", "remote-tar"), "from the remote context\n"
        )
        client.images.build(path=url, dockerfile="sub/Dockerfile.alt", tag="alt")
        self.assertEqual(self.ok("run", "--rm", "alt"), "alternative\n")
        client.images.build(path=self.files.url("Dockerfile"), tag="plain")
        self.assertEqual(self.ok("run", "--rm", "plain", "cat", "/p"), "plain\n")
        missing = self.files.url("missing.tar")
        with self.assertRaises(docker.errors.NotFound) as notfound:
            client.images.build(path=missing)
        self.assertIn(
            f"error downloading remote context {missing}: failed to GET {missing} "
            "with status 404 File not found",
            str(notfound.exception),
        )
        page = self.files.url("page.html")
        with self.assertRaises(docker.errors.APIError) as html:
            client.images.build(path=page)
        self.assertEqual(html.exception.status_code, 500)
        self.assertIn(
            f"error detecting content type for remote {page}: unsupported "
            'Content-Type "text/html"',
            str(html.exception),
        )
        with self.assertRaises(docker.errors.BuildError) as junk:
            client.images.build(path=self.files.url("junk.bin"))
        self.assertEqual(str(junk.exception), "archive/tar: invalid tar header")
        with self.assertRaises(docker.errors.APIError) as refused:
            client.images.build(path="http://127.0.0.1:1/ctx.tar")
        self.assertIn(
            'Get "http://127.0.0.1:1/ctx.tar": dial tcp 127.0.0.1:1: connect: '
            "connection refused",
            str(refused.exception),
        )

    def test_cli_url(self) -> None:
        """The CLI downloads a URL context itself; the daemon gets a tar."""
        self.built("-t", "cli-remote", self.files.url("ctx.tar.gz"))
        self.assertEqual(
            self.ok("run", "--rm", "cli-remote"), "from the remote context\n"
        )

    def make_repository(self) -> Path:
        """A bare repository (branch main, tag v1) under the served directory."""
        work = Path(self.mktemp()).absolute()
        (work / "sub").mkdir(parents=True)
        (work / "Dockerfile").write_text(
            "FROM busybox\nCOPY . /src\nRUN ls -a /src > /listing\n"
        )
        (work / "sub" / "Dockerfile").write_text(
            'FROM busybox\nCOPY s.txt /s\nCMD ["cat", "/s"]\n'
        )
        (work / "sub" / "s.txt").write_text("from git\n")
        _git(work, "init", "-q", "-b", "main")
        _git(work, "add", ".")
        _git(work, "commit", "-qm", "one")
        _git(work, "tag", "v1")
        bare = self.www / "repo.git"
        _git(self.www, "clone", "-q", "--bare", str(work), str(bare))
        _git(bare, "update-server-info")
        return bare

    def git_daemon(self) -> int:
        port = _free_port()
        process = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", f"--base-path={self.www}",
             "--export-all", "--listen=127.0.0.1", f"--port={port}", str(self.www)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.addCleanup(process.wait, 10)
        self.addCleanup(process.terminate)

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        self.until(listening, "git daemon to listen")
        return port

    def test_sdk_git(self) -> None:
        """
        A Git repository as dockerd fetches it: git:// with #ref:dir, dumb
        HTTP (a full fetch); the context holds .git; dockerd's default ref
        is master, and a missing one is git's error.
        """
        import docker  # noqa: PLC0415

        self.make_repository()
        port = self.git_daemon()
        client = self.sdk()
        client.images.build(path=f"git://127.0.0.1:{port}/repo.git#v1:sub", tag="g1")
        self.assertEqual(self.ok("run", "--rm", "g1"), "from git\n")
        client.images.build(path=self.files.url("repo.git#main"), tag="g2")
        listing = self.ok("run", "--rm", "g2", "cat", "/listing").split()
        self.assertEqual(listing, [".", "..", ".git", "Dockerfile", "sub"])
        with self.assertRaises(docker.errors.APIError) as master:
            client.images.build(path=f"git://127.0.0.1:{port}/repo.git")
        self.assertIn(
            "error fetching: fatal: couldn't find remote ref master",
            str(master.exception),
        )

    def test_add_url(self) -> None:
        """
        ADD <url>: downloaded, mode 0600, the time
        the server's Last-Modified says, never unpacked; a rebuild downloads
        again and hits the cache while the content is the same; a 404 is
        dockerd's error; COPY refuses URLs.
        """
        data = self.www / "data.txt"
        data.write_text("downloaded\n")
        os.utime(data, (1_600_000_000, 1_600_000_000))
        pkg = self.www / "ctx.tar.gz"
        os.utime(pkg, (1_500_000_000, 1_500_000_000))
        self.write(
            "Dockerfile",
            f"FROM busybox\nADD {self.files.url('data.txt')} /d/\n"
            f"ADD {self.files.url('ctx.tar.gz')} /p\n"
            "RUN stat -c '%a %u %Y %F' /d/data.txt /p && cat /d/data.txt\n",
        )
        out = self.built(".")
        self.assertIn(
            "600 0 1600000000 regular file\n600 0 1500000000 regular file\n"
            "downloaded\n",
            out,
        )
        again = self.built(".")
        self.assertEqual(again.count(" ---> Using cache"), 3)
        data.write_text("changed\n")
        changed = self.built(".")
        self.assertNotIn("Using cache", changed)
        self.assertIn("changed\n", changed)
        missing = self.files.url("missing.txt")
        self.write("Dockerfile", f"FROM busybox\nADD {missing} /m\n")
        result = self.build(".")
        self.assertEqual(result.returncode, 1)
        self.assertIn(
            f"ADD failed: failed to GET {missing} with status 404 File not found",
            result.stderr.decode(),
        )
        self.write("Dockerfile", f"FROM busybox\nCOPY {missing} /m\n")
        self.assertIn(
            "COPY failed: source can't be a URL for COPY",
            self.build(".").stderr.decode(),
        )


class PullBaseTests(_BuildCase):
    """
    A FROM image that is missing, or every one with --pull, is pulled with
    the build's X-Registry-Config credentials: a private base in a loopback
    docker-registry that demands basic auth.
    """

    def setUp(self) -> None:
        super().setUp()
        hashed = _bcrypt("secret")
        if hashed is None:
            raise SkipTest("no bcrypt to write an htpasswd file with")
        self.registry = Registry(self, htpasswd=f"tester:{hashed}\n")
        self.base = f"{self.registry.host}/private/base"
        client = self.sdk()
        client.images.get("busybox").tag(self.base, "1")
        auth = {"username": "tester", "password": "secret"}
        self.assertIn('"Digest"', client.images.push(self.base, "1", auth_config=auth))
        client.images.remove(f"{self.base}:1")
        self.config = Path(self.mktemp()).absolute()
        self.config.mkdir()
        token = base64.b64encode(b"tester:secret").decode()
        (self.config / "config.json").write_text(
            json.dumps({"auths": {self.registry.host: {"auth": token}}})
        )
        self.write("Dockerfile", f"FROM {self.base}:1\nRUN echo on-the-base > /b\n")

    def build_with(
        self, config: Path, *args: str
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [DOCKER, "build", *args],
            capture_output=True,
            env={**self.daemon.env, "DOCKER_CONFIG": str(config)},
            cwd=str(self.ctx),
            timeout=120,
            check=False,
        )

    def test_cli_pull(self) -> None:
        """
        docker build --pull with the CLI's stored credentials pulls the
        private base (its progress in the output); without them, the
        registry's refusal in dockerd's words.
        """
        empty = Path(self.mktemp()).absolute()
        empty.mkdir()
        refused = self.build_with(empty, "--pull", ".")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn(
            f"pull access denied for {self.base}, repository does not exist or "
            "may require 'docker login'",
            refused.stderr.decode(),
        )
        result = self.build_with(self.config, "--pull", "-t", "on-private", ".")
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        out = result.stdout.decode()
        self.assertIn("1: Pulling from private/base", out)
        self.assertIn(f"Status: Downloaded newer image for {self.base}:1", out)
        self.assertEqual(
            self.ok("run", "--rm", "on-private", "cat", "/b"), "on-the-base\n"
        )
        again = self.build_with(self.config, "--pull", ".")
        self.assertIn(
            f"Status: Image is up to date for {self.base}:1", again.stdout.decode()
        )

    def test_sdk_missing_base(self) -> None:
        """
        images.build with a base that is not here pulls it (with pull=True
        or without), with the credentials of the SDK's config file.
        """
        import docker  # noqa: PLC0415

        self.patch(os, "environ", {**os.environ, "DOCKER_CONFIG": str(self.config)})
        client = docker.DockerClient(base_url=self.daemon.docker_host, version="1.50")
        self.addCleanup(client.close)
        _image, logs = client.images.build(path=str(self.ctx), tag="sdk-private")
        statuses = [m.get("status", "") for m in logs]
        self.assertIn(f"Downloaded newer image for {self.base}:1", " ".join(statuses))
        client.images.build(path=str(self.ctx), tag="sdk-private", pull=True)
        self.assertEqual(
            self.ok("run", "--rm", "sdk-private", "cat", "/b"), "on-the-base\n"
        )

    def test_unreachable(self) -> None:
        """A registry that does not answer is a clear error in the stream."""
        import docker  # noqa: PLC0415

        gone = f"127.0.0.1:{_free_port()}/x/base:1"
        self.write("Dockerfile", f"FROM {gone}\nRUN true\n")
        result = self.build("--pull", ".")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(f"Step 1/2 : FROM {gone}", result.stdout.decode())
        self.assertIn("connection refused", result.stderr.decode())
        with self.assertRaises(docker.errors.BuildError) as e:
            self.sdk().images.build(path=str(self.ctx), pull=True)
        self.assertIn("connection refused", str(e.exception))


class NetworkModeTests(_LabCase):
    """
    --network: the RUN containers join the build's network. In a network
    lab of the test's own (never the machine's namespace).
    """

    def build(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [DOCKER, "build", *args],
            capture_output=True,
            env={**self.daemon.env, "DOCKER_BUILDKIT": "0"},
            cwd=str(cwd),
            timeout=120,
            check=False,
        )

    def test_user_network(self) -> None:
        """
        On a user network (the CLI's --network, the SDK's network_mode) a
        RUN reaches a service container by its name (the network's DNS); on
        the default bridge the name means nothing.
        """
        self.ok("network", "create", "buildnet")
        self.addCleanup(self.docker, "network", "rm", "buildnet")
        self.serving("svc", "--network", "buildnet")
        ctx = Path(self.mktemp()).absolute()
        ctx.mkdir()
        # busybox's own resolver (its wget's is glibc's, static: it crashes).
        (ctx / "Dockerfile").write_text(
            "FROM busybox\n"
            "RUN ip=$(nslookup svc | awk '/^Address: /{a=$2} END{print a}');"
            " for i in $(seq 1 50); do"
            " printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $ip 80 | tail -1 > /got;"
            " [ -s /got ] && break; sleep 0.2; done; cat /got\n"
        )
        result = self.build("--network", "buildnet", "-t", "fetched", ".", cwd=ctx)
        self.assertEqual(result.returncode, 0, result.stdout.decode())
        self.assertIn("\nhello\n", result.stdout.decode())
        self.assertEqual(self.ok("run", "--rm", "fetched", "cat", "/got"), "hello\n")
        _image, logs = self.sdk().images.build(
            path=str(ctx), network_mode="buildnet", nocache=True
        )
        self.assertIn("hello\n", [m.get("stream") for m in logs])
        (ctx / "Dockerfile").write_text("FROM busybox\nRUN timeout 5 nslookup svc\n")
        elsewhere = self.build(".", cwd=ctx)
        self.assertNotEqual(elsewhere.returncode, 0)
        self.assertIn("returned a non-zero code", elsewhere.stderr.decode())


__all__ = ["os"]
