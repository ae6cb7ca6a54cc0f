# -*- test-case-name: tests.daemon.containers.test_execs -*-
"""
Exec instances: C{docker exec}'s processes, made by one request and run by
another.

The process runs with the container's own OCI C{process} as its template
(its capabilities, rlimits, no-new-privileges...), with the exec's
command, environment, working directory, user and TTY in place of the
container's; C{Privileged} grants every capability, as dockerd does.
"""

import functools
import json
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred

from dockserve.daemon.contracts import ExecProcess, PushProducer
from dockserve.errors import InvalidParameter, NotFound

#: Every capability the kernel knows (C{--privileged}).
ALL_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
    "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
    "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]  # fmt: skip


@functools.cache
def grantable_capabilities() -> tuple[str, ...]:
    """
    Every capability this daemon can give: those in its own bounding set
    (C{CapBnd} in /proc/self/status), in number order. C{--privileged} and
    C{--cap-add ALL} mean these; a capability the daemon lacks (a sandbox, a
    user namespace) would make runc fail the whole start.
    """
    try:
        status = Path("/proc/self/status").read_text()
        mask = int(next(
            line.split()[1] for line in status.splitlines()
            if line.startswith("CapBnd:")
        ), 16)  # fmt: skip
    except (OSError, StopIteration, ValueError):
        return tuple(ALL_CAPABILITIES)
    return tuple(c for i, c in enumerate(ALL_CAPABILITIES) if mask >> i & 1)


class ExecInstance:
    """
    One exec instance, from C{POST /containers/{id}/exec} to its exit.

    @ivar exited: Fires with the exit code when the process ends.
    """

    def __init__(self, exec_id: str, container_id: str, config: dict[str, Any]) -> None:
        self.id = exec_id
        self.container_id = container_id
        self.config = config
        self.started = False
        self.running = False
        self.exit_code: int | None = None
        self.pid = 0
        self.exited: Deferred[int] = Deferred()
        self._process: ExecProcess | None = None
        self._size: tuple[int, int] | None = None

    @classmethod
    def from_request(
        cls, exec_id: str, container_id: str, body: dict[str, Any], cmd: list[str]
    ) -> "ExecInstance":
        """
        An instance for a C{POST /containers/{id}/exec} body.

        @raise InvalidParameter: For values of the wrong type.
        """
        for key in ("Env",):
            value = body.get(key)
            if value is not None and (
                not isinstance(value, list)
                or not all(isinstance(v, str) for v in value)
            ):
                raise InvalidParameter(
                    "json: cannot unmarshal into Go struct field ExecOptions."
                    f"{key} of type []string"
                )
        for key in ("User", "WorkingDir", "DetachKeys"):
            value = body.get(key)
            if value is not None and not isinstance(value, str):
                raise InvalidParameter(
                    "json: cannot unmarshal into Go struct field ExecOptions."
                    f"{key} of type string"
                )
        for key in ("Tty", "AttachStdin", "AttachStdout", "AttachStderr", "Privileged"):
            value = body.get(key)
            if value is not None and not isinstance(value, bool):
                raise InvalidParameter(
                    "json: cannot unmarshal into Go struct field ExecOptions."
                    f"{key} of type bool"
                )
        if not all(isinstance(word, str) for word in cmd):
            raise InvalidParameter(
                "json: cannot unmarshal into Go struct field ExecOptions.Cmd "
                "of type string"
            )
        config = {
            "Cmd": list(cmd),
            "Env": list(body.get("Env") or []),
            "User": body.get("User") or "",
            "WorkingDir": body.get("WorkingDir") or "",
            "Tty": bool(body.get("Tty")),
            "AttachStdin": bool(body.get("AttachStdin")),
            "AttachStdout": bool(body.get("AttachStdout")),
            "AttachStderr": bool(body.get("AttachStderr")),
            "Privileged": bool(body.get("Privileged")),
            "DetachKeys": body.get("DetachKeys") or "",
        }
        return cls(exec_id, container_id, config)

    def attach_process(self, process: ExecProcess) -> None:
        """The runtime started the process: follow it to its end."""
        self._process = process
        self.running = True
        self.pid = process.pid
        if self._size is not None:
            process.resize(*self._size)
        process.exited.addCallback(self.finished)

    def finished(self, code: int) -> int:
        """Record the exit code and tell whoever waits."""
        self.running = False
        self.exit_code = code
        if not self.exited.called:
            self.exited.callback(code)
        return code

    def write_stdin(self, data: bytes) -> None:
        """Bytes from the client, when it attached stdin."""
        if self._process is not None and self.config["AttachStdin"]:
            self._process.write_stdin(data)

    def close_stdin(self) -> None:
        """The client half-closed: the process's input ends, if it had any."""
        if self._process is not None and self.config["AttachStdin"]:
            self._process.close_stdin()

    def set_stdin_producer(self, producer: PushProducer) -> None:
        """The client's connection: paused while the process's stdin is full."""
        if self._process is not None and self.config["AttachStdin"]:
            self._process.set_stdin_producer(producer)

    def pause_output(self) -> None:
        """The client reads slowly: hold the process's output back."""
        if self._process is not None:
            self._process.pause_output()

    def resume_output(self) -> None:
        """The client caught up."""
        if self._process is not None:
            self._process.resume_output()

    def resize(self, height: int, width: int) -> None:
        """Set the exec's TTY size, now or as soon as the process runs."""
        self._size = (height, width)
        if self._process is not None:
            self._process.resize(height, width)

    def detach(self) -> None:
        """The client went away: the process goes on."""
        if self._process is not None:
            self._process.detach()

    def describe(self, container_pid: int) -> dict[str, Any]:
        """C{GET /exec/{id}/json}."""
        del container_pid
        cmd = self.config["Cmd"]
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": self.config["Tty"],
                "entrypoint": cmd[0],
                "arguments": cmd[1:],
                "privileged": self.config["Privileged"],
                "user": self.config["User"],
            },
            "OpenStdin": self.config["AttachStdin"],
            "OpenStderr": self.config["AttachStderr"],
            "OpenStdout": self.config["AttachStdout"],
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": self.config["DetachKeys"],
            "Pid": self.pid,
        }


def _lookup(path: Path, name: str, column: int) -> tuple[int, int] | None:
    """C{(id, gid)} of C{name} in a passwd- or group-format file, if there."""
    try:
        if path.is_symlink() or path.parent.is_symlink():
            return None
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) > column and fields[0] == name:
            try:
                return int(fields[2]), int(fields[column])
            except ValueError:
                return None
    return None


def resolve_user(rootfs: Path, user: str) -> dict[str, Any]:
    """
    An OCI C{user} for C{user}, C{uid}, C{user:group} or C{uid:gid}, looked
    up in the container's C{/etc/passwd} and C{/etc/group}.

    @raise NotFound: An unknown name, with runc's message.
    """
    name, _, group = user.partition(":")
    if name.isdigit():
        uid, gid = int(name), 0
        found = None
    else:
        found = _lookup(rootfs / "etc" / "passwd", name, 3)
        if found is None:
            raise NotFound(
                f"unable to find user {name}: no matching entries in passwd file"
            )
        uid, gid = found
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            found_group = _lookup(rootfs / "etc" / "group", group, 2)
            if found_group is None:
                raise NotFound(
                    f"unable to find group {group}: no matching entries in group file"
                )
            gid = found_group[0]
    return {"uid": uid, "gid": gid}


def build_process(
    config_path: Path, rootfs: Path, instance: ExecInstance
) -> dict[str, Any]:
    """
    The OCI C{process} of an exec: the container's own, from its bundle's
    C{config.json}, with the exec's settings in place.
    """
    try:
        template = dict(json.loads(config_path.read_bytes()).get("process") or {})
    except (OSError, ValueError):
        template = {}
    config = instance.config
    env = list(template.get("env") or [])
    keys = {item.split("=", 1)[0]: i for i, item in enumerate(env)}
    for item in config["Env"]:
        key = item.split("=", 1)[0]
        if key in keys:
            env[keys[key]] = item
        else:
            env.append(item)
    process = dict(template)
    process["args"] = list(config["Cmd"])
    process["env"] = env
    process["terminal"] = config["Tty"]
    process.pop("consoleSize", None)
    if config["WorkingDir"]:
        process["cwd"] = config["WorkingDir"]
    process.setdefault("cwd", "/")
    if config["User"]:
        process["user"] = resolve_user(rootfs, config["User"])
    process.setdefault("user", {"uid": 0, "gid": 0})
    if config["Privileged"]:
        process["capabilities"] = {
            kind: list(grantable_capabilities())
            for kind in ("bounding", "effective", "permitted", "inheritable", "ambient")
        }
    return process
