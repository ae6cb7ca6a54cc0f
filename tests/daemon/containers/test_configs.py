# -*- test-case-name: tests.daemon.containers.test_configs -*-
"""Tests for L{dockserve.daemon.containers.configs} and C{restart}."""

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import configs, restart
from dockserve.errors import InvalidParameter, NotFound

IMAGE = {
    "config": {
        "Cmd": ["sh"],
        "Env": ["PATH=/bin", "A=image"],
        "WorkingDir": "/srv",
        "Labels": {"a": "image", "b": "image"},
    }
}


class CheckTests(SynchronousTestCase):
    def assertMessage(self, body: dict[str, object], message: str) -> None:
        error = self.assertRaises(InvalidParameter, configs.check, body)
        self.assertEqual(error.message, message)

    def test_string_command(self) -> None:
        """A string Cmd is one word, as Go's StrSlice reads it."""
        config, _, _ = configs.check({"Image": "x", "Cmd": "ls"})
        self.assertEqual(config["Cmd"], ["ls"])

    def test_types(self) -> None:
        """Wrong JSON types name the field and the Go type."""
        self.assertMessage(
            {"Env": "A=1"},
            "json: cannot unmarshal string into Go struct field "
            "ContainerConfigWrapper.Config.Env of type []string",
        )
        self.assertMessage(
            {"HostConfig": {"Privileged": 1}},
            "json: cannot unmarshal number into Go struct field "
            "ContainerConfigWrapper.HostConfig.Privileged of type bool",
        )
        self.assertMessage(
            {"HostConfig": []},
            "json: cannot unmarshal array into Go struct field "
            "ContainerConfigWrapper.HostConfig of type container.HostConfig",
        )

    def test_conflicts(self) -> None:
        """Settings dockerd refuses together or alone."""
        self.assertMessage(
            {"HostConfig": {"Memory": 1024}}, "Minimum memory limit allowed is 6MB"
        )
        self.assertMessage(
            {"HostConfig": {"NanoCpus": 1000, "CpuQuota": 1000}},
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        )
        self.assertMessage(
            {"HostConfig": {"RestartPolicy": {"Name": "sometimes"}}},
            "invalid restart policy: unknown policy 'sometimes'; use one of "
            "'no', 'always', 'on-failure', or 'unless-stopped'",
        )
        self.assertMessage(
            {
                "HostConfig": {
                    "RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}
                }
            },
            "invalid restart policy: maximum retry count can only be used with "
            "'on-failure'",
        )
        self.assertMessage(
            {"HostConfig": {"Binds": ["/a"]}}, "invalid volume specification: '/a'"
        )
        self.assertMessage({"StopSignal": "SIGNOPE"}, "Invalid signal: SIGNOPE")
        self.assertMessage({"HostConfig": {"Binds": ["/a:/b:zz"]}}, "invalid mode: zz")
        # An unknown network is for the start to refuse: a 404 from create
        # sends the docker CLI off to pull the image.
        configs.check({"HostConfig": {"NetworkMode": "mynet"}})
        error = self.assertRaises(
            NotFound, configs.check_network, {"NetworkMode": "mynet"}
        )
        self.assertEqual(error.message, "network mynet not found")


class MergeTests(SynchronousTestCase):
    def test_image_defaults(self) -> None:
        """Cmd, WorkingDir, Env and Labels come from the image when not given."""
        merged = configs.merge({"Env": ["A=mine"], "Labels": {"b": "mine"}}, IMAGE)
        self.assertEqual(merged["Cmd"], ["sh"])
        self.assertEqual(merged["WorkingDir"], "/srv")
        self.assertEqual(merged["Env"], ["A=mine", "PATH=/bin"])
        self.assertEqual(merged["Labels"], {"a": "image", "b": "mine"})

    def test_entrypoint_drops_image_cmd(self) -> None:
        """A user Entrypoint without Cmd does not take the image's Cmd."""
        merged = configs.merge({"Entrypoint": ["top"]}, IMAGE)
        self.assertEqual((merged["Entrypoint"], merged["Cmd"]), (["top"], None))


class RestartPolicyTests(SynchronousTestCase):
    def test_should_restart(self) -> None:
        """Each policy's decision, and never after a manual stop."""
        on_failure = restart.RestartPolicy("on-failure", 2)
        self.assertTrue(on_failure.should_restart(1, 0, False))
        self.assertTrue(on_failure.should_restart(1, 1, False))
        self.assertFalse(on_failure.should_restart(1, 2, False))
        self.assertFalse(on_failure.should_restart(0, 0, False))
        always = restart.RestartPolicy("always")
        self.assertTrue(always.should_restart(0, 100, False))
        self.assertFalse(always.should_restart(0, 0, True))
        self.assertFalse(restart.RestartPolicy("no").should_restart(1, 0, False))

    def test_backoff(self) -> None:
        """100 ms doubling to a minute; a run of ten seconds resets it."""
        backoff = restart.Backoff()
        delays = [backoff.next_delay(0) for _ in range(12)]
        self.assertEqual(delays[:4], [0.1, 0.2, 0.4, 0.8])
        self.assertEqual(delays[-1], 60.0)
        self.assertEqual(backoff.next_delay(10), 0.1)
