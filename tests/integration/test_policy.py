"""
The policy front door on a real C{twistd dockserve --policy}: three TLS
clients with different certificates (the docker CLI and the Docker SDK for
Python) see different parts of the same daemon; a unix client is known by
its uid; learning mode refuses nothing; a bad file stops the start.
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import docker
import docker.errors
import docker.tls

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.api.policy.pki import PolicyPKI
from tests.integration.harness import RunningDaemon, start_daemon
from tests.integration.images import import_busybox
from tests.integration.test_front_door import free_port
from tests.tempdirs import temp_dir

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"

#: A uid and a group the unix test runs the CLI as (nobody, and a group
#: only the daemon's socket has).
OTHER_UID = 65534
SOCKET_GID = 4391

POLICY = """
[[principal]]
name = "root"
policy = "full"
match = {{ uid = 0 }}

[[principal]]
name = "alice"
policy = "developer"
match = {{ cn = "alice" }}

[[principal]]
name = "bob"
policy = "developer"
match = {{ dns = "bob.ci.example.com" }}

[[principal]]
name = "auditor"
policy = "read-only"
match = {{ o = "Example", ou = "audit" }}

[[principal]]
name = "nobody"
policy = "read-only"
match = {{ uid = {other_uid} }}

[policy.developer]
scope = "own"
preset = "read-only"

[[policy.developer.rule]]
allow = ["containers.*", "exec.*", "images.pull", "volumes.*", "networks.*"]
"""


class _Case(SynchronousTestCase):
    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("the daemon needs root")
        if not Path(DOCKER).exists():
            raise SkipTest("the docker CLI is not installed")
        self.directory = temp_dir(self)
        self.pki = PolicyPKI(self.directory)
        self.port = free_port()
        self.audit = self.directory / "audit.jsonl"

    def start(self, policy: str, *args: str) -> RunningDaemon:
        path = self.directory / "policy.toml"
        path.write_text(policy)
        return start_daemon(
            self,
            [
                "-H", f"tcp://127.0.0.1:{self.port}", "--tlsverify",
                "--tlscacert", self.pki.ca,
                "--tlscert", self.pki.server_cert,
                "--tlskey", self.pki.server_key,
                "--policy", str(path), "--audit-log", str(self.audit),
                *args,
            ],
        )  # fmt: skip

    def cli(
        self, certificate: tuple[str, str], *args: str
    ) -> subprocess.CompletedProcess[str]:
        """The docker CLI over TLS with C{certificate}."""
        cert, key = certificate
        return subprocess.run(
            [DOCKER, "--tlsverify", "--tlscacert", self.pki.ca,
             "--tlscert", cert, "--tlskey", key,
             "-H", f"tcp://127.0.0.1:{self.port}", *args],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "DOCKER_CONFIG": str(self.directory / "cli")},
        )  # fmt: skip

    def sdk(self, certificate: tuple[str, str]) -> docker.DockerClient:
        """The Docker SDK for Python over TLS with C{certificate}."""
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            if name in os.environ:
                self.addCleanup(os.environ.__setitem__, name, os.environ[name])
                del os.environ[name]
        tls = docker.tls.TLSConfig(
            client_cert=certificate, ca_cert=self.pki.ca, verify=True
        )
        client = docker.DockerClient(
            base_url=f"https://127.0.0.1:{self.port}", tls=tls, timeout=30
        )
        self.addCleanup(client.close)
        return client

    def audited(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.audit.read_text().splitlines()]


class ThreeClientsTests(_Case):
    def test_different_views(self) -> None:
        """
        alice (CLI, by CN) and bob (SDK, by a SAN DNS name) each see and
        touch only what they made; the auditor (CLI, by O and OU) sees
        everything and changes nothing; every refusal names its rule.
        """
        daemon = self.start(POLICY.format(other_uid=OTHER_UID))
        image = import_busybox(daemon.docker_host)
        alice = self.pki.client("alice", "alice")
        bob = self.pki.client("bob", "robert", dns=("*.ci.example.com",))
        auditor = self.pki.client("auditor", "carol", o="Example", ou="audit")

        made = self.cli(alice, "create", "--name", "alices", "busybox", "true")
        self.assertEqual(made.returncode, 0, made.stderr)
        bobs = self.sdk(bob).containers.create("busybox", ["true"], name="bobs")

        listed = self.cli(alice, "ps", "-a", "--format", "{{.Names}}")
        self.assertEqual(listed.stdout.split(), ["alices"], listed.stderr)
        self.assertEqual(
            [c.name for c in self.sdk(bob).containers.list(all=True)], ["bobs"]
        )
        audited = self.cli(auditor, "ps", "-a", "--format", "{{.Names}}")
        self.assertEqual(sorted(audited.stdout.split()), ["alices", "bobs"])

        removed = self.cli(alice, "rm", "bobs")
        self.assertEqual(removed.returncode, 1)
        self.assertIn("No such container: bobs", removed.stderr)
        with self.assertRaises(docker.errors.NotFound):
            self.sdk(bob).containers.get("alices")
        refused = self.cli(auditor, "create", "busybox", "true")
        self.assertIn(
            "authorization denied by policy rule read-only: containers.create is"
            " not allowed for auditor",
            refused.stderr,
        )
        privileged = self.cli(alice, "create", "--privileged", "busybox", "true")
        self.assertIn(
            "authorization denied by policy rule developer.body.privileged:"
            " privileged containers are not allowed",
            privileged.stderr,
        )
        self.assertEqual(bobs.labels, {"dockserve.owner": "bob"})

        # The same daemon's events, as each sees them.
        until = str(int(time.time()) + 1)
        time.sleep(1.1)
        seen = self.cli(
            alice, "events", "--since", "0", "--until", until,
            "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        )  # fmt: skip
        # Images are everyone's; containers their owner's.
        self.assertEqual(
            seen.stdout.splitlines(),
            [f"image import {image}", "container create alices"],
        )

        lines = self.audited()
        creates = [
            (line["principal"]["subject"], line["verdict"], line["status"])  # type: ignore[index]
            for line in lines
            if line["route"] == "containers.create"
        ]
        self.assertEqual(
            creates,
            [
                ("CN=alice", "allow", 201),
                ("CN=robert", "allow", 201),
                ("OU=audit,O=Example,CN=carol", "deny", 403),
                ("CN=alice", "deny", 403),
            ],
        )

    def test_run_through_policy(self) -> None:
        """
        A run (create, attach, start, wait, logs, remove) through the SDK as
        bob, and an exec in his container; alice cannot exec there.
        """
        daemon = self.start(POLICY.format(other_uid=OTHER_UID))
        import_busybox(daemon.docker_host)
        bob = self.sdk(self.pki.client("bob", "robert", dns=("*.ci.example.com",)))
        output = bob.containers.run("busybox", ["echo", "hello"], remove=True)
        self.assertEqual(output, b"hello\n")
        running = bob.containers.run("busybox", ["sleep", "60"], detach=True)
        self.addCleanup(running.remove, force=True)
        self.assertEqual(running.exec_run(["echo", "in"]).output, b"in\n")
        alice = self.pki.client("alice", "alice")
        refused = self.cli(alice, "exec", running.id, "true")
        self.assertIn(f"No such container: {running.id}", refused.stderr)

    def test_stranger_refused(self) -> None:
        """A certificate no principal matches gets the default: nothing."""
        self.start(POLICY.format(other_uid=OTHER_UID))
        stranger = self.pki.client("mallory", "mallory")
        with self.assertRaises(docker.errors.DockerException) as caught:
            self.sdk(stranger)  # it asks for /version first
        self.assertIn(
            "authorization denied by policy rule none: system.version is not allowed"
            " for anonymous",
            str(caught.exception),
        )
        listed = self.cli(stranger, "ps")
        self.assertIn("containers.list is not allowed for anonymous", listed.stderr)


class UnixUidTests(_Case):
    def test_by_uid(self) -> None:
        """
        The CLI run as another uid (in the socket's group) on the unix socket
        is that uid's principal: it lists, and cannot create.
        """
        if shutil.which("setpriv") is None:
            raise SkipTest("setpriv (util-linux) is not installed")
        daemon = self.start(POLICY.format(other_uid=OTHER_UID), "-G", str(SOCKET_GID))
        Path(daemon.directory).chmod(0o755)
        import_busybox(daemon.docker_host)
        made = subprocess.run(
            [DOCKER, "-H", daemon.docker_host, "create", "--name", "roots", "busybox"],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "DOCKER_CONFIG": str(self.directory / "cli")},
        )  # fmt: skip
        self.assertEqual(made.returncode, 0, made.stderr)

        def as_other(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["setpriv", f"--reuid={OTHER_UID}", f"--regid={SOCKET_GID}",
                 "--clear-groups", "--", DOCKER, "-H", daemon.docker_host, *args],
                capture_output=True, text=True, timeout=60, check=False,
                env={**os.environ, "DOCKER_CONFIG": "/nonexistent", "HOME": "/"},
            )  # fmt: skip

        listed = as_other("ps", "-a", "--format", "{{.Names}}")
        self.assertEqual(listed.stdout.split(), ["roots"], listed.stderr)
        refused = as_other("rm", "-f", "roots")
        self.assertIn(
            "authorization denied by policy rule read-only: containers.delete is"
            " not allowed for nobody",
            refused.stderr,
        )
        [line] = [
            line for line in self.audited() if line["route"] == "containers.delete"
        ]
        principal = line["principal"]
        self.assertEqual(
            (principal["name"], principal["uid"], principal["gid"]),  # type: ignore[index]
            ("nobody", OTHER_UID, SOCKET_GID),
        )


class LearningModeTests(_Case):
    def test_learn(self) -> None:
        """
        In learning mode what would be refused is done, logged and audited
        as C{learn}.
        """
        daemon = self.start('mode = "learn"\n' + POLICY.format(other_uid=OTHER_UID))
        import_busybox(daemon.docker_host)
        auditor = self.pki.client("auditor", "carol", o="Example", ou="audit")
        made = self.cli(auditor, "create", "--name", "learnt", "busybox", "true")
        self.assertEqual(made.returncode, 0, made.stderr)
        self.assertIn(
            "Policy (learning mode) would refuse containers.create for auditor:"
            " authorization denied by policy rule read-only",
            daemon.log(),
        )
        [line] = [
            line for line in self.audited() if line["route"] == "containers.create"
        ]
        self.assertEqual(
            (line["verdict"], line["rule"], line["status"]), ("learn", "read-only", 201)
        )


class BadFileTests(SynchronousTestCase):
    def test_refuses_to_start(self) -> None:
        """A policy file with a mistake: exit 2, one line with its line number."""
        if os.geteuid() != 0:
            raise SkipTest("the daemon needs root")
        directory = temp_dir(self)
        policy = directory / "policy.toml"
        policy.write_text('[[principal]]\nname = "x"\npolicy = "admin"\n')
        daemon = RunningDaemon(directory, ["--policy", str(policy)])
        self.addCleanup(daemon.stop)
        daemon.start(wait=False)
        assert daemon.process is not None
        self.assertEqual(daemon.process.wait(30), 2, daemon.log())
        expected = (
            f"dockserve: --policy: {policy}:3: principal[1].policy: no policy is"
            " named 'admin'; the presets are full, read-only, none, others are"
            " [policy.NAME] tables"
        )
        self.assertEqual(daemon.log().splitlines(), [expected])
        self.assertFalse(os.path.lexists(daemon.socket_path))
