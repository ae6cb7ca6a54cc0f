# -*- test-case-name: tests.daemon.build.test_steps -*-
"""
What a build carries from step to step: each stage's image and run
config, and the build args (dockerd's C{dispatchState} and C{BuildArgs}).

Build args, as dockerd's C{buildargs.go}: a C{--build-arg} is used only
when an C{ARG} declares it (in the stage, or before the first C{FROM} for
the C{FROM} lines); an C{ARG} without a value in a stage takes the value
a C{FROM}-level C{ARG} gave. The proxy variables (C{HTTP_PROXY} and the
others) pass to RUN without an ARG, but stay out of the cache key unless
an ARG names them. An C{ENV} of the same name wins over an ARG. Build args
no ARG named are reported at the end.
"""

import copy
from typing import Any

from attrs import define, field

#: Build args that need no ARG (dockerd's C{builtinAllowedBuildArgs}).
BUILTIN_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
    "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})  # fmt: skip

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ["/bin/sh", "-c"]


@define
class BuildArgs:
    """
    The C{--build-arg}s and the ARGs that declared them.

    @ivar given: The build's C{buildargs}: name to value (C{None}: the
        name alone, unset).
    @ivar meta: The values of the ARGs before the first C{FROM}.
    @ivar referenced: Every name an ARG declared.
    """

    given: dict[str, str | None] = field(factory=dict)
    meta: dict[str, str | None] = field(factory=dict)
    referenced: set[str] = field(factory=set)

    def declare_meta(self, name: str, default: str | None) -> None:
        """An ARG before the first FROM."""
        self.referenced.add(name)
        given = self.given.get(name)
        self.meta[name] = given if given is not None else default

    def meta_env(self) -> dict[str, str]:
        """What FROM lines expand with."""
        return {k: v for k, v in self.meta.items() if v is not None}

    def value(self, name: str, default: str | None) -> str | None:
        """The value an ARG in a stage gets."""
        self.referenced.add(name)
        if name in self.given and self.given[name] is not None:
            return self.given[name]
        if default is not None:
            return default
        return self.meta.get(name)

    def unused(self) -> list[str]:
        """Build args no ARG declared (the proxies aside)."""
        return sorted(
            n for n in self.given if n not in self.referenced and n not in BUILTIN_ARGS
        )


@define
class Stage:
    """
    One stage being built.

    @ivar image_id: The current image (C{""} before the first commit of a
        C{FROM scratch}).
    @ivar config: The run config (C{Cmd}, C{Env}, C{WorkingDir}...).
    @ivar layers: The current image's unpacked layer directories.
    @ivar args: The ARGs this stage declared, in order, and their values.
    @ivar cmd_set: A CMD was given in this stage (ENTRYPOINT then keeps it).
    @ivar maintainer: MAINTAINER's text, the author of later commits.
    @ivar name: The stage's C{AS} name.
    """

    image_id: str
    config: dict[str, Any]
    layers: tuple[str, ...]
    args: dict[str, str | None] = field(factory=dict)
    cmd_set: bool = False
    maintainer: str = ""
    name: str = ""

    @classmethod
    def from_image(
        cls, image_id: str, image_config: dict[str, Any], layers: tuple[str, ...]
    ) -> "Stage":
        """A stage starting from an image (its C{config} copied)."""
        config = copy.deepcopy(image_config.get("config") or {})
        if not config.get("Env"):
            config["Env"] = [DEFAULT_PATH]
        return cls(image_id=image_id, config=config, layers=layers)

    def shell(self) -> list[str]:
        """The SHELL for shell forms."""
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    def env_names(self) -> set[str]:
        """The names ENV set."""
        return {e.partition("=")[0] for e in self.config.get("Env") or []}

    def run_args(self, build_args: BuildArgs) -> list[str]:
        """
        The ARGs a RUN gets in its environment (C{name=value}), those an
        ENV names aside, plus the proxy variables given.
        """
        env_names = self.env_names()
        out = [
            f"{k}={v}"
            for k, v in self.args.items()
            if v is not None and k not in env_names
        ]
        declared = set(self.args)
        for name in sorted(BUILTIN_ARGS):
            value = build_args.given.get(name)
            if value is not None and name not in declared and name not in env_names:
                out.append(f"{name}={value}")
        return out

    def expansion_env(self) -> dict[str, str]:
        """What a step's words expand with: the ARGs, then ENV over them."""
        env = {k: v for k, v in self.args.items() if v is not None}
        for entry in self.config.get("Env") or []:
            k, _, v = entry.partition("=")
            env[k] = v
        return env
