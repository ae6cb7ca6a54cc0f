# -*- test-case-name: tests.daemon.build.test_output -*-
r"""
What a classic build tells its client: dockerd's JSON stream, line for line.

The docker CLI prints each C{stream} as it comes; the Docker SDK finds the
image by the regular expression C{(^Successfully built |sha256:)([0-9a-f]+)$}
over the C{stream} lines, so these texts are part of the contract:

    {"stream": "Step 1/3 : FROM busybox"}
    {"stream": "\\n"}
    {"stream": " ---> 0629590e8e45\\n"}
    {"stream": " ---> Running in 5dd9c1fda9b9\\n"}
    {"stream": "hello\\n"}                              (the RUN's stdout)
    {"stream": "\\u001b[91moops\\n\\u001b[0m"}            (its stderr, in red)
    {"stream": " ---> Removed intermediate container 5dd9c1fda9b9\\n"}
    {"stream": " ---> Using cache\\n"}
    {"aux": {"ID": "sha256:..."}}                      (each stage's result)
    {"stream": "Successfully built 3dc38fcfb626\\n"}
    {"stream": "Successfully tagged t1:latest\\n"}
    {"errorDetail": {"code": 3, "message": "..."}, "error": "..."}

With C{q=1} only the final C{{"stream": "sha256:<id>\\n"}} and errors go out.
"""

from collections.abc import Callable
from typing import Any

#: Sends one message of the stream.
Send = Callable[[dict[str, Any]], None]

_RED = "\x1b[91m"
_RESET = "\x1b[0m"


#: Bytes between two progress messages of a download.
PROGRESS_EVERY = 1 << 20


def human_size(size: float) -> str:
    """Go's C{units.HumanSize}: four significant digits, 1000 a step."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    n = 0
    while size >= 1000 and n < len(units) - 1:
        size /= 1000
        n += 1
    return f"{size:.4g}{units[n]}"


def progress_text(current: int, total: int) -> str:
    """
    The C{progress} text of a JSON progress message, as dockerd's
    C{JSONProgress.String()} writes it: the size alone without a total, a
    50-wide bar and C{current/total} with one.
    """
    if total <= 0:
        return f"{human_size(current):>8}"
    filled = min(50, int(current / total * 100) // 2)
    bar = f"[{'=' * filled}>{' ' * (50 - filled)}] "
    numbers = f"{human_size(current):>8}/{human_size(total)}"
    if current > total:
        numbers = f"{human_size(current):>8}"
    return bar + numbers


def short(image_or_container_id: str) -> str:
    """The 12 hex characters dockerd shows of an ID."""
    return image_or_container_id.removeprefix("sha256:")[:12]


def error_message(message: str, code: int | None = None) -> dict[str, Any]:
    """An error as the stream's last message (with an exit code for a RUN)."""
    detail: dict[str, Any] = {"message": message}
    if code is not None:
        detail = {"code": code, "message": message}
    return {"errorDetail": detail, "error": message}


class Output:
    """
    The stream of one build.

    @ivar quiet: C{q=1}: only the final ID and errors go out.
    """

    def __init__(self, send: Send, *, quiet: bool = False) -> None:
        self._send = send
        self.quiet = quiet
        self._next_progress = 0

    def text(self, text: str) -> None:
        """A C{stream} message, unless quiet."""
        if not self.quiet and text:
            self._send({"stream": text})

    def step(self, number: int, total: int, original: str) -> None:
        """C{Step N/M : INSTRUCTION}, then its newline (two messages, as dockerd)."""
        self.text(f"Step {number}/{total} : {original}")
        self.text("\n")

    def image(self, image_id: str) -> None:
        """C{ ---> <id>}: the image a step left."""
        self.text(f" ---> {short(image_id)}\n")

    def using_cache(self) -> None:
        """The step's image came from the cache."""
        self.text(" ---> Using cache\n")

    def running(self, container_id: str) -> None:
        """The step's container."""
        self.text(f" ---> Running in {short(container_id)}\n")

    def removed(self, container_id: str) -> None:
        """The step's container is gone (C{rm}, C{forcerm})."""
        self.text(f" ---> Removed intermediate container {short(container_id)}\n")

    def stdout(self, data: bytes) -> None:
        """What a RUN wrote to its standard output."""
        self.text(data.decode("utf-8", "replace"))

    def stderr(self, data: bytes) -> None:
        """What a RUN wrote to its standard error, in red as dockerd's."""
        self.text(_RED + data.decode("utf-8", "replace") + _RESET)

    def downloading(
        self, current: int, total: int | None, *, final: bool = False
    ) -> None:
        """
        C{ADD <url>}'s C{Downloading} progress bar (a message every
        L{PROGRESS_EVERY} bytes, and the last one).
        """
        if self.quiet:
            return
        if not final and current < self._next_progress:
            return
        if final and current == self._next_progress - PROGRESS_EVERY:
            # Its last message said all already.
            self._next_progress = 0
            return
        self._next_progress = current + PROGRESS_EVERY
        if total is None or total <= 0:
            total = current if final else 0
        self._send({
            "status": "Downloading",
            "progressDetail": {"current": current, "total": total},
            "progress": progress_text(current, total),
        })  # fmt: skip
        if final:
            self._next_progress = 0

    def context_progress(self, url: str, current: int) -> None:
        """A remote context's C{Downloading context} progress."""
        if self.quiet:
            return
        self._send({
            "status": url,
            "progressDetail": {"current": current},
            "progress": progress_text(current, 0),
            "id": "Downloading context",
        })  # fmt: skip

    def progress(self, message: dict[str, Any]) -> None:
        """A pull's progress message (a FROM image pulled), unless quiet."""
        if not self.quiet:
            self._send(message)

    def triggers(self, count: int) -> None:
        """C{# Executing N build trigger(s)} before ONBUILD triggers run."""
        self.text(f"# Executing {count} build trigger")
        if count > 1:
            self.text("s")
        self.text("\n")

    def note(self, text: str) -> None:
        """A line of its own (warnings, notes)."""
        self.text(text + "\n")

    def unused_args(self, names: list[str]) -> None:
        """The C{--build-arg}s no ARG of the build named."""
        self.note(
            f"[Warning] One or more build-args [{' '.join(sorted(names))}] "
            "were not consumed"
        )

    def aux(self, image_id: str) -> None:
        """C{{"aux": {"ID": ...}}}: a stage's result (API 1.30 and later)."""
        if not self.quiet:
            self._send({"aux": {"ID": image_id}})

    def built(self, image_id: str) -> None:
        """C{Successfully built <id>}, or the full ID alone when quiet."""
        if self.quiet:
            self._send({"stream": f"{image_id}\n"})
            return
        self.text(f"Successfully built {short(image_id)}\n")

    def tagged(self, name: str) -> None:
        """C{Successfully tagged <repo:tag>}."""
        self.text(f"Successfully tagged {name}\n")

    def error(self, message: str, code: int | None = None) -> None:
        """The build failed: the last message, quiet or not."""
        self._send(error_message(message, code))
