# -*- test-case-name: tests.daemon.build.test_builder -*-
"""
One classic build from its parsed Dockerfile to its tagged image: the
stages in order up to the target, their C{FROM}s, C{ONBUILD} triggers and
steps, the build's C{--label}s as a last step, then the ID and the tags.

The lines are dockerd's (L{dockserve.daemon.build.output}): C{Step N/M :}
for every instruction (the C{ARG}s before the first C{FROM} included, M
counting every stage up to the target), C{ ---> <id>} after each, an
C{aux} message with each stage's image, the unused build args, then
C{Successfully built} and C{Successfully tagged}.
"""

from collections.abc import Callable
from typing import Any, Protocol

from attrs import define, field

from twisted.internet.defer import Deferred

from dockserve.daemon.build import dockerfile, expand, platforms
from dockserve.daemon.build.cache import Prober
from dockserve.daemon.build.context import Context
from dockserve.daemon.build.dockerfile import Dockerfile, Instruction
from dockserve.daemon.build.output import Output
from dockserve.daemon.build.rootview import RootView
from dockserve.daemon.build.state import BuildArgs, Stage
from dockserve.daemon.build.steps import Dispatcher, Engine
from dockserve.errors import DockerError, InvalidParameter, NotFound


@define
class BuildOptions:
    """
    The build's parameters, as C{POST /build} gives them.

    @ivar dockerfile: The Dockerfile's path in the context.
    @ivar tags: C{t}: full references to tag the result with, in order,
        and the familiar names C{Successfully tagged} shows.
    @ivar build_args: C{buildargs}.
    @ivar labels: C{labels}: a last C{LABEL} step.
    @ivar target: C{target}: the last stage to build.
    @ivar nocache: C{nocache}.
    @ivar pull: C{pull}: pull every base image, present or not.
    @ivar rm: C{rm}: remove each step's container after it succeeded.
    @ivar forcerm: C{forcerm}: remove them even when the step failed.
    @ivar quiet: C{q}.
    @ivar cache_from: C{cachefrom}.
    @ivar host_config: The RUN containers' C{HostConfig} (C{networkmode},
        C{extrahosts}, C{shmsize}, memory and CPU limits...).
    @ivar auth: C{X-Registry-Config}: credentials by registry.
    @ivar remote: C{remote}: the context's URL (C{""}: the request's body).
    @ivar platform: C{platform}: the platform of C{FROM}s without their
        own C{--platform} (C{""}: this machine's).
    """

    dockerfile: str = "Dockerfile"
    tags: list[tuple[str, str]] = field(factory=list)
    build_args: dict[str, str | None] = field(factory=dict)
    labels: dict[str, str] = field(factory=dict)
    target: str = ""
    nocache: bool = False
    pull: bool = False
    rm: bool = True
    forcerm: bool = False
    quiet: bool = False
    cache_from: list[str] = field(factory=list)
    host_config: dict[str, Any] = field(factory=dict)
    auth: dict[str, Any] = field(factory=dict)
    remote: str = ""
    platform: str = ""


class Images(Protocol):
    """What a build asks of the image area beyond the steps' L{Engine}."""

    def base(
        self,
        name: str,
        *,
        pull: bool,
        auth: dict[str, Any],
        platform: str = "",
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> Deferred[str]:
        """
        A FROM image's ID: pulled when missing, or always with C{pull} (of
        C{platform} when one is asked for), with the credentials of
        C{auth} for its registry and the pull's progress to C{progress}.
        """

    def image_config(self, image_id: str) -> dict[str, Any] | None:
        """An image's config, or C{None} when it is gone."""

    def tag(self, image_id: str, reference: str) -> None:
        """Point the full C{reference} at C{image_id}."""

    def prober(self, options: BuildOptions) -> Prober:
        """The cache for this build."""


def stages_to_build(df: Dockerfile, target: str) -> tuple[dockerfile.Stage, ...]:
    """
    The stages up to C{target} (all without one).

    @raise InvalidParameter: dockerd's C{failed to reach build target}.
    """
    if not target:
        return df.stages
    stage = df.stage(target)
    if stage is None:
        raise InvalidParameter(f"failed to reach build target {target} in Dockerfile")
    return df.stages[: stage.index + 1]


def label_instruction(labels: dict[str, str], line: int) -> Instruction:
    """The build's C{labels} as the C{LABEL} step dockerd adds."""
    args: list[str] = []
    for key in sorted(labels):
        args += [key, labels[key]]
    text = " ".join(f"{k}={labels[k]}" for k in sorted(labels))
    quoted = tuple(_quote(a) for a in args)
    return Instruction(
        keyword="LABEL", args=quoted, json=False, original=f"LABEL {text}", line=line
    )


def _quote(word: str) -> str:
    """A word that expands back to itself."""
    return (
        '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'
    )


class Build:
    """One build: see the module's docstring."""

    def __init__(  # noqa: PLR0917 - the parts of one build
        self,
        df: Dockerfile,
        options: BuildOptions,
        context: Context,
        engine: Engine,
        images: Images,
        output: Output,
    ) -> None:
        self._df = df
        self._options = options
        self._context = context
        self._engine = engine
        self._images = images
        self._out = output
        self._args = BuildArgs(given=dict(options.build_args))
        self._prober = images.prober(options)
        self._results: list[Stage] = []
        self.dispatcher = Dispatcher(
            engine,
            options,
            output,
            self._prober,
            self._args,
            context,
            df.escape,
            self._source_view,
        )

    async def run(self) -> str:
        """Build; the final image's ID once it is tagged."""
        stages = stages_to_build(self._df, self._options.target)
        total = len(self._df.meta_args) + sum(1 + len(s.instructions) for s in stages)
        if self._options.labels:
            total += 1
        number = 0
        for meta in self._df.meta_args:
            number += 1
            self._out.step(number, total, meta.original)
            for word in meta.args:
                name, equals, default = word.partition("=")
                value = None
                if equals:
                    value = self._expand(default, self._args.meta_env())
                self._args.declare_meta(name, value)
        final: Stage | None = None
        for index, spec in enumerate(stages):
            number += 1
            self._out.step(number, total, spec.origin.original)
            stage = await self._begin(spec)
            if stage.image_id:
                self._out.image(stage.image_id)
            body = list(spec.instructions)
            last = index == len(stages) - 1
            if last and self._options.labels:
                body.append(label_instruction(self._options.labels, 0))
            for instruction in body:
                number += 1
                self._out.step(number, total, instruction.original)
                await self.dispatcher.dispatch(stage, instruction)
                self._out.image(stage.image_id)
            self._results.append(stage)
            if stage.image_id:
                self._out.aux(stage.image_id)
            final = stage
        assert final is not None  # noqa: S101 - a Dockerfile has a stage
        if not final.image_id:
            raise InvalidParameter("No image was generated. Is your Dockerfile empty?")
        unused = self._args.unused()
        if unused:
            self._out.unused_args(unused)
        self._out.built(final.image_id)
        for full, familiar in self._options.tags:
            self._images.tag(final.image_id, full)
            self._out.tagged(familiar)
        return final.image_id

    def _expand(self, word: str, env: dict[str, str]) -> str:
        try:
            return expand.process_word(word, env, self._df.escape)
        except expand.ExpansionError as e:
            raise InvalidParameter(str(e)) from None

    def _platform(self, spec: dockerfile.Stage) -> platforms.Platform | None:
        """The platform a stage asks for (C{--platform}, else the build's)."""
        text = self._options.platform
        if spec.platform:
            text = self._expand(spec.platform, self._args.meta_env())
        if not text:
            return None
        try:
            return platforms.parse(text)
        except InvalidParameter as e:
            raise InvalidParameter(
                f"failed to parse platform {text}: {e.message}"
            ) from None

    async def _begin(self, spec: dockerfile.Stage) -> Stage:
        """A stage's FROM: its base image (or an earlier stage), and triggers."""
        self._prober.reset()
        name = self._expand(spec.base, self._args.meta_env())
        wanted = self._platform(spec)
        earlier = self._stage_named(name)
        if earlier is not None:
            image_id = earlier.image_id
        elif name == "scratch":
            image_id = ""
        else:
            image_id = await self._images.base(
                name,
                pull=self._options.pull,
                auth=self._options.auth,
                platform=str(wanted) if wanted is not None else "",
                progress=self._out.progress,
            )
        config = self._images.image_config(image_id) if image_id else {}
        if wanted is not None and earlier is None and config:
            have = platforms.of_image(config)
            if not platforms.matches(wanted, have):
                raise NotFound(platforms.mismatch(name, wanted, have))
        stage = Stage.from_image(
            image_id, config or {}, self._engine.layers_of(image_id) if image_id else ()
        )
        stage.name = spec.name
        triggers = list(stage.config.get("OnBuild") or [])
        if triggers:
            stage.config["OnBuild"] = None
            self._out.triggers(len(triggers))
            for trigger in triggers:
                instruction = dockerfile.parse_trigger(trigger)
                await self.dispatcher.dispatch(stage, instruction)
        return stage

    def _stage_named(self, name: str) -> Stage | None:
        wanted = name.lower()
        for stage in self._results:
            if stage.name and stage.name == wanted:
                return stage
        return None

    async def _source_view(self, name: str) -> RootView:
        """C{COPY --from=NAME}: an earlier stage (by name or index), or an image."""
        stage = self._stage_named(name)
        if stage is None and name.isdigit() and int(name) < len(self._results):
            stage = self._results[int(name)]
        if stage is not None:
            return RootView(stage.layers)
        try:
            image_id = await self._images.base(
                name,
                pull=self._options.pull,
                auth=self._options.auth,
                progress=self._out.progress,
            )
        except DockerError as e:
            raise InvalidParameter(
                f"invalid from flag value {name}: {e.message}"
            ) from None
        return RootView(self._engine.layers_of(image_id))

    @property
    def leftovers(self) -> list[str]:
        """The RUN containers a failed step left (removed with C{forcerm})."""
        return self.dispatcher.leftovers


Send = Callable[[dict[str, Any]], None]
