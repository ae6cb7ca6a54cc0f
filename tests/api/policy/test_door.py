"""
Tests for L{dockserve.api.policy.door.FrontDoor}: a policy in front of the
real API over an in-memory engine, each request from a chosen caller.
"""

import base64
import json
from pathlib import Path

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.middleware import Call
from dockserve.api.policy.peer import Peer
from tests.api.policy.rig import Rig, tls_peer, unix_peer

ALICE = tls_peer("alice")
BOB = tls_peer("bob")
ROOT = unix_peer(0)
READER = Peer(listener="tcp://127.0.0.1:2375", address="127.0.0.1:5000")

POLICY = """
owner_label = "example.owner"

[listener."tcp://127.0.0.1:2375"]
policy = "read-only"

[[principal]]
name = "alice"
policy = "developer"
match = { cn = "alice" }

[[principal]]
name = "bob"
policy = "developer"
match = { cn = "bob" }

[[principal]]
name = "root"
policy = "full"
match = { uid = 0 }

[policy.developer]
scope = "own"
preset = "read-only"

[[policy.developer.rule]]
name = "no-export"
deny = ["containers.export"]

[[policy.developer.rule]]
allow = ["containers.*", "exec.*", "volumes.*", "networks.*", "images.commit"]

[policy.developer.body]
capabilities = ["CHOWN"]
"""


class RouteRuleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.rig = Rig(self, POLICY)

    def test_denied_names_rule(self) -> None:
        """A refused route is a 403 whose message names the rule."""
        self.rig.create("web", ROOT)
        self.assertEqual(
            self.rig.request("GET", "/containers/web/export", as_peer=ROOT)[0], 200
        )
        alices = self.rig.create("mine", ALICE)
        self.assertEqual(
            self.rig.request("GET", f"/containers/{alices}/export", as_peer=ALICE),
            (
                403,
                {
                    "message": "authorization denied by policy rule"
                    " developer.rule.no-export: containers.export is not allowed"
                    " for alice"
                },
            ),
        )
        self.assertEqual(
            self.rig.decisions[-1],
            ("alice", "containers.export", "deny", "developer.rule.no-export"),
        )

    def test_default(self) -> None:
        """A route no rule names is refused by the policy's default rule."""
        self.assertEqual(
            self.rig.request("POST", "/images/busybox/tag?repo=x", as_peer=ALICE),
            (
                403,
                {
                    "message": "authorization denied by policy rule"
                    " developer.default: images.tag is not allowed for alice"
                },
            ),
        )

    def test_read_only_listener(self) -> None:
        """
        A caller on the read-only listener lists but cannot create; a
        stranger elsewhere gets the default (none); /_ping answers all.
        """
        self.rig.create("web", ROOT)
        code, listed = self.rig.request("GET", "/containers/json?all=1", as_peer=READER)
        self.assertEqual((code, [c["Names"] for c in listed]), (200, [["/web"]]))
        self.assertEqual(
            self.rig.request(
                "POST", "/containers/create", {"Image": "busybox"}, as_peer=READER
            ),
            (
                403,
                {
                    "message": "authorization denied by policy rule read-only:"
                    " containers.create is not allowed for tcp://127.0.0.1:2375"
                },
            ),
        )
        stranger = Peer(listener="tcp://0.0.0.0:2376")
        self.assertEqual(
            self.rig.request("GET", "/containers/json", as_peer=stranger)[0], 403
        )
        self.assertEqual(
            self.rig.request("GET", "/_ping", as_peer=stranger), (200, b"OK")
        )


class BodyRuleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.rig = Rig(self, POLICY)

    def test_create(self) -> None:
        """A create asking for the host is refused; the same body from root is not."""
        body = {"Image": "busybox", "HostConfig": {"CapAdd": ["SYS_ADMIN"]}}
        self.assertEqual(
            self.rig.request("POST", "/containers/create", body, as_peer=ALICE),
            (
                403,
                {
                    "message": "authorization denied by policy rule"
                    " developer.body.capabilities: adding the capability SYS_ADMIN"
                    " is not allowed"
                },
            ),
        )
        self.assertEqual(
            self.rig.request("POST", "/containers/create", body, as_peer=ROOT)[0], 201
        )
        self.assertEqual(
            self.rig.request(
                "POST",
                "/containers/create",
                {"Image": "busybox", "HostConfig": {"CapAdd": ["chown"]}},
                as_peer=ALICE,
            )[0],
            201,
        )

    def test_exec_as_root(self) -> None:
        """An exec as root in one's own container is refused."""
        mine = self.rig.create("mine", ALICE)
        self.assertEqual(
            self.rig.request(
                "POST",
                f"/containers/{mine}/exec",
                {"Cmd": ["id"], "User": "0"},
                as_peer=ALICE,
            )[1],
            {
                "message": "authorization denied by policy rule developer.body."
                "exec_root: exec as root is not allowed"
            },
        )

    def test_volume_bind(self) -> None:
        """A volume that binds a host path is a bind mount."""
        body = {
            "Name": "etc",
            "DriverOpts": {"type": "none", "o": "bind", "device": "/"},
        }
        self.assertEqual(
            self.rig.request("POST", "/volumes/create", body, as_peer=ALICE)[0], 403
        )

    def test_bad_json_left_to_handler(self) -> None:
        """A body that is not JSON gets the handler's 400, read once."""
        response = self.successResultOf(
            self.rig.stub.request(
                "POST",
                "http://localhost/v1.50/containers/create",
                data=b"{nope",
                headers={"Content-Type": "application/json"},
            )
        )
        self.rig.peer = ALICE
        self.assertEqual(response.code, 400)


class ScopeTests(SynchronousTestCase):
    """Owner labels, and a scoped principal's view of the daemon."""

    def setUp(self) -> None:
        self.rig = Rig(self, POLICY)

    def names(self, peer: Peer, path: str = "/containers/json?all=1") -> list[str]:
        code, listed = self.rig.request("GET", path, as_peer=peer)
        self.assertEqual(code, 200, listed)
        return sorted(c["Names"][0] for c in listed)

    def test_labels_injected(self) -> None:
        """
        Containers, volumes and networks each get their creator's owner
        label, whatever the body said (its Labels in any case, or none).
        """
        mine = self.rig.create("mine", ALICE, labels={"example.owner": "bob", "a": "b"})
        self.assertEqual(
            self.rig.containers.inspect(mine)["Config"]["Labels"],
            {"example.owner": "alice", "a": "b"},
        )
        self.rig.request("POST", "/volumes/create", {"Name": "v1"}, as_peer=ALICE)
        self.rig.request("POST", "/volumes/create", as_peer=BOB)
        self.rig.request("POST", "/networks/create", {"Name": "n1"}, as_peer=ALICE)
        owners = sorted(
            (v["Labels"] or {}).get("example.owner")
            for v in self.rig.volumes.list_volumes({})["Volumes"]
        )
        self.assertEqual(owners, ["alice", "bob"])
        self.assertEqual(
            self.rig.networks.inspect("n1")["Labels"], {"example.owner": "alice"}
        )

    def test_lists(self) -> None:
        """Each sees its own containers, volumes, networks; root sees all."""
        self.rig.create("alices", ALICE)
        self.rig.create("bobs", BOB)
        self.rig.create("roots", ROOT)
        self.assertEqual(self.names(ALICE), ["/alices"])
        self.assertEqual(self.names(BOB), ["/bobs"])
        self.assertEqual(self.names(ROOT), ["/alices", "/bobs", "/roots"])
        self.assertEqual(
            self.names(ALICE, '/containers/json?all=1&filters={"name":["bobs"]}'), []
        )
        # With a limit the daemon filters, so that the limit counts hers.
        self.rig.create("later", BOB)
        self.assertEqual(
            self.names(ALICE, "/containers/json?all=1&limit=1"), ["/alices"]
        )
        for peer, name in ((ALICE, "va"), (BOB, "vb")):
            self.rig.request("POST", "/volumes/create", {"Name": name}, as_peer=peer)
            self.rig.request("POST", "/networks/create", {"Name": name}, as_peer=peer)
        volumes = self.rig.request("GET", "/volumes", as_peer=ALICE)[1]["Volumes"]
        self.assertEqual([v["Name"] for v in volumes], ["va"])
        networks = self.rig.request("GET", "/networks", as_peer=ALICE)[1]
        self.assertEqual(
            sorted(n["Name"] for n in networks), ["bridge", "host", "none", "va"]
        )

    def test_others_absent(self) -> None:
        """Another's objects answer 404 with dockerd's words, and stay."""
        bobs = self.rig.create("bobs", BOB)
        self.rig.request("POST", "/volumes/create", {"Name": "vb"}, as_peer=BOB)
        self.rig.request("POST", "/networks/create", {"Name": "nb"}, as_peer=BOB)
        for method, path, message in (
            ("GET", "/containers/bobs/json", "No such container: bobs"),
            ("DELETE", f"/containers/{bobs}", f"No such container: {bobs}"),
            ("POST", "/containers/bobs/start", "No such container: bobs"),
            ("GET", "/volumes/vb", "get vb: no such volume"),
            ("DELETE", "/volumes/vb", "get vb: no such volume"),
            ("GET", "/networks/nb", "network nb not found"),
            ("POST", "/commit?container=bobs", "No such container: bobs"),
        ):
            self.assertEqual(
                self.rig.request(method, path, as_peer=ALICE),
                (404, {"message": message}),
                path,
            )
        self.assertEqual(self.names(BOB), ["/bobs"])
        self.assertEqual(self.rig.request("GET", "/volumes/vb", as_peer=BOB)[0], 200)

    def test_exec_of_another(self) -> None:
        """Another's exec instance is absent too."""
        bobs = self.rig.create("bobs", BOB)
        self.rig.containers.start(bobs)
        code, made = self.rig.request(
            "POST", f"/containers/{bobs}/exec", {"Cmd": ["true"]}, as_peer=BOB
        )
        self.assertEqual(code, 201, made)
        self.assertEqual(
            self.rig.request("GET", f"/exec/{made['Id']}/json", as_peer=ALICE),
            (404, {"message": f"No such exec instance: {made['Id']}"}),
        )

    def test_references(self) -> None:
        """
        A create that names another's container, network or volume is
        refused; a named volume that does not exist yet is made with the
        creator's label.
        """
        self.rig.create("bobs", BOB)
        self.rig.request("POST", "/volumes/create", {"Name": "vb"}, as_peer=BOB)
        for host in (
            {"Links": ["bobs:db"]},
            {"Binds": ["vb:/data"]},
            {"NetworkMode": "container:bobs"},
        ):
            code, answer = self.rig.request(
                "POST",
                "/containers/create",
                {"Image": "busybox", "HostConfig": host},
                as_peer=ALICE,
            )
            self.assertEqual(code, 403, host)
            self.assertIn("developer.scope", answer["message"])
        self.rig.create("mine", ALICE, HostConfig={"Binds": ["fresh:/data"]})
        self.assertEqual(
            self.rig.volumes.inspect("fresh")["Labels"], {"example.owner": "alice"}
        )
        self.assertEqual(
            self.rig.request("POST", "/volumes/create", {"Name": "vb"}, as_peer=ALICE)[
                0
            ],
            403,
        )

    def test_prune(self) -> None:
        """A prune removes only the pruner's own."""
        self.rig.create("alices", ALICE)
        self.rig.create("bobs", BOB)
        code, pruned = self.rig.request("POST", "/containers/prune", as_peer=ALICE)
        self.assertEqual(code, 200, pruned)
        self.assertEqual(self.names(ROOT), ["/bobs"])

    def test_events(self) -> None:
        """/events shows a scoped caller its own objects' events only."""
        self.rig.create("alices", ALICE)
        self.rig.create("bobs", BOB)
        self.rig.request("POST", "/volumes/create", {"Name": "va"}, as_peer=ALICE)
        self.rig.request("POST", "/volumes/create", {"Name": "vb"}, as_peer=BOB)
        self.rig.request("DELETE", "/volumes/va", as_peer=ALICE)
        self.rig.clock.advance(1_765_000_002)  # the bus's time: a finite replay
        code, body = self.rig.request(
            "GET", "/events?since=0&until=1765000001", as_peer=ALICE
        )
        self.assertEqual(code, 200)
        lines = [json.loads(line) for line in body.splitlines()]
        seen = [(e["Type"], e["Action"], e["Actor"]["ID"][:8]) for e in lines]
        alices = self.rig.containers.inspect("alices")["Id"][:8]
        self.assertEqual(
            seen,
            [
                ("container", "create", alices),
                ("volume", "create", "va"),
                ("volume", "destroy", "va"),
            ],
        )
        code, body = self.rig.request(
            "GET", "/events?since=0&until=1765000001", as_peer=ROOT
        )
        self.assertEqual(len(body.splitlines()), 5)


class LearningTests(SynchronousTestCase):
    def test_learn(self) -> None:
        """
        In learning mode a refusal is logged and reported as C{learn}, the
        request is served, and nothing is narrowed; labels are still given.
        """
        rig = Rig(self, 'mode = "learn"\n' + POLICY)
        rig.create("bobs", BOB)
        with capturedLogs() as events:
            code, _ = rig.request(
                "POST",
                "/containers/create",
                {"Image": "busybox", "HostConfig": {"Privileged": True}},
                as_peer=ALICE,
            )
        self.assertEqual(code, 201)
        self.assertEqual(
            rig.decisions[-1],
            ("alice", "containers.create", "learn", "developer.body.privileged"),
        )
        [logged] = [e for e in events if "would refuse" in e.get("log_format", "")]
        self.assertEqual(
            (logged["route"], logged["principal"], logged["rule"]),
            ("containers.create", "alice", "developer.body.privileged"),
        )
        code, listed = rig.request("GET", "/containers/json?all=1", as_peer=ALICE)
        self.assertEqual(len(listed), 2)
        self.assertEqual(
            rig.request("GET", "/containers/bobs/json", as_peer=ALICE)[0], 200
        )

    def test_per_policy(self) -> None:
        """One policy may learn while the others enforce."""
        rig = Rig(
            self, POLICY.replace('scope = "own"', 'scope = "own"\nmode = "learn"')
        )
        self.assertEqual(
            rig.request("GET", "/containers/x/export", as_peer=ALICE)[1],
            {"message": "No such container: x"},
        )
        self.assertEqual(
            rig.request("POST", "/containers/create", {}, as_peer=READER)[0], 403
        )


class LimitTests(SynchronousTestCase):
    def test_rate(self) -> None:
        """Over its rate a principal gets 429 naming the rule, until it refills."""
        rig = Rig(
            self,
            POLICY + "[policy.developer.limits]\nrequests_per_second = 1\nburst = 2\n",
        )
        codes = [
            rig.request("GET", "/containers/json", as_peer=ALICE)[0] for _ in "abc"
        ]
        self.assertEqual(codes, [200, 200, 429])
        self.assertEqual(
            rig.request("GET", "/containers/json", as_peer=ALICE)[1],
            {
                "message": "rate limit exceeded by policy rule developer.limits."
                "requests_per_second: alice may make 1 requests per second"
                " (bursts of 2)"
            },
        )
        self.assertEqual(rig.request("GET", "/containers/json", as_peer=BOB)[0], 200)
        rig.clock.advance(1)
        self.assertEqual(rig.request("GET", "/containers/json", as_peer=ALICE)[0], 200)

    def test_streams(self) -> None:
        """
        Hijacked streams are counted while they last: one over the limit is
        a 429, and one ending makes room.
        """
        rig = Rig(self, POLICY + "[policy.developer.limits]\nstreams = 1\n")
        rig.peer = ALICE
        first = Call(_FakeRequest(), "container_attach", {"name": "x"})
        rig.door.owners.container = lambda _: None  # type: ignore[method-assign]
        rig.door(first)
        with self.assertRaises(Exception) as caught:
            rig.door(Call(_FakeRequest(), "exec_start", {"exec_id": "e"}))
        self.assertIn("may hold 1 attach or exec streams", str(caught.exception))
        for finished in first.on_finish:
            finished(101, 1.0)
        rig.door(Call(_FakeRequest(), "exec_start", {"exec_id": "e"}))


class _FakeRequest:
    channel: object = None
    args: dict[bytes, list[bytes]] = {}  # noqa: RUF012
    method = b"POST"
    path = b"/x"


class AuditTests(SynchronousTestCase):
    def test_lines(self) -> None:
        """
        One line per request: time, principal, method, route, objects,
        verdict, rule, status, duration; never a secret.
        """
        path = Path(self.mktemp())
        rig = Rig(self, POLICY, audit=str(path))
        secret_auth = base64.urlsafe_b64encode(b'{"password": "hunter2"}').decode()
        made = rig.create("web", ALICE, Env=["TOKEN=s3cret-value"])
        rig.request(
            "POST",
            "/images/create?fromImage=busybox",
            headers={"X-Registry-Auth": secret_auth},
            as_peer=ALICE,
        )
        rig.request("GET", "/_ping", as_peer=ALICE)
        text = path.read_text()
        for secret in ("s3cret-value", "hunter2", secret_auth):
            self.assertNotIn(secret, text)
        created, pulled = [json.loads(line) for line in text.splitlines()]
        self.assertEqual(
            created,
            {
                "time": "2025-12-06T05:46:40.250Z",
                "principal": {
                    "name": "alice",
                    "listener": "tcp://127.0.0.1:2376",
                    "address": "127.0.0.1:40000",
                    "subject": "CN=alice",
                    "uid": None,
                    "gid": None,
                    "pid": None,
                },
                "method": "POST",
                "route": "containers.create",
                "path": "/v1.50/containers/create",
                "objects": [made],
                "verdict": "allow",
                "rule": "developer.rule[2]",
                "status": 201,
                "duration": created["duration"],
            },
        )
        self.assertEqual(
            (pulled["route"], pulled["verdict"], pulled["status"], pulled["rule"]),
            ("images.pull", "deny", 403, "developer.default"),
        )
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)

    def test_without_policy(self) -> None:
        """--audit-log alone records who did what, deciding nothing."""
        path = Path(self.mktemp())
        rig = Rig(self, None, audit=str(path))
        rig.create("web", unix_peer(1000, 1000))
        [line] = [json.loads(text) for text in path.read_text().splitlines()]
        self.assertEqual(
            (line["principal"]["uid"], line["principal"]["name"], line["verdict"]),
            (1000, None, "allow"),
        )
        self.assertEqual(rig.decisions, [("-", "containers.create", "allow", None)])


class BindRecheckTests(SynchronousTestCase):
    def test_start_resolves_again(self) -> None:
        """
        A bind source under an allowed prefix whose symlink is pointed
        elsewhere after the create is refused at the start.
        """
        allowed = Path(self.mktemp()).absolute()
        (allowed / "data").mkdir(parents=True)
        link = allowed / "link"
        link.symlink_to(allowed / "data")
        rig = Rig(
            self,
            POLICY + f'bind_sources = ["{allowed}"]\n',
        )
        made = rig.create("mine", ALICE, HostConfig={"Binds": [f"{link}:/d"]})
        link.unlink()
        link.symlink_to("/etc")
        self.assertEqual(
            rig.request("POST", f"/containers/{made}/start", as_peer=ALICE),
            (
                403,
                {
                    "message": "authorization denied by policy rule developer.body."
                    f"bind_sources: bind mount of {link} (which is /etc) is outside"
                    f" the allowed sources ({allowed})"
                },
            ),
        )


class PrincipalOfTests(SynchronousTestCase):
    def test_principal_of(self) -> None:
        """A checked request's connection names its principal; others none."""
        rig = Rig(self, POLICY)
        request = _FakeRequest()
        request.channel = _Channel()
        self.assertIsNone(rig.door.principal_of(request))
        rig.peer = BOB
        rig.door(Call(request, "container_list_containers", {}))
        self.assertEqual(rig.door.principal_of(request), "bob")


class _Channel:
    """A connection: the cache keeps its principal."""
