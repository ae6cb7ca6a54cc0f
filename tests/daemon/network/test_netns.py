# -*- test-case-name: tests.daemon.network.test_netns -*-
"""
Tests for L{dockserve.daemon.network.netns}.

The unit tests change nothing on the machine. Every test that makes a
namespace, or runs C{ip} or a CNI plugin, does it in a child Python
process started with C{ip netns exec <a namespace of its own>}
(L{ScratchHost}): the child's whole process is in that namespace and in a
mount namespace of its own, so nothing it does (links, bridges, sysctls,
nsfs mounts) reaches the machine's, and its mounts go with it. The child
refuses to run in the machine's own namespace, and each test checks that
the machine's links and nftables ruleset are as they were.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from dockserve.daemon.network import netns
from dockserve.daemon.network.commands import Result
from dockserve.errors import SystemError_

#: The checkout's root, for the child's imports.
ROOT = Path(__file__).resolve().parents[3]

#: What the child runs: C{<module> <function> <host inode> <json args>};
#: the function is a coroutine function taking the reactor and the args,
#: and its JSON-able value is printed as the last line.
_CHILD = """
import importlib, json, os, sys, traceback
from twisted.internet import defer, task
module, name, host_inode, args = sys.argv[1:5]
if os.stat("/proc/self/ns/net").st_ino == int(host_inode):
    sys.exit("refusing to run in the machine's own network namespace")
function = getattr(importlib.import_module(module), name)
def report(value):
    print(json.dumps({"value": value}), flush=True)
def failed(failure):
    print(json.dumps({"error": failure.getTraceback()}), flush=True)
def main(reactor):
    d = defer.Deferred.fromCoroutine(function(reactor, *json.loads(args)))
    return d.addCallbacks(report, failed)
task.react(main)
"""


def _host_state() -> dict[str, Any]:
    """The machine's own links (names) and nftables ruleset."""
    links = subprocess.run(
        ["ip", "-br", "link"], capture_output=True, text=True, check=True
    ).stdout
    ruleset = subprocess.run(
        ["nft", "list", "ruleset"], capture_output=True, text=True, check=False
    ).stdout
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    return {
        "links": sorted(line.split()[0] for line in links.splitlines() if line),
        "ruleset": ruleset,
        "ip_forward": forward,
    }


def _ours(link: str) -> bool:
    """A link name this project's plumbing makes."""
    return link.startswith(("cni", "dockserve", "br-", "dst", "veth"))


class ScratchHost:
    """
    A network namespace made for one test, standing for the daemon's host;
    code under test runs in it (L{run}), and it is deleted after the test,
    failed or not, after which the machine's own state is checked.
    """

    def __init__(self, case: TestCase | SynchronousTestCase) -> None:
        for tool in ("ip", "unshare", "nsenter"):
            if shutil.which(tool) is None:
                raise SkipTest(f"{tool} is not installed")
        if os.geteuid() != 0:
            raise SkipTest("network namespaces need root")
        self.case = case
        self.name = f"dstest-{secrets.token_hex(4)}"
        self.work = Path(case.mktemp()).resolve()
        self.work.mkdir(parents=True)
        before = _host_state()
        case.addCleanup(self._check_host, before)
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        case.addCleanup(self._delete)

    def _delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=True)

    def _check_host(self, before: dict[str, Any]) -> None:
        """The machine's links and ruleset are as before; none of ours."""
        after = _host_state()
        new = [link for link in after["links"] if link not in before["links"]]
        self.case.assertEqual([link for link in new if _ours(link)], [])
        self.case.assertEqual(after, before)
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
        self.case.assertNotIn(self.name, listed)

    def run(self, module: str, function: str, *args: Any) -> Any:
        """
        Run C{module.function(reactor, *args)} in a child process in this
        namespace; its value, or the test fails with the child's traceback.
        """
        argv = [
            "ip", "netns", "exec", self.name, sys.executable, "-c", _CHILD,
            module, function, str(Path("/proc/self/ns/net").stat().st_ino),
            json.dumps(args),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
            cwd=ROOT,
            check=False,
        )
        lines = done.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1])
        except (IndexError, ValueError):
            self.case.fail(f"child failed ({done.returncode}): {done.stderr}")
        if "error" in answer:
            self.case.fail(answer["error"] + done.stderr)
        return answer["value"]


# --- what runs in the child --------------------------------------------------


def mounts_at(path: str) -> int:
    """How many mounts this process's mount namespace has at C{path}."""
    text = Path("/proc/self/mountinfo").read_text()
    return sum(1 for line in text.splitlines() if line.split()[4] == path)


async def _lifecycle(reactor: Any, work: str) -> dict[str, Any]:
    """Create (twice), look inside, list, remove (twice), with timings."""
    directory = Path(work) / "netns"
    path = directory / "c1"
    started = time.perf_counter()
    await netns.create(reactor, path)
    created = time.perf_counter() - started
    inode = path.stat().st_ino
    again = time.perf_counter()
    await netns.create(reactor, path)
    second = time.perf_counter() - again
    links = await netns.run_in(reactor, path, ["ip", "-br", "link"])
    listed = netns.list_namespaces(directory)
    facts = {
        "is_namespace": netns.is_namespace(path),
        "own": inode != Path("/proc/self/ns/net").stat().st_ino,
        "same_after_second_create": path.stat().st_ino == inode,
        "mounts": mounts_at(str(path)),
        "links": links.out.decode().split(),
        "listed": listed,
        "create_ms": created * 1000,
        "second_create_ms": second * 1000,
    }
    started = time.perf_counter()
    netns.remove(path)
    facts["remove_ms"] = (time.perf_counter() - started) * 1000
    netns.remove(path)
    facts["after"] = {
        "exists": path.exists(),
        "mounts": mounts_at(str(path)),
        "listed": netns.list_namespaces(directory),
    }
    return facts


async def _leftover(reactor: Any, work: str) -> dict[str, Any]:
    """A plain file where a namespace should be (a create that died)."""
    path = Path(work) / "netns" / "c2"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    before = netns.is_namespace(path)
    await netns.create(reactor, path)
    made = netns.is_namespace(path)
    netns.remove(path)
    return {"before": before, "made": made, "exists": path.exists()}


# --- the tests -----------------------------------------------------------------


class IsNamespaceTests(SynchronousTestCase):
    """L{netns.is_namespace} asks the kernel; it changes nothing."""

    def test_network_namespace(self) -> None:
        """A process's network namespace file is one."""
        self.assertTrue(netns.is_namespace("/proc/self/ns/net"))

    def test_other_kind(self) -> None:
        """A namespace of another kind is not."""
        self.assertFalse(netns.is_namespace("/proc/self/ns/uts"))

    def test_plain_missing_directory(self) -> None:
        """A plain file, a missing one, a directory are not."""
        plain = Path(self.mktemp())
        plain.write_bytes(b"")
        self.assertFalse(netns.is_namespace(plain))
        self.assertFalse(netns.is_namespace(plain.with_name("missing")))
        self.assertFalse(netns.is_namespace(plain.parent))

    def test_fifo(self) -> None:
        """A FIFO is not one, and asking does not block."""
        fifo = Path(self.mktemp())
        os.mkfifo(fifo)
        self.assertFalse(netns.is_namespace(fifo))


class ListRemoveTests(SynchronousTestCase):
    """L{netns.list_namespaces} and L{netns.remove} on plain files."""

    def test_list(self) -> None:
        """Files by name, sorted; no directories; nothing for no directory."""
        directory = Path(self.mktemp())
        self.assertEqual(netns.list_namespaces(directory), [])
        (directory / "sub").mkdir(parents=True)
        for name in ("b", "a"):
            (directory / name).write_bytes(b"")
        self.assertEqual(netns.list_namespaces(directory), ["a", "b"])

    def test_remove_plain_and_missing(self) -> None:
        """A plain file (not a mount) is deleted; a missing one is fine."""
        path = Path(self.mktemp())
        path.write_bytes(b"")
        netns.remove(path)
        self.assertFalse(path.exists())
        netns.remove(path)


class FakeRun:
    """A command runner that records each call and answers as told."""

    def __init__(self, *answers: Result | Exception) -> None:
        self.calls: list[tuple[list[str], bytes | None, Any]] = []
        self.answers = list(answers)

    def __call__(
        self, _reactor: Any, argv: list[str], stdin: bytes | None, env: Any
    ) -> Deferred[Result]:
        self.calls.append((argv, stdin, env))
        answer = self.answers.pop(0) if self.answers else Result(0, b"", b"")
        if isinstance(answer, Exception):
            raise answer
        return succeed(answer)


class CreateUnitTests(SynchronousTestCase):
    """L{netns.create}'s checks and failures, with a fake C{unshare}."""

    def test_argv(self) -> None:
        """C{unshare --net=<path> true}; when it leaves no namespace, an error."""
        path = Path(self.mktemp()) / "netns" / "c1"
        run = FakeRun()
        failure = self.failureResultOf(netns.create(None, path, run=run))
        self.assertEqual(
            run.calls, [(["unshare", f"--net={path}", "true"], None, None)]
        )
        failure.trap(SystemError_)
        self.assertIn(f"cannot create network namespace {path}", failure.value.message)

    def test_unshare_fails(self) -> None:
        """C{unshare}'s complaint is the message; the empty file goes."""
        path = Path(self.mktemp()) / "c1"
        run = FakeRun(Result(1, b"", b"unshare: mount failed: Permission denied\n"))
        failure = self.failureResultOf(netns.create(None, path, run=run))
        failure.trap(SystemError_)
        self.assertEqual(
            failure.value.message,
            f"cannot create network namespace {path}: "
            "unshare: mount failed: Permission denied",
        )
        self.assertFalse(path.exists())

    def test_no_unshare(self) -> None:
        """No C{unshare} on the machine: said so."""
        path = Path(self.mktemp()) / "c1"
        run = FakeRun(FileNotFoundError(2, "No such file or directory"))
        failure = self.failureResultOf(netns.create(None, path, run=run))
        failure.trap(SystemError_)
        self.assertTrue(
            failure.value.message.endswith("unshare: No such file or directory")
        )

    def test_bad_directory(self) -> None:
        """A directory that cannot be made: an error, nothing run."""
        blocker = Path(self.mktemp())
        blocker.write_bytes(b"")
        run = FakeRun()
        failure = self.failureResultOf(netns.create(None, blocker / "c1", run=run))
        failure.trap(SystemError_)
        self.assertEqual(run.calls, [])

    def test_exists(self) -> None:
        """A namespace already there is kept: nothing is run."""
        link = Path(self.mktemp())
        link.symlink_to("/proc/self/ns/net")
        run = FakeRun()
        self.successResultOf(netns.create(None, link, run=run))
        self.assertEqual(run.calls, [])

    def test_run_in(self) -> None:
        """C{nsenter --net=<path> -- argv}, with stdin."""
        run = FakeRun(Result(0, b"out", b""))
        result = self.successResultOf(
            netns.run_in(None, Path("/x/c1"), ["ip", "link"], stdin=b"in", run=run)
        )
        self.assertEqual(result, Result(0, b"out", b""))
        self.assertEqual(
            run.calls, [(["nsenter", "--net=/x/c1", "--", "ip", "link"], b"in", None)]
        )


class RealNamespaceTests(SynchronousTestCase):
    """Real namespaces, made in a child inside a scratch namespace."""

    def test_lifecycle(self) -> None:
        """
        C{create} makes a namespace of its own with only C{lo} (down),
        twice is once (one mount, the same namespace); C{list_namespaces}
        names it; C{remove} unmounts and deletes it, twice without
        complaint.
        """
        host = ScratchHost(self)
        facts = host.run(__name__, "_lifecycle", str(host.work))
        self.assertTrue(facts["is_namespace"])
        self.assertTrue(facts["own"])
        self.assertTrue(facts["same_after_second_create"])
        self.assertEqual(facts["mounts"], 1)
        self.assertEqual(facts["links"][:2], ["lo", "DOWN"])
        self.assertEqual(len(facts["links"]), 4)
        self.assertEqual(facts["listed"], ["c1"])
        self.assertEqual(facts["after"], {"exists": False, "mounts": 0, "listed": []})
        self.assertLess(facts["create_ms"], 1000)
        self.assertLess(facts["second_create_ms"], facts["create_ms"])
        self.assertLess(facts["remove_ms"], 100)

    def test_over_leftover(self) -> None:
        """A plain file left where the namespace goes is made into one."""
        host = ScratchHost(self)
        facts = host.run(__name__, "_leftover", str(host.work))
        self.assertEqual(facts, {"before": False, "made": True, "exists": False})
