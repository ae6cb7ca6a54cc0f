"""
Tests for the command line's side of C{--metrics-addr}, C{--tlscrl} and
SIGHUP (L{dockserve.tap}): the flags' usage errors, the metrics listener
in the service tree, and a reload between C{RELOADING=1} and C{READY=1}.
"""

import io
import os
import signal
from typing import Any

from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from dockserve.server.listeners import ListenerService
from dockserve.tap import DaemonService, Options, _make_service, reload_on_sighup
from tests.server.test_tls_reload import ReloadPKI
from tests.tempdirs import temp_dir
from tests.test_tap import FakeReactor


def _parse(case: SynchronousTestCase, *args: str) -> tuple[Options | None, str]:
    """Options for C{args}, or C{None} and the one usage line."""
    stderr = io.StringIO()
    directory = temp_dir(case)
    options = Options(environ={}, stderr=stderr)
    try:
        options.parseOptions([*args, "--data-root", f"{directory}/d",
                              "--exec-root", f"{directory}/e"])  # fmt: skip
    except SystemExit as e:
        case.assertEqual(e.code, 2)
        case.assertEqual(len(stderr.getvalue().splitlines()), 1)
        return None, stderr.getvalue()
    return options, ""


class MetricsFlagTests(SynchronousTestCase):
    def test_bad_address(self) -> None:
        """A bad --metrics-addr is one usage line naming the flag."""
        for value, fragment in [(":9323", "no host"), ("9323", "missing port")]:
            options, line = _parse(self, "--metrics-addr", value)
            self.assertIsNone(options)
            self.assertIn(f"--metrics-addr: '{value}': {fragment}", line)

    def test_listener(self) -> None:
        """
        --metrics-addr adds a listener of its own, bound with the API's,
        at the address given, outside the listen buffer (it answers while
        the daemon restores).
        """
        directory = temp_dir(self)
        options, _ = _parse(self, "-H", f"unix://{directory}/d.sock",
                            "--metrics-addr", "127.0.0.1:9323")  # fmt: skip
        assert options is not None
        reactor = FakeReactor()
        service = _make_service(options, reactor)
        [metrics] = [
            s
            for s in service
            if isinstance(s, ListenerService) and s.kind == "metrics API"
        ]
        self.assertEqual(metrics.host, "127.0.0.1:9323")
        service.privilegedStartService()
        [(port, factory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (9323, "127.0.0.1"))
        self.assertFalse(hasattr(factory, "_gate"))

    def test_policy_wired(self) -> None:
        """
        With --policy, the front door's decisions are counted and its
        principals label the requests.
        """
        directory = temp_dir(self)
        policy = directory / "policy.toml"
        policy.write_text(f'[listener."unix:{directory}/d.sock"]\npolicy = "full"\n')
        options, _ = _parse(self, "-H", f"unix://{directory}/d.sock",
                            "--policy", str(policy),
                            "--metrics-addr", "127.0.0.1:9323")  # fmt: skip
        assert options is not None
        service = _make_service(options, FakeReactor())
        assert service.front_door is not None
        [observer] = service.front_door._observers
        metrics = observer.__self__  # type: ignore[attr-defined]
        self.assertEqual(observer, metrics.count_decision)
        self.assertEqual(metrics.principal_of, service.front_door.principal_of)

    def test_none_by_default(self) -> None:
        """Without the flag there is no metrics listener."""
        options, _ = _parse(self, "-H", f"unix://{temp_dir(self)}/d.sock")
        assert options is not None
        service = _make_service(options, FakeReactor())
        self.assertEqual(
            [s.kind for s in service if isinstance(s, ListenerService)], ["API"]
        )


class CRLFlagTests(SynchronousTestCase):
    def test_needs_verification(self) -> None:
        """--tlscrl without client verification is a usage error."""
        pki = ReloadPKI(temp_dir(self))
        files = ("--tlscacert", pki.ca, "--tlscert", pki.server_cert,
                 "--tlskey", pki.server_key, "--tlscrl", pki.crl)  # fmt: skip
        for tls in ((), ("--tls", "--tlsverify=false")):
            options, line = _parse(self, *tls, *files)
            self.assertIsNone(options)
            self.assertIn("--tlscrl: revocation applies to client certificates", line)

    def test_bad_crl(self) -> None:
        """A CRL that does not load stops the start, naming --tlscrl."""
        pki = ReloadPKI(temp_dir(self))
        options, line = _parse(self, "--tlsverify", "--tlscacert", pki.ca,
                               "--tlscert", pki.server_cert, "--tlskey",
                               pki.server_key, "--tlscrl", pki.crl)  # fmt: skip
        self.assertIsNone(options)
        self.assertIn("--tlscrl: cannot read", line)
        pki.write_crl()
        options, _ = _parse(self, "--tlsverify", "--tlscacert", pki.ca,
                            "--tlscert", pki.server_cert, "--tlskey",
                            pki.server_key, "--tlscrl", pki.crl)  # fmt: skip
        assert options is not None
        self.assertIn("1 CRL(s), 0 revoked", options["tls-creator"].description)


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def notify(self, state: str) -> bool:
        self.sent.append(state)
        return True

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")


class FakeTLS:
    def __init__(self) -> None:
        self.reloads = 0

    def reload(self) -> bool:
        self.reloads += 1
        return True


class ReloadTests(SynchronousTestCase):
    def service(self, tls: Any = None) -> tuple[DaemonService, FakeNotifier]:
        notifier = FakeNotifier()
        service = DaemonService(
            None,
            FakeReactor(),
            notifier=notifier,  # type: ignore[arg-type]
            delay=0,
            stderr=io.StringIO(),
            exit_process=lambda _: None,  # type: ignore[arg-type,return-value]
            tls=tls,
        )
        return service, notifier

    def test_between_reloading_and_ready(self) -> None:
        """Once ready, a reload is framed by RELOADING=1 and READY=1."""
        tls = FakeTLS()
        service, notifier = self.service(tls)
        service.activation.callback(None)
        with capturedLogs() as events:
            service.reload()
        self.assertEqual(notifier.sent, ["RELOADING=1", "READY=1"])
        self.assertEqual(tls.reloads, 1)
        self.assertIn("Received SIGHUP: reloading the TLS", formatEvent(events[0]))

    def test_before_ready(self) -> None:
        """
        Before the daemon is ready the material is reloaded, but systemd is
        told nothing: a READY=1 now would say the restore is done.
        """
        tls = FakeTLS()
        service, notifier = self.service(tls)
        service.reload()
        self.assertEqual((notifier.sent, tls.reloads), ([], 1))

    def test_without_tls(self) -> None:
        """Without --tls there is nothing to reload, and the log says so."""
        service, notifier = self.service()
        service.activation.callback(None)
        with capturedLogs() as events:
            service.reload()
        self.assertEqual(notifier.sent, ["RELOADING=1", "READY=1"])
        self.assertIn("nothing to reload (no --tls)", formatEvent(events[0]))


class CallingReactor:
    def __init__(self) -> None:
        self.called: list[Any] = []

    def callFromThread(self, f: Any, *args: Any) -> None:
        self.called.append((f, *args))


class SighupTests(SynchronousTestCase):
    def test_handler(self) -> None:
        """SIGHUP schedules the reload on the reactor thread (no exit)."""
        self.addCleanup(signal.signal, signal.SIGHUP, signal.getsignal(signal.SIGHUP))
        reactor = CallingReactor()

        def reload() -> None:
            pass

        reload_on_sighup(reactor, reload)
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual(reactor.called, [(reload,)])
