# -*- test-case-name: tests.api.test_containers -*-
"""Tests for L{dockserve.api.containers}, through the router with StubTreq."""

import importlib.util
import json
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.router import make_resource
from dockserve.api.streams import frame
from dockserve.testing.backend import MemoryBackend
from dockserve.testing.containers import make_service

#: Error statuses come from the middleware; until it is in the tree the
#: error tests cannot see them.
NO_MIDDLEWARE = (
    None
    if importlib.util.find_spec("dockserve.api.middleware") is not None
    else "dockserve.api.middleware (errors -> status) is not in the tree yet"
)

URL = "http://localhost/v1.50"


class _APITestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.root.mkdir()
        self.service, self.runtime, self.clock = make_service(self.root)
        self.stub = StubTreq(make_resource(MemoryBackend(containers=self.service)))

    def request(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        data = (
            raw
            if raw is not None
            else (json.dumps(body).encode() if body is not None else b"")
        )
        response = self.successResultOf(
            self.stub.request(
                method,
                URL + path,
                data=data,
                headers={"Content-Type": "application/json"},
            )
        )
        content = self.successResultOf(response.content())
        try:
            decoded = json.loads(content) if content.strip() else None
        except ValueError:
            decoded = content
        return response.code, decoded

    def create(self, name: str = "web", **body: Any) -> str:
        request = {"Image": "busybox", "Cmd": ["echo", "hi"], **body}
        code, result = self.request("POST", f"/containers/create?name={name}", request)
        self.assertEqual(code, 201, result)
        return str(result["Id"])


class ContainerSuccessTests(_APITestCase):
    def test_run_flow(self) -> None:
        """
        create 201, start 204, wait answers the exit code, remove 204: the
        calls C{docker run --rm} makes.
        """
        cid = self.create()
        waiting = self.stub.post(f"{URL}/containers/{cid}/wait?condition=next-exit")
        code, _ = self.request("POST", f"/containers/{cid}/start")
        self.assertEqual(code, 204)
        self.runtime.exit(cid, 3)
        self.stub.flush()
        response = self.successResultOf(waiting)
        body = json.loads(self.successResultOf(response.content()))
        self.assertEqual(body, {"StatusCode": 3})
        code, _ = self.request("DELETE", f"/containers/{cid}")
        self.assertEqual(code, 204)

    def test_inspect_and_list(self) -> None:
        """Inspect by name; list with C{all=1} shows created containers."""
        cid = self.create()
        code, info = self.request("GET", "/containers/web/json")
        self.assertEqual(
            (code, info["Id"], info["State"]["Status"]), (200, cid, "created")
        )
        code, listed = self.request("GET", "/containers/json")
        self.assertEqual((code, listed), (200, []))
        code, listed = self.request("GET", "/containers/json?all=1")
        self.assertEqual([c["Names"] for c in listed], [["/web"]])
        self.assertEqual(listed[0]["Status"], "Created")

    def test_logs_frames(self) -> None:
        """Logs without a TTY are 8-byte framed, stdout and stderr apart."""
        cid = self.create()
        (self.root / "containers" / cid / "container.log").write_bytes(
            b"2024-01-01T00:00:00.000000000Z stdout F out\n"
            b"2024-01-01T00:00:01.000000000Z stderr P er\n"
            b"2024-01-01T00:00:01.000000000Z stderr F r\n"
        )
        response = self.successResultOf(
            self.stub.get(f"{URL}/containers/{cid}/logs?stdout=1&stderr=1")
        )
        self.clock.advance(1)
        self.stub.flush()
        content = self.successResultOf(response.content())
        self.assertEqual(content, frame(1, b"out\n") + frame(2, b"err\n"))
        response = self.successResultOf(
            self.stub.get(f"{URL}/containers/{cid}/logs?stderr=1&tail=1&timestamps=1")
        )
        self.clock.advance(1)
        self.stub.flush()
        self.assertEqual(
            self.successResultOf(response.content()),
            frame(2, b"2024-01-01T00:00:01.000000000Z err\n"),
        )

    def test_exec_flow(self) -> None:
        """An exec created on a running container runs detached; inspect tells."""
        cid = self.create()
        self.request("POST", f"/containers/{cid}/start")
        code, result = self.request(
            "POST", f"/containers/{cid}/exec", {"Cmd": ["true"]}
        )
        self.assertEqual(code, 201)
        exec_id = result["Id"]
        code, _ = self.request("POST", f"/exec/{exec_id}/start", {"Detach": True})
        self.assertEqual(code, 200)
        self.runtime.execs[0].exit(0)
        code, info = self.request("GET", f"/exec/{exec_id}/json")
        self.assertEqual((info["Running"], info["ExitCode"]), (False, 0))

    def test_stats_one_shot(self) -> None:
        """
        stream=false with one-shot answers one sample at once, with the CPU
        totals the CLI needs (without one-shot the answer is a second sample
        a second later: see the integration tests).
        """
        cid = self.create()
        self.request("POST", f"/containers/{cid}/start")
        code, sample = self.request(
            "GET", f"/containers/{cid}/stats?stream=false&one-shot=true"
        )
        self.assertEqual(code, 200)
        self.assertEqual(sample["name"], "/web")
        self.assertGreater(sample["cpu_stats"]["system_cpu_usage"], 0)
        self.assertEqual(sample["memory_stats"]["usage"], 1 << 20)
        self.assertIn("precpu_stats", sample)

    def test_prune(self) -> None:
        """Prune removes stopped containers and keeps running ones."""
        stopped = self.create("gone")
        running = self.create("stays")
        self.request("POST", f"/containers/{running}/start")
        code, result = self.request("POST", "/containers/prune")
        self.assertEqual((code, result["ContainersDeleted"]), (200, [stopped]))
        code, listed = self.request("GET", "/containers/json?all=1")
        self.assertEqual([c["Id"] for c in listed], [running])


class ContainerErrorTests(_APITestCase):
    skip = NO_MIDDLEWARE

    def assertError(self, result: tuple[int, Any], code: int, message: str) -> None:
        self.assertEqual(result, (code, {"message": message}))

    def test_bad_json(self) -> None:
        """A body that is not JSON is a 400."""
        code, body = self.request("POST", "/containers/create", raw=b"{nope")
        self.assertEqual(code, 400)
        self.assertIn("invalid JSON", body["message"])

    def test_wrong_type(self) -> None:
        """A field of the wrong type names the field."""
        self.assertError(
            self.request(
                "POST", "/containers/create", {"Image": "busybox", "Tty": "yes"}
            ),
            400,
            "json: cannot unmarshal string into Go struct field "
            "ContainerConfigWrapper.Config.Tty of type bool",
        )

    def test_no_such_image(self) -> None:
        """An unknown image is 404."""
        self.assertError(
            self.request("POST", "/containers/create", {"Image": "nosuch"}),
            404,
            "No such image: nosuch",
        )

    def test_unknown_container(self) -> None:
        """Every per-container endpoint says 404 for an unknown one."""
        for method, path in [
            ("GET", "/containers/nosuch/json"),
            ("POST", "/containers/nosuch/start"),
            ("POST", "/containers/nosuch/stop"),
            ("POST", "/containers/nosuch/wait"),
            ("DELETE", "/containers/nosuch"),
            ("GET", "/containers/nosuch/logs?stdout=1"),
            ("POST", "/containers/nosuch/exec"),
            ("POST", "/containers/nosuch/pause"),
            ("POST", "/containers/nosuch/rename?name=x2"),
        ]:
            result = self.request(
                method, path, {"Cmd": ["x"]} if "exec" in path else None
            )
            self.assertError(result, 404, "No such container: nosuch")
        self.assertError(
            self.request("POST", "/containers/nosuch/kill"),
            404,
            "Cannot kill container: nosuch: No such container: nosuch",
        )

    def test_conflicts(self) -> None:
        """Name taken, start twice, kill stopped, exec stopped."""
        cid = self.create()
        code, _ = self.request(
            "POST", "/containers/create?name=web", {"Image": "busybox"}
        )
        self.assertEqual(code, 409)
        self.assertError(
            self.request("POST", "/containers/web/kill"),
            409,
            f"Cannot kill container: web: Container {cid} is not running",
        )
        self.assertError(
            self.request("POST", "/containers/web/exec", {"Cmd": ["sh"]}),
            409,
            f"Container {cid} is not running",
        )
        self.request("POST", "/containers/web/start")
        code, _ = self.request("POST", "/containers/web/start")
        self.assertEqual(code, 304)

    def test_bad_parameters(self) -> None:
        """Bad signal, condition, logs streams, filters."""
        self.create()
        self.request("POST", "/containers/web/start")
        self.assertError(
            self.request("POST", "/containers/web/kill?signal=NOPE"),
            400,
            "Invalid signal: NOPE",
        )
        code, _ = self.request("POST", "/containers/web/wait?condition=soon")
        self.assertEqual(code, 400)
        self.assertError(
            self.request("GET", "/containers/web/logs"),
            400,
            "Bad parameters: you must choose at least one stream",
        )
        code, _ = self.request("GET", '/containers/json?filters={"nope":["x"]}')
        self.assertEqual(code, 400)

    def test_unknown_exec(self) -> None:
        """An unknown exec ID is 404."""
        self.assertError(
            self.request("GET", "/exec/nope/json"), 404, "No such exec instance: nope"
        )

    def test_deep_json(self) -> None:
        """
        A body nested deeper than the limit (here 100000 arrays) is a 400,
        not a RecursionError's 500 (finding 17).
        """
        deep = b'{"Image": "busybox", "Labels": ' + b"[" * 100_000 + b"]" * 100_000
        self.assertError(
            self.request("POST", "/containers/create", raw=deep + b"}"),
            400,
            "invalid JSON: invalid character '[' exceeded max depth",
        )

    def test_bad_body_stored_nowhere(self) -> None:
        """
        A numeric Mounts[].Source (which broke docker ps for everyone) is a
        400, and no container is made.
        """
        self.assertError(
            self.request(
                "POST",
                "/containers/create",
                {
                    "Image": "busybox",
                    "HostConfig": {
                        "Mounts": [{"Type": "volume", "Source": 5, "Target": "/x"}]
                    },
                },
            ),
            400,
            "json: cannot unmarshal number into Go struct field "
            "Mount.HostConfig.Mounts.Source of type string",
        )
        code, listed = self.request("GET", "/containers/json?all=1")
        self.assertEqual((code, listed), (200, []))

    def test_update_negative_memory(self) -> None:
        """update with a negative Memory: dockerd's 400, not runc's 500."""
        self.create()
        self.request("POST", "/containers/web/start")
        self.assertError(
            self.request("POST", "/containers/web/update", {"Memory": -7}),
            400,
            "Minimum memory limit allowed is 6MB",
        )

    def test_archive_path_nul(self) -> None:
        """A NUL in ?path= is a 400 for every archive method (finding 17)."""
        self.create()
        message = 'invalid path "/etc\\u0000x": a path cannot contain a NUL character'
        for method in ("GET", "PUT"):
            self.assertError(
                self.request(method, "/containers/web/archive?path=/etc%00x"),
                400,
                message,
            )
        code, _ = self.request("HEAD", "/containers/web/archive?path=/etc%00x")
        self.assertEqual(code, 400)
        self.assertError(
            self.request("POST", "/containers/web/copy", {"Resource": "/etc\x00x"}),
            400,
            message,
        )

    def test_create_not_object(self) -> None:
        """A body that is JSON but no object names its kind as Go does."""
        for raw, kind in ((b"1.5", "number"), (b"[]", "array"), (b"true", "bool")):
            self.assertError(
                self.request("POST", "/containers/create", raw=raw),
                400,
                f"json: cannot unmarshal {kind} into Go value of type "
                "container.CreateRequest",
            )

    def test_update_keeps_what_it_does_not_name(self) -> None:
        """
        docker update --cpu-shares sends every other resource as zero and an
        unnamed restart policy: dockerd changes only what was asked, and so
        must this daemon (the memory limit and the policy stay).
        """
        self.create(
            HostConfig={"Memory": 67108864, "RestartPolicy": {"Name": "always"}}
        )
        code, _ = self.request(
            "POST",
            "/containers/web/update",
            {
                "CpuShares": 512, "Memory": 0, "MemorySwap": 0, "NanoCpus": 0,
                "CgroupParent": "", "PidsLimit": None, "CpusetCpus": "",
                "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
            },
        )  # fmt: skip
        self.assertEqual(code, 200)
        code, inspected = self.request("GET", "/containers/web/json")
        host = inspected["HostConfig"]
        self.assertEqual(
            (host["Memory"], host["CpuShares"], host["RestartPolicy"]["Name"]),
            (67108864, 512, "always"),
        )
