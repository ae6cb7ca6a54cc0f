# -*- test-case-name: tests.integration.test_container_errors -*-
"""
Bad input to every container endpoint of a real daemon: the status and the
message a client gets.

The expected answers were taken from a dockerd run beside it
(C{dockerd --bridge none}, 20.10) for the same requests. Where that
dockerd differs from the API version served here (1.50: a malformed body
is a 400 rather than 20.10's 500), the newer dockerd's answer is the one
asserted.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

from tests.integration.test_containers import _DaemonCase


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=20)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class ErrorTests(_DaemonCase):
    def setUp(self) -> None:
        super().setUp()
        self.cleanup_container("errc")
        self.ok("run", "-d", "-i", "--name", "errc", "busybox", "sleep", "300")
        self.errc = self.inspect("errc", "{{.Id}}")

    def request(
        self, method: str, path: str, body: str | None = None
    ) -> tuple[int, Any]:
        connection = _Unix(self.daemon.socket_path)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, "/v1.50" + path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        message = json.loads(data)["message"] if data else None
        return response.status, message

    def check(self, cases: list[tuple[str, str, str | None, int, str]]) -> None:
        for method, path, body, status, message in cases:
            self.assertEqual(
                self.request(method, path, body),
                (status, message),
                f"{method} {path} {body}",
            )

    def test_unknown_container(self) -> None:
        """Every per-container endpoint: 404 No such container."""
        gone = "No such container: nope"
        cases: list[tuple[str, str, str | None, int, str]] = [
            (method, path, body, 404, gone)
            for method, path, body in [
                ("GET", "/containers/nope/json", None),
                ("GET", "/containers/nope/top", None),
                ("GET", "/containers/nope/logs?stdout=1", None),
                ("GET", "/containers/nope/changes", None),
                ("GET", "/containers/nope/export", None),
                ("GET", "/containers/nope/stats?stream=0", None),
                ("POST", "/containers/nope/start", None),
                ("POST", "/containers/nope/stop", None),
                ("POST", "/containers/nope/restart", None),
                ("POST", "/containers/nope/update", "{}"),
                ("POST", "/containers/nope/rename?name=xx", None),
                ("POST", "/containers/nope/pause", None),
                ("POST", "/containers/nope/unpause", None),
                ("POST", "/containers/nope/wait", None),
                ("POST", "/containers/nope/resize?h=1&w=1", None),
                ("DELETE", "/containers/nope", None),
                ("GET", "/containers/nope/archive?path=/", None),
                ("PUT", "/containers/nope/archive?path=/", ""),
                ("POST", "/containers/nope/exec", '{"Cmd":["true"]}'),
            ]
        ]
        cases.append(
            (
                "POST",
                "/containers/nope/kill",
                None,
                404,
                "Cannot kill container: nope: No such container: nope",
            )
        )
        self.check(cases)

    def test_create_bad_bodies(self) -> None:
        """Wrong JSON types name the Go field; conflicting settings say why."""
        wrapper = (
            "json: cannot unmarshal {} into Go struct field ContainerConfigWrapper."
        )
        self.check([
            ("POST", "/containers/create", "[]", 400,
             ("json: cannot unmarshal array into Go value of type "
              "container.CreateRequest")),
            ("POST", "/containers/create", '{"Image": 5}', 400,
             wrapper.format("number") + "Config.Image of type string"),
            ("POST", "/containers/create",
             '{"Image":"busybox","HostConfig":{"Memory":"x"}}', 400,
             wrapper.format("string") + "HostConfig.Memory of type int64"),
            ("POST", "/containers/create", '{"Image":"busybox","Env":"A=1"}', 400,
             wrapper.format("string") + "Config.Env of type []string"),
            ("POST", "/containers/create", "{}", 400,
             "config cannot be empty in order to create a container"),
            ("POST", "/containers/create", '{"Image":"nothere"}', 404,
             "No such image: nothere:latest"),
            ("POST", "/containers/create",
             ('{"Image":"busybox","HostConfig":{"AutoRemove":true,'
              '"RestartPolicy":{"Name":"always"}}}'), 400,
             "can't create 'AutoRemove' container with restart policy"),
            ("POST", "/containers/create",
             '{"Image":"busybox","HostConfig":{"Memory":1000}}', 400,
             "Minimum memory limit allowed is 6MB"),
            ("POST", "/containers/create",
             '{"Image":"busybox","HostConfig":{"Binds":["/tmp:/x:zz"]}}', 400,
             "invalid mode: zz"),
            ("POST", "/containers/create?name=errc", '{"Image":"busybox"}', 409,
             ('Conflict. The container name "/errc" is already in use by container '
              f'"{self.errc}". You have to remove (or rename) that container to be '
              "able to reuse that name.")),
        ])  # fmt: skip
        status, message = self.request("POST", "/containers/create", "{bad")
        self.assertEqual(status, 400)
        self.assertTrue(message.startswith("invalid JSON"), message)

    def test_bad_parameters(self) -> None:
        """Bad query parameters and bodies of the other endpoints."""
        self.check([
            ("GET", "/containers/errc/logs", None, 400,
             "Bad parameters: you must choose at least one stream"),
            ("GET", "/containers/errc/logs?stdout=1&since=abc", None, 400,
             ('invalid value for "since": failed to parse value as time or '
              'duration: "abc"')),
            ("POST", "/containers/errc/kill?signal=BOGUS", None, 400,
             "Invalid signal: BOGUS"),
            ("POST", "/containers/errc/start", None, 304, None),
            ("GET", "/containers/errc/archive?path=/nothere", None, 404,
             "Could not find the file /nothere in container errc"),
            ("POST", "/containers/errc/update", '{"Memory":"x"}', 400,
             ("json: cannot unmarshal string into Go struct field "
              "UpdateConfig.Memory of type int64")),
            ("GET", "/containers/errc/top?ps_args=--bogus", None, 500,
             "ps: error: unknown gnu long option"),
            ("POST", "/containers/errc/rename?name=errc", None, 400,
             "Renaming a container with the same name as its current name"),
            ("DELETE", "/containers/errc", None, 409,
             ('cannot remove container "/errc": container is running: stop the '
              "container before removing or force remove")),
        ])  # fmt: skip


class FailedStartTests(_DaemonCase):
    def test_run_rm_missing_command(self) -> None:
        """
        docker run --rm of a missing command: exit 127 with the runtime's
        words once, and no "Error waiting for container" line under them
        (dockerd's wait for the removal carries no error).
        """
        result = self.docker("run", "--rm", "busybox", "/nonexist")
        self.assertEqual(result.returncode, 127)
        stderr = result.stderr.decode()
        self.assertIn('exec: "/nonexist": stat /nonexist: no such file', stderr)
        self.assertNotIn("Error waiting for container", stderr)
        self.assertEqual(self.ok("ps", "-aq"), "")
