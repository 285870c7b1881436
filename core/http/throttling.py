"""Request rate limits counted in fixed windows: one cache round trip a request.

DRF's SimpleRateThrottle keeps every request's timestamp in one cache value and reads and
rewrites the whole list on each request: at 1,000 requests a minute that is a thousand
floats pickled twice per request, on every authenticated call. Here each (client, window)
has one counter that a single atomic increment both updates and reads
(`core.cache.backend.count_in_window`); what a fixed window gives up is precision at its
edges (a client can fit up to twice the rate across a window boundary), which a limit
against abuse can afford. Requests refused still count, so a client that keeps hammering
stays limited until the window ends.
"""

from typing import TYPE_CHECKING

from rest_framework import throttling

from core.cache.backend import count_in_window

if TYPE_CHECKING:
    # DRF imports this module while rest_framework.views is still loading.
    from rest_framework.request import Request
    from rest_framework.views import APIView


class FixedWindowRateThrottle(throttling.SimpleRateThrottle):
    """SimpleRateThrottle's rates and keys, counted per fixed window of the rate's period."""

    # Set by SimpleRateThrottle.__init__ from the rate (undeclared in the stubs).
    num_requests: int
    duration: int
    window_end: float

    def allow_request(self, request: "Request", view: "APIView") -> bool:
        """Count this request in the client's current window; False past the rate."""
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.window_end = (window + 1) * self.duration
        count = count_in_window(f"{self.key}:{window}", seconds=self.duration)
        return count <= self.num_requests

    def wait(self) -> float:
        """Seconds until the current window ends and the count starts again."""
        return max(self.window_end - self.now, 1.0)


class AnonRateThrottle(FixedWindowRateThrottle, throttling.AnonRateThrottle):
    """Anonymous requests per client IP (scope "anon")."""


class UserRateThrottle(FixedWindowRateThrottle, throttling.UserRateThrottle):
    """Authenticated requests per user, anonymous ones per client IP (scope "user")."""
