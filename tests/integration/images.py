# -*- test-case-name: tests.integration.test_images -*-
"""
Busybox images built at test time from Debian's C{busybox-static}.

There is no internet here, so every integration test that needs an image
makes one from C{/bin/busybox}: L{busybox_rootfs_tar} writes a rootfs
tarball (for C{docker import}), L{busybox_save_archive} a C{docker save}
archive (for C{docker load}, no daemon needed to build it), and
L{import_busybox} puts C{busybox:latest} into a running daemon.

Both are deterministic (fixed mtimes, sorted entries), so the same busybox
gives the same image ID every time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

#: Where the static busybox lives on Debian.
BUSYBOX = Path("/bin/busybox")

#: The fixed mtime of every entry, so the tarball's bytes are reproducible.
_MTIME = 1_700_000_000

_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
_GROUP = "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n"

#: The applets linked even if C{busybox --list} cannot be run.
_MINIMUM_APPLETS = (
    "sh", "echo", "cat", "true", "false", "sleep", "ls", "env", "id", "ps",
    "mkdir", "rm", "touch", "pwd", "hostname", "wc", "head", "tail", "grep",
    "sed", "kill", "top", "printf", "test", "[", "date", "stat", "nc", "wget",
    "uname", "whoami", "ln", "cp", "mv", "chmod", "sort", "tr", "seq", "yes",
    "dd", "find", "xargs", "awk", "mount", "timeout", "nslookup", "ping",
    "ip", "ifconfig", "hexdump", "od", "tee", "du", "df", "free",
)  # fmt: skip


def have_busybox() -> bool:
    """Whether a static busybox is available to build images from."""
    return BUSYBOX.is_file()


def _applets() -> list[str]:
    try:
        out = subprocess.run(
            [str(BUSYBOX), "--list"], capture_output=True, check=True, timeout=10
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return sorted(_MINIMUM_APPLETS)
    names = {line.strip() for line in out.splitlines() if line.strip()}
    names.update(_MINIMUM_APPLETS)
    names.discard("busybox")
    return sorted(n for n in names if "/" not in n)


def _dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = _MTIME
    tar.addfile(info)


def _file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = _MTIME
    tar.addfile(info, io.BytesIO(data))


def write_rootfs(out: Any, extra_files: dict[str, bytes] | None = None) -> None:
    """
    Write the busybox rootfs as an uncompressed tar to the binary file C{out}.

    @param extra_files: More regular files, path (no leading slash) to
        content, for tests that need to recognise their image.
    """
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in (
            ("bin", 0o755),
            ("dev", 0o755),
            ("etc", 0o755),
            ("home", 0o755),
            ("proc", 0o755),
            ("root", 0o700),
            ("sys", 0o755),
            ("tmp", 0o1777),
            ("usr", 0o755),
            ("usr/bin", 0o755),
            ("var", 0o755),
        ):
            _dir(tar, name, mode)
        info = tarfile.TarInfo("bin/busybox")
        info.size = BUSYBOX.stat().st_size
        info.mode = 0o755
        info.mtime = _MTIME
        with BUSYBOX.open("rb") as binary:
            tar.addfile(info, binary)
        for applet in _applets():
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mode = 0o777
            link.mtime = _MTIME
            tar.addfile(link)
        _file(tar, "etc/passwd", _PASSWD.encode())
        _file(tar, "etc/group", _GROUP.encode())
        _file(tar, "etc/hostname", b"busybox\n")
        for name, data in sorted((extra_files or {}).items()):
            _file(tar, name.lstrip("/"), data)


def busybox_rootfs_tar(
    path: str | os.PathLike[str], extra_files: dict[str, bytes] | None = None
) -> Path:
    """
    Write a busybox rootfs tarball (for C{docker import}) to C{path}.

    The tarball holds C{/bin/busybox}, a symlink in C{/bin} for every
    applet (C{sh}, C{echo}, C{cat}, C{true}, C{sleep}, C{ls}...), and
    C{/etc/passwd} and C{/etc/group} with root, daemon and nobody.

    @return: C{path} as a L{Path}.
    """
    target = Path(path)
    with target.open("wb") as out:
        write_rootfs(out, extra_files)
    return target


#: The image config C{import_busybox} and C{busybox_save_archive} give.
DEFAULT_CMD = ["sh"]
DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def busybox_save_archive(
    path: str | os.PathLike[str],
    tag: str = "busybox:latest",
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """
    Write a C{docker save} archive (manifest.json, config, one layer) of a
    busybox image tagged C{tag} to C{path}, for C{docker load}.

    @return: C{path} as a L{Path}.
    """
    layer = io.BytesIO()
    write_rootfs(layer, extra_files)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": _go_arch(),
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Cmd": DEFAULT_CMD, "Env": DEFAULT_ENV},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "busybox"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    layer_hex = diff_id.removeprefix("sha256:")
    manifest = [
        {
            "Config": f"blobs/sha256/{config_hex}",
            "RepoTags": [tag],
            "Layers": [f"blobs/sha256/{layer_hex}"],
        }
    ]
    target = Path(path)
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        _dir(tar, "blobs")
        _dir(tar, "blobs/sha256")
        _file(tar, f"blobs/sha256/{config_hex}", config_bytes)
        _file(tar, f"blobs/sha256/{layer_hex}", layer_bytes)
        _file(tar, "manifest.json", json.dumps(manifest).encode())
    return target


def _go_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(
        machine, machine
    )


def import_busybox(
    docker_client_or_host: Any,
    tag: str = "busybox:latest",
    extra_files: dict[str, bytes] | None = None,
) -> str:
    """
    Import the busybox rootfs into a running daemon as C{tag}, with
    C{CMD ["sh"]} and the usual C{PATH}.

    @param docker_client_or_host: A C{docker.DockerClient}, a
        C{docker.APIClient}, or a C{DOCKER_HOST} string (C{unix:///...}).
    @return: The image ID (C{sha256:...}).
    """
    import tempfile  # noqa: PLC0415

    import docker  # noqa: PLC0415

    if isinstance(docker_client_or_host, str):
        api = docker.APIClient(base_url=docker_client_or_host, version="1.50")
    elif isinstance(docker_client_or_host, docker.DockerClient):
        api = docker_client_or_host.api
    else:
        api = docker_client_or_host
    repo, _, tag_part = tag.rpartition(":")
    if not repo or "/" in tag_part:
        repo, tag_part = tag, "latest"
    with tempfile.TemporaryDirectory() as tmp:
        tarball = busybox_rootfs_tar(Path(tmp) / "rootfs.tar", extra_files)
        api.import_image(
            src=str(tarball),
            repository=repo,
            tag=tag_part,
            changes=[
                'CMD ["sh"]',
                "ENV " + DEFAULT_ENV[0],
            ],
        )
    return str(api.inspect_image(tag)["Id"])


def serve_images_only(socket_path: str, data_root: str) -> None:
    """
    Serve just the image API on a unix socket (for image tests before the
    full daemon's harness is available): C{python -m tests.integration.images
    SOCKET DATA_ROOT}.
    """
    from twisted.internet import reactor  # noqa: PLC0415
    from twisted.web.server import Site  # noqa: PLC0415

    from dockserve.api.router import make_resource  # noqa: PLC0415
    from dockserve.daemon.images.service import ImageService  # noqa: PLC0415
    from dockserve.testing.backend import MemoryBackend  # noqa: PLC0415

    class _System:
        def info(self) -> dict[str, Any]:
            return {}

    service = ImageService(Path(data_root) / "image", reactor)

    def listen(_: object) -> None:
        site = Site(make_resource(MemoryBackend(system=_System(), images=service)))
        reactor.listenUNIX(socket_path, site)  # type: ignore[attr-defined]

    service.restore().addCallback(listen)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    import sys

    serve_images_only(sys.argv[1], sys.argv[2])
