# -*- test-case-name: tests.daemon.build.test_steps -*-
"""
Each instruction of a stage, as dockerd's classic builder dispatches it
(C{builder/dockerfile/dispatchers.go}), on the engine's own parts.

  - Metadata steps (ENV, LABEL, EXPOSE, USER, CMD, ENTRYPOINT, VOLUME,
    STOPSIGNAL, SHELL, HEALTHCHECK, ONBUILD, ARG, MAINTAINER) change the
    run config and commit a config-only image whose history says
    C{/bin/sh -c #(nop)  CMD ["x"]}, as dockerd's do. As dockerd, each
    makes a container that is never started (its C{create} and C{destroy}
    events, its ID the image's C{container}), removed after the commit
    per C{rm}; WORKDIR too.
  - RUN runs the command in a real container (through the container
    service: the build's network mode, its resources, the build args in
    its environment), its output streamed as it comes, then commits the
    container's upper directory; its command in the history and the
    cache key carries the build args as dockerd's C{|N a=b ...}. A RUN
    that fails leaves its container (stopped, for C{docker logs} and
    C{docker diff}) unless C{forcerm}, as dockerd's does.
  - COPY and ADD write their files into a fresh upper directory
    (L{dockserve.daemon.build.copying}) that is committed as the layer;
    WORKDIR writes its directory the same way; C{ADD <url>} downloads
    its file first (L{dockserve.daemon.build.remote}).

Every step probes the cache first (L{dockserve.daemon.build.cache}).
"""

import copy
import json
import os
import posixpath
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from dockserve.daemon.build import copying, dockerfile, expand, remote
from dockserve.daemon.build.cache import Prober
from dockserve.daemon.build.context import Context
from dockserve.daemon.build.contextview import ContextView
from dockserve.daemon.build.dockerfile import Instruction
from dockserve.daemon.build.output import Output
from dockserve.daemon.build.rootview import RootView, Tree
from dockserve.daemon.build.state import BuildArgs, Stage
from dockserve.errors import DockerError, InvalidParameter

_BUILDKIT_ONLY = (
    "the --{} option requires BuildKit. Refer to "
    "https://docs.docker.com/go/buildkit/ to learn how to build images with "
    "BuildKit enabled"
)

#: What the runtime puts in a container's root for its own files (dockerd's
#: init layer): never part of a RUN's layer.
INIT_PATHS = frozenset({
    "/.dockerenv", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf",
    "/etc/mtab", "/dev/console", "/dev/pts", "/dev/shm", "/proc", "/sys",
})  # fmt: skip

_SIGNALS = frozenset({
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT",
    "IO", "IOT", "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV",
    "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU", "URG",
    "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
})  # fmt: skip


class RunFailed(DockerError):
    """A RUN exited non-zero: dockerd's message, and the code for C{errorDetail}."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Engine(Protocol):
    """What the steps ask of the daemon (L{dockserve.daemon.build.service})."""

    def commit(
        self,
        *,
        parent: str,
        upper: Path | None,
        config: dict[str, Any],
        history: dict[str, Any],
        empty_layer: bool,
        container: str,
        container_config: dict[str, Any],
        exclude: frozenset[str],
    ) -> Deferred[str]:
        """A new image on C{parent} (C{""}: scratch); its ID."""

    def layers_of(self, image_id: str) -> tuple[str, ...]:
        """The unpacked layer directories of an image, base first."""

    def create(self, body: dict[str, Any]) -> str:
        """A container for a RUN (C{POST /containers/create}'s body)."""

    def run(
        self, container_id: str, output: Callable[[int, bytes], None]
    ) -> Deferred[int]:
        """Start it, stream its output; its exit code. Cancelling kills it."""

    def upper(self, container_id: str) -> Path:
        """The container's changes."""

    def remove(self, container_id: str) -> Deferred[None]:
        """Remove it (forced, with its anonymous volumes)."""

    def in_thread(self, work: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run blocking work off the reactor."""

    def scratch(self) -> Path:
        """A fresh path for a step's files (not made yet)."""

    def download(
        self, url: str, target: Path, progress: Callable[[int, int | None], None]
    ) -> Deferred[remote.Download]:
        """Download C{url} to the new file C{target} (C{ADD <url>})."""


class Options(Protocol):
    """The build's options the steps read."""

    rm: bool
    forcerm: bool
    host_config: dict[str, Any]


class Dispatcher:
    """
    Runs the steps of one build.

    @param source_view: Finds the tree of C{COPY --from=NAME}: a stage's
        or an image's layers.
    """

    def __init__(  # noqa: PLR0917 - the parts of one build, each its own
        self,
        engine: Engine,
        options: Options,
        output: Output,
        prober: Prober,
        build_args: BuildArgs,
        context: Context,
        escape: str,
        source_view: Callable[[str], Awaitable[RootView]],
    ) -> None:
        self._engine = engine
        self._options = options
        self._out = output
        self._prober = prober
        self._args = build_args
        self._context = context
        self._escape = escape
        self._source_view = source_view
        #: The containers made and not removed (C{rm} removes on success).
        self.leftovers: list[str] = []

    # --- helpers ------------------------------------------------------------

    def _word(self, stage: Stage, word: str) -> str:
        try:
            return expand.process_word(word, stage.expansion_env(), self._escape)
        except expand.ExpansionError as e:
            raise InvalidParameter(str(e)) from None

    def _words(self, stage: Stage, word: str) -> list[str]:
        try:
            return expand.process_words(word, stage.expansion_env(), self._escape)
        except expand.ExpansionError as e:
            raise InvalidParameter(str(e)) from None

    def _command(self, stage: Stage, i: Instruction) -> list[str]:
        """RUN/CMD/ENTRYPOINT's command: the JSON form, or the shell's."""
        if i.json:
            return list(i.args)
        if not i.args:
            return []
        text = i.args[0]
        if i.heredocs:
            text = self._heredoc_command(stage, i)
        return [*stage.shell(), text]

    def _heredoc_command(self, stage: Stage, i: Instruction) -> str:
        """
        A RUN with here-documents, as BuildKit runs it: C{RUN <<EOF} alone
        runs the document as the script; otherwise the shell gets the
        whole text, documents and all.
        """
        first = i.heredocs[0]
        content = first.content
        if first.expand:
            content = self._word_raw(stage, content)
        if re.fullmatch(
            r"\s*<<-?([\"']?)" + re.escape(first.name) + r"\1\s*", i.args[0]
        ):
            return content
        body = i.original.split("\n", 1)[1] if "\n" in i.original else ""
        return i.args[0] + "\n" + body

    def _word_raw(self, stage: Stage, text: str) -> str:
        """Variables of a here-document (quotes kept)."""
        env = stage.expansion_env()

        def value(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            return env.get(name, "")

        return re.sub(
            r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", value, text
        )

    def _step_container(self, stage: Stage, probe_config: dict[str, Any]) -> str:
        """
        The container dockerd makes for a step that runs nothing (its
        C{#(nop)} command as C{Cmd}): created, never started, its ID the
        image's C{container}, removed after the commit as a RUN's is. On
        C{scratch} there is no image to make one of: an ID alone then.
        """
        if not stage.image_id:
            return uuid.uuid4().hex + uuid.uuid4().hex
        body = copy.deepcopy(probe_config)
        body.update({
            "Image": stage.image_id,
            "Healthcheck": {"Test": ["NONE"]},
            "HostConfig": dict(self._options.host_config),
        })  # fmt: skip
        container_id = self._engine.create(body)
        self.leftovers.append(container_id)
        return container_id

    async def _step_done(self, container_id: str) -> None:
        """A step succeeded: its container goes with C{rm} (and is no leftover)."""
        if container_id not in self.leftovers:
            # scratch's: no container was made.
            self._out.removed(container_id)
            return
        self.leftovers.remove(container_id)
        if self._options.rm or self._options.forcerm:
            await self._engine.remove(container_id)
            self._out.removed(container_id)

    def _comment_config(self, stage: Stage, comment: str) -> dict[str, Any]:
        """The run config with C{Cmd} the step's C{#(nop)} comment."""
        config: dict[str, Any] = copy.deepcopy(stage.config)
        config["Cmd"] = [*stage.shell(), "#(nop) ", comment]
        return config

    async def _commit_meta(self, stage: Stage, comment: str) -> None:
        """Commit a config-only step (or take it from the cache)."""
        probe_config = self._comment_config(stage, comment)
        if self._from_cache(stage, probe_config):
            return
        container_id = self._step_container(stage, probe_config)
        self._out.running(container_id)
        stage.config["Image"] = stage.image_id
        image_id = await self._engine.commit(
            parent=stage.image_id,
            upper=None,
            config=stage.config,
            history=self._history(stage, probe_config),
            empty_layer=True,
            container=container_id,
            container_config={**probe_config, "Hostname": container_id[:12],
                              "Image": stage.image_id},
            exclude=frozenset(),
        )  # fmt: skip
        await self._step_done(container_id)
        self._moved(stage, image_id)

    def _history(
        self, stage: Stage, container_config: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "created_by": " ".join(container_config.get("Cmd") or []),
            "author": stage.maintainer,
        }

    def _from_cache(self, stage: Stage, probe_config: dict[str, Any]) -> bool:
        hit = self._prober.probe(stage.image_id, probe_config)
        if hit is None:
            return False
        self._out.using_cache()
        self._moved(stage, hit)
        return True

    def _moved(self, stage: Stage, image_id: str) -> None:
        stage.image_id = image_id
        stage.layers = self._engine.layers_of(image_id)

    # --- dispatch -----------------------------------------------------------

    async def dispatch(self, stage: Stage, i: Instruction) -> None:
        """Run one instruction of C{stage}."""
        handler = getattr(self, "_" + i.keyword.lower())
        await handler(stage, i)

    async def _env(self, stage: Stage, i: Instruction) -> None:
        pairs = [
            (self._word(stage, i.args[n]), self._word(stage, i.args[n + 1]))
            for n in range(0, len(i.args) - 1, 2)
        ]
        env = list(stage.config.get("Env") or [])
        comment = "ENV"
        for name, value in pairs:
            if not name:
                raise InvalidParameter("ENV names can not be blank")
            comment += f" {name}={value}"
            for n, entry in enumerate(env):
                if entry.partition("=")[0] == name:
                    env[n] = f"{name}={value}"
                    break
            else:
                env.append(f"{name}={value}")
        stage.config["Env"] = env
        await self._commit_meta(stage, comment)

    async def _label(self, stage: Stage, i: Instruction) -> None:
        labels = dict(stage.config.get("Labels") or {})
        comment = "LABEL"
        for n in range(0, len(i.args) - 1, 2):
            key = self._word(stage, i.args[n])
            value = self._word(stage, i.args[n + 1])
            if not key:
                raise InvalidParameter("LABEL names can not be blank")
            labels[key] = value
            comment += f" {key}={value}"
        stage.config["Labels"] = labels
        await self._commit_meta(stage, comment)

    async def _maintainer(self, stage: Stage, i: Instruction) -> None:
        stage.maintainer = i.args[0]
        await self._commit_meta(stage, "MAINTAINER " + i.args[0])

    async def _expose(self, stage: Stage, i: Instruction) -> None:
        ports: list[str] = []
        for word in i.args:
            ports.extend(self._words(stage, word))
        exposed = dict(stage.config.get("ExposedPorts") or {})
        for port in ports:
            exposed[_port_spec(port)] = {}
        stage.config["ExposedPorts"] = exposed
        await self._commit_meta(stage, "EXPOSE " + " ".join(ports))

    async def _user(self, stage: Stage, i: Instruction) -> None:
        user = self._word(stage, i.args[0])
        stage.config["User"] = user
        await self._commit_meta(stage, f"USER {user}")

    async def _volume(self, stage: Stage, i: Instruction) -> None:
        volumes = dict(stage.config.get("Volumes") or {})
        added = []
        for word in i.args:
            path = self._word(stage, word)
            if not path:
                raise InvalidParameter("VOLUME specified can not be an empty string")
            volumes[path] = {}
            added.append(path)
        stage.config["Volumes"] = volumes
        await self._commit_meta(stage, f"VOLUME [{' '.join(added)}]")

    async def _stopsignal(self, stage: Stage, i: Instruction) -> None:
        signal = self._word(stage, i.args[0])
        name = signal.upper().removeprefix("SIG")
        if not (signal.isdigit() or name in _SIGNALS or name.startswith("RTMIN")):
            raise InvalidParameter(f"Invalid signal: {signal}")
        stage.config["StopSignal"] = signal
        await self._commit_meta(stage, f"STOPSIGNAL {signal}")

    async def _shell(self, stage: Stage, i: Instruction) -> None:
        stage.config["Shell"] = list(i.args)
        await self._commit_meta(stage, f"SHELL [{' '.join(i.args)}]")

    async def _cmd(self, stage: Stage, i: Instruction) -> None:
        command = self._command(stage, i)
        stage.config["Cmd"] = command
        stage.config["ArgsEscaped"] = True
        await self._commit_meta(stage, f"CMD {_go_quoted_list(command)}")
        if i.args:
            stage.cmd_set = True

    async def _entrypoint(self, stage: Stage, i: Instruction) -> None:
        command = self._command(stage, i)
        stage.config["Entrypoint"] = command
        if not stage.cmd_set:
            stage.config["Cmd"] = None
        await self._commit_meta(stage, f"ENTRYPOINT {_go_quoted_list(command)}")

    async def _healthcheck(self, stage: Stage, i: Instruction) -> None:
        old = (stage.config.get("Healthcheck") or {}).get("Test") or []
        if old and old[0] != "NONE":
            self._out.note(f"Note: overriding previous HEALTHCHECK: [{' '.join(old)}]")
        kind = i.args[0].upper()
        check: dict[str, Any]
        if kind == "NONE":
            check = {"Test": ["NONE"]}
        else:
            test = ["CMD", *i.args[1:]] if i.json else ["CMD-SHELL", i.args[1]]
            check = {"Test": test}
            for flag, name in (
                ("interval", "Interval"),
                ("timeout", "Timeout"),
                ("start-period", "StartPeriod"),
                ("start-interval", "StartInterval"),
            ):
                value = i.flags.get(flag)
                if isinstance(value, str) and value:
                    check[name] = round(dockerfile.go_duration(value) * 1e9)
            retries = i.flags.get("retries")
            if isinstance(retries, str) and retries:
                check["Retries"] = int(retries)
        stage.config["Healthcheck"] = check
        await self._commit_meta(stage, "HEALTHCHECK " + _healthcheck_text(check))

    async def _onbuild(self, stage: Stage, i: Instruction) -> None:
        triggers = list(stage.config.get("OnBuild") or [])
        triggers.append(i.trigger)
        stage.config["OnBuild"] = triggers
        await self._commit_meta(stage, "ONBUILD " + i.trigger)

    async def _arg(self, stage: Stage, i: Instruction) -> None:
        comment = "ARG"
        for word in i.args:
            name, equals, default = word.partition("=")
            value = self._word(stage, default) if equals else None
            stage.args[name] = self._args.value(name, value)
            comment += f" {name}" + (f"={value}" if value is not None else "")
        await self._commit_meta(stage, comment)

    async def _workdir(self, stage: Stage, i: Instruction) -> None:
        path = self._word(stage, i.args[0])
        current = stage.config.get("WorkingDir") or "/"
        workdir = posixpath.normpath(posixpath.join(current, path))
        stage.config["WorkingDir"] = workdir
        comment = f"WORKDIR {workdir}"
        probe_config = self._comment_config(stage, comment)
        if self._from_cache(stage, probe_config):
            return
        container_id = self._step_container(stage, probe_config)
        self._out.running(container_id)
        upper = self._engine.scratch()
        layers = stage.layers

        def make() -> None:
            upper.mkdir(mode=0o755)
            copying.Writer(upper, RootView(layers), copying.Owner(), None).mkdir(
                workdir
            )

        try:
            await self._engine.in_thread(make)
            stage.config["Image"] = stage.image_id
            image_id = await self._engine.commit(
                parent=stage.image_id,
                upper=upper,
                config=stage.config,
                history=self._history(stage, probe_config),
                empty_layer=False,
                container=container_id,
                container_config={**probe_config, "Hostname": container_id[:12],
                                  "Image": stage.image_id},
                exclude=frozenset(),
            )  # fmt: skip
        finally:
            await self._engine.in_thread(shutil.rmtree, upper, True)
        await self._step_done(container_id)
        self._moved(stage, image_id)

    async def _run(self, stage: Stage, i: Instruction) -> None:
        if i.flags:
            raise InvalidParameter(_BUILDKIT_ONLY.format(next(iter(i.flags))))
        command = self._command(stage, i)
        run_args = stage.run_args(self._args)
        cache_args = sorted(
            a
            for a in run_args
            if a.partition("=")[0] in stage.args
            or a.partition("=")[0] in self._args.referenced
        )
        saved = list(command)
        if cache_args:
            saved = [f"|{len(cache_args)}", *cache_args, *command]
        probe_config: dict[str, Any] = copy.deepcopy(stage.config)
        probe_config["Cmd"] = saved
        if saved:
            probe_config["Entrypoint"] = None
        if self._from_cache(stage, probe_config):
            return
        body = copy.deepcopy(stage.config)
        body.update({
            "Image": stage.image_id,
            "Cmd": command,
            "Entrypoint": [],
            "Env": [*(stage.config.get("Env") or []), *run_args],
            "ArgsEscaped": True,
            "AttachStdout": True,
            "AttachStderr": True,
            "Healthcheck": {"Test": ["NONE"]},
            "HostConfig": dict(self._options.host_config),
        })  # fmt: skip
        container_id = self._engine.create(body)
        self.leftovers.append(container_id)
        self._out.running(container_id)

        def output(stream: int, data: bytes) -> None:
            if stream == 2:
                self._out.stderr(data)
            else:
                self._out.stdout(data)

        code = await self._engine.run(container_id, output)
        if code != 0:
            raise RunFailed(
                f"The command '{' '.join(command)}' returned a non-zero code: {code}",
                code,
            )
        stage.config["Image"] = stage.image_id
        volumes = frozenset((stage.config.get("Volumes") or {}).keys())
        image_id = await self._engine.commit(
            parent=stage.image_id,
            upper=self._engine.upper(container_id),
            config=stage.config,
            history=self._history(stage, probe_config),
            empty_layer=False,
            container=container_id,
            container_config={**probe_config, "Hostname": container_id[:12],
                              "Image": stage.image_id},
            exclude=INIT_PATHS | volumes,
        )  # fmt: skip
        await self._step_done(container_id)
        self._moved(stage, image_id)

    async def _copy(self, stage: Stage, i: Instruction) -> None:
        await self._copy_or_add(stage, i)

    async def _add(self, stage: Stage, i: Instruction) -> None:
        await self._copy_or_add(stage, i)

    async def _copy_or_add(self, stage: Stage, i: Instruction) -> None:
        words = [self._word(stage, a) for a in i.args]
        inline = [
            (h.name, self._word_raw(stage, h.content) if h.expand else h.content)
            for h in i.heredocs
        ]
        sources = [
            word
            for word, raw in zip(words[:-1], i.args[:-1], strict=True)
            if not raw.startswith("<<")
        ]
        urls = {n: s for n, s in enumerate(sources) if remote.is_url(s)}
        if urls and i.keyword == "COPY":
            raise copying.CopyError("COPY failed: source can't be a URL for COPY")
        if not urls:
            await self._copy_items(stage, i, words, inline, sources, {})
            return
        downloads = self._engine.scratch()
        try:
            downloaded = {}
            for n, url in urls.items():
                downloaded[n] = await self._download(url, downloads / str(n))
            await self._copy_items(stage, i, words, inline, sources, downloaded)
        finally:
            await self._engine.in_thread(shutil.rmtree, downloads, True)

    async def _download(self, url: str, directory: Path) -> copying.Item:
        """
        C{ADD <url>}: the file, downloaded (progress in the stream, as
        dockerd's C{Downloading} bar), as a source item: mode 0600, the
        time the server's C{Last-Modified} says (else 1970), keyed by its
        content.
        """
        try:
            name = remote.url_filename(url)
            download = await self._engine.download(
                url, directory / name, self._out.downloading
            )
        except DockerError as e:
            raise remote.rewrapped(e, "ADD failed: ") from None
        self._out.downloading(download.size, download.total, final=True)
        self._out.text("\n")
        item: copying.Item = await self._engine.in_thread(
            copying.downloaded, download.path, name, download.last_modified,
            download.digest,
        )  # fmt: skip
        return item

    async def _copy_items(  # noqa: PLR0917 - the parts of one step
        self,
        stage: Stage,
        i: Instruction,
        words: list[str],
        inline: list[tuple[str, str]],
        sources: list[str],
        downloaded: dict[int, copying.Item],
    ) -> None:
        from_name = i.flags.get("from")
        tree: Tree
        context: Context | None = None
        if isinstance(from_name, str) and from_name:
            tree = await self._source_view(self._word(stage, from_name))
        else:
            tree = ContextView(self._context)
            context = self._context
        image = RootView(stage.layers)
        chown = i.flags.get("chown")
        chmod = i.flags.get("chmod")
        request = copying.Request(
            keyword=i.keyword,
            sources=sources,
            dest=words[-1],
            workdir=stage.config.get("WorkingDir") or "/",
            inline=inline,
            chmod=copying.parse_chmod(self._word(stage, chmod))
            if isinstance(chmod, str) and chmod
            else None,
            from_image=context is None,
        )
        if isinstance(chown, str) and chown:
            request.owner = await self._engine.in_thread(
                copying.resolve_owner, self._word(stage, chown), image
            )

        def resolve() -> tuple[list[copying.Item], str]:
            items = copying.resolve_sources(
                request, tree, context=context is not None, downloaded=downloaded
            )
            return items, copying.checksum(items, tree, inline, context)

        items, digest = await self._engine.in_thread(resolve)
        dest = copying.destination(request)
        comment = f"{i.keyword} {digest} in {dest} "
        probe_config: dict[str, Any] = copy.deepcopy(stage.config)
        probe_config["Cmd"] = [*stage.shell(), "#(nop) " + comment]
        if self._from_cache(stage, probe_config):
            return
        upper = self._engine.scratch()

        def write() -> None:
            upper.mkdir(mode=0o755)
            copying.perform(request, tree, image, upper, items)

        try:
            await self._engine.in_thread(write)
            stage.config["Image"] = stage.image_id
            image_id = await self._engine.commit(
                parent=stage.image_id,
                upper=upper,
                config=stage.config,
                history=self._history(stage, probe_config),
                empty_layer=False,
                container="",
                container_config={**probe_config, "Image": stage.image_id},
                exclude=frozenset(),
            )
        finally:
            await self._engine.in_thread(shutil.rmtree, upper, True)
        self._moved(stage, image_id)


def _port_spec(text: str) -> str:
    """An EXPOSE word as C{80/tcp} (a range is each of its ports' first)."""
    port, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in {"tcp", "udp", "sctp"}:
        raise InvalidParameter(f"invalid proto: {proto}")
    start = port.split("-", 1)[0]
    if not start.isdigit() or not 0 < int(start) < 65536:
        raise InvalidParameter(f"invalid containerPort: {port}")
    return f"{port}/{proto}"


def _go_quoted_list(words: list[str]) -> str:
    """Go's C{%q} of a string slice: C{["a" "b"]}."""
    return "[" + " ".join(json.dumps(w, ensure_ascii=False) for w in words) + "]"


def _go_duration(nanos: int) -> str:
    """Go's C{time.Duration.String()}, quoted."""
    if not nanos:
        return '"0s"'
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return f'"{nanos / size:g}{unit}"'
    seconds = nanos / 1e9
    hours, rest = divmod(int(seconds), 3600)
    minutes = rest // 60
    secs = seconds - hours * 3600 - minutes * 60
    text = f"{hours}h" if hours else ""
    if hours or minutes:
        text += f"{minutes}m"
    return f'"{text}{secs:g}s"'


def _healthcheck_text(check: dict[str, Any]) -> str:
    """Go's C{%q} of a C{*HealthConfig}, as dockerd writes it in the history."""
    retries = int(check.get("Retries") or 0)
    rune = f"'{chr(retries)}'" if 32 <= retries < 127 else f"'\\x{retries:02x}'"
    durations = " ".join(
        _go_duration(int(check.get(name) or 0))
        for name in ("Interval", "Timeout", "StartPeriod", "StartInterval")
    )
    return f"&{{{_go_quoted_list(check.get('Test') or [])} {durations} {rune}}}"


__all__ = ["INIT_PATHS", "Dispatcher", "Engine", "RunFailed", "os"]
