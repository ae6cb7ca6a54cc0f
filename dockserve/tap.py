# -*- test-case-name: tests.test_tap -*-
"""
C{twistd dockserve}: the command line and the service tree it builds.

L{Options} validates every flag (a bad value exits 2 with one line naming
the flag); L{makeService} returns the L{DaemonService}: one listening
service per host, all serving one L{Site}, each held behind the listen
buffer until the daemon has restored its state.
"""

import os
import resource
import signal
import sys
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger, globalLogPublisher
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import IResource
from twisted.web.server import Site

from dockserve.api.images import StreamingRequest
from dockserve.api.middleware import Middleware
from dockserve.api.policy.audit import AuditLog
from dockserve.api.policy.door import FrontDoor
from dockserve.api.policy.file import PolicyFileError
from dockserve.api.policy.file import load as load_policy
from dockserve.api.router import make_resource
from dockserve.daemon import daemon as daemon_module
from dockserve.daemon.config import DaemonConfig
from dockserve.server import (
    activation,
    exposure,
    hosts,
    limits,
    logfmt,
    tls,
    unixsocket,
)
from dockserve.server.listenbuffer import (
    DEFAULT_TIMEOUT,
    HTTP_11,
    ListenBufferEndpoint,
    failure_message,
)
from dockserve.server.listeners import ListenerService, ListenFailed, endpoints_for
from dockserve.server.metrics import DaemonMetrics, InvalidAddress, parse_address

if TYPE_CHECKING:
    from twisted.internet.interfaces import IOpenSSLServerConnectionCreator

_log = Logger()

#: The environment variable that sets the request head deadline (tests).
HEAD_TIMEOUT_VARIABLE = "DOCKSERVE_HEAD_TIMEOUT"

#: C{--tlsverify=VALUE} as Go's C{strconv.ParseBool} reads it (dockerd).
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def default_unix_socket(environ: MutableMapping[str, str] | None = None) -> str:
    """C{/run/dockserve.sock} as root, else C{$XDG_RUNTIME_DIR/dockserve.sock}."""
    environ = os.environ if environ is None else environ
    if os.geteuid() == 0 or not environ.get("XDG_RUNTIME_DIR"):
        return "/run/dockserve.sock"
    return str(Path(environ["XDG_RUNTIME_DIR"]) / "dockserve.sock")


def default_data_root(environ: MutableMapping[str, str] | None = None) -> str:
    """C{/var/lib/dockserve} as root, else C{$XDG_DATA_HOME/dockserve}."""
    environ = os.environ if environ is None else environ
    if os.geteuid() == 0:
        return "/var/lib/dockserve"
    data_home = environ.get("XDG_DATA_HOME")
    base = Path(data_home) if data_home else Path("~/.local/share").expanduser()
    return str(base / "dockserve")


class Options(usage.Options):
    """
    C{twistd dockserve} options, named and defaulted as dockerd's.

    @ivar environ: Where C{LISTEN_FDS} and C{NOTIFY_SOCKET} are read (and
        removed from); tests pass a dict.
    @ivar stderr: Where usage errors go: the real stderr, captured before
        twistd redirects it into the log.
    """

    synopsis = "[options]"
    longdesc = (
        "Serve the Docker Engine API: point the docker CLI at it with"
        " DOCKER_HOST=unix:///run/dockserve.sock (or -H)."
    )

    optFlags: Sequence[Sequence[str | None]] = [
        ["debug", "D", "Enable debug mode: debug logging and /debug endpoints."],
        [
            "tls",
            None,
            (
                "Use TLS on TCP listeners; clients need a certificate from the CA"
                " (--tlscacert) unless --tlsverify=false, as with dockerd."
            ),
        ],
        [
            "tlsverify",
            None,
            (
                "Use TLS and require client certificates from the CA (--tlscacert);"
                " --tlsverify=false: TLS without them."
            ),
        ],
        [
            "insecure-tcp",
            None,
            (
                "Allow TCP listeners on non-loopback addresses whose clients are not"
                " verified (no --tlsverify, or ssl:): anyone who can connect is root."
            ),
        ],
        [
            "no-buffer",
            None,
            "Serve requests before state is restored instead of holding them.",
        ],
    ]

    optParameters: Sequence[Sequence[Any]] = [
        [
            "group",
            "G",
            unixsocket.DEFAULT_GROUP,
            "Group owning the unix socket (0660).",
        ],
        [
            "tlscacert",
            None,
            None,
            "CA certificate clients must be signed by (default ~/.docker/ca.pem).",
        ],
        ["tlscert", None, None, "Server TLS certificate (default ~/.docker/cert.pem)."],
        ["tlskey", None, None, "Server TLS private key (default ~/.docker/key.pem)."],
        [
            "tlscrl",
            None,
            None,
            (
                "Certificate revocation lists (PEM) of the --tlscacert CAs: client"
                " certificates they list are refused (needs --tlsverify; not a"
                " dockerd flag). Reloaded with the certificates on SIGHUP."
            ),
        ],
        [
            "metrics-addr",
            None,
            None,
            (
                "Serve Prometheus metrics at HOST:PORT (/metrics, plain HTTP), as"
                " dockerd: 127.0.0.1:9323 for this machine only."
            ),
        ],
        ["api-cors-header", None, None, "Set CORS headers in the API for this origin."],
        [
            "policy",
            None,
            None,
            (
                "A TOML policy file: who may call which routes with which bodies,"
                " per listener, TLS client certificate or unix uid (docs/policy.md)."
            ),
        ],
        [
            "audit-log",
            None,
            None,
            "Append one JSON line per API request to this file (who, what, verdict).",
        ],
        ["log-level", "l", "info", "Log level: debug, info, warn, error or fatal."],
        ["log-format", None, "text", "Log format: text or json (one object per line)."],
        [
            "data-root",
            None,
            None,
            "Persistent state (default /var/lib/dockserve as root).",
        ],
        [
            "exec-root",
            None,
            "/run/dockserve",
            "Runtime state: sockets, pid and exit files.",
        ],
        ["runtime", None, "runc", "OCI runtime binary for containers."],
        [
            "bridge",
            "b",
            "",
            (
                "The default bridge network: empty for dockserve0 (172.17.0.0/16 "
                "unless taken), none for none (containers get loopback only and "
                "the host's network is left alone, as dockerd's --bridge none)."
            ),
        ],
        [
            "activation-timeout",
            None,
            str(DEFAULT_TIMEOUT),
            "Seconds a connection is held during start-up before a 503.",
        ],
        [
            "activation-delay",
            None,
            "0",
            "For testing: seconds to wait before restoring state.",
        ],
    ]

    def __init__(
        self,
        environ: MutableMapping[str, str] | None = None,
        stderr: IO[str] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.environ: MutableMapping[str, str] = (
            os.environ if environ is None else environ
        )
        self.stderr: IO[str] = sys.stderr if stderr is None else stderr
        self["hosts"] = []
        self["tlsverify-off"] = False
        self["insecure-registries"] = []
        self["registry-mirrors"] = []

    def opt_host(self, value: str) -> None:
        """
        Listen here (repeatable): tcp://HOST:PORT, unix:///path, fd://, fd://N,
        or a Twisted endpoint (tcp:2375).
        """
        self["hosts"].append(value)

    opt_H = opt_host

    def opt_insecure_registry(self, value: str) -> None:
        """A registry reached over plain HTTP or unverified TLS (repeatable)."""
        self["insecure-registries"].append(value)

    def opt_registry_mirror(self, value: str) -> None:
        """A registry mirror tried before Docker Hub (repeatable)."""
        self["registry-mirrors"].append(value)

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse and validate; on any error print one line and exit 2.

        twistd would print the whole help text and exit 1; a daemon's
        supervisor and its user want the one line that names the flag.
        """
        try:
            args = sys.argv[1:] if options is None else options
            super().parseOptions(self._tlsverify_values(args))  # type: ignore[no-untyped-call]
        except usage.UsageError as e:
            self.fail(str(e))

    def _tlsverify_values(self, args: Sequence[str]) -> list[str]:
        """
        Take dockerd's C{--tlsverify=BOOL}: true is the flag, false turns
        client verification off (C{--tls} alone turns it on, as dockerd).
        """
        result = []
        for arg in args:
            name, equals, value = arg.partition("=")
            if name != "--tlsverify" or not equals:
                result.append(arg)
            elif value in _TRUE:
                result.append(name)
            elif value in _FALSE:
                self["tlsverify-off"] = True
            else:
                raise usage.UsageError(
                    f"--tlsverify: invalid value {value!r}: expected true or false"
                )
        return result

    def fail(self, message: str) -> NoReturn:
        """Report a usage error on one line and exit with status 2."""
        self.stderr.write(f"dockserve: {message}\n")
        self.stderr.flush()
        raise SystemExit(2)

    def postOptions(self) -> None:
        """Validate every flag; raise L{usage.UsageError} naming the bad one."""
        if self["bridge"] not in {"", "none"}:
            msg = (
                f"--bridge {self['bridge']}: only none is supported (the default "
                "bridge is dockserve0)"
            )
            raise usage.UsageError(msg)
        default_unix = default_unix_socket(self.environ)
        try:
            parsed = [hosts.parse(h, default_unix=default_unix) for h in self["hosts"]]
        except hosts.InvalidHost as e:
            raise usage.UsageError(f"-H/--host: {e}") from e
        if not parsed:
            parsed = [hosts.parse("unix://", default_unix=default_unix)]
        self["parsed-hosts"] = hosts.unique(parsed)

        if self["log-level"] not in logfmt.LEVELS:
            raise usage.UsageError(
                f"--log-level: invalid value {self['log-level']!r}:"
                f" expected one of {', '.join(logfmt.LEVELS)}"
            )
        if self["log-format"] not in logfmt.FORMATS:
            raise usage.UsageError(
                f"--log-format: invalid value {self['log-format']!r}:"
                " expected text or json"
            )
        self["activation-timeout"] = self._seconds("activation-timeout", positive=True)
        self["activation-delay"] = self._seconds("activation-delay", positive=False)
        self["head-timeout"] = self._head_timeout()

        try:
            self["socket-group"] = unixsocket.resolve_group(self["group"])
        except KeyError as e:
            raise usage.UsageError(
                f"-G/--group: group {self['group']!r} does not exist"
            ) from e

        self._tls_options()
        self["metrics-address"] = None
        if self["metrics-addr"] is not None:
            try:
                self["metrics-address"] = parse_address(self["metrics-addr"])
            except InvalidAddress as e:
                raise usage.UsageError(f"--metrics-addr: {e}") from e
        try:
            exposure.check(
                self["parsed-hosts"],
                verify=self["tls-verify"],
                insecure=bool(self["insecure-tcp"]),
            )
        except exposure.RefusedListener as e:
            raise usage.UsageError(f"-H/--host: {e}") from e

        for flag in ("data-root", "exec-root"):
            if self[flag] is not None and not Path(self[flag]).is_absolute():
                raise usage.UsageError(
                    f"--{flag}: {self[flag]!r} is not an absolute path"
                )
        if self["data-root"] is None:
            self["data-root"] = default_data_root(self.environ)
        self._policy_options(default_unix)

        self["listen-fds"] = self._activated_fds()
        self["notifier"] = activation.Notifier(self.environ)
        self._quiet_twistd_logger()

    def _policy_options(self, default_unix: str) -> None:
        """
        C{--policy}: the file, read and checked whole now (a mistake is exit
        2 with its line); C{--audit-log}: opened now, so that a path that
        cannot be written is a usage error rather than a lost record.
        """
        self["policy-file"] = None
        self["audit"] = None
        listeners = [h.text for h in self["parsed-hosts"]]

        def canonical(text: str) -> str:
            try:
                named = hosts.parse(text, default_unix=default_unix).text
            except hosts.InvalidHost as e:
                raise ValueError(str(e)) from e
            if named not in listeners:
                raise ValueError(
                    f"{named} is not one of this daemon's listeners"
                    f" (-H {', -H '.join(listeners)})"
                )
            return named

        if self["policy"] is not None:
            try:
                self["policy-file"] = load_policy(self["policy"], canonical=canonical)
            except PolicyFileError as e:
                raise usage.UsageError(f"--policy: {e}") from e
        path = self["audit-log"]
        if path is not None:
            if not Path(path).is_absolute():
                raise usage.UsageError(f"--audit-log: {path!r} is not an absolute path")
            try:
                self["audit"] = AuditLog.open(path)
            except OSError as e:
                raise usage.UsageError(
                    f"--audit-log: cannot open {path}: {e.strerror or e}"
                ) from e

    def _tls_options(self) -> None:
        """
        C{--tls*} as dockerd reads them: C{--tlsverify} (any value) turns
        TLS on; with TLS on, clients must present a certificate signed by
        C{--tlscacert} unless C{--tlsverify=false} was given.
        """
        if self["tlsverify"] or self["tlsverify-off"]:
            self["tls"] = True
        self["tls-verify"] = bool(self["tls"]) and not self["tlsverify-off"]
        self["tls-creator"] = None
        if self["tlscrl"] is not None and not self["tls-verify"]:
            raise usage.UsageError(
                "--tlscrl: revocation applies to client certificates, which are"
                " verified only with --tlsverify"
            )
        if self["tls"]:
            settings = tls.TLSSettings(
                verify=self["tls-verify"],
                ca=self["tlscacert"] or tls.default_path("ca"),
                cert=self["tlscert"] or tls.default_path("cert"),
                key=self["tlskey"] or tls.default_path("key"),
                crl=self["tlscrl"],
            )
            try:
                self["tls-creator"] = tls.server_creator(settings)
            except tls.TLSFileError as e:
                raise usage.UsageError(str(e)) from e

    def _head_timeout(self) -> float:
        """
        Seconds a client has to send a request head: L{limits.HEAD_TIMEOUT},
        or C{$DOCKSERVE_HEAD_TIMEOUT}, a setting for tests, not a flag.
        """
        text = self.environ.get(HEAD_TIMEOUT_VARIABLE)
        if text is None:
            return limits.HEAD_TIMEOUT
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 < value < float("inf"):
            raise usage.UsageError(
                f"${HEAD_TIMEOUT_VARIABLE}: invalid value {text!r}: expected a"
                " number of seconds greater than 0"
            )
        return value

    def _seconds(self, flag: str, *, positive: bool) -> float:
        try:
            value = float(self[flag])
        except (TypeError, ValueError):
            value = -1.0
        if value < 0 or (positive and value == 0) or value != value:  # noqa: PLR0124
            raise usage.UsageError(
                f"--{flag}: invalid value {self[flag]!r}: expected a number of"
                f" seconds{' greater than 0' if positive else ''}"
            )
        return value

    def _activated_fds(self) -> dict[str, list[int]]:
        """Which activated descriptors each C{fd://} host serves."""
        fd_hosts = [h for h in self["parsed-hosts"] if h.scheme == "fd"]
        passed = activation.take_listen_fds(self.environ, os.getpid())
        if not passed and self.environ is os.environ:
            passed = activation.passed_at_exec()
        chosen: dict[str, list[int]] = {}
        for host in fd_hosts:
            try:
                chosen[host.text] = activation.select(passed, host.fd)
            except activation.NoActivatedSockets as e:
                raise usage.UsageError(f"-H/--host: {e}") from e
        if fd_hosts:
            used = {fd for fds in chosen.values() for fd in fds}
            activation.close_unused(passed, used)
        return chosen

    def _quiet_twistd_logger(self) -> None:
        """
        Under twistd, stop its own log observer writing every line a second
        time: L{makeService} installs ours (C{--log-format}), unless the user
        gave twistd a C{--logfile} or C{--logger}.
        """
        parent = getattr(self, "parent", None)
        if parent is None:
            return
        if parent.get("logger") or parent.get("logfile") not in (None, "", "-"):
            return
        parent["logger"] = "dockserve.server.logfmt.discard"
        self["own-log"] = True


class _QuietSite(Site):
    """
    A L{Site} without twisted.web's access log: the API logs each request.

    @ivar listener: The C{-H} listener it serves (the policy's principals
        are per listener).
    """

    listener: str | None = None

    def log(self, request: http.Request) -> None:
        del request

    def acceptableProtocols(self) -> list[bytes]:
        """
        Offer only HTTP/1.1 over ALPN, as the API needs: a hijacked attach
        or exec (C{Upgrade: tcp}) has no HTTP/2 form, and Twisted would
        offer C{h2} as soon as the C{h2} package is installed.
        """
        return [HTTP_11]


class DaemonService(MultiService):
    """
    The whole daemon: listeners, then restore, then serve.

    Listeners bind first (in C{privilegedStartService}), holding connections;
    the daemon then restores its state and L{activation} fires, releasing
    them, and systemd is told C{READY=1}.  Stopping tells systemd
    C{STOPPING=1}, closes the listeners (removing socket files) and stops
    the daemon.

    @ivar activation: Fires when requests are served; fails if restoring
        failed.
    @ivar tls: The TLS material of the TCP listeners (C{--tls}), reloaded
        by L{reload}.
    """

    def __init__(
        self,
        daemon: Any,
        reactor: Any,
        *,
        notifier: activation.Notifier,
        delay: float,
        stderr: IO[str],
        exit_process: Callable[[int], NoReturn],
        tls: tls.ServerTLS | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.daemon = daemon
        self.activation: Deferred[None] = Deferred()
        self._reactor = reactor
        self._notifier = notifier
        self._delay = delay
        self._stderr = stderr
        self._exit = exit_process
        self._bound = False
        self.tls = tls
        #: The policy's check and audit log (C{--policy}, C{--audit-log});
        #: its C{add_observer} hears every decision.
        self.front_door: FrontDoor | None = None

    def privilegedStartService(self) -> None:
        """Bind every listener while twistd still has its privileges."""
        self._bind()
        super().privilegedStartService()  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        """Bind (if not yet), then restore the daemon, then serve."""
        self._bind()
        super().startService()  # type: ignore[no-untyped-call]
        restoring: Deferred[None]
        if self._delay:
            restoring = deferLater(self._reactor, self._delay, self.daemon.restore)
        else:
            restoring = maybeDeferred(self.daemon.restore)
        restoring.addCallbacks(self._restored, self._restore_failed)

    def _bind(self) -> None:
        if self._bound:
            return
        self._bound = True
        try:
            for listener in self._listeners():
                listener.privilegedStartService()
        except ListenFailed as e:
            for listener in self._listeners():
                listener.stopService()
            self._stderr.write(f"dockserve: {e}\n")
            self._stderr.flush()
            self._exit(1)

    def _listeners(self) -> list[ListenerService]:
        return [s for s in self if isinstance(s, ListenerService)]

    def _restored(self, _: object) -> None:
        _log.info("Daemon has completed initialization")
        self.activation.callback(None)
        self._notifier.notify("READY=1")

    def _restore_failed(self, failure: Failure) -> None:
        _log.failure("Restoring the daemon's state failed", failure)
        self.activation.errback(failure)
        self.activation.addErrback(lambda _: None)
        self._stderr.write(f"dockserve: cannot start: {failure_message(failure)}\n")
        self._stderr.flush()
        if self._reactor.running:
            # twistd exits 0 whenever the reactor stops; a daemon that could
            # not start must not look like a clean stop to its supervisor
            # (systemd's Restart=on-failure). Once the services have stopped
            # (listeners closed, socket files removed), leave with status 1.
            self._reactor.addSystemEventTrigger(
                "after", "shutdown", _exit_after_shutdown, 1
            )
            self._reactor.stop()

    def reload(self) -> None:
        """
        SIGHUP: read the TLS material again (L{tls.ServerTLS.reload}: new
        handshakes get it, open connections keep theirs, a bad file keeps
        the old material), between C{RELOADING=1} and C{READY=1}, so that
        C{systemctl reload} waits for it.  Before the daemon is ready,
        systemd is told nothing: its C{READY=1} is still to come.
        """
        ready = self.activation.called
        if ready:
            self._notifier.reloading()
        if self.tls is None:
            _log.info("Received SIGHUP: nothing to reload (no --tls)")
        else:
            _log.info("Received SIGHUP: reloading the TLS certificate, key, CA and CRL")
            self.tls.reload()
        if ready:
            self._notifier.notify("READY=1")

    def stopService(self) -> Deferred[None]:
        """Tell systemd, close the listeners, then stop the daemon."""
        self._notifier.notify("STOPPING=1")
        stopping: Deferred[Any] = maybeDeferred(super().stopService)
        stopping.addCallback(lambda _: self.daemon.stop())
        stopping.addErrback(lambda f: _log.failure("Error while stopping", f))
        return stopping.addCallback(lambda _: None)


def _exit_after_shutdown(code: int) -> None:
    """
    Leave now with C{code}: the reactor has shut down and the services
    have stopped; an exception here would only be logged.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit(code: int) -> NoReturn:
    raise SystemExit(code)


def make_site(
    resource: IResource,
    head_timeout: float = limits.HEAD_TIMEOUT,
    listener: str | None = None,
) -> Site:
    """
    A L{Site} over the one API resource, without tracebacks to clients.

    @param head_timeout: Seconds a connection has to send a complete
        request head (L{limits.HeadDeadlineChannel}).
    @param listener: The C{-H} listener it serves (each has its own site,
        so a request's listener is C{request.channel.site.listener}).
    """
    site = _QuietSite(resource)  # type: ignore[no-untyped-call]
    site.listener = listener
    site.protocol = limits.channel_factory(head_timeout)  # type: ignore[assignment]
    site.displayTracebacks = False
    # Image uploads (load, import) reach their handler as the body arrives.
    site.requestFactory = StreamingRequest
    return site


def config_from(options: Options) -> DaemonConfig:
    """The engine's settings from the command line."""
    return DaemonConfig(
        data_root=options["data-root"],
        exec_root=options["exec-root"],
        runtime=options["runtime"],
        bridge=options["bridge"],
        insecure_registries=tuple(options["insecure-registries"]),
        registry_mirrors=tuple(options["registry-mirrors"]),
        debug=bool(options["debug"]),
        hosts=tuple(h.text for h in options["parsed-hosts"]),
    )


def _make_service(
    options: Options,
    reactor: Any,
    *,
    create_daemon: Callable[[DaemonConfig, Any], Any] = daemon_module.create,
    exit_process: Callable[[int], NoReturn] = _exit,
    open_files: tuple[int, int] | None = None,
) -> DaemonService:
    """
    Build the service tree for C{options} on C{reactor}.

    @param create_daemon: Builds the backend (tests pass a memory one).
    @param exit_process: Called with 1 when a listener cannot bind.
    @param open_files: The soft open-file limit before and after
        L{limits.raise_open_file_limit}; by default the limit as it is.
    """
    if options.get("own-log"):
        level = "debug" if options["debug"] else options["log-level"]
        logfmt.install(
            globalLogPublisher, options.stderr, level=level, fmt=options["log-format"]
        )
    if open_files is None:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        open_files = (soft, soft)
    if open_files[0] != open_files[1]:
        _log.info(
            "Raised the open file limit from {before} to {after}",
            before=open_files[0],
            after=open_files[1],
        )
    backend = create_daemon(config_from(options), reactor)
    api = make_resource(
        backend,
        debug=bool(options["debug"]),
        cors_origin=options["api-cors-header"],
    )
    site = make_site(api, head_timeout=options["head-timeout"])
    service = DaemonService(
        backend,
        reactor,
        notifier=options["notifier"],
        delay=options["activation-delay"],
        stderr=options.stderr,
        exit_process=exit_process,
        tls=options["tls-creator"],
    )
    if options["policy-file"] is not None or options["audit"] is not None:
        service.front_door = FrontDoor(
            options["policy-file"], backend, audit=options["audit"]
        )
        if isinstance(api, Middleware):
            api.add_check(service.front_door)
    metrics = None
    if options["metrics-address"] is not None:
        metrics = _add_metrics(service, options, reactor, backend, api)
    warning = exposure.warning_for(
        options["parsed-hosts"], verify=options["tls-verify"], clock=reactor
    )
    if warning is not None:
        warning.setServiceParent(service)  # type: ignore[no-untyped-call]
    _add_listeners(service, options, reactor, site, open_files[1], metrics=metrics)
    return service


def _add_metrics(
    service: DaemonService, options: Options, reactor: Any, backend: Any, api: Any
) -> DaemonMetrics:
    """
    C{--metrics-addr}: its listener (bound with the API's), fed by the
    middleware's hook and read from the daemon at each scrape.
    """
    metrics = DaemonMetrics()
    metrics.watch_daemon(backend)
    if isinstance(api, Middleware):
        api.counters.observers.append(metrics.observe_request)
    if service.front_door is not None:
        # Requests are labelled with the policy's principal, and each
        # decision is counted.
        metrics.requests.principal_of = service.front_door.principal_of
        service.front_door.add_observer(metrics.count_decision)
    address = options["metrics-address"]
    if not address.loopback:
        _log.info(
            "metrics API on {address} is reachable from the network: it tells"
            " what runs here, never a secret",
            address=address.text,
        )
    metrics.listener(address, reactor).setServiceParent(service)  # type: ignore[no-untyped-call]
    return metrics


def _add_listeners(
    service: DaemonService,
    options: Options,
    reactor: Any,
    site: Site,
    files: int,
    *,
    metrics: DaemonMetrics | None = None,
) -> None:
    """
    One listening service per host and socket, each behind the listen
    buffer (unless C{--no-buffer}) and holding at most its share of
    C{files} connections.
    """
    creator: IOpenSSLServerConnectionCreator | None = options["tls-creator"]
    per_listener = limits.connections_per_listener(files, len(options["parsed-hosts"]))
    for host in options["parsed-hosts"]:
        limit = limits.ConnectionLimit(host.text, per_listener, reactor)
        for endpoint in endpoints_for(
            host,
            reactor=reactor,
            tls=creator,
            group=options["socket-group"],
            fds=options["listen-fds"].get(host.text, []),
            limit=limit,
        ):
            buffer = None
            if not options["no-buffer"]:
                endpoint = buffer = ListenBufferEndpoint(  # noqa: PLW2901
                    endpoint,
                    service.activation,
                    reactor,
                    options["activation-timeout"],
                )
            listener = ListenerService(
                host.text,
                endpoint,
                make_site(site.resource, options["head-timeout"], listener=host.text),
            )
            listener.setServiceParent(service)  # type: ignore[no-untyped-call]
            if metrics is not None:
                metrics.watch_listener(listener, limit, buffer)


def stop_on_sigint() -> None:
    """
    Make SIGINT stop the daemon even when it was started with SIGINT ignored.

    A shell starts a script's background job (C{dockserve &}) with SIGINT
    ignored; Python then leaves it ignored and the reactor, which only takes
    over a default SIGINT, never sees it, so C{kill -INT} did nothing.
    dockerd (Go's C{signal.Notify}) stops on SIGINT however it was started;
    so does dockserve: the reactor installs its handler over this one.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def reload_on_sighup(reactor: Any, reload: Callable[[], object]) -> None:
    """
    Call C{reload} on the reactor thread at each SIGHUP (C{systemctl
    reload}: the unit's C{ExecReload} sends it), as dockerd reloads on it.

    Its default action would end the process at once, without stopping
    the services (socket files stay behind); a closed terminal must not
    kill the daemon either.
    """

    def hangup(signum: int, frame: object) -> None:
        del signum, frame
        reactor.callFromThread(reload)

    signal.signal(signal.SIGHUP, hangup)


def makeService(options: Options) -> IService:
    """Twistd's entry point: the service tree on the global reactor."""
    from twisted.internet import reactor  # noqa: PLC0415

    stop_on_sigint()
    service = _make_service(options, reactor, open_files=limits.raise_open_file_limit())
    reload_on_sighup(reactor, service.reload)
    return service
