# -*- test-case-name: tests.api.policy.test_limits -*-
"""
Rate and stream limits per principal: a token bucket of requests, and a
count of the hijacked streams (attach, exec) each holds open.

A principal is limited as a whole, however many connections it uses: the
buckets are kept by its name.
"""

from collections.abc import Callable

from dockserve.api.policy.model import Limits


class TokenBucket:
    """
    C{rate} tokens a second, at most C{burst} kept; a request takes one.
    """

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float) -> bool:
        """Take a token if there is one; whether there was."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Limiter:
    """
    Every principal's bucket and open streams.

    @param clock: Monotonic seconds.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._streams: dict[str, int] = {}

    def admit(self, principal: str, limits: Limits) -> bool:
        """Whether C{principal} may make a request now (and count it)."""
        if limits.rate is None:
            return True
        now = self._clock()
        bucket = self._buckets.get(principal)
        if bucket is None or (bucket.rate, bucket.burst) != (limits.rate, limits.burst):
            bucket = self._buckets[principal] = TokenBucket(
                limits.rate, limits.burst, now
            )
        return bucket.take(now)

    def open_stream(self, principal: str, limits: Limits) -> bool:
        """
        Count a stream of C{principal}'s, unless it holds its limit already;
        whether it was counted (then L{close_stream} it when it ends).
        """
        held = self._streams.get(principal, 0)
        if limits.streams is not None and held >= limits.streams:
            return False
        self._streams[principal] = held + 1
        return True

    def close_stream(self, principal: str) -> None:
        """A stream L{open_stream} counted has ended."""
        held = self._streams.get(principal, 0) - 1
        if held > 0:
            self._streams[principal] = held
        else:
            self._streams.pop(principal, None)

    def streams(self, principal: str) -> int:
        """How many streams C{principal} holds now."""
        return self._streams.get(principal, 0)
