# -*- test-case-name: tests.integration.test_container_lifecycle -*-
"""
A container's life through the real docker CLI (and the Docker SDK where a
client would use it): names and lookups, start, stop, kill, restart, pause,
wait, rm, rename, update, prune, restart policies and C{--rm}.

The error texts asserted are the ones dockerd answers for the same calls.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from twisted.trial.unittest import SkipTest

from tests.integration.test_containers import _DaemonCase

#: A shell that says so when it gets SIGUSR1, and exits on it if asked.
_TRAP = 'trap "echo got-usr1{exit}" USR1; echo ready; while true; do sleep 1; done'


class _Case(_DaemonCase):
    def running(self, name: str, *args: str, command: str = "sleep 300") -> str:
        """C{docker run -d --name name args busybox sh -c command}: its ID."""
        self.cleanup_container(name)
        return self.ok(
            "run", "-d", "--name", name, *args, "busybox", "sh", "-c", command
        ).strip()

    def ready(self, name: str) -> None:
        """Wait until the container printed C{ready} (its trap is set)."""
        self.until(lambda: "ready" in self.ok("logs", name), f"{name} to be ready")

    def api(self, method: str, path: str) -> Any:
        """A raw C{curl} over the daemon's socket, started now; the Popen."""
        return subprocess.Popen(
            [
                "curl", "-s", "--unix-socket", self.daemon.socket_path,
                "-X", method, f"http://localhost/v1.50{path}",
            ],
            stdout=subprocess.PIPE,
        )  # fmt: skip


class NamesTests(_Case):
    def test_create_with_name(self) -> None:
        """A name is taken once; a taken name and a bad name are refused."""
        self.cleanup_container("named")
        cid = self.ok("create", "--name", "named", "busybox", "true").strip()
        self.assertRegex(cid, "^[0-9a-f]{64}$")
        self.assertEqual(self.inspect("named", "{{.Name}} {{.Id}}"), f"/named {cid}")
        self.assertIn(
            'Conflict. The container name "/named" is already in use by container '
            f'"{cid}". You have to remove (or rename) that container to be able '
            "to reuse that name.",
            self.fails("create", "--name", "named", "busybox", "true"),
        )
        self.assertIn(
            "Invalid container name (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
            "are allowed",
            self.fails("create", "--name", "bad name", "busybox", "true"),
        )

    def test_status_codes(self) -> None:
        """The SDK sees 409 for a taken name and 400 for a bad one."""
        import docker  # noqa: PLC0415

        client = self.sdk()
        self.cleanup_container("coded")
        client.containers.create("busybox", "true", name="coded")
        with self.assertRaises(docker.errors.APIError) as taken:
            client.containers.create("busybox", "true", name="coded")
        self.assertEqual(taken.exception.status_code, 409)
        with self.assertRaises(docker.errors.APIError) as bad:
            client.containers.create("busybox", "true", name="-x")
        self.assertEqual(bad.exception.status_code, 400)
        with self.assertRaises(docker.errors.ImageNotFound):
            client.containers.create("nothere:1", "true")

    def test_lookup(self) -> None:
        """The full ID, any unique prefix, the name, and /name all find it."""
        self.cleanup_container("found")
        cid = self.ok("create", "--name", "found", "busybox", "true").strip()
        for reference in (cid, cid[:12], cid[:5], "found", "/found"):
            self.assertEqual(self.inspect(reference, "{{.Id}}"), cid, reference)
        self.assertIn("No such container: nothere", self.fails("start", "nothere"))

    def test_ambiguous_prefix(self) -> None:
        """A prefix that two IDs share is refused with dockerd's message."""
        seen: dict[str, str] = {}
        shared = None
        for _ in range(17):  # 17 IDs: two share a first hex digit.
            cid = self.ok("create", "--label", "many=1", "busybox", "true").strip()
            self.addCleanup(self.docker, "rm", "-f", cid)
            if cid[0] in seen:
                shared = cid[0]
                break
            seen[cid[0]] = cid
        assert shared is not None
        self.assertIn(
            f"Multiple IDs found with provided prefix: {shared}",
            self.fails("start", shared),
        )


class StopKillTests(_Case):
    def test_stop_signal(self) -> None:
        """C{docker stop} sends the image's or container's StopSignal."""
        self.running("polite", "--stop-signal", "SIGUSR1",
                     command=_TRAP.format(exit="; exit 0"))  # fmt: skip
        self.ready("polite")
        self.ok("stop", "polite")
        self.assertEqual(self.inspect("polite", "{{.State.ExitCode}}"), "0")
        self.assertIn("got-usr1", self.ok("logs", "polite"))

    def test_stop_kills_after_timeout(self) -> None:
        """A container that ignores SIGTERM is SIGKILLed after C{-t}."""
        self.running("stubborn", command='trap "" TERM; echo ready; '
                     "while true; do sleep 1; done")  # fmt: skip
        self.ready("stubborn")
        self.ok("stop", "-t", "1", "stubborn")
        self.assertEqual(
            self.inspect("stubborn", "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 137",
        )
        # Stopping a stopped container is not an error.
        self.ok("stop", "stubborn")

    def test_kill_signal(self) -> None:
        """C{docker kill -s} delivers any signal; plain kill is SIGKILL."""
        self.running("target", command=_TRAP.format(exit=""))
        self.ready("target")
        self.ok("kill", "-s", "USR1", "target")
        self.until(lambda: "got-usr1" in self.ok("logs", "target"), "the trap")
        self.assertEqual(self.inspect("target", "{{.State.Running}}"), "true")
        self.assertIn("Invalid signal: FOO", self.fails("kill", "-s", "FOO", "target"))
        self.ok("kill", "target")
        self.assertEqual(
            self.inspect("target", "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 137",
        )
        cid = self.inspect("target", "{{.Id}}")
        self.assertIn(
            f"Cannot kill container: target: Container {cid} is not running",
            self.fails("kill", "target"),
        )

    def test_restart(self) -> None:
        """C{docker restart} runs the command again in the same container."""
        cid = self.running("again", command="echo start; sleep 300")
        self.until(lambda: self.ok("logs", "again") == "start\n", "the first run")
        first = self.inspect("again", "{{.State.StartedAt}}")
        self.ok("restart", "-t", "1", "again")
        self.assertEqual(self.inspect("again", "{{.State.Status}}"), "running")
        self.assertNotEqual(self.inspect("again", "{{.State.StartedAt}}"), first)
        self.assertEqual(self.inspect("again", "{{.Id}}"), cid)
        self.until(
            lambda: self.ok("logs", "again") == "start\nstart\n", "the second run"
        )


class PauseTests(_Case):
    def test_pause_unpause(self) -> None:
        """
        A paused container's processes are frozen (its counter stops), ps
        shows it as Paused, exec and a second pause are refused; unpause
        lets it go on.
        """
        cid = self.running("frozen", command="i=0; while true; do i=$((i+1)); "
                           "echo $i; sleep 0.2; done")  # fmt: skip
        self.until(lambda: len(self.ok("logs", "frozen").split()) > 2, "output")
        self.ok("pause", "frozen")
        self.assertEqual(
            self.inspect("frozen", "{{.State.Status}} {{.State.Paused}}"),
            "paused true",
        )
        self.assertIn("frozen Up", self.ok("ps", "--format", "{{.Names}} {{.Status}}"))
        self.assertIn("(Paused)", self.ok("ps", "--format", "{{.Status}}"))
        before = self.ok("logs", "frozen")
        self.assertIn(
            f"Container {cid} is already paused", self.fails("pause", "frozen")
        )
        self.assertIn(
            "Container frozen is paused, unpause the container before exec",
            self.fails("exec", "frozen", "true"),
        )
        subprocess.run(["sleep", "1"], check=True)
        self.assertEqual(self.ok("logs", "frozen"), before)
        self.ok("unpause", "frozen")
        self.assertEqual(self.inspect("frozen", "{{.State.Status}}"), "running")
        self.until(lambda: self.ok("logs", "frozen") != before, "the counter")
        self.assertIn(f"Container {cid} is not paused", self.fails("unpause", "frozen"))

    def test_rm_paused_and_kill_paused(self) -> None:
        """A paused container is not removed without -f; rm -f removes it."""
        self.running("still")
        self.ok("pause", "still")
        self.assertIn(
            'cannot remove container "/still": container is paused and must be '
            "unpaused first",
            self.fails("rm", "still"),
        )
        self.ok("rm", "-f", "still")
        self.assertEqual(self.ok("ps", "-aq", "--filter", "name=still"), "")


class WaitTests(_Case):
    def test_wait_exit_code(self) -> None:
        """C{docker wait} prints the exit code, now or when it comes."""
        self.cleanup_container("nine")
        self.assertEqual(
            self.docker("run", "--name", "nine", "busybox", "sh", "-c",
                        "exit 9").returncode, 9)  # fmt: skip
        self.assertEqual(self.ok("wait", "nine"), "9\n")
        self.running("later", command="sleep 300")
        waiting = subprocess.Popen(
            ["docker", "wait", "later"], env=self.daemon.env, stdout=subprocess.PIPE
        )
        self.ok("kill", "later")
        out, _ = waiting.communicate(timeout=20)
        self.assertEqual(out, b"137\n")

    def test_wait_conditions(self) -> None:
        """C{condition=next-exit} and C{condition=removed}, as curl sees them."""
        self.running("cond", command="sleep 300")
        next_exit = self.api("POST", "/containers/cond/wait?condition=next-exit")
        removed = self.api("POST", "/containers/cond/wait?condition=removed")
        self.ok("kill", "-s", "TERM", "cond")
        self.ok("kill", "cond")
        out, _ = next_exit.communicate(timeout=20)
        self.assertEqual(json.loads(out)["StatusCode"], 137)
        self.assertIsNone(removed.poll())
        self.ok("rm", "cond")
        out, _ = removed.communicate(timeout=20)
        self.assertEqual(json.loads(out)["StatusCode"], 137)

    def test_wait_sdk(self) -> None:
        """The SDK's wait returns the StatusCode."""
        client = self.sdk()
        self.cleanup_container("sdkwait")
        container = client.containers.run(
            "busybox", ["sh", "-c", "exit 3"], name="sdkwait", detach=True
        )
        self.assertEqual(container.wait(timeout=20)["StatusCode"], 3)


class RemoveRenameTests(_Case):
    def test_rm_running(self) -> None:
        """rm of a running container needs -f, with dockerd's 409 message."""
        import docker  # noqa: PLC0415

        self.running("busy")
        self.assertIn(
            'cannot remove container "/busy": container is running: stop the '
            "container before removing or force remove",
            self.fails("rm", "busy"),
        )
        with self.assertRaises(docker.errors.APIError) as refused:
            self.sdk().api.remove_container("busy")
        self.assertEqual(refused.exception.status_code, 409)
        self.assertEqual(self.ok("rm", "-f", "busy"), "busy\n")
        self.assertEqual(self.ok("ps", "-aq"), "")
        self.assertIn("No such container: busy", self.fails("rm", "busy"))

    def test_rename(self) -> None:
        """rename moves the name; the old one is free, a taken one is not."""
        self.cleanup_container("old")
        self.cleanup_container("new")
        cid = self.ok("create", "--name", "old", "busybox", "true").strip()
        self.ok("rename", "old", "new")
        self.assertEqual(self.inspect("new", "{{.Id}} {{.Name}}"), f"{cid} /new")
        self.assertIn("No such object: old", self.fails("inspect", "old"))
        other = self.ok("create", "--name", "old", "busybox", "true").strip()
        self.assertIn(
            'Error when allocating new name: Conflict. The container name "/old" '
            f'is already in use by container "{other}"',
            self.fails("rename", "new", "old"),
        )
        self.assertIn(
            "Error when allocating new name: Invalid container name (/b c)",
            self.fails("rename", "new", "b c"),
        )
        self.assertIn(
            "Renaming a container with the same name as its current name",
            self.fails("rename", "new", "new"),
        )


class UpdatePruneTests(_Case):
    def test_update_memory(self) -> None:
        """
        update --memory is kept in HostConfig and reaches the running
        container's cgroup.
        """
        from dockserve.daemon.runtime import RuncRuntime  # noqa: PLC0415

        if not hasattr(RuncRuntime, "update"):
            raise SkipTest("RuncRuntime.update (runc update) is not written yet")
        self.running("limited")
        self.ok("update", "--memory", "64m", "--memory-swap", "128m", "limited")
        self.assertEqual(
            self.inspect(
                "limited", "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}"
            ),
            "67108864 134217728",
        )
        limit = self.ok(
            "exec", "limited", "sh", "-c",
            "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        )  # fmt: skip
        self.assertEqual(limit.strip(), "67108864")

    def test_prune(self) -> None:
        """container prune removes the stopped and created ones only."""
        self.cleanup_container("runs")
        self.cleanup_container("ended")
        self.cleanup_container("made")
        keep = self.running("runs")
        ended = self.ok("run", "--name", "ended", "busybox", "true")
        del ended
        ended_id = self.inspect("ended", "{{.Id}}")
        made = self.ok("create", "--name", "made", "busybox", "true").strip()
        out = self.ok("container", "prune", "-f")
        self.assertIn(ended_id, out)
        self.assertIn(made, out)
        self.assertNotIn(keep, out)
        self.assertEqual(self.ok("ps", "-aq", "--no-trunc"), keep + "\n")

    def test_prune_filters(self) -> None:
        """prune --filter label!= and until, and dockerd's refusal of a bad until."""
        self.cleanup_container("kept")
        self.cleanup_container("loose")
        self.ok("create", "--name", "kept", "--label", "keep=1", "busybox", "true")
        loose = self.ok("create", "--name", "loose", "busybox", "true").strip()
        self.assertIn(
            'failed to parse value as time or duration: "bogus"',
            self.fails("container", "prune", "-f", "--filter", "until=bogus"),
        )
        out = self.ok("container", "prune", "-f", "--filter", "until=1h")
        self.assertNotIn("Deleted", out)
        out = self.ok("container", "prune", "-f", "--filter", "label!=keep")
        self.assertIn(loose, out)
        self.assertEqual(self.ok("ps", "-a", "--format", "{{.Names}}"), "kept\n")


class RestartPolicyTests(_Case):
    def test_on_failure(self) -> None:
        """on-failure:2 restarts a failing container twice, then leaves it."""
        self.running("flaky", "--restart", "on-failure:2", command="echo try; exit 3")
        self.until(
            lambda: (
                self.inspect(
                    "flaky", "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}"
                )
                == "exited 2 3"
            ),
            "two restarts",
        )
        self.assertEqual(self.ok("logs", "flaky"), "try\n" * 3)

    def test_on_failure_success(self) -> None:
        """on-failure does not restart a container that exits 0."""
        self.cleanup_container("fine")
        self.ok("run", "--name", "fine", "--restart", "on-failure", "busybox", "true")
        self.assertEqual(
            self.inspect("fine", "{{.State.Status}} {{.RestartCount}}"), "exited 0"
        )

    def test_always(self) -> None:
        """always restarts even after exit 0; docker stop ends that."""
        self.running("loop", "--restart", "always", command="echo run; exit 0")
        self.until(
            lambda: int(self.inspect("loop", "{{.RestartCount}}")) >= 2, "restarts"
        )
        self.ok("stop", "loop")
        self.assertEqual(self.inspect("loop", "{{.State.Status}}"), "exited")
        count = self.inspect("loop", "{{.RestartCount}}")
        subprocess.run(["sleep", "1"], check=True)
        self.assertEqual(
            self.inspect("loop", "{{.State.Status}} {{.RestartCount}}"),
            f"exited {count}",
        )

    def test_policies_at_daemon_restart(self) -> None:
        """
        At the daemon's next start, an always-container stopped by hand runs
        again and an unless-stopped one stopped by hand does not; one that
        was running runs on.
        """
        self.running("alw", "--restart", "always")
        self.running("unl", "--restart", "unless-stopped")
        self.running("up", "--restart", "unless-stopped")
        self.ok("stop", "-t", "0", "alw", "unl")
        self.daemon.restart()
        self.until(
            lambda: self.inspect("alw", "{{.State.Status}}") == "running",
            "alw to start",
        )
        self.assertEqual(self.inspect("unl", "{{.State.Status}}"), "exited")
        self.assertEqual(self.inspect("up", "{{.State.Status}}"), "running")

    def test_bad_policy(self) -> None:
        """An unknown policy is refused."""
        self.assertIn(
            "invalid restart policy",
            self.fails("create", "--restart", "sometimes", "busybox"),
        )


class AutoRemoveTests(_Case):
    def test_rm_detached(self) -> None:
        """run -d --rm: AutoRemove while it runs, gone once it exits."""
        self.cleanup_container("brief")
        self.ok("run", "-d", "--rm", "--name", "brief", "busybox", "sh", "-c",
                "echo ready; sleep 2")  # fmt: skip
        self.assertEqual(self.inspect("brief", "{{.HostConfig.AutoRemove}}"), "true")
        self.until(
            lambda: self.ok("ps", "-aq", "--filter", "name=brief") == "",
            "brief to be removed",
        )

    def test_rm_failed_start(self) -> None:
        """A --rm container whose command does not exist: 127, and it is gone."""
        result = self.docker("run", "--rm", "busybox", "nosuchcommand")
        self.assertEqual(result.returncode, 127, result.stderr)
        self.assertIn(b"nosuchcommand", result.stderr)
        self.until(lambda: self.ok("ps", "-aq") == "", "the container to go")

    def test_rm_stopped(self) -> None:
        """A --rm container that is stopped is removed too."""
        self.ok("run", "-d", "--rm", "--name", "stopme", "busybox", "sleep", "300")
        self.ok("stop", "-t", "0", "stopme")
        self.until(
            lambda: self.ok("ps", "-aq", "--filter", "name=stopme") == "",
            "stopme to be removed",
        )


class ImageInUseTests(_Case):
    def test_rmi_in_use(self) -> None:
        """
        An image a container uses is not removed without -f, with dockerd's
        409 texts; the container keeps working whatever rmi did.
        """
        import docker  # noqa: PLC0415

        self.cleanup_container("user")
        self.ok("run", "--name", "user", "busybox", "true")
        cid = self.inspect("user", "{{.Id}}")
        image = self.inspect("busybox", "{{.Id}}").removeprefix("sha256:")
        self.assertIn(
            'conflict: unable to remove repository reference "busybox" (must '
            f"force) - container {cid[:12]} is using its referenced image "
            f"{image[:12]}",
            self.fails("rmi", "busybox"),
        )
        self.assertIn(
            f"conflict: unable to delete {image[:12]} (must be forced) - image is "
            f"being used by stopped container {cid[:12]}",
            self.fails("rmi", image[:12]),
        )
        with self.assertRaises(docker.errors.APIError) as refused:
            self.sdk().images.remove(image[:12])
        self.assertEqual(refused.exception.status_code, 409)
        # Forced, and only a stopped container uses it: deleted, as dockerd
        # deletes it; the container keeps what it needs to start.
        removed = self.ok("rmi", "-f", "busybox")
        self.assertIn(f"Deleted: sha256:{image}", removed)
        self.assertEqual(self.ok("images", "-q"), "")
        # The name no longer means its image: docker ps shows the image's ID.
        self.assertEqual(
            self.ok("ps", "-a", "--filter", "name=user", "--format", "{{.Image}}"),
            image[:12] + "\n",
        )
        self.assertEqual(self.docker("start", "-a", "user").returncode, 0)

    def test_rmi_running_user(self) -> None:
        """Not even -f removes the image of a running container."""
        self.running("runner")
        cid = self.inspect("runner", "{{.Id}}")
        image = self.inspect("busybox", "{{.Id}}").removeprefix("sha256:")
        self.assertIn(
            f"conflict: unable to delete {image[:12]} (cannot be forced) - image "
            f"is being used by running container {cid[:12]}",
            self.fails("rmi", "-f", image[:12]),
        )
