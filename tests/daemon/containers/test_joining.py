# -*- test-case-name: tests.daemon.containers.test_joining -*-
"""
Tests for L{dockserve.daemon.containers.joining}: links, joined IPC and PID
namespaces and devices, through the container service on fakes, with the
network plumbing's parts replaced by recorders. The texts and statuses
are those measured side by side with dockerd 20.10.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import joins, shm
from dockserve.daemon.containers.service import ContainerService
from dockserve.daemon.network.attach import Attachments
from dockserve.daemon.network.model import Endpoint
from dockserve.daemon.network.service import NetworkService
from dockserve.errors import InvalidParameter, NotFound, SystemError_
from dockserve.testing.containers import FakeBundles, FakeImages, ScriptedRuntime

if TYPE_CHECKING:
    from dockserve.daemon.containers.record import ContainerRecord
    from dockserve.daemon.contracts import ResolvedImage


class _Bundles(FakeBundles):
    """L{FakeBundles} that keeps the record each start's bundle was made from."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, ContainerRecord] = {}

    def prepare(
        self,
        directory: Path,
        record: ContainerRecord,
        image: ResolvedImage,
        network: Any = None,
    ) -> Deferred[str]:
        self.records[record.id] = record
        return super().prepare(directory, record, image, network)


class _Plumbing:
    """Every part of the network plumbing: each interface the next address."""

    def __init__(self) -> None:
        self.next = 2

    def create(self, _path: Path) -> Deferred[None]:
        return succeed(None)

    def remove(self, _path: Path) -> Deferred[None]:
        return succeed(None)

    def loopback(self, _path: Path) -> Deferred[None]:
        return succeed(None)

    def add(self, _path: Path, cid: str, ifname: str, spec: Any, **_: Any) -> Any:
        address = spec.subnet.network_address + self.next
        self.next += 1
        gateway = spec.subnet.network_address + 1
        return succeed(
            Endpoint(spec.id, cid, ifname, IPv4Address(address),
                     spec.subnet.prefixlen, IPv4Address(gateway), "02:42:ac:11:00:02")
        )  # fmt: skip

    def delete(self, *_: Any) -> Deferred[None]:
        return succeed(None)

    def enable_forwarding(self) -> None:
        pass

    def enable_route_localnet(self, _bridge: str) -> None:
        pass

    def enable_bridge_netfilter(self) -> None:
        pass

    def apply(self, *_: Any) -> Deferred[None]:
        return succeed(None)

    def reserve(self, _cid: str, _requests: Any) -> list[Any]:
        return []

    def release(self, _cid: str) -> list[Any]:
        return []

    def bindings(self, _cid: str | None = None) -> list[Any]:
        return []

    def attach(self, _cid: str, _path: Path) -> Deferred[None]:
        return succeed(None)

    def run(self, _path: Path, _argv: list[str]) -> Deferred[Any]:
        """C{ip route show default} in a namespace: a route is there."""
        return succeed(SimpleNamespace(code=0, out=b"default via x", err=b""))

    def detach(self, _cid: str) -> Deferred[None]:
        return succeed(None)


class _Base(SynchronousTestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp())
        root.mkdir()
        self.clock = Clock()
        self.runtime = ScriptedRuntime(self.clock)
        self.bundles = _Bundles()
        self.service = ContainerService(
            root=root / "containers",
            exec_root=root / "exec",
            images=FakeImages(),
            runtime=self.runtime,
            bundles=self.bundles,
            reactor=self.clock,
        )
        self.networks = NetworkService(root / "network", routes=list)
        self.networks.restore()
        parts = _Plumbing()
        self.attachments = Attachments(
            root / "exec", self.networks, netns=parts, cni=parts, firewall=parts,
            ports=parts, dns=parts,
        )  # fmt: skip
        self.service.set_networking(self.networks, self.attachments)

    def create(self, name: str, **host: Any) -> str:
        body = {"Image": "busybox", "Cmd": ["sleep", "1000"], "HostConfig": host}
        return str(self.service.create(name, body)["Id"])

    def start(self, name: str) -> None:
        self.successResultOf(self.service.start(name))

    def started(self, name: str, **host: Any) -> str:
        cid = self.create(name, **host)
        self.start(name)
        return cid

    def start_fails(self, name: str) -> SystemError_:
        failure = self.failureResultOf(self.service.start(name), SystemError_)
        error = failure.value
        assert isinstance(error, SystemError_)
        state = self.service.inspect(name)["State"]
        self.assertEqual(
            (state["Status"], state["ExitCode"], state["Error"]),
            ("created", 128, error.message),
        )
        return error

    def joined(self, name: str) -> joins.Joins:
        found = joins.of(
            self.bundles.records[self.service.resolve(name).id].host_config
        )
        assert found is not None
        return found


class LinkCreateTests(_Base):
    """A link is looked for at create and kept in dockerd's form."""

    def test_kept_form(self) -> None:
        """
        C{HostConfig.Links} is C{/other:/me/alias}, the other's real name
        (an ID prefix finds it), an alias of its own name when none is
        given; a second use of an alias is ignored, as dockerd does.
        """
        tgt = self.create("tgt")
        self.create("other")
        self.create("me", Links=["tgt:al", tgt[:6] + ":al2", "tgt", "other:al"])
        self.assertEqual(
            self.service.inspect("me")["HostConfig"]["Links"],
            ["/tgt:/me/al", "/tgt:/me/al2", "/tgt:/me/tgt"],
        )

    def test_missing_target(self) -> None:
        """A container that is not there is dockerd's 400, never a 404."""
        error = self.assertRaises(
            InvalidParameter, self.create, "me", Links=["nope:al"]
        )
        self.assertEqual(
            error.message, "could not get container for nope: No such container: nope"
        )

    def test_bad_format(self) -> None:
        """dockerd's 500s for a link that is not C{other[:alias]}."""
        self.create("tgt")
        for value, message in (
            ("", "empty string specified for links"),
            ("a:b:c", "bad format for links: a:b:c"),
        ):
            with self.subTest(value=value):
                error = self.assertRaises(
                    SystemError_, self.create, "me", Links=[value]
                )
                self.assertEqual(error.message, message)

    def test_shared_network(self) -> None:
        """
        A link to a container in another's network namespace is to that
        one; to one on the host's network it is dockerd's 400.
        """
        self.create("owner")
        self.create("guest", NetworkMode="container:owner")
        self.create("me", Links=["guest:al"])
        self.assertEqual(
            self.service.inspect("me")["HostConfig"]["Links"], ["/owner:/me/al"]
        )
        self.create("hosted", NetworkMode="host")
        error = self.assertRaises(
            InvalidParameter, self.create, "me2", Links=["hosted:al"]
        )
        self.assertEqual(
            error.message,
            "conflicting options: host type networking can't be used with links. "
            "This would result in undefined behavior",
        )

    def test_user_network(self) -> None:
        """On a user-defined network a HostConfig link is nothing (inspect null)."""
        self.networks.create({"Name": "un"})
        self.create("tgt")
        self.create("me", NetworkMode="un", Links=["tgt:al"])
        self.assertIsNone(self.service.inspect("me")["HostConfig"]["Links"])


class LinkStartTests(_Base):
    """At a start on the default bridge, links are checked and given."""

    def test_not_running(self) -> None:
        """A target that is not running: dockerd's 500, exit code 128."""
        self.create("tgt")
        self.create("me", Links=["tgt:al"])
        error = self.start_fails("me")
        self.assertEqual(
            error.message, "Cannot link to a non running container: /tgt AS /me/al"
        )

    def test_gone(self) -> None:
        """A target removed since: the same words, as dockerd."""
        self.create("tgt")
        self.create("me", Links=["tgt:al"])
        self.successResultOf(self.service.remove("tgt"))
        error = self.start_fails("me")
        self.assertEqual(
            error.message, "Cannot link to a non running container: /tgt AS /me/al"
        )

    def test_not_on_default_bridge(self) -> None:
        """A target on a user network only: dockerd's text."""
        self.networks.create({"Name": "un"})
        self.started("tgt", NetworkMode="un")
        self.create("me", Links=["tgt:al"])
        error = self.start_fails("me")
        self.assertEqual(
            error.message,
            "Cannot link to /tgt, as it does not belong to the default network",
        )

    def test_hosts_and_env(self) -> None:
        """
        The alias, the target's hostname and name in C{/etc/hosts}; its
        address, ports, name and environment in the environment, ahead of
        the container's own.
        """
        tgt = self.started("tgt")
        self.service.create(
            "me",
            {"Image": "busybox", "Cmd": ["sh"], "Env": ["AL_NAME=mine"],
             "HostConfig": {"Links": ["tgt:al"]}},
        )  # fmt: skip
        self.start("me")
        plan = self.bundles.networks[self.service.resolve("me").id]
        self.assertEqual(plan.links, (("172.17.0.2", f"al {tgt[:12]} tgt"),))
        self.assertEqual(self.joined("me").link_env, ("AL_NAME=/me/al",))

    def test_exposed_ports(self) -> None:
        """The target's exposed ports, by its address on the default bridge."""
        self.service.create(
            "tgt",
            {"Image": "busybox", "Cmd": ["sh"], "Env": ["FOO=bar"],
             "ExposedPorts": {"80/tcp": {}}},
        )  # fmt: skip
        self.start("tgt")
        self.started("me", Links=["tgt:db"])
        self.assertEqual(
            [e for e in self.joined("me").link_env if not e.startswith("DB_ENV_PATH")],
            [
                "DB_PORT=tcp://172.17.0.2:80",
                "DB_PORT_80_TCP=tcp://172.17.0.2:80",
                "DB_PORT_80_TCP_ADDR=172.17.0.2",
                "DB_PORT_80_TCP_PORT=80",
                "DB_PORT_80_TCP_PROTO=tcp",
                "DB_NAME=/me/db",
                "DB_ENV_FOO=bar",
            ],
        )

    def test_parents_told_new_address(self) -> None:
        """
        A target started again (at another address) is given it in the
        C{/etc/hosts} of the running containers that link to it.
        """
        self.started("tgt")
        self.started("me", Links=["tgt:al"])
        hosts = self.service.directory("me") / "hosts"
        hosts.write_text("127.0.0.1\tlocalhost\n172.17.0.2\tal x tgt\n")
        self.successResultOf(self.service.stop("tgt", timeout=0))
        self.start("tgt")
        self.assertEqual(
            hosts.read_text(), "127.0.0.1\tlocalhost\n172.17.0.4\tal x tgt\n"
        )

    def test_no_default_bridge(self) -> None:
        """Without networking, a link does nothing at a start (loopback only)."""
        self.service.set_networking(self.networks, None)
        self.create("tgt")
        self.started("me", Links=["tgt:al"])
        self.assertEqual(self.joined("me").link_env, ())


class RemoveLinkTests(_Base):
    """C{docker rm --link} (C{DELETE /containers/parent/alias?link=1})."""

    def test_removed(self) -> None:
        """The link goes from its container's record; the target stays."""
        self.create("tgt")
        self.create("par", Links=["tgt:al", "tgt:al2"])
        self.service.remove_link("/par/al")
        self.assertEqual(
            self.service.inspect("par")["HostConfig"]["Links"], ["/tgt:/par/al2"]
        )
        self.service.remove_link("par/al2")
        self.assertIsNone(self.service.inspect("par")["HostConfig"]["Links"])
        self.assertEqual(self.service.inspect("tgt")["Name"], "/tgt")

    def test_running_hosts(self) -> None:
        """A running container's C{/etc/hosts} loses the alias's line."""
        self.started("tgt")
        self.started("par", Links=["tgt:al"])
        hosts = self.service.directory("par") / "hosts"
        hosts.write_text("127.0.0.1\tlocalhost\n172.17.0.2\tal x tgt\n")
        self.service.remove_link("par/al")
        self.assertEqual(hosts.read_text(), "127.0.0.1\tlocalhost\n")

    def test_errors(self) -> None:
        """dockerd's answers: a 500 for a container's own name, else 404."""
        self.create("tgt")
        self.create("par", Links=["tgt:al"])
        for reference in ("par", "/tgt"):
            with self.subTest(reference=reference):
                error = self.assertRaises(
                    SystemError_, self.service.remove_link, reference
                )
                self.assertEqual(
                    error.message,
                    "Conflict, cannot remove the default link name of the container",
                )
        for reference in ("nope", "par/nope", "nope/x"):
            with self.subTest(reference=reference):
                error = self.assertRaises(NotFound, self.service.remove_link, reference)
                self.assertEqual(error.message, f"No such container: {reference}")


class RenameTests(_Base):
    """A rename renames the links that name the container, either way."""

    def test_rename(self) -> None:
        self.create("tgt")
        self.create("par", Links=["tgt:al"])
        self.service.rename("tgt", "tgtr")
        self.service.rename("par", "par2")
        self.assertEqual(
            self.service.inspect("par2")["HostConfig"]["Links"], ["/tgtr:/par2/al"]
        )


class NamespaceTests(_Base):
    """C{--ipc container:X}, C{--pid container:X}, C{--ipc shareable}."""

    def test_kept_by_id(self) -> None:
        """X is kept by its ID; one that is not there is dockerd's 400."""
        donor = self.create("donor")
        self.create("me", IpcMode="container:donor", PidMode="container:donor")
        host = self.service.inspect("me")["HostConfig"]
        self.assertEqual(
            (host["IpcMode"], host["PidMode"]),
            (f"container:{donor}", f"container:{donor}"),
        )
        for key in ("IpcMode", "PidMode"):
            with self.subTest(key=key):
                error = self.assertRaises(
                    InvalidParameter, self.create, "xx", **{key: "container:nope"}
                )
                self.assertEqual(error.message, "No such container: nope")

    def test_shareable(self) -> None:
        """A shareable container's C{/dev/shm} is its own host directory."""
        self.started("donor", IpcMode="shareable")
        found = self.joined("donor")
        self.assertEqual(found.shm, str(shm.path(self.service.directory("donor"))))
        self.assertTrue(found.own_shm)

    def test_join(self) -> None:
        """A running shareable donor: its namespaces by its pid, its /dev/shm."""
        self.started("donor", IpcMode="shareable")
        shm.path(self.service.directory("donor")).mkdir()
        pid = self.service.inspect("donor")["State"]["Pid"]
        self.started("me", IpcMode="container:donor", PidMode="container:donor")
        found = self.joined("me")
        self.assertEqual(
            (found.ipc_namespace, found.pid_namespace, found.shm, found.own_shm),
            (f"/proc/{pid}/ns/ipc", f"/proc/{pid}/ns/pid",
             str(shm.path(self.service.directory("donor"))), False),
        )  # fmt: skip

    def test_ipc_refusals(self) -> None:
        """dockerd's 500s: not shareable, not running, gone."""
        donor = self.started("donor")
        self.create("me", IpcMode="container:donor")
        self.assertEqual(
            self.start_fails("me").message,
            f"can't join IPC of container {donor}: non-shareable IPC (hint: use "
            "IpcMode:shareable for the donor container)",
        )
        other = self.create("stopped", IpcMode="shareable")
        self.create("me2", IpcMode="container:stopped")
        self.assertEqual(
            self.start_fails("me2").message,
            f"can't join IPC of container {other}: container {other} is not running",
        )
        self.successResultOf(self.service.remove("stopped"))
        self.assertEqual(
            self.start_fails("me2").message,
            f"can't join IPC of container {other}: No such container: {other}",
        )

    def test_pid_refusals(self) -> None:
        """dockerd's 500s: not running, gone."""
        other = self.create("stopped")
        self.create("me", PidMode="container:stopped")
        self.assertEqual(
            self.start_fails("me").message, f"container {other} is not running"
        )
        self.successResultOf(self.service.remove("stopped"))
        self.assertEqual(
            self.start_fails("me").message,
            f"cannot join PID of a non running container: {other}: "
            f"No such container: {other}",
        )


class DeviceStartTests(_Base):
    """A device that cannot be given fails the start as dockerd's does."""

    def test_missing(self) -> None:
        """A 500 and exit code 128, though its words say no such file."""
        self.create(
            "me",
            Devices=[{"PathOnHost": "/nonexistent/dev", "PathInContainer": "/dev/x",
                      "CgroupPermissions": "rwm"}],
        )  # fmt: skip
        self.assertEqual(
            self.start_fails("me").message,
            "error gathering device information while adding custom device "
            '"/nonexistent/dev": no such file or directory',
        )

    def test_rules(self) -> None:
        """A start's bundle has the rules: dockerd's defaults, then the given."""
        self.started("me", DeviceCgroupRules=["c 10:229 rwm"])
        rules = self.joined("me").device_rules
        self.assertEqual(
            rules[-1],
            {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        )


class UserNetworkLinkTests(_Base):
    """
    On a user-defined network a link is an endpoint's (the CLI's C{--link}
    with C{--network}): a name the embedded DNS answers for its container
    alone.
    """

    def run_on(self, name: str, **endpoint: Any) -> str:
        body = {
            "Image": "busybox",
            "Cmd": ["sleep", "1000"],
            "HostConfig": {"NetworkMode": "un"},
            "NetworkingConfig": {"EndpointsConfig": {"un": endpoint}},
        }
        cid = str(self.service.create(name, body)["Id"])
        self.start(name)
        return cid

    def test_alias_for_its_container(self) -> None:
        """
        The alias (bare or with the network's name) is the other container's
        address for the linking container, no one else's; inspect shows it.
        """
        self.networks.create({"Name": "un"})
        self.run_on("t2")
        me = self.run_on("p2", Links=["t2:db"])
        other = self.run_on("p3")
        address = self.attachments.lookup(me, "t2")
        self.assertIsNotNone(address)
        self.assertEqual(self.attachments.lookup(me, "db"), address)
        self.assertEqual(self.attachments.lookup(me, "db.un."), address)
        self.assertIsNone(self.attachments.lookup(other, "db"))
        self.assertEqual(
            self.service.inspect("p2")["NetworkSettings"]["Networks"]["un"]["Links"],
            ["t2:db"],
        )

    def test_alias_before_names(self) -> None:
        """An alias wins over a container of that name; a dangling one finds none."""
        self.networks.create({"Name": "un"})
        t2 = self.run_on("t2")
        self.run_on("db")
        me = self.run_on("p2", Links=["t2:db", "nope:gone"])
        self.assertEqual(
            self.attachments.lookup(me, "db"), self.attachments.lookup(t2, "t2")
        )
        self.assertIsNone(self.attachments.lookup(me, "gone"))

    def test_connect(self) -> None:
        """C{docker network connect --link}: the alias from then on."""
        self.networks.create({"Name": "un"})
        self.run_on("t3")
        self.started("p4")
        self.successResultOf(
            Deferred.fromCoroutine(
                self.service.connect("un", "p4", {"Links": ["t3:zz"]})
            )
        )
        me = self.service.resolve("p4").id
        self.assertEqual(
            self.attachments.lookup(me, "zz"),
            self.attachments.lookup(me, "t3"),
        )
