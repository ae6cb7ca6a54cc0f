# -*- test-case-name: tests.daemon.containers.test_configs -*-
"""Tests for L{dockserve.daemon.containers.configs} and C{restart}."""

import json
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.containers import configs, restart, validate
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
            {"HostConfig": {"Binds": ["/a:ro"]}},
            "invalid volume specification: '/a:ro'",
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


#: The message of a wrong JSON type: Go's decoder's, as dockerd 20.10 words
#: it, the top level named as C{ContainerConfigWrapper.Config.X} and
#: C{ContainerConfigWrapper.HostConfig.X}.
_GO = "json: cannot unmarshal {} into Go struct field {} of type {}"
_TOP = "ContainerConfigWrapper."

#: Bodies refused for a JSON type Go would not decode (finding 10).
TYPE_CASES: list[tuple[dict[str, Any], str]] = [
    ({"HostConfig": {"Mounts": ["x"]}},
     _GO.format("string", _TOP + "HostConfig.Mounts", "mount.Mount")),
    ({"HostConfig": {"Mounts": [{"Type": "volume", "Source": 5, "Target": "/x"}]}},
     _GO.format("number", "Mount.HostConfig.Mounts.Source", "string")),
    ({"HostConfig": {"Mounts": [{"Type": "volume", "Target": 5}]}},
     _GO.format("number", "Mount.HostConfig.Mounts.Target", "string")),
    ({"HostConfig": {"Ulimits": [1]}},
     _GO.format("number", _TOP + "HostConfig.Ulimits", "units.Ulimit")),
    ({"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": "a", "Hard": 2}]}},
     _GO.format("string", "Ulimit.HostConfig.Ulimits.Soft", "int64")),
    ({"HostConfig": {"Ulimits": "x"}},
     _GO.format("string", _TOP + "HostConfig.Ulimits", "[]*units.Ulimit")),
    ({"HostConfig": {"Sysctls": ["a"]}},
     _GO.format("array", _TOP + "HostConfig.Sysctls", "map[string]string")),
    ({"HostConfig": {"Devices": "x"}},
     _GO.format("string", _TOP + "HostConfig.Devices", "[]container.DeviceMapping")),
    ({"Healthcheck": "x"},
     _GO.format("string", _TOP + "Config.Healthcheck", "container.HealthConfig")),
    ({"Healthcheck": {"Retries": "x"}},
     _GO.format("string", "HealthConfig.Config.Healthcheck.Retries", "int")),
    ({"Healthcheck": {"Interval": 1.5}},
     _GO.format("number 1.5", "HealthConfig.Config.Healthcheck.Interval",
                "time.Duration")),
    ({"HostConfig": {"PortBindings": {"80/tcp": "x"}}},
     _GO.format("string", _TOP + "HostConfig.PortBindings", "[]nat.PortBinding")),
    ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": 80}]}}},
     _GO.format("number", "PortBinding.HostConfig.PortBindings.HostPort", "string")),
    ({"HostConfig": {"LogConfig": {"Type": "json-file", "Config": ["a"]}}},
     _GO.format("array", "LogConfig.HostConfig.LogConfig.Config",
                "map[string]string")),
    ({"Labels": {"a": 1}}, _GO.format("number", _TOP + "Config.Labels", "string")),
    ({"Cmd": 5}, _GO.format("number", _TOP + "Config.Cmd", "string")),
    ({"Cmd": [5]}, _GO.format("array", _TOP + "Config.Cmd", "string")),
    ({"Entrypoint": {"a": 1}},
     _GO.format("object", _TOP + "Config.Entrypoint", "string")),
    ({"ExposedPorts": ["80"]},
     _GO.format("array", _TOP + "Config.ExposedPorts", "nat.PortSet")),
    ({"ExposedPorts": {"80/tcp": 5}},
     _GO.format("number", _TOP + "Config.ExposedPorts", "struct {}")),
    ({"Volumes": {"/x": 5}},
     _GO.format("number", _TOP + "Config.Volumes", "struct {}")),
    ({"HostConfig": {"Memory": 1.5}},
     _GO.format("number 1.5", _TOP + "HostConfig.Memory", "int64")),
    ({"HostConfig": {"PidsLimit": 10**30}},
     _GO.format(f"number {10**30}", _TOP + "HostConfig.PidsLimit", "int64")),
    ({"HostConfig": {"BlkioWeight": 70000}},
     _GO.format("number 70000", _TOP + "HostConfig.BlkioWeight", "uint16")),
    ({"HostConfig": {"ConsoleSize": [-1, 2]}},
     _GO.format("number -1", _TOP + "HostConfig.ConsoleSize", "uint")),
    ({"HostConfig": {"RestartPolicy": {"Name": "on-failure",
                                       "MaximumRetryCount": "x"}}},
     _GO.format("string", "RestartPolicy.HostConfig.RestartPolicy.MaximumRetryCount",
                "int")),
    ({"HostConfig": {"RestartPolicy": "always"}},
     _GO.format("string", _TOP + "HostConfig.RestartPolicy",
                "container.RestartPolicy")),
    ({"HostConfig": {"Mounts": [{"Type": "tmpfs", "TmpfsOptions": {"Mode": "x"}}]}},
     _GO.format("string", "TmpfsOptions.HostConfig.Mounts.TmpfsOptions.Mode",
                "fs.FileMode")),
    ({"HostConfig": {"Mounts": [{"Type": "volume", "VolumeOptions": {
        "DriverConfig": {"Options": {"a": 1}}}}]}},
     _GO.format("number", "Driver.HostConfig.Mounts.VolumeOptions.DriverConfig.Options",
                "string")),
    ({"HostConfig": {"DeviceRequests": [{"Capabilities": ["gpu"]}]}},
     _GO.format("string", "DeviceRequest.HostConfig.DeviceRequests.Capabilities",
                "[]string")),
    ({"HostConfig": {"NetworkMode": 5}},
     _GO.format("number", _TOP + "HostConfig.NetworkMode", "container.NetworkMode")),
    ({"NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": "x"}}}},
     _GO.format("string", "EndpointSettings.NetworkingConfig.EndpointsConfig.Aliases",
                "[]string")),
    ({"NetworkingConfig": {"EndpointsConfig": {"bridge": 5}}},
     _GO.format("number", _TOP + "NetworkingConfig.EndpointsConfig",
                "network.EndpointSettings")),
    ({"hostconfig": {"memory": "x"}},
     _GO.format("string", _TOP + "HostConfig.Memory", "int64")),
    ({"Tty": "true"}, _GO.format("string", _TOP + "Config.Tty", "bool")),
    ({"StopTimeout": 1.5},
     _GO.format("number 1.5", _TOP + "Config.StopTimeout", "int")),
    ({"Env": ["A=1", 5]}, _GO.format("number", _TOP + "Config.Env", "string")),
    ({"HostConfig": 5},
     _GO.format("number", _TOP + "HostConfig", "container.HostConfig")),
]  # fmt: skip

_VOLUME_NAME = (
    '"{0}" includes invalid characters for a local volume name, only '
    '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
    "directory, use absolute path"
)
_MOUNT = 'invalid mount config for type "{}": {}'

#: Bodies dockerd refuses (or this daemon must, rather than store them and
#: fail at start), with the message.
SETTING_CASES: list[tuple[dict[str, Any], str]] = [
    # Finding 15: a volume name is never a path.
    ({"HostConfig": {"Binds": ["../../x:/d"]}},
     "create ../../x: " + _VOLUME_NAME.format("../../x")),
    ({"HostConfig": {"Mounts": [{"Type": "volume", "Source": "../..",
                                 "Target": "/x"}]}},
     "create ../..: " + _VOLUME_NAME.format("../..")),
    ({"HostConfig": {"Binds": ["a:/x"]}},
     ("create a: volume name is too short, names should be at least two "
      "alphanumeric characters")),
    # Binds.
    ({"HostConfig": {"Binds": ["/tmp:/"]}},
     "invalid volume specification: '/tmp:/': "
     + _MOUNT.format("bind", "invalid specification: destination can't be '/'")),
    ({"HostConfig": {"Binds": ["/tmp:/x:ro,rw"]}}, "invalid mode: ro,rw"),
    ({"HostConfig": {"Binds": ["vol:/x:shared"]}},
     "invalid volume specification: 'vol:/x:shared': "
     + _MOUNT.format("volume", "field BindOptions must not be specified")),
    ({"HostConfig": {"Binds": ["/tmp:/x:nocopy"]}},
     "invalid volume specification: '/tmp:/x:nocopy': "
     + _MOUNT.format("bind", "field VolumeOptions must not be specified")),
    ({"HostConfig": {"Binds": [":/x"]}}, "invalid volume specification: ':/x'"),
    ({"HostConfig": {"Binds": ["rel"]}},
     "invalid volume specification: 'rel': "
     + _MOUNT.format("volume",
                     "invalid mount path: 'rel' mount path must be absolute")),
    ({"HostConfig": {"Binds": ["/tmp:/x", "/tmp:/x/"]}}, "Duplicate mount point: /x"),
    ({"HostConfig": {"Binds": ["/tmp:/x"], "Tmpfs": {"/x": ""}}},
     "Duplicate mount point: /x"),
    # Mounts.
    ({"HostConfig": {"Mounts": [None]}},
     _MOUNT.format("", "field Target must not be empty")),
    ({"HostConfig": {"Mounts": [{"Source": "/tmp", "Target": "/x"}]}},
     _MOUNT.format("", "mount type unknown")),
    ({"HostConfig": {"Mounts": [{"Type": "npipe", "Source": "/tmp", "Target": "/x"}]}},
     _MOUNT.format("npipe", "mount type unknown")),
    ({"HostConfig": {"Mounts": [{"Type": "bind", "Target": "/x"}]}},
     _MOUNT.format("bind", "field Source must not be empty")),
    ({"HostConfig": {"Mounts": [{"Type": "bind", "Source": "rel", "Target": "/x"}]}},
     _MOUNT.format("bind", "invalid mount path: 'rel' mount path must be absolute")),
    ({"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/nonexistent-zz",
                                 "Target": "/x"}]}},
     _MOUNT.format("bind", "bind source path does not exist: /nonexistent-zz")),
    ({"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "x"}]}},
     _MOUNT.format("bind", "invalid mount path: 'x' mount path must be absolute")),
    ({"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "/x",
                                 "BindOptions": {"Propagation": "bogus"}}]}},
     _MOUNT.format("bind", "invalid propagation mode: bogus")),
    ({"HostConfig": {"Mounts": [{"Type": "tmpfs", "Source": "/tmp", "Target": "/x"}]}},
     _MOUNT.format("tmpfs", "field Source must not be specified")),
    ({"HostConfig": {"Mounts": [{"Type": "volume", "Target": "/x",
                                 "BindOptions": {}}]}},
     _MOUNT.format("volume", "field BindOptions must not be specified")),
    ({"HostConfig": {"Mounts": [{"Type": "volume", "Target": "/x",
                                 "ReadOnly": True}]}},
     _MOUNT.format("volume",
                   "must not set ReadOnly mode when using anonymous volumes")),
    # Ulimits, sysctls, devices.
    ({"HostConfig": {"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 2}]}},
     "invalid ulimit type: bogus"),
    ({"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 3, "Hard": 2}]}},
     "ulimit soft limit must be less than or equal to hard limit: 3 > 2"),
    ({"HostConfig": {"Sysctls": {"kernel.bogus": "1"}}},
     'sysctl "kernel.bogus" is not in a separate kernel namespace'),
    ({"HostConfig": {"NetworkMode": "host", "Sysctls": {"net.ipv4.ip_forward": "1"}}},
     'sysctl "net.ipv4.ip_forward" is not allowed in the hosts network namespace'),
    ({"HostConfig": {"Sysctls": {"kernel.hostname": "x"}}},
     ('sysctl "kernel.hostname" is not allowed as it conflicts with the OCI '
      '"hostname" field')),
    ({"HostConfig": {"UTSMode": "host", "Sysctls": {"kernel.domainname": "x"}}},
     'sysctl "kernel.domainname" is not in a separate kernel namespace'),
    ({"HostConfig": {"IpcMode": "host", "Sysctls": {"kernel.shmmax": "1"}}},
     'sysctl "kernel.shmmax" is not allowed in the hosts ipc namespace'),
    ({"HostConfig": {"DeviceRequests": [{"Driver": "", "Count": -1,
                                         "Capabilities": [["gpu"]]}]}},
     'could not select device driver "" with capabilities: [[gpu]]'),
    ({"HostConfig": {"VolumesFrom": ["other:rshared"]}}, "invalid mode: rshared"),
    ({"HostConfig": {"VolumesFrom": [""]}},
     "volumes-from specification cannot be an empty string"),
    ({"HostConfig": {"NetworkMode": "host", "Links": ["other:alias"]}},
     ("conflicting options: host type networking can't be used with links. "
      "This would result in undefined behavior")),
    ({"HostConfig": {"NetworkMode": "container:other", "Links": ["o:alias"]}},
     ("conflicting options: container type network can't be used with links. "
      "This would result in undefined behavior")),
    ({"HostConfig": {"StorageOpt": {"size": "1G"}}},
     ("--storage-opt is supported only for overlay over xfs with 'pquota' mount "
      "option")),
    # Ports.
    ({"ExposedPorts": {"notaport": {}}}, 'invalid port specification: "notaport"'),
    ({"ExposedPorts": {"70000/tcp": {}}}, 'invalid port specification: "70000"'),
    ({"HostConfig": {"PortBindings": {"notaport": [{"HostPort": "80"}]}}},
     'invalid port specification: "notaport"'),
    ({"HostConfig": {"PortBindings": {"80-81/tcp": [{"HostPort": "80"}]}}},
     'invalid port specification: "80-81"'),
    ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "9-8"}]}}},
     'invalid port specification: "9-8"'),
    ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "65536"}]}}},
     'invalid port specification: "65536"'),
    # Resources.
    ({"HostConfig": {"Memory": -5}}, "Minimum memory limit allowed is 6MB"),
    ({"HostConfig": {"CpuShares": -100}},
     "invalid CPU shares (-100): value must be a positive integer"),
    ({"HostConfig": {"MemorySwap": 10_000_000, "Memory": 20_000_000}},
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    ({"HostConfig": {"MemorySwap": 100_000_000}},
     "You should always set the Memory limit when using Memoryswap limit, see usage"),
    ({"HostConfig": {"MemoryReservation": 1000}},
     "Minimum memory reservation allowed is 6MB"),
    ({"HostConfig": {"MemoryReservation": 100_000_000, "Memory": 20_000_000}},
     "Minimum memory limit can not be less than memory reservation limit, see usage"),
    ({"HostConfig": {"MemorySwappiness": 200}},
     "Invalid value: 200, valid memory swappiness range is 0-100"),
    ({"HostConfig": {"KernelMemory": 5}}, "Minimum kernel memory limit allowed is 6MB"),
    ({"HostConfig": {"CpuPeriod": 10}},
     ("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s "
      "(i.e. 1000000)")),
    ({"HostConfig": {"CpuQuota": 10}},
     "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    ({"HostConfig": {"CpusetCpus": "bogus"}},
     "Invalid value bogus for cpuset cpus: invalid format: bogus"),
    ({"HostConfig": {"CpusetMems": "1-"}},
     "Invalid value 1- for cpuset mems: invalid format: 1-"),
    ({"HostConfig": {"OomScoreAdj": 5000}},
     "Invalid value 5000, range for oom score adj is [-1000, 1000]"),
    ({"HostConfig": {"ShmSize": -1}}, "SHM size can not be less than 0"),
    ({"HostConfig": {"BlkioWeight": 5}}, "Range of blkio weight is from 10 to 1000"),
    ({"HostConfig": {"IOMaximumBandwidth": 5}},
     ("Invalid QoS settings: linux does not support configuration of maximum "
      "bandwidth")),
    # NUL characters, environment.
    ({"Env": ["A=\x00x"]},
     'invalid Config.Env: "A=\\x00x": NUL characters are not allowed'),
    ({"Cmd": ["a\x00b"]},
     'invalid Config.Cmd: "a\\x00b": NUL characters are not allowed'),
    ({"Entrypoint": "a\x00b"},
     'invalid Config.Entrypoint: "a\\x00b": NUL characters are not allowed'),
    ({"HostConfig": {"Binds": ["/tmp:/x\x00"]}},
     'invalid HostConfig.Binds: "/tmp:/x\\x00": NUL characters are not allowed'),
    ({"Env": ["=x"]}, "invalid environment variable: =x"),
    ({"Env": [None]}, "invalid environment variable: "),
    # Runtime, namespaces, cgroups, logs.
    ({"HostConfig": {"Runtime": "bogus"}}, "unknown or invalid runtime name: bogus"),
    ({"HostConfig": {"IpcMode": "bogus"}}, "invalid IPC mode: bogus"),
    ({"HostConfig": {"IpcMode": "container:"}}, "invalid IPC mode: container:"),
    ({"HostConfig": {"PidMode": "bogus"}}, "invalid PID mode: bogus"),
    ({"HostConfig": {"PidMode": "container:"}}, "invalid PID mode: container:"),
    ({"HostConfig": {"UTSMode": "bogus"}}, "invalid UTS mode: bogus"),
    ({"HostConfig": {"UsernsMode": "bogus"}}, "invalid userns mode: bogus"),
    ({"HostConfig": {"CgroupnsMode": "bogus"}}, "invalid cgroup namespace mode: bogus"),
    ({"HostConfig": {"NetworkMode": "container:"}},
     "Invalid network mode: invalid container format container:<name|id>"),
    ({"HostConfig": {"CgroupParent": "../../x"}},
     'invalid CgroupParent "../../x": it may not name a parent directory (..)'),
    ({"HostConfig": {"LogConfig": {"Type": "bogus"}}},
     'error looking up logging plugin bogus: plugin "bogus" not found'),
    ({"HostConfig": {"LogConfig": {"Type": "syslog"}}},
     ("log driver syslog is not supported by this daemon yet: it keeps logs "
      "with json-file, local or none")),
    ({"HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"bogus": "1"}}}},
     "unknown log opt 'bogus' for json-file log driver"),
    ({"HostConfig": {"LogConfig": {"Config": {"bogus": "1"}}}},
     "unknown log opt 'bogus' for json-file log driver"),
    ({"HostConfig": {"LogConfig": {"Type": "local", "Config": {"bogus": "1"}}}},
     "unknown log opt 'bogus' for log driver local"),
    # The rest of dockerd's checks.
    ({"HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}}},
     "invalid restart policy: maximum retry count cannot be negative"),
    ({"WorkingDir": "rel"},
     "the working directory 'rel' is invalid, it needs to be an absolute path"),
    ({"Healthcheck": {"Test": ["CMD", "true"], "Interval": 5}},
     "Interval in Healthcheck cannot be less than 1ms"),
    ({"Healthcheck": {"Retries": -1}}, "Retries in Healthcheck cannot be negative"),
    ({"HostConfig": {"ExtraHosts": ["bogus"]}}, 'bad format for add-host: "bogus"'),
    ({"HostConfig": {"ExtraHosts": ["a:bogus"]}},
     'invalid IP address in add-host: "bogus"'),
    ({"HostConfig": {"CapAdd": ["BOGUS"]}},
     'invalid CapAdd: unknown capability: "CAP_BOGUS"'),
    ({"HostConfig": {"Isolation": "hyperv"}},
     "Invalid isolation: \"hyperv\" - linux only supports 'default'"),
    ({"HostConfig": {"Tmpfs": {"x": ""}}},
     "invalid mount path: 'x' mount path must be absolute"),
    ({"HostConfig": {"Tmpfs": {"/": ""}}},
     "invalid specification: destination can't be '/'"),
    ({"Hostname": "h", "HostConfig": {"UTSMode": "host"}},
     "conflicting options: hostname and the UTS mode"),
    ({"MacAddress": "02:42:ac:11:00:02", "HostConfig": {"NetworkMode": "host"}},
     "conflicting options: mac-address and the network mode"),
    ({"NetworkingConfig": {"EndpointsConfig": {"bridge": {
        "IPAMConfig": {"IPv4Address": "bogus"}}}}},
     "invalid IPv4 address: bogus"),
]  # fmt: skip

#: Bodies dockerd accepts, and so must this daemon.
ACCEPTED: list[dict[str, Any]] = [
    {"HostConfig": {"Binds": ["relative:/w", "ab:/x", "/tmp:/y:ro,z", "/vol1",
                              "/nonexistent-zz:/z:", "vol:/v:nocopy"]}},
    {"HostConfig": {"Mounts": [
        {"Type": "volume", "Source": "ok", "Target": "/x", "ReadOnly": True},
        {"Type": "volume", "Target": "/anonymous"},
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1000}},
        {"Type": "bind", "Source": "/tmp", "Target": "/b",
         "BindOptions": {"Propagation": "rslave"}},
    ]}},
    {"HostConfig": {"Tmpfs": {"/x": "", "/x/": "size=1m"}}},
    {"HostConfig": {"Ulimits": [{"Name": "NOFILE", "Soft": -1, "Hard": -1}]}},
    {"HostConfig": {"Sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1",
                                "fs.mqueue.msg_max": "10",
                                "kernel.domainname": "x"}}},
    {"ExposedPorts": {"80/tcp": {}, "53/udp": {"a": 1}, "1-5/tcp": {}, "8080": {}}},
    {"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080-8081"}],
                                     "81": [{}], "82/udp": [{"HostPort": ""}],
                                     "/tcp": [{"HostPort": "80"}], "83/tcp": None,
                                     "84/tcp": [{"HostPort": "0084"}]}}},
    {"HostConfig": {"Memory": 6291456, "MemorySwap": -1, "MemorySwappiness": -1,
                    "CpuQuota": -1, "PidsLimit": -1, "CpuShares": 2,
                    "CpusetCpus": "0", "CpusetMems": ""}},
    {"HostConfig": {"IpcMode": "shareable", "PidMode": "host", "UsernsMode": "host",
                    "CgroupnsMode": "private", "UTSMode": "host"}},
    {"HostConfig": {"IpcMode": "none", "CgroupnsMode": "host"}},
    {"HostConfig": {"Runtime": "runc"}},
    {"HostConfig": {"Runtime": "io.containerd.runc.v2"}},
    {"HostConfig": {"LogConfig": {"Type": "none", "Config": {"max-size": "10m"}}}},
    {"HostConfig": {"LogConfig": {"Type": "local", "Config": {"max-size": "10m"}}}},
    {"HostConfig": {"LogConfig": {"Type": "json-file", "Config": {
        "max-size": "10m", "max-file": "3", "compress": "true", "labels": "a",
        "env": "b", "tag": "x", "labels-regex": "a", "env-regex": "b"}}}},
    {"HostConfig": {"CapAdd": "NET_ADMIN", "CapDrop": ["all"]}},
    {"HostConfig": {"ExtraHosts": ["a:1.2.3.4", "b=::1", "c:host-gateway",
                                   "d:[::1]"]}},
    {"Healthcheck": {"Test": ["NONE"]}},
    {"Healthcheck": {"Interval": 0, "Timeout": 0, "Retries": 0}},
    {"StopSignal": "SIGRTMIN+3", "StopTimeout": -1, "WorkingDir": "/a/../.."},
    {"Env": ["A"], "Cmd": ["a", None], "Labels": {"a": None}},
    {"HostConfig": {"ConsoleSize": [1]}},
    {"HostConfig": {"ConsoleSize": [1, 2, "x"]}},
    {"NetworkingConfig": {"EndpointsConfig": {"somenet": {}}}},
    {"HostConfig": {"NetworkMode": "somenet"}},
    {"HostConfig": {"CgroupParent": "a..b"}},
    {"HostConfig": {"Isolation": "default", "Annotations": {"a": "b"}}},
    {"HostConfig": {"SecurityOpt": ["seccomp=unconfined"]}},
    {"HostConfig": {"NetworkMode": "host", "Hostname": "x"}},
    # Looked for as the record is made, and at the start (dockerd's order).
    {"HostConfig": {"Links": ["other:alias"]}},
    {"HostConfig": {"IpcMode": "container:other", "PidMode": "container:other"}},
    {"HostConfig": {"Devices": [{"PathOnHost": "/dev/nope",
                                 "PathInContainer": "/dev/x",
                                 "CgroupPermissions": "rwm"}],
                    "DeviceCgroupRules": ["not a rule"]}},
]  # fmt: skip

#: What the docker CLI 28.2.2 and the Docker SDK for Python 7.2 sent for
#: C{docker create busybox true}, a create with most options, one on the
#: host's network, and two SDK creates (captured; dockerd 20.10 accepts all).
CLIENT_BODIES = [
    json.loads(line)
    for line in (Path(__file__).parent / "client_bodies.jsonl").read_text().splitlines()
]


class ValidationTests(SynchronousTestCase):
    """
    Create bodies are checked at the door: a wrong type or a setting dockerd
    refuses is a 400 with dockerd's words, never a stored record.
    """

    def assertRefused(self, cases: list[tuple[dict[str, Any], str]]) -> None:
        for body, message in cases:
            with self.subTest(body=body):
                error = self.assertRaises(
                    InvalidParameter, configs.check, {"Image": "x", **body}
                )
                self.assertEqual(error.message, message)

    def test_types(self) -> None:
        """Every Go type of the body, nested ones too, with Go's message."""
        self.assertRefused(TYPE_CASES)

    def test_settings(self) -> None:
        """What dockerd refuses before its 201 (findings 10 and 15)."""
        self.assertRefused(SETTING_CASES)

    def test_accepted(self) -> None:
        """What dockerd accepts stays accepted."""
        for body in ACCEPTED:
            with self.subTest(body=body):
                configs.check({"Image": "x", **body})

    def test_clients(self) -> None:
        """Everything the docker CLI and the SDK send, nulls and all."""
        for body in CLIENT_BODIES:
            with self.subTest(body=body):
                configs.check(body)

    def test_normalised(self) -> None:
        """
        The body is stored as Go decodes it: field names in the API's
        spelling, nulls as Go's zero values where Go has no pointer, a
        StrSlice as a list, a fixed array at its length, unknown names kept.
        """
        config, host, networking = configs.check({
            "image": "x", "Cmd": "ls", "Hostname": None, "StopTimeout": None,
            "Entrypoint": ["a", None], "ExposedPorts": {"80/tcp": {"a": 1}},
            "Foo": {"x": 1},
            "hostconfig": {"memory": 7_000_000, "PidsLimit": None, "ShmSize": None,
                           "Mounts": None, "ConsoleSize": [1], "CapAdd": "NET_ADMIN"},
            "NetworkingConfig": None,
        })  # fmt: skip
        self.assertEqual(
            config,
            {
                "Image": "x", "Cmd": ["ls"], "Hostname": "", "StopTimeout": None,
                "Entrypoint": ["a", ""], "ExposedPorts": {"80/tcp": {}},
                "Foo": {"x": 1},
            },
        )  # fmt: skip
        self.assertEqual(
            host,
            {
                "Memory": 7_000_000, "PidsLimit": None, "ShmSize": 0, "Mounts": None,
                "ConsoleSize": [1, 0], "CapAdd": ["NET_ADMIN"],
            },
        )  # fmt: skip
        self.assertEqual(networking, {})

    def test_update(self) -> None:
        """
        An update body: UpdateConfig's types, and the resources checked as
        at create (finding 17: a negative Memory is dockerd's 400, not
        runc's 500); the body is decoded in place for the caller.
        """
        cases: list[tuple[dict[str, Any], str]] = [
            ({"Memory": -7}, "Minimum memory limit allowed is 6MB"),
            ({"Memory": "x"}, _GO.format("string", "UpdateConfig.Memory", "int64")),
            ({"RestartPolicy": {"MaximumRetryCount": "x"}},
             _GO.format("string", "RestartPolicy.RestartPolicy.MaximumRetryCount",
                        "int")),
            ({"CpuShares": -100},
             "invalid CPU shares (-100): value must be a positive integer"),
            ({"RestartPolicy": {"Name": "sometimes"}},
             ("invalid restart policy: unknown policy 'sometimes'; use one of "
              "'no', 'always', 'on-failure', or 'unless-stopped'")),
        ]  # fmt: skip
        for body, message in cases:
            with self.subTest(body=body):
                error = self.assertRaises(InvalidParameter, configs.check_update, body)
                self.assertEqual(error.message, message)
        body: dict[str, Any] = {"memory": 7_000_000, "MemorySwap": 100_000_000}
        configs.check_update(body)
        self.assertEqual(body, {"Memory": 7_000_000, "MemorySwap": 100_000_000})

    def test_update_unchanged(self) -> None:
        """
        What dockerd's update leaves alone is dropped from the body: the
        docker CLI sends every resource, zero for the ones not asked for,
        and a restart policy without a name unless --restart was given.
        """
        body: dict[str, Any] = {
            "CpuShares": 512, "Memory": 0, "CgroupParent": "", "PidsLimit": 0,
            "MemorySwappiness": None, "OomKillDisable": None, "Ulimits": None,
            "BlkioWeightDevice": None, "CpusetCpus": "",
            "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
        }  # fmt: skip
        configs.check_update(body)
        self.assertEqual(body, {"CpuShares": 512, "PidsLimit": 0})
        body = {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}
        configs.check_update(body)
        self.assertEqual(
            body, {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}
        )

    def test_cpuset_available(self) -> None:
        """A cpuset of CPUs this machine lacks, as dockerd words it."""
        error = self.assertRaises(
            InvalidParameter,
            configs.check,
            {"Image": "x", "HostConfig": {"CpusetCpus": "0-4096"}},
        )
        self.assertEqual(
            error.message,
            "Requested CPUs are not available - requested 0-4096, available: "
            + validate.online_cpus(),
        )


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
        """Each policy's decision; only unless-stopped heeds a manual stop."""
        on_failure = restart.RestartPolicy("on-failure", 2)
        self.assertTrue(on_failure.should_restart(1, 0, False))
        self.assertTrue(on_failure.should_restart(1, 1, False))
        self.assertFalse(on_failure.should_restart(1, 2, False))
        self.assertFalse(on_failure.should_restart(0, 0, False))
        always = restart.RestartPolicy("always")
        self.assertTrue(always.should_restart(0, 100, False))
        self.assertTrue(always.should_restart(0, 0, True))
        unless = restart.RestartPolicy("unless-stopped")
        self.assertFalse(unless.should_restart(0, 0, True))
        self.assertFalse(restart.RestartPolicy("no").should_restart(1, 0, False))

    def test_backoff(self) -> None:
        """100 ms doubling to a minute; a run of ten seconds resets it."""
        backoff = restart.Backoff()
        delays = [backoff.next_delay(0) for _ in range(12)]
        self.assertEqual(delays[:4], [0.1, 0.2, 0.4, 0.8])
        self.assertEqual(delays[-1], 60.0)
        self.assertEqual(backoff.next_delay(10), 0.1)
