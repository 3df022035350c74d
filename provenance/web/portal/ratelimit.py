"""Token-bucket rate limits per client, in memory, with bounded memory.

Each limit is ``(rate per second, burst)``: a client may make *burst* requests
at once, then one every ``1/rate`` seconds. Clients are keyed by a keyed hash
of their address (the raw address is never kept), and at most *max_clients*
buckets are kept per limit: the least recently seen client is forgotten first
(its bucket would be full again by then in all but a flood).

Pure apart from the lock: the caller passes the time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    rate: float  # tokens added per second
    burst: int  # bucket size

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, got {self}")

    @classmethod
    def parse(cls, value: object) -> Limit:
        """From ``Limit``, ``(rate, burst)`` or ``"N/second|minute|hour [burst B]"``."""
        if isinstance(value, Limit):
            return value
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(float(value[0]), int(value[1]))
        if isinstance(value, str):
            words = value.replace("/", " ").split()
            per = {"second": 1, "s": 1, "minute": 60, "min": 60, "m": 60, "hour": 3600, "h": 3600}
            if len(words) in (2, 4) and words[1] in per:
                count = float(words[0])
                burst = int(words[3]) if len(words) == 4 and words[2] == "burst" else None
                return cls(count / per[words[1]], burst or max(1, math.ceil(count)))
        raise ValueError(f"not a rate limit: {value!r} (use e.g. '120/minute burst 40')")


class RateLimiter:
    """Buckets of one limit. ``take(client, now)`` returns 0 when the request
    may go ahead, else the seconds until it could."""

    def __init__(self, limit: Limit, *, max_clients: int = 10_000):
        self.limit = limit
        self.max_clients = max_clients
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()  # tokens, at
        self._lock = threading.Lock()
        self._salt = secrets.token_bytes(16)

    def _key(self, client: str) -> bytes:
        return hmac.new(self._salt, client.encode("utf-8", "replace"), hashlib.sha256).digest()[:16]

    def take(self, client: str, now: float) -> int:
        key = self._key(client)
        rate, burst = self.limit.rate, float(self.limit.burst)
        with self._lock:
            tokens, at = self._buckets.pop(key, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - at) * rate)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0
            else:
                wait = max(1, math.ceil((1.0 - tokens) / rate))
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)
