# -*- test-case-name: tests.api.test_exec -*-
"""Tests for L{dockserve.api.exec} (the hijacked start is in test_streams)."""

from tests.api.test_containers import NO_MIDDLEWARE, _APITestCase


class ExecTests(_APITestCase):
    def test_inspect_before_start(self) -> None:
        """A created exec is not running and has no exit code yet."""
        cid = self.create()
        self.request("POST", f"/containers/{cid}/start")
        code, result = self.request(
            "POST", f"/containers/{cid}/exec", {"Cmd": ["ls", "-l"], "Tty": True}
        )
        self.assertEqual(code, 201)
        code, info = self.request("GET", f"/exec/{result['Id']}/json")
        self.assertEqual(code, 200)
        self.assertEqual((info["Running"], info["ExitCode"]), (False, None))
        self.assertEqual(info["ProcessConfig"]["entrypoint"], "ls")
        self.assertEqual(info["ProcessConfig"]["arguments"], ["-l"])
        self.assertTrue(info["ProcessConfig"]["tty"])
        self.assertEqual(info["ContainerID"], cid)


class ExecErrorTests(_APITestCase):
    skip = NO_MIDDLEWARE

    def test_no_command(self) -> None:
        """An exec without a command is 400."""
        cid = self.create()
        self.request("POST", f"/containers/{cid}/start")
        self.assertEqual(
            self.request("POST", f"/containers/{cid}/exec", {"Cmd": []}),
            (400, {"message": "No exec command specified"}),
        )

    def test_bad_types(self) -> None:
        """Wrong JSON types are 400."""
        cid = self.create()
        self.request("POST", f"/containers/{cid}/start")
        code, _ = self.request("POST", f"/containers/{cid}/exec", {"Cmd": 5})
        self.assertEqual(code, 400)
        code, _ = self.request(
            "POST", f"/containers/{cid}/exec", {"Cmd": ["ls"], "Env": "A=1"}
        )
        self.assertEqual(code, 400)

    def test_start_twice(self) -> None:
        """Starting an exec that has started is 409."""
        cid = self.create()
        self.request("POST", f"/containers/{cid}/start")
        _, result = self.request("POST", f"/containers/{cid}/exec", {"Cmd": ["ls"]})
        self.request("POST", f"/exec/{result['Id']}/start", {"Detach": True})
        code, _ = self.request("POST", f"/exec/{result['Id']}/start", {"Detach": True})
        self.assertEqual(code, 409)

    def test_paused(self) -> None:
        """Exec into a paused container is 409."""
        cid = self.create()
        self.request("POST", f"/containers/{cid}/start")
        self.request("POST", f"/containers/{cid}/pause")
        self.assertEqual(
            self.request("POST", f"/containers/{cid}/exec", {"Cmd": ["ls"]}),
            (
                409,
                {
                    "message": f"Container {cid} is paused, unpause the container "
                    "before exec"
                },
            ),
        )
