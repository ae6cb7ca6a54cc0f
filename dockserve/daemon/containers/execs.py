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
from collections.abc import Sequence
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


def _console_size(value: Any) -> list[int] | None:
    """
    An exec's C{ConsoleSize} (C{[height, width]}); none unless both are
    positive whole numbers.

    @raise InvalidParameter: Not a list of two numbers (Go's text).
    """
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise InvalidParameter(
            "json: cannot unmarshal into Go struct field ExecOptions.ConsoleSize "
            "of type [2]uint"
        )
    height, width = value
    return [height, width] if height > 0 and width > 0 else None


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
            "ConsoleSize": _console_size(body.get("ConsoleSize")),
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


#: The annotation of a container's bundle that keeps its C{GroupAdd}: an
#: exec with a user of its own gets those groups too (moby's C{getUser}).
GROUP_ADD_ANNOTATION = "org.dockserve.group-add"

#: The largest user or group ID runc takes.
_MAX_ID = 2**31 - 1


def _entries(path: Path, width: int) -> list[list[str]]:
    """
    The lines of a passwd- or group-format file of a container's root, split
    into at least C{width} fields; none when the file is missing, or is (or
    is in) a symbolic link, which could lead out of the root.
    """
    try:
        if path.is_symlink() or path.parent.is_symlink():
            return []
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    rows = [line.strip().split(":") for line in lines]
    return [row for row in rows if len(row) >= width and row[0]]


def _number(text: str) -> int | None:
    """An ID in a file or in C{User}: C{None} if not a number, checked in range."""
    if not text.isdigit():
        return None
    value = int(text)
    if value > _MAX_ID:
        raise InvalidParameter(f"uids and gids must be in range 0-{_MAX_ID}")
    return value


def _groups(rootfs: Path) -> list[tuple[str, int, list[str]]]:
    """C{(name, gid, members)} of each usable line of the root's /etc/group."""
    groups = []
    for row in _entries(rootfs / "etc" / "group", 3):
        if row[2].isdigit():
            members = row[3].split(",") if len(row) > 3 and row[3] else []
            groups.append((row[0], int(row[2]), members))
    return groups


def _passwd_user(rootfs: Path, name: str) -> tuple[str, int, int] | None:
    """
    C{(name, uid, gid)} of the first passwd line for C{name}: a number is
    always a uid, C{""} is root (uid 0), as in runc's C{GetExecUser}.
    """
    uid = _number(name or "0")
    for row in _entries(rootfs / "etc" / "passwd", 4):
        if not (row[2].isdigit() and row[3].isdigit()):
            continue
        if (int(row[2]) == uid) if uid is not None else (row[0] == name):
            return row[0], int(row[2]), int(row[3])
    return None


def _primary_gid(rootfs: Path, group: str) -> int:
    """The gid of C{user:group}'s group: a name or a number, looked up first."""
    number = _number(group)
    for name, gid, _ in _groups(rootfs):
        if (gid == number) if number is not None else (name == group):
            return gid
    if number is None:
        raise NotFound(
            f"unable to find group {group}: no matching entries in group file"
        )
    return number


def _added_gids(rootfs: Path, group_add: Sequence[str]) -> list[int]:
    """
    C{--group-add}'s groups, names or numbers from the root's /etc/group,
    each once, in the order given (runc's C{GetAdditionalGroups}).
    """
    groups = _groups(rootfs)
    gids: list[int] = []
    for wanted in group_add:
        found = next(
            (gid for name, gid, _ in groups if wanted in (name, str(gid))), None
        )
        if found is None:
            found = _number(wanted)
        if found is None:
            raise NotFound(
                f"Unable to find group {wanted}: no matching entries in group file"
            )
        if found not in gids:
            gids.append(found)
    return gids


def resolve_user(
    rootfs: Path, user: str, group_add: Sequence[str] = ()
) -> dict[str, Any]:
    """
    An OCI C{user} for C{User} (C{name}, C{uid}, C{name:group}, C{uid:gid}
    or empty for root), looked up in the container's C{/etc/passwd} and
    C{/etc/group}, with its supplementary groups as dockerd 20.10 gives
    them to runc: the primary gid, then (without an explicit group) the
    groups that list the user as a member, then C{GroupAdd}. Without them
    the process had no supplementary group at all (C{id -G} showed 0 only).

    @raise NotFound: An unknown name, with runc's message.
    @raise InvalidParameter: An ID beyond runc's range.
    """
    name, _, group = user.partition(":")
    found = _passwd_user(rootfs, name)
    if found is not None:
        matched, uid, gid = found
    elif name and not name.isdigit():
        raise NotFound(
            f"unable to find user {name}: no matching entries in passwd file"
        )
    else:
        matched, uid, gid = "", _number(name or "0") or 0, 0
    supplementary: list[int] = []
    if group:
        gid = _primary_gid(rootfs, group)
    elif matched:
        supplementary = [g for _, g, members in _groups(rootfs) if matched in members]
    return {
        "uid": uid,
        "gid": gid,
        "additionalGids": [gid, *supplementary, *_added_gids(rootfs, group_add)],
    }


def group_add_of(spec: dict[str, Any]) -> list[str]:
    """The C{GroupAdd} a container's bundle keeps (L{GROUP_ADD_ANNOTATION})."""
    text = (spec.get("annotations") or {}).get(GROUP_ADD_ANNOTATION)
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def build_process(
    config_path: Path, rootfs: Path, instance: ExecInstance
) -> dict[str, Any]:
    """
    The OCI C{process} of an exec: the container's own, from its bundle's
    C{config.json}, with the exec's settings in place.
    """
    try:
        spec = json.loads(config_path.read_bytes())
    except (OSError, ValueError):
        spec = {}
    if not isinstance(spec, dict):
        spec = {}
    template = dict(spec.get("process") or {})
    config = instance.config
    env = list(template.get("env") or [])
    keys = {item.split("=", 1)[0]: i for i, item in enumerate(env)}
    for item in config["Env"]:
        key, equals, _ = item.partition("=")
        if not equals:
            # A bare name unsets it, as dockerd's ReplaceOrAppendEnvValues.
            env = [e for e in env if e.partition("=")[0] != key]
            keys = {e.partition("=")[0]: i for i, e in enumerate(env)}
            continue
        if key in keys:
            env[keys[key]] = item
        else:
            keys[key] = len(env)
            env.append(item)
    process = dict(template)
    process["args"] = list(config["Cmd"])
    process["env"] = env
    process["terminal"] = config["Tty"]
    process.pop("consoleSize", None)
    size = config.get("ConsoleSize")
    if config["Tty"] and size:
        # The size from the start (the CLI sends it from API 1.42), before
        # the first resize: a program asking at once must not see 0x0.
        process["consoleSize"] = {"height": size[0], "width": size[1]}
    if config["WorkingDir"]:
        process["cwd"] = config["WorkingDir"]
    process.setdefault("cwd", "/")
    if config["User"]:
        process["user"] = resolve_user(rootfs, config["User"], group_add_of(spec))
    process.setdefault("user", {"uid": 0, "gid": 0, "additionalGids": [0]})
    if config["Privileged"]:
        process["capabilities"] = {
            kind: list(grantable_capabilities())
            for kind in ("bounding", "effective", "permitted", "inheritable", "ambient")
        }
    return process
