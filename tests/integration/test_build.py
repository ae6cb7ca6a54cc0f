# -*- test-case-name: tests.integration.test_build -*-
"""
docker build with the classic builder against a real daemon: the docker
CLI 28 without buildx (C{DOCKER_BUILDKIT=0}), the Docker SDK's
C{images.build} and Debian's docker-compose 1.29, with what a user sees:
the step lines, the image that runs, the cache on a rebuild, the errors.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.integration.test_compose import COMPOSE
from tests.integration.test_containers import DOCKER, _DaemonCase

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


__all__ = ["os"]
