# ruff: noqa: INP001, T201
"""
Write C{dockserve/daemon/containers/apitypes.py}: the Go structs of the
container create and update bodies, as the Engine API's swagger describes
them, for L{dockserve.daemon.containers.gojson}.

The swagger gives the fields and their JSON types; what it cannot say (the
Go type a message names, an integer's width, a pointer, a
C{strslice.StrSlice}) is the table C{GO} below, checked against the spec:
an override for a field the spec lacks, or a nested object the table does
not name, stops the script. Run it after updating the spec::

    python3 tools/gen_apitypes.py ../shared/docker-api/v1.50.yaml

It needs PyYAML (Debian's python3-yaml); the daemon does not: it imports
the generated module.
"""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

OUTPUT = Path(__file__).parent.parent / "dockserve/daemon/containers/apitypes.py"

#: The structs of the table: the swagger schema each is read from.
ROOTS = {
    "Config": "#/definitions/ContainerConfig",
    "HostConfig": "#/definitions/HostConfig",
    "NetworkingConfig": "#/definitions/NetworkingConfig",
    "UpdateConfig": "paths:/containers/{id}/update",
}

#: Definitions that are Go structs: the table's name, and Go's.
REFS = {
    "ContainerConfig": ("Config", "container.Config"),
    "HostConfig": ("HostConfig", "container.HostConfig"),
    "NetworkingConfig": ("NetworkingConfig", "network.NetworkingConfig"),
    "EndpointSettings": ("EndpointSettings", "network.EndpointSettings"),
    "EndpointIPAMConfig": ("EndpointIPAMConfig", "network.EndpointIPAMConfig"),
    "HealthConfig": ("HealthConfig", "container.HealthConfig"),
    "Mount": ("Mount", "mount.Mount"),
    "RestartPolicy": ("RestartPolicy", "container.RestartPolicy"),
    "DeviceMapping": ("DeviceMapping", "container.DeviceMapping"),
    "DeviceRequest": ("DeviceRequest", "container.DeviceRequest"),
    "ThrottleDevice": ("ThrottleDevice", "blkiodev.ThrottleDevice"),
    "PortBinding": ("PortBinding", "nat.PortBinding"),
}

#: Objects the swagger writes inline, by (struct, field): Go's structs.
INLINE = {
    ("HostConfig", "LogConfig"): ("LogConfig", "container.LogConfig"),
    ("HostConfig", "Ulimits"): ("Ulimit", "units.Ulimit"),
    ("HostConfig", "BlkioWeightDevice"): ("WeightDevice", "blkiodev.WeightDevice"),
    ("UpdateConfig", "Ulimits"): ("Ulimit", "units.Ulimit"),
    ("UpdateConfig", "BlkioWeightDevice"): ("WeightDevice", "blkiodev.WeightDevice"),
    ("Mount", "BindOptions"): ("BindOptions", "mount.BindOptions"),
    ("Mount", "VolumeOptions"): ("VolumeOptions", "mount.VolumeOptions"),
    ("Mount", "ImageOptions"): ("ImageOptions", "mount.ImageOptions"),
    ("Mount", "TmpfsOptions"): ("TmpfsOptions", "mount.TmpfsOptions"),
    ("VolumeOptions", "DriverConfig"): ("Driver", "mount.Driver"),
}

#: Go's types where the swagger's do not say them. C{*T}: a pointer (null
#: stays nil); C{strslice}: a string or an array of strings; C{[N]T}: a
#: fixed array; otherwise the name messages print (an integer's also sets
#: its range).
_RESOURCES = {
    "CpuShares": "int64",
    "BlkioWeight": "uint16",
    "BlkioWeightDevice": "[]*blkiodev.WeightDevice",
    "BlkioDeviceReadBps": "[]*blkiodev.ThrottleDevice",
    "BlkioDeviceWriteBps": "[]*blkiodev.ThrottleDevice",
    "BlkioDeviceReadIOps": "[]*blkiodev.ThrottleDevice",
    "BlkioDeviceWriteIOps": "[]*blkiodev.ThrottleDevice",
    "Devices": "[]container.DeviceMapping",
    "DeviceRequests": "[]container.DeviceRequest",
    "MemorySwappiness": "*int64",
    "OomKillDisable": "*bool",
    "Init": "*bool",
    "PidsLimit": "*int64",
    "Ulimits": "[]*units.Ulimit",
    "IOMaximumIOps": "uint64",
    "IOMaximumBandwidth": "uint64",
}
GO: dict[str, dict[str, str]] = {
    "Config": {
        "Cmd": "strslice",
        "Entrypoint": "strslice",
        "Shell": "strslice",
        "ExposedPorts": "nat.PortSet",
        "StopTimeout": "*int",
    },
    "HostConfig": {
        **_RESOURCES,
        "CapAdd": "strslice",
        "CapDrop": "strslice",
        "NetworkMode": "container.NetworkMode",
        "IpcMode": "container.IpcMode",
        "PidMode": "container.PidMode",
        "UTSMode": "container.UTSMode",
        "UsernsMode": "container.UsernsMode",
        "Cgroup": "container.CgroupSpec",
        "CgroupnsMode": "container.CgroupnsMode",
        "Isolation": "container.Isolation",
        "PortBindings": "nat.PortMap",
        "Mounts": "[]mount.Mount",
        "ConsoleSize": "[2]uint",
    },
    "UpdateConfig": dict(_RESOURCES),
    "NetworkingConfig": {"EndpointsConfig": "map[string]*network.EndpointSettings"},
    "EndpointSettings": {"GwPriority": "int", "GlobalIPv6PrefixLen": "int"},
    "HealthConfig": {
        "Interval": "time.Duration",
        "Timeout": "time.Duration",
        "StartPeriod": "time.Duration",
        "StartInterval": "time.Duration",
    },
    "Mount": {"Type": "mount.Type", "Consistency": "mount.Consistency"},
    "BindOptions": {"Propagation": "mount.Propagation"},
    "TmpfsOptions": {"Mode": "fs.FileMode"},
    "Ulimit": {"Soft": "int64", "Hard": "int64"},
    "WeightDevice": {"Weight": "uint16"},
    "ThrottleDevice": {"Rate": "uint64"},
}

#: Fields Go still decodes that the swagger no longer lists.
EXTRA = {
    "HostConfig": {"KernelMemory": "int64"},
    "UpdateConfig": {"KernelMemory": "int64"},
}


class Spec:
    """The swagger document, and the structs found in it so far."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.structs: dict[str, list[tuple[str, str]]] = {}
        self.pending: list[tuple[str, dict[str, Any]]] = []

    def resolve(self, ref: str) -> dict[str, Any]:
        """The schema C{ref} names: a definition, or an operation's body."""
        if ref.startswith("paths:"):
            operation = self.document["paths"][ref.removeprefix("paths:")]["post"]
            (body,) = (p for p in operation["parameters"] if p["in"] == "body")
            return dict(body["schema"])
        return dict(self.document["definitions"][ref.rsplit("/", 1)[1]])

    def properties(self, schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """A schema's properties, through C{$ref} and C{allOf}."""
        if "$ref" in schema:
            return self.properties(self.resolve(schema["$ref"]))
        found: dict[str, dict[str, Any]] = {}
        for part in schema.get("allOf", []):
            found.update(self.properties(part))
        found.update(schema.get("properties", {}))
        return found

    def add(self, name: str, schema: dict[str, Any]) -> None:
        """Queue the struct C{name}, read from C{schema}, unless it is known."""
        if name not in self.structs:
            self.structs[name] = []
            self.pending.append((name, schema))

    def build(self) -> None:
        """Read every struct reachable from L{ROOTS}."""
        for name, ref in ROOTS.items():
            self.add(name, {"$ref": ref})
        while self.pending:
            name, schema = self.pending.pop(0)
            overrides = dict(GO.get(name, {}))
            fields = self.properties(schema)
            for extra in EXTRA.get(name, {}):
                fields.setdefault(extra, {"type": "integer"})
                overrides.setdefault(extra, EXTRA[name][extra])
            unknown = set(overrides) - set(fields)
            if unknown:
                raise SystemExit(f"{name}: the spec has no fields {sorted(unknown)}")
            self.structs[name] = [
                (field, self.kind(name, field, prop, overrides.get(field)))
                for field, prop in fields.items()
            ]

    def kind(
        self, owner: str, field: str, schema: dict[str, Any], go: str | None
    ) -> str:
        """The L{gojson} constructor call for one field."""
        if go == "strslice":
            return "strslice()"
        nullable = bool(go and go.startswith("*") and not go.startswith("*["))
        if nullable:
            go = go[1:] if go else go
        return self.derive(owner, field, schema, go, nullable=nullable)

    def derive(
        self,
        owner: str,
        field: str,
        schema: dict[str, Any],
        go: str | None,
        *,
        nullable: bool = False,
    ) -> str:
        """The constructor call for C{schema}, C{go} overriding its Go name."""
        if "allOf" in schema and "properties" not in schema and "type" not in schema:
            (schema,) = schema["allOf"]
        if "$ref" in schema:
            definition = schema["$ref"].rsplit("/", 1)[1]
            if definition in REFS:
                name, go_name = REFS[definition]
                self.add(name, schema)
                return f"struct({name!r}, {go_name!r})"
            schema = self.resolve(schema["$ref"])
        kind = schema.get("type")
        if kind == "string":
            return f"string({go!r})" if go else "string()"
        if kind == "boolean":
            return "boolean(nullable=True)" if nullable else "boolean()"
        if kind == "integer":
            width = go or ("int64" if schema.get("format") == "int64" else "int")
            return f"integer({width!r}" + (", nullable=True)" if nullable else ")")
        if kind == "array":
            return self.array(owner, field, schema, go)
        if kind == "object" or "properties" in schema:
            return self.object(owner, field, schema, go)
        raise SystemExit(f"{owner}.{field}: no Go type for {schema}")

    def array(
        self, owner: str, field: str, schema: dict[str, Any], go: str | None
    ) -> str:
        """A slice, or a fixed array when C{go} is C{[N]T}."""
        fixed = re.fullmatch(r"\[(\d+)\](\w+)", go or "")
        item_go = fixed.group(2) if fixed else None
        item = self.derive(owner, field, schema["items"], item_go)
        if fixed:
            return f"array({item}, {go!r}, length={fixed.group(1)})"
        return f"array({item}, {go!r})" if go else f"array({item})"

    def object(
        self, owner: str, field: str, schema: dict[str, Any], go: str | None
    ) -> str:
        """A map (C{additionalProperties}), or an inline struct INLINE names."""
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            if values.get("type") == "object" and values.get("enum") == [{}]:
                value = "empty()"
            else:
                value = self.derive(owner, field, values, None)
            return f"mapping({value}, {go!r})" if go else f"mapping({value})"
        if (owner, field) not in INLINE:
            raise SystemExit(f"{owner}.{field}: an inline object INLINE does not name")
        name, go_name = INLINE[(owner, field)]
        self.add(name, schema)
        return f"struct({name!r}, {go_name!r})"


def render(spec: Spec, source: str) -> str:
    """The module's text."""
    owners = {name: go.rsplit(".", 1)[1] for name, go in REFS.values()}
    owners.update({name: go.rsplit(".", 1)[1] for name, go in INLINE.values()})
    owners["UpdateConfig"] = "UpdateConfig"
    lines = [
        "# -*- test-case-name: tests.daemon.containers.test_gojson -*-",
        f"# Generated by tools/gen_apitypes.py from {source}: do not edit.",
        '"""',
        "The Go structs dockerd decodes container create and update bodies into.",
        '"""',
        "",
        "from dockserve.daemon.containers.gojson import (",
        "    Struct, array, boolean, empty, integer, mapping, string, strslice,",
        "    struct,",
        ")",
        "",
        "STRUCTS: dict[str, Struct] = {",
    ]
    for name, fields in spec.structs.items():
        lines.append(f"    {name!r}: Struct({owners[name]!r}, {{")
        lines.extend(f"        {field!r}: {kind}," for field, kind in fields)
        lines.append("    }),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    """Read the spec named by C{argv[1]}, write L{OUTPUT}, format it."""
    source = argv[1] if len(argv) > 1 else "../shared/docker-api/v1.50.yaml"
    with Path(source).open() as f:
        spec = Spec(yaml.safe_load(f))
    spec.build()
    OUTPUT.write_text(render(spec, Path(source).name))
    ruff = OUTPUT.parents[3] / ".venv/bin/ruff"
    subprocess.run(
        [str(ruff) if ruff.exists() else "ruff", "format", str(OUTPUT)], check=True
    )
    print(f"wrote {OUTPUT} ({len(spec.structs)} structs)")


if __name__ == "__main__":
    main(sys.argv)
