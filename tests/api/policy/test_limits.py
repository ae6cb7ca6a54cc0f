"""Tests for L{dockserve.api.policy.limits}: token buckets and stream counts."""

from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.policy.limits import Limiter, TokenBucket
from dockserve.api.policy.model import Limits


class TokenBucketTests(SynchronousTestCase):
    def test_burst_then_rate(self) -> None:
        """A full bucket lets a burst through, then one per 1/rate seconds."""
        bucket = TokenBucket(rate=2.0, burst=3.0, now=0.0)
        self.assertEqual([bucket.take(0.0) for _ in range(4)], [True] * 3 + [False])
        self.assertEqual((bucket.take(0.25), bucket.take(0.5)), (False, True))
        self.assertEqual([bucket.take(100.0) for _ in range(4)], [True] * 3 + [False])


class LimiterTests(SynchronousTestCase):
    def test_per_principal(self) -> None:
        """Each principal has its own bucket; no rate means no limit."""
        now = [0.0]
        limiter = Limiter(lambda: now[0])
        limits = Limits(rate=1.0, burst=1.0)
        self.assertEqual(
            [
                limiter.admit("a", limits),
                limiter.admit("a", limits),
                limiter.admit("b", limits),
                limiter.admit("c", Limits()),
            ],
            [True, False, True, True],
        )

    def test_streams(self) -> None:
        """Streams are counted until closed; no limit counts without refusing."""
        limiter = Limiter(lambda: 0.0)
        two = Limits(streams=2)
        self.assertEqual(
            [limiter.open_stream("a", two) for _ in range(3)], [True, True, False]
        )
        limiter.close_stream("a")
        self.assertEqual(
            (limiter.streams("a"), limiter.open_stream("a", two)), (1, True)
        )
        self.assertTrue(limiter.open_stream("b", Limits()))
