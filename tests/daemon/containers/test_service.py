# -*- test-case-name: tests.daemon.containers.test_service -*-
"""Tests for L{dockserve.daemon.containers.service}."""

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import record
from dockserve.daemon.containers.service import ContainerService
from dockserve.errors import (
    Conflict,
    InvalidParameter,
    NotFound,
    NotModified,
    SystemError_,
)
from dockserve.testing.containers import make_service


class _Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.root.mkdir()
        self.service, self.runtime, self.clock = make_service(self.root)

    def create(self, name: str | None = "web", **body: object) -> str:
        request = {"Image": "busybox", "Cmd": ["echo", "hi"]}
        request.update(body)  # type: ignore[arg-type]
        return str(self.service.create(name, request)["Id"])

    def started(self, name: str | None = "web", **body: object) -> str:
        cid = self.create(name, **body)
        self.successResultOf(self.service.start(cid))
        return cid

    def hold_start(self) -> Deferred[None]:
        """Make the next starts wait, half way, until the result fires."""
        bundles = self.service._bundles
        real_prepare = bundles.prepare
        held: Deferred[None] = Deferred()

        def prepare(*args: Any) -> Any:
            return held.addCallback(lambda _: real_prepare(*args))

        bundles.prepare = prepare  # type: ignore[method-assign]
        return held


class CreateTests(_Base):
    def test_create_inspect(self) -> None:
        """
        A created container has a 64-hex ID, its name with a slash, the
        image's defaults merged into its Config, and status C{created}.
        """
        cid = self.create("web", Env=["A=1"])
        self.assertRegex(cid, "^[0-9a-f]{64}$")
        info = self.service.inspect("web")
        self.assertEqual(info["Id"], cid)
        self.assertEqual(info["Name"], "/web")
        self.assertEqual(info["Path"], "echo")
        self.assertEqual(info["Args"], ["hi"])
        self.assertEqual(info["State"]["Status"], "created")
        self.assertEqual(info["Config"]["Env"][0], "A=1")
        self.assertTrue(info["Config"]["Env"][1].startswith("PATH="))
        self.assertEqual(info["Config"]["Hostname"], cid[:12])
        self.assertEqual(info["HostConfig"]["NetworkMode"], "bridge")

    def test_record_on_disk(self) -> None:
        """The record is on disk when create returns: a new service finds it."""
        cid = self.create()
        again, _, _ = make_service(self.root, runtime=self.runtime)
        self.successResultOf(again.restore())
        self.assertEqual(again.inspect(cid[:5])["Name"], "/web")

    def test_name_conflict(self) -> None:
        """A taken name is dockerd's 409."""
        cid = self.create("web")
        error = self.assertRaises(Conflict, self.create, "web")
        self.assertEqual(
            error.message,
            f'Conflict. The container name "/web" is already in use by container '
            f'"{cid}". You have to remove (or rename) that container to be able '
            "to reuse that name.",
        )

    def test_invalid_name(self) -> None:
        """A name with a bad character is a 400 with dockerd's text."""
        error = self.assertRaises(InvalidParameter, self.create, "bad name")
        self.assertEqual(
            error.message,
            "Invalid container name (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
            "are allowed",
        )

    def test_no_such_image(self) -> None:
        """An unknown image is 404 C{No such image: ...}."""
        error = self.assertRaises(NotFound, self.create, "xx", Image="nosuch")
        self.assertEqual(error.message, "No such image: nosuch")

    def test_generated_name(self) -> None:
        """Without a name, the container gets a generated one."""
        cid = self.create(None)
        self.assertRegex(self.service.inspect(cid)["Name"], "^/[a-z]+_[a-z]+[0-9]?$")

    def test_autoremove_with_restart(self) -> None:
        """AutoRemove and a restart policy conflict."""
        error = self.assertRaises(
            InvalidParameter,
            self.create,
            "x",
            HostConfig={"AutoRemove": True, "RestartPolicy": {"Name": "always"}},
        )
        self.assertEqual(
            error.message, "can't create 'AutoRemove' container with restart policy"
        )

    def test_wrong_type(self) -> None:
        """A wrong JSON type names the field and Go type."""
        error = self.assertRaises(
            InvalidParameter, self.create, "x", HostConfig={"Memory": "lots"}
        )
        self.assertEqual(
            error.message,
            "json: cannot unmarshal string into Go struct field "
            "ContainerConfigWrapper.HostConfig.Memory of type int64",
        )

    def test_ambiguous_prefix(self) -> None:
        """A prefix several IDs share is an error; an unknown one a 404."""
        ids = [self.create(f"c{i}") for i in range(40)]
        common = next(a[0] for a in ids if sum(1 for b in ids if b[0] == a[0]) > 1)
        error = self.assertRaises(SystemError_, self.service.inspect, common)
        self.assertEqual(
            error.message, f"Multiple IDs found with provided prefix: {common}"
        )
        error = self.assertRaises(NotFound, self.service.inspect, "nosuch")
        self.assertEqual(error.message, "No such container: nosuch")


class LifeCycleTests(_Base):
    def test_start_wait(self) -> None:
        """
        A started container runs; its exit code answers C{wait}, and inspect
        shows C{exited} with that code.
        """
        cid = self.started()
        self.assertEqual(self.service.inspect(cid)["State"]["Status"], "running")
        self.assertTrue(self.service.inspect(cid)["State"]["Pid"] > 0)
        waiting = self.service.wait(cid, None)
        self.assertNoResult(waiting)
        self.runtime.exit(cid, 3)
        self.assertEqual(self.successResultOf(waiting), {"StatusCode": 3})
        state = self.service.inspect(cid)["State"]
        self.assertEqual((state["Status"], state["ExitCode"]), ("exited", 3))
        self.assertEqual(
            self.service.wait(cid, "not-running").result, {"StatusCode": 3}
        )

    def test_start_twice(self) -> None:
        """Starting a running container is 304."""
        cid = self.started()
        self.assertRaises(NotModified, self.service.start, cid)

    def test_attach_before_start(self) -> None:
        """An attach made before start receives the first output."""
        cid = self.create()
        seen: list[tuple[int, bytes]] = []
        attachment = self.service.attach(
            cid,
            lambda s, d: seen.append((s, d)),
            stdin=False,
            stdout=True,
            stderr=True,
            stream=True,
        )
        self.successResultOf(self.service.start(cid))
        self.runtime.output(cid, 1, b"hi\n")
        self.runtime.output(cid, 2, b"oops\n")
        self.assertNoResult(attachment.closed)
        self.runtime.exit(cid, 0)
        self.successResultOf(attachment.closed)
        self.assertEqual(seen, [(1, b"hi\n"), (2, b"oops\n")])

    def test_slow_client_drained_on_stop(self) -> None:
        """
        A client that reads slowly holds the output back, until the
        container is stopped or killed: from then on its output is read
        whatever the client's pace, so that conmon sees the exit.
        """
        for stopping in ("stop", "kill"):
            cid = self.started(stopping)
            attachment = self.service.attach(
                cid, lambda *_: None, stdin=False, stdout=True, stderr=True,
                stream=True,
            )  # fmt: skip
            stdio = self.runtime.containers[cid].stdios[0]
            attachment.pause_output()
            self.assertTrue(stdio.output_paused)
            if stopping == "stop":
                self.service.stop(cid, None, 5)
            else:
                # A signal that may not end it drains nothing.
                self.service.kill(cid, "SIGHUP")
                self.assertTrue(stdio.output_paused)
                self.service.kill(cid, "SIGKILL")
            self.assertFalse(stdio.output_paused, stopping)
            attachment.pause_output()
            self.assertFalse(stdio.output_paused, stopping)

    def attach_logged(self, *, stream: bool) -> tuple[Any, list[tuple[int, bytes]]]:
        """
        An attach with C{logs=1} to a created container whose log holds one
        line (C{before}); the attachment, and what it was sent.
        """
        cid = self.create()
        (self.root / "containers" / cid / "container.log").write_bytes(
            b"2024-01-01T00:00:00.000000000Z stdout F before\n"
        )
        seen: list[tuple[int, bytes]] = []
        attachment = self.service.attach(
            cid,
            lambda s, d: seen.append((s, d)),
            stdin=False,
            stdout=True,
            stderr=True,
            stream=stream,
            logs=True,
        )
        return attachment, seen

    def test_attach_logs(self) -> None:
        """With logs and no stream, the log so far is replayed, then the end."""
        attachment, seen = self.attach_logged(stream=False)
        self.clock.advance(0)
        self.successResultOf(attachment.closed)
        self.assertEqual(seen, [(1, b"before\n")])

    def test_attach_while_stopping_is_drained(self) -> None:
        """A client that attaches while the container is being stopped
        cannot hold its output back either."""
        cid = self.started()
        self.runtime.deadly = {9}  # it ignores SIGTERM for now
        self.service.stop(cid, None, 5)
        attachment = self.service.attach(
            cid, lambda *_: None, stdin=False, stdout=True, stderr=True,
            stream=True,
        )  # fmt: skip
        attachment.pause_output()
        stdios = self.runtime.containers[cid].stdios
        self.assertTrue(stdios)
        self.assertFalse(stdios[-1].output_paused)

    def test_attach_logs_slow_client(self) -> None:
        """The replayed log waits for a client that is behind."""
        attachment, seen = self.attach_logged(stream=False)
        attachment.pause_output()
        self.clock.advance(0)
        self.assertEqual(seen, [])
        attachment.resume_output()
        self.clock.advance(0)
        self.successResultOf(attachment.closed)
        self.assertEqual(seen, [(1, b"before\n")])

    def test_attach_end_stops_a_paused_replay(self) -> None:
        """A client that goes while its log replay is paused ends it (and
        the log file is closed)."""
        attachment, _ = self.attach_logged(stream=True)
        attachment.pause_output()
        self.clock.advance(0)
        attachment.detach()
        self.successResultOf(attachment.closed)
        self.assertTrue(attachment._replay.done.called)

    def test_attach_stdin(self) -> None:
        """
        Stdin typed before the start is delivered once connected; with
        StdinOnce (docker run -i) the client's end is the container's.
        """
        cid = self.create(OpenStdin=True, StdinOnce=True)
        attachment = self.service.attach(
            cid, lambda _s, _d: None, stdin=True, stdout=True, stderr=True, stream=True
        )
        attachment.write_stdin(b"abc")
        attachment.close_stdin()
        self.successResultOf(self.service.start(cid))
        stdio = self.runtime.containers[cid].stdios[0]
        self.assertEqual((stdio.stdin, stdio.stdin_closed), (b"abc", True))

    def test_attach_stdin_stays_open(self) -> None:
        """
        Without StdinOnce, the client's end of input delivers what it typed
        and ends its attach; the container's stdin stays open.
        """
        cid = self.create(OpenStdin=True)
        attachment = self.service.attach(
            cid, lambda _s, _d: None, stdin=True, stdout=True, stderr=True, stream=True
        )
        attachment.write_stdin(b"abc")
        attachment.close_stdin()
        self.successResultOf(self.service.start(cid))
        stdio = self.runtime.containers[cid].stdios[0]
        self.assertEqual((stdio.stdin, stdio.stdin_closed), (b"abc", False))
        self.successResultOf(attachment.closed)
        running = self.service.attach(
            cid, lambda _s, _d: None, stdin=True, stdout=True, stderr=True, stream=True
        )
        running.write_stdin(b"def")
        running.close_stdin()
        again = self.runtime.containers[cid].stdios[-1]
        self.assertEqual((again.stdin, again.stdin_closed), (b"def", False))
        self.successResultOf(running.closed)

    def test_resize_through_attachment(self) -> None:
        """A resize reaches the TTY through the attached client's connection."""
        cid = self.create(Tty=True, OpenStdin=True)
        self.service.attach(
            cid, lambda _s, _d: None, stdin=True, stdout=True, stderr=True, stream=True
        )
        self.successResultOf(self.service.start(cid))
        self.service.resize(cid, 40, 120)
        stdio = self.runtime.containers[cid].stdios[0]
        self.assertEqual(stdio.size, (40, 120))
        self.runtime.exit(cid, 0)
        self.assertRaises(Conflict, self.service.resize, cid, 1, 1)

    def test_stop(self) -> None:
        """Stop sends SIGTERM; the container exits 143."""
        cid = self.started()
        self.successResultOf(self.service.stop(cid))
        self.assertEqual(self.runtime.containers.get(cid), None)
        self.assertEqual(self.service.inspect(cid)["State"]["ExitCode"], 143)
        self.assertRaises(NotModified, self.service.stop, cid)

    def test_stop_timeout_kills(self) -> None:
        """A process that ignores the stop signal is killed after the timeout."""
        cid = self.started()
        self.runtime.deadly = {9}
        stopping = self.service.stop(cid, None, 5)
        self.clock.advance(4)
        self.assertNoResult(stopping)
        self.clock.advance(1)
        self.successResultOf(stopping)
        self.assertEqual(self.service.inspect(cid)["State"]["ExitCode"], 137)

    def test_stop_signal(self) -> None:
        """The image's or container's StopSignal is sent."""
        cid = self.started(StopSignal="SIGUSR1")
        self.runtime.deadly = {9, 10}
        self.successResultOf(self.service.stop(cid))
        self.assertEqual(self.service.inspect(cid)["State"]["ExitCode"], 138)

    def test_kill_not_running(self) -> None:
        """Killing a stopped container is dockerd's 409."""
        cid = self.create()
        error = self.assertRaises(Conflict, self.service.kill, "web")
        self.assertEqual(
            error.message,
            f"Cannot kill container: web: Container {cid} is not running",
        )

    def test_kill_bad_signal(self) -> None:
        """An unknown signal is a 400."""
        cid = self.started()
        error = self.assertRaises(InvalidParameter, self.service.kill, cid, "NOPE")
        self.assertEqual(error.message, "Invalid signal: NOPE")

    def test_remove_running(self) -> None:
        """A running container is removed only with force."""
        cid = self.started()
        error = self.assertRaises(Conflict, self.service.remove, cid)
        self.assertIn("container is running", error.message)
        removed = self.service.wait(cid, "removed")
        self.successResultOf(self.service.remove(cid, force=True))
        self.assertEqual(self.successResultOf(removed), {"StatusCode": 137})
        self.assertRaises(NotFound, self.service.inspect, cid)
        self.assertFalse((self.root / "containers" / cid).exists())

    def test_auto_remove(self) -> None:
        """An AutoRemove container is removed when it exits."""
        cid = self.started(HostConfig={"AutoRemove": True})
        removed = self.service.wait(cid, "removed")
        self.runtime.exit(cid, 0)
        self.assertEqual(self.successResultOf(removed), {"StatusCode": 0})
        self.assertEqual(self.service.list_containers(all=True), [])

    def test_auto_remove_deletes_once(self) -> None:
        """
        The exit already deleted the runtime's container: removing it for
        AutoRemove does not ask the runtime again (one runc process less
        on docker run --rm's path).
        """
        cid = self.started(HostConfig={"AutoRemove": True})
        deletes: list[tuple[str, bool]] = []
        real_delete = self.runtime.delete

        def delete(container_id: str, *, force: bool = False) -> object:
            deletes.append((container_id, force))
            return real_delete(container_id, force=force)

        self.runtime.delete = delete  # type: ignore[method-assign]
        removed = self.service.wait(cid, "removed")
        self.runtime.exit(cid, 0)
        self.successResultOf(removed)
        self.assertEqual(deletes, [(cid, False)])

    def test_restart_policy_backoff(self) -> None:
        """
        on-failure:2 restarts twice, after 100 ms then 200 ms, and counts
        the restarts; then the container stays exited.
        """
        cid = self.started(
            HostConfig={"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}
        )
        self.runtime.exit(cid, 1)
        self.assertEqual(self.service.inspect(cid)["State"]["Status"], "restarting")
        self.clock.advance(0.1)
        self.assertEqual(self.service.inspect(cid)["State"]["Status"], "running")
        self.runtime.exit(cid, 1)
        self.clock.advance(0.1)
        self.assertEqual(self.service.inspect(cid)["State"]["Status"], "restarting")
        self.clock.advance(0.1)
        self.assertEqual(self.service.inspect(cid)["RestartCount"], 2)
        self.runtime.exit(cid, 1)
        self.clock.advance(10)
        self.assertEqual(self.service.inspect(cid)["State"]["Status"], "exited")

    def test_stop_prevents_restart(self) -> None:
        """A stopped always-container is not restarted."""
        cid = self.started(HostConfig={"RestartPolicy": {"Name": "always"}})
        self.successResultOf(self.service.stop(cid))
        self.clock.advance(60)
        self.assertEqual(self.service.inspect(cid)["State"]["Status"], "exited")

    def test_start_failure(self) -> None:
        """
        A runtime that cannot find the executable gives a 400 and exit code
        127, as dockerd.
        """
        cid = self.create()
        self.runtime.fail_create = 'exec: "nosuch": executable file not found in $PATH'
        failure = self.failureResultOf(self.service.start(cid), InvalidParameter)
        self.assertIn("executable file not found", failure.value.message)
        self.assertEqual(self.service.inspect(cid)["State"]["ExitCode"], 127)

    def test_start_failure_paths(self) -> None:
        """
        An OSError that fails a start is told without the daemon's own
        paths (a bind source of the user's is named); anything else is an
        internal error whose details stay in the log.
        """
        import errno  # noqa: PLC0415

        from twisted.internet.defer import fail  # noqa: PLC0415

        cid = self.create()
        inside = str(self.root / "containers" / cid / "rootfs")
        failures = [
            (OSError(errno.EEXIST, "File exists", inside), "File exists"),
            (OSError(errno.EEXIST, "File exists", "/srv/cfg.txt"),
             "File exists: /srv/cfg.txt"),
            (KeyError("Mounts"), "internal error (the daemon's log has the details)"),
        ]  # fmt: skip
        for error, told in failures:
            self.service._bundles.prepare = lambda *_, error=error: fail(error)  # type: ignore[method-assign]
            failure = self.failureResultOf(self.service.start(cid), SystemError_)
            self.assertEqual(
                failure.value.message, f"cannot start container {cid}: {told}"
            )
            self.assertNotIn(
                str(self.root), self.service.inspect(cid)["State"]["Error"]
            )
        self.flushLoggedErrors(OSError, KeyError)

    def test_start_failure_auto_remove(self) -> None:
        """A --rm container that cannot start is removed; its waiters hear 127."""
        cid = self.create(HostConfig={"AutoRemove": True})
        removed = self.service.wait(cid, "removed")
        exited = self.service.wait(cid, "next-exit")
        self.runtime.fail_create = 'exec: "x": executable file not found in $PATH'
        self.failureResultOf(self.service.start(cid), InvalidParameter)
        self.assertEqual(self.successResultOf(exited)["StatusCode"], 127)
        self.assertEqual(self.successResultOf(removed)["StatusCode"], 127)
        self.assertRaises(NotFound, self.service.inspect, cid)

    def test_pause(self) -> None:
        """Pause and unpause change the status; bad transitions are 409."""
        cid = self.started()
        self.successResultOf(self.service.pause(cid))
        info = self.service.inspect(cid)["State"]
        self.assertEqual(
            (info["Status"], info["Paused"], info["Running"]), ("paused", True, True)
        )
        self.assertRaises(Conflict, self.service.pause, cid)
        self.assertRaises(Conflict, self.service.start, cid)
        self.successResultOf(self.service.unpause(cid))
        self.assertRaises(Conflict, self.service.unpause, cid)

    def test_rename(self) -> None:
        """A renamed container answers to its new name only."""
        cid = self.create("old")
        self.create("taken")
        self.assertRaises(Conflict, self.service.rename, "old", "taken")
        self.service.rename("old", "new")
        self.assertEqual(self.service.inspect("new")["Id"], cid)
        self.assertRaises(NotFound, self.service.inspect, "old")

    def test_list(self) -> None:
        """List shows running ones unless C{all}; filters apply."""
        running = self.started("aa", Labels={"k": "v"})
        created = self.create("bb")
        self.assertEqual([c["Id"] for c in self.service.list_containers()], [running])
        everything = self.service.list_containers(all=True)
        self.assertEqual({c["Id"] for c in everything}, {running, created})
        self.assertEqual(
            [c["Id"] for c in self.service.list_containers(filters={"label": ["k=v"]})],
            [running],
        )
        self.assertEqual(
            [
                c["Id"]
                for c in self.service.list_containers(filters={"status": ["created"]})
            ],
            [created],
        )
        self.assertRaises(
            InvalidParameter, self.service.list_containers, filters={"nope": ["x"]}
        )
        self.assertEqual({c["Id"]: c["Status"] for c in everything}[created], "Created")

    def test_list_command_quoted(self) -> None:
        """An argument with a space is in single quotes, as dockerd lists it."""
        self.create("qq", Cmd=["sh", "-c", "echo a b"])
        (item,) = self.service.list_containers(all=True)
        self.assertEqual(item["Command"], "sh -c 'echo a b'")

    def test_update_types_and_live(self) -> None:
        """
        update refuses wrong types with dockerd's UpdateConfig message and
        hands a running container's new limits to the runtime.
        """
        cid = self.started()
        error = self.assertRaises(
            InvalidParameter, self.service.update, cid, {"Memory": "x"}
        )
        self.assertEqual(
            error.message,
            "json: cannot unmarshal string into Go struct field UpdateConfig.Memory"
            " of type int64",
        )
        applied: list[tuple[str, dict[str, object]]] = []

        def update(container_id: str, resources: dict[str, object]) -> object:
            applied.append((container_id, resources))
            return succeed(None)

        self.runtime.update = update
        result = self.successResultOf(self.service.update(cid, {"Memory": 1 << 26}))
        self.assertEqual(result, {"Warnings": []})
        self.assertEqual(applied, [(cid, {"memory": {"limit": 1 << 26}})])
        self.assertEqual(self.service.inspect(cid)["HostConfig"]["Memory"], 1 << 26)

    def test_kill_unknown_and_waits(self) -> None:
        """kill names itself for an unknown container; SIGKILL waits for the exit."""
        error = self.assertRaises(NotFound, self.service.kill, "nope")
        self.assertEqual(
            error.message, "Cannot kill container: nope: No such container: nope"
        )
        cid = self.started()
        self.runtime.deadly = set()
        killing = self.service.kill(cid)
        self.assertNoResult(killing)
        self.runtime.exit(cid, 137)
        self.successResultOf(killing)

    def test_prune_until(self) -> None:
        """
        prune's until is a Go duration before now, a timestamp or a date;
        anything else is dockerd's 400.
        """
        self.clock.advance(1000)
        old = self.create("old")
        self.clock.advance(600)
        new = self.create("new")
        self.clock.advance(60)
        error = self.assertRaises(
            InvalidParameter, self.service.prune, {"until": ["bogus"]}
        )
        self.assertEqual(
            error.message, 'failed to parse value as time or duration: "bogus"'
        )
        pruned = self.successResultOf(self.service.prune({"until": ["5m"]}))
        self.assertEqual(pruned["ContainersDeleted"], [old])
        pruned = self.successResultOf(self.service.prune({"until": ["1661"]}))
        self.assertEqual(pruned["ContainersDeleted"], [new])

    def test_prune_space_reclaimed(self) -> None:
        """
        Prune says how much the removed containers had written (the SDK's
        own test wants more than 0 after C{echo hello > /data.txt}); a
        running container is neither removed nor counted.
        """
        stopped = self.create("stopped")
        upper = self.root / "containers" / stopped / "upper"
        upper.mkdir(parents=True)
        (upper / "data.txt").write_bytes(b"hello\n")
        running = self.started("running")
        pruned = self.successResultOf(self.service.prune({}))
        self.assertEqual(pruned, {"ContainersDeleted": [stopped], "SpaceReclaimed": 6})
        self.assertEqual(self.service.inspect(running)["State"]["Status"], "running")

    def test_images_in_use(self) -> None:
        """The image store learns which containers use an image."""
        cid = self.started()
        self.assertEqual(
            self.service.containers_using("sha256:" + "b" * 64), [(cid, True)]
        )


class StartPathTests(_Base):
    """How a start reaches the runtime, and who sees the first output."""

    def attached(self, cid: str) -> list[bytes]:
        seen: list[bytes] = []
        self.service.attach(cid, lambda _s, d: seen.append(d), stdin=False,
                            stdout=True, stderr=True, stream=True)  # fmt: skip
        return seen

    def test_one_runtime_process(self) -> None:
        """
        Without a TTY a start is one runtime run (create and start in one
        runc process); with a TTY it is a create, then a start.
        """
        plain = self.started("plain")
        self.assertEqual(self.runtime.runs, 1)
        tty = self.started("tty", Tty=True)
        self.assertEqual(self.runtime.runs, 1)
        for cid in (plain, tty):
            self.assertEqual(self.service.inspect(cid)["State"]["Status"], "running")

    def test_first_bytes_reach_attached(self) -> None:
        """
        A process that writes as it starts: a client attached before the
        start (docker run) gets those bytes, with or without a TTY.
        """
        for name, tty in (("plain", False), ("tty", True)):
            cid = self.create(name, Tty=tty)
            self.runtime.on_start = lambda c: self.runtime.output(c, 1, b"first\n")
            seen = self.attached(cid)
            self.successResultOf(self.service.start(cid))
            self.assertEqual(seen, [b"first\n"], name)

    def test_client_held_until_connected(self) -> None:
        """
        A client attached with stdin before the start is paused until the
        container's stdio is there, then resumed; what it sent first goes in.
        """
        cid = self.create(OpenStdin=True)
        attachment = self.service.attach(
            cid, lambda _s, _d: None, stdin=True, stdout=True, stderr=True, stream=True
        )
        calls: list[str] = []

        class Producer:
            def pauseProducing(self) -> None:
                calls.append("pause")

            def resumeProducing(self) -> None:
                calls.append("resume")

        attachment.set_stdin_producer(Producer())
        attachment.write_stdin(b"early")
        self.assertEqual(calls, ["pause"])
        self.successResultOf(self.service.start(cid))
        self.assertEqual(calls, ["pause", "resume"])
        (stdio,) = self.runtime.containers[cid].stdios
        self.assertEqual(stdio.stdin, b"early")

    def test_attach_while_starting(self) -> None:
        """A client that attaches while the start is under way joins the process."""
        cid = self.create()
        self.runtime.hold = Deferred()
        starting = self.service.start(cid)
        seen = self.attached(cid)
        hold, self.runtime.hold = self.runtime.hold, None
        hold.callback(None)
        self.successResultOf(starting)
        self.runtime.output(cid, 1, b"later\n")
        self.assertEqual(seen, [b"later\n"])

    def test_failed_attach_cancels(self) -> None:
        """If a waiting client cannot be attached, the process never runs."""
        cid = self.create()
        self.attached(cid)

        def refuse(*_: object) -> Any:
            raise SystemError_("cannot attach")

        self.runtime.attach = refuse  # type: ignore[method-assign]
        failure = self.failureResultOf(self.service.start(cid), SystemError_)
        self.assertIn("cannot attach", failure.value.message)
        self.assertNotIn(cid, self.runtime.containers)
        self.assertEqual(self.service.inspect(cid)["State"]["Status"], "created")

    def test_monitor_while_bundle_made(self) -> None:
        """
        The monitor starts while the bundle is being made; the process is
        let go only once it is made. A bundle that cannot be made fails
        the start with its error, and nothing runs.
        """
        held = self.hold_start()
        cid = self.create()
        starting = self.service.start(cid)
        self.assertIn(cid, self.runtime.containers)
        self.assertEqual(self.runtime.containers[cid].status, "created")
        held.callback(None)
        self.successResultOf(starting)
        self.assertEqual(self.runtime.containers[cid].status, "running")

        def refuse(*_: object) -> Any:
            from twisted.internet.defer import fail  # noqa: PLC0415

            return fail(NotFound("unable to find user nobody"))

        self.service._bundles.prepare = refuse  # type: ignore[method-assign]
        other = self.create("other")
        failure = self.failureResultOf(self.service.start(other), SystemError_)
        self.assertIn("unable to find user", failure.value.message)
        self.assertNotIn(other, self.runtime.containers)
        self.assertEqual(self.service.inspect(other)["State"]["Status"], "created")

    def test_unexpected_error_reaches_waiters(self) -> None:
        """
        A start that fails with something no runtime says (a bug) still
        ends: the client hears a 500 (without Python's text) and docker run
        --rm's removal wait answers, instead of hanging.
        """
        self.flushLoggedErrors()
        cid = self.create(HostConfig={"AutoRemove": True})
        removed = self.service.wait(cid, "removed")

        def broken(*_: object, **__: object) -> Any:
            raise RuntimeError("boom")

        self.runtime.run = broken  # type: ignore[method-assign]
        failure = self.failureResultOf(self.service.start(cid), SystemError_)
        # Python's words stay in the log.
        self.assertIn("internal error", failure.value.message)
        self.assertNotIn("boom", failure.value.message)
        self.successResultOf(removed)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class RemovalTests(_Base):
    def directory(self, cid: str) -> Path:
        return self.root / "containers" / cid

    def test_auto_remove_answers_first(self) -> None:
        """
        docker run --rm's wait answers once the record is durably gone: the
        container is gone for every client and its name is free at once;
        its runtime state and directory go after (settled() waits).
        """
        cid = self.started(HostConfig={"AutoRemove": True})
        held: Deferred[None] = Deferred()
        real_delete = self.runtime.delete

        def delete(container_id: str, *, force: bool = False) -> Any:
            return held.addCallback(lambda _: real_delete(container_id, force=force))

        self.runtime.delete = delete  # type: ignore[method-assign]
        removed = self.service.wait(cid, "removed")
        self.runtime.exit(cid, 0)
        self.assertEqual(self.successResultOf(removed), {"StatusCode": 0})
        self.assertRaises(NotFound, self.service.inspect, cid)
        self.assertFalse((self.directory(cid) / "record.json").exists())
        self.assertTrue(self.directory(cid).exists())
        self.create("web")
        settled = self.service.settled()
        self.assertNoResult(settled)
        held.callback(None)
        self.successResultOf(settled)
        self.assertFalse(self.directory(cid).exists())
        self.assertNotIn(cid, self.runtime.containers)

    def test_force_remove_answers_first(self) -> None:
        """
        docker rm -f of a running container answers once it is dead and its
        record gone; the runtime's delete and the directory come after.
        """
        cid = self.started()
        held: Deferred[None] = Deferred()
        real_delete = self.runtime.delete

        def delete(container_id: str, *, force: bool = False) -> Any:
            return held.addCallback(lambda _: real_delete(container_id, force=force))

        self.runtime.delete = delete  # type: ignore[method-assign]
        self.successResultOf(self.service.remove(cid, force=True))
        self.assertRaises(NotFound, self.service.inspect, cid)
        self.assertTrue(self.directory(cid).exists())
        held.callback(None)
        self.successResultOf(self.service.settled())
        self.assertFalse(self.directory(cid).exists())

    def test_force_remove_waits_for_start(self) -> None:
        """
        docker rm -f while a start is under way waits for the start to end
        (both answer), then kills and removes what it started: the record
        is not saved again into the removed directory.
        """
        held = self.hold_start()
        cid = self.create()
        starting = self.service.start(cid)
        removing = self.service.remove(cid, force=True)
        self.assertNoResult(removing)
        self.assertEqual(self.service.inspect(cid)["State"]["Status"], "created")
        held.callback(None)
        self.successResultOf(starting)
        self.successResultOf(removing)
        self.assertRaises(NotFound, self.service.inspect, cid)
        self.successResultOf(self.service.settled())
        self.assertFalse(self.directory(cid).exists())
        self.assertNotIn(cid, self.runtime.containers)
        again, _, _ = make_service(self.root, runtime=self.runtime, clock=self.clock)
        self.successResultOf(again.restore())
        self.assertEqual(again.list_containers(all=True), [])

    def test_remove_waits_for_start(self) -> None:
        """
        docker rm (without -f) while a start is under way: once the start
        has made it run, the removal is refused as for any running one.
        """
        held = self.hold_start()
        cid = self.create()
        starting = self.service.start(cid)
        removing = self.service.remove(cid)
        held.callback(None)
        self.successResultOf(starting)
        failure = self.failureResultOf(removing, Conflict)
        self.assertIn("container is running", failure.value.message)
        self.assertEqual(self.service.inspect(cid)["State"]["Status"], "running")

    def test_orphans_reaped_at_restore(self) -> None:
        """
        A container directory without its record (the daemon stopped half
        way through a removal) goes at the next start, its runtime state
        with it; other directories are left alone.
        """
        cid = self.started()
        (self.directory(cid) / "record.json").unlink()
        other = self.root / "containers" / "notes"
        other.mkdir()
        again, _, _ = make_service(self.root, runtime=self.runtime, clock=self.clock)
        self.successResultOf(again.restore())
        self.successResultOf(again.settled())
        self.assertFalse(self.directory(cid).exists())
        self.assertNotIn(cid, self.runtime.containers)
        self.assertTrue(other.exists())
        self.assertEqual(again.list_containers(all=True), [])


class DiffTests(SynchronousTestCase):
    def test_init_paths_left_out(self) -> None:
        """
        docker diff leaves out what dockerd keeps in the init layer, and a
        directory changed only by them; other changes stay.
        """
        from dockserve.daemon.containers.files import (  # noqa: PLC0415
            _without_init_paths,
        )

        found = [
            {"Path": "/bin", "Kind": 0},
            {"Path": "/bin/true", "Kind": 2},
            {"Path": "/etc", "Kind": 0},
            {"Path": "/etc/hosts", "Kind": 1},
            {"Path": "/etc/resolv.conf", "Kind": 1},
            {"Path": "/newfile", "Kind": 1},
        ]
        self.assertEqual(
            _without_init_paths(found),
            [
                {"Path": "/bin", "Kind": 0},
                {"Path": "/bin/true", "Kind": 2},
                {"Path": "/newfile", "Kind": 1},
            ],
        )
        found.append({"Path": "/etc/motd", "Kind": 1})
        self.assertIn({"Path": "/etc", "Kind": 0}, _without_init_paths(found))


class ExecTests(_Base):
    def test_exec(self) -> None:
        """An exec runs with the container's env plus its own; its code is kept."""
        cid = self.started(Env=["A=1"])
        exec_id = self.service.exec_create(cid, {"Cmd": ["id"], "Env": ["B=2"]})["Id"]
        seen: list[bytes] = []
        instance = self.successResultOf(
            self.service.exec_start(exec_id, lambda _s, d: seen.append(d))
        )
        proc = self.runtime.execs[0]
        self.assertEqual(proc.process["args"], ["id"])
        self.assertIn("A=1", proc.process["env"])
        self.assertIn("B=2", proc.process["env"])
        self.assertTrue(self.service.exec_inspect(exec_id)["Running"])
        proc.emit(1, b"uid=0\n")
        proc.exit(5)
        self.assertEqual(self.successResultOf(instance.exited), 5)
        info = self.service.exec_inspect(exec_id)
        self.assertEqual((info["Running"], info["ExitCode"]), (False, 5))
        self.assertEqual(seen, [b"uid=0\n"])
        self.assertRaises(Conflict, self.service.exec_start, exec_id, None)

    def test_exec_stopped(self) -> None:
        """Exec into a stopped container is 409."""
        cid = self.create()
        error = self.assertRaises(
            Conflict, self.service.exec_create, cid, {"Cmd": ["sh"]}
        )
        self.assertEqual(error.message, f"Container {cid} is not running")

    def test_exec_paused(self) -> None:
        """Exec into a paused container is 409."""
        cid = self.started()
        self.successResultOf(self.service.pause(cid))
        error = self.assertRaises(
            Conflict, self.service.exec_create, cid, {"Cmd": ["sh"]}
        )
        self.assertEqual(
            error.message,
            f"Container {cid} is paused, unpause the container before exec",
        )

    def test_exec_not_found(self) -> None:
        """An executable that is not there: 127 and a 400."""
        cid = self.started()
        exec_id = self.service.exec_create(cid, {"Cmd": ["nosuch"]})["Id"]
        self.failureResultOf(self.service.exec_start(exec_id, None), InvalidParameter)
        self.assertEqual(self.service.exec_inspect(exec_id)["ExitCode"], 127)

    def test_unknown_exec(self) -> None:
        """An unknown exec ID is 404."""
        error = self.assertRaises(NotFound, self.service.exec_inspect, "nope")
        self.assertEqual(error.message, "No such exec instance: nope")


class RestoreTests(_Base):
    def restarted(self) -> ContainerService:
        again, _, _ = make_service(self.root, runtime=self.runtime, clock=self.clock)
        self.successResultOf(again.restore())
        return again

    def test_running_survives(self) -> None:
        """A container running at a daemon restart is running after it, and watched."""
        cid = self.started()
        again = self.restarted()
        self.assertEqual(again.inspect(cid)["State"]["Status"], "running")
        waiting = again.wait(cid, None)
        self.runtime.exit(cid, 4)
        self.assertEqual(self.successResultOf(waiting), {"StatusCode": 4})

    def test_exited_while_down(self) -> None:
        """A container that exited while the daemon was down shows its code."""
        cid = self.started()
        exits = self.runtime.containers[cid].waiters
        self.runtime.containers[cid].waiters = []  # the old daemon is gone
        self.runtime.exit(cid, 7)
        del exits
        again = self.restarted()
        state = again.inspect(cid)["State"]
        self.assertEqual((state["Status"], state["ExitCode"]), ("exited", 7))

    def test_always_restarts_at_boot(self) -> None:
        """An always-container that exited while down is started again."""
        cid = self.started(HostConfig={"RestartPolicy": {"Name": "always"}})
        self.runtime.containers[cid].waiters = []
        self.runtime.exit(cid, 0)
        again = self.restarted()
        self.clock.advance(1)
        self.assertEqual(again.inspect(cid)["State"]["Status"], "running")

    def test_stopped_by_hand_at_boot(self) -> None:
        """
        After a C{docker stop}, the next daemon start runs an always-container
        again but leaves an unless-stopped one stopped, as dockerd does.
        """
        always = self.started("aa", HostConfig={"RestartPolicy": {"Name": "always"}})
        unless = self.started(
            "uu", HostConfig={"RestartPolicy": {"Name": "unless-stopped"}}
        )
        for cid in (always, unless):
            self.successResultOf(self.service.stop(cid, timeout=1))
        again = self.restarted()
        self.clock.advance(1)
        self.assertEqual(again.inspect(always)["State"]["Status"], "running")
        self.assertEqual(again.inspect(unless)["State"]["Status"], "exited")

    def test_started_while_dying(self) -> None:
        """
        A container the runtime runs but whose record never heard of the
        start (the daemon died in between) is running after the restart,
        with a real StartedAt rather than the zero time.
        """
        cid = self.started()
        rec = self.service.resolve(cid)
        record.save(
            self.root / "containers" / cid,
            rec.with_state(status="created", started_at=record.ZERO_TIME),
        )
        again = self.restarted()
        state = again.inspect(cid)["State"]
        self.assertEqual(state["Status"], "running")
        self.assertNotEqual(state["StartedAt"], record.ZERO_TIME)

    def test_roots_released_at_restore(self) -> None:
        """
        A container that does not run at a restart has its root unmounted
        (a start or a docker cp may have been cut short with it mounted).
        """
        cid = self.create()
        again, _, _ = make_service(self.root, runtime=self.runtime, clock=self.clock)
        bundles = again._bundles
        bundles.mounted.add(cid)  # type: ignore[attr-defined]
        self.successResultOf(again.restore())
        self.assertEqual(bundles.mounted, set())  # type: ignore[attr-defined]


class MonitorLostTests(_Base):
    def test_error_says_why(self) -> None:
        """
        A container stopped because its conmon was gone shows it: exited
        with the code the runtime gave, State.Error naming the monitor, and
        its waiters answered.
        """
        cid = self.started()
        waiting = self.service.wait(cid, None)
        self.runtime.exit(cid, 137, monitor_lost=True)
        result = self.successResultOf(waiting)
        self.assertEqual(result["StatusCode"], 137)
        self.assertIn("monitor (conmon)", result["Error"]["Message"])
        state = self.service.inspect(cid)["State"]
        self.assertEqual((state["Status"], state["ExitCode"]), ("exited", 137))
        self.assertIn("monitor (conmon)", state["Error"])
        # The next start clears it.
        self.successResultOf(self.service.start(cid))
        self.assertEqual(self.service.inspect(cid)["State"]["Error"], "")
