"""The inbox: messages received from the broker and not yet acknowledged.

Bounded by message count and bytes from receipt until release (after the
acknowledgement). When it is full `put` waits, so paho stops reading and the
broker flow-controls us.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which connection delivered it: ack only on that one
    sent_at: str | None
    envelopes: int = 1  # estimated, for grouping (ingest_decode.estimate_envelopes)
    # Waiting for an earlier event (service.DependencyWait): whether it may wait
    # yet, until when (monotonic), when it is tried next, and after how long.
    may_wait: bool = False
    wait_until: float = 0.0
    retry_at: float = 0.0
    retry_delay: float = 0.0

    @property
    def size(self) -> int:
        return len(self.payload)


class Inbox:
    """A FIFO of received messages, bounded by count and bytes until each
    message is released (after its ack). `put` waits while full."""

    def __init__(self, max_messages: int, max_bytes: int):
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._not_empty = threading.Condition(self._lock)
        self._queue: deque[Message] = deque()
        self.pending = 0  # put and not yet released
        self.pending_bytes = 0
        self.peak = 0  # the most ever pending at once
        self.closed = False
        self._queued_envelopes = 0  # estimated, in the queue (not yet taken)
        self._wanted = 0  # a `take` waits for this many queued envelopes (0: none waits)

    def _full(self, size: int) -> bool:
        if self.pending == 0:
            return False  # one message always fits, however big
        return self.pending >= self.max_messages or self.pending_bytes + size > self.max_bytes

    def put(self, message: Message, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self.closed and self._full(message.size):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._not_full.wait(remaining)
            if self.closed:
                return False
            self._queue.append(message)
            self.pending += 1
            self.pending_bytes += message.size
            self.peak = max(self.peak, self.pending)
            self._queued_envelopes += message.envelopes
            if len(self._queue) == 1 or 0 < self._wanted <= self._queued_envelopes:
                self._not_empty.notify()
            return True

    def get(self, timeout: float) -> Message | None:
        """The next message, or None after *timeout* (0: do not wait)."""
        with self._lock:
            if not self._queue and timeout > 0 and not self.closed:
                self._not_empty.wait(timeout)
            if not self._queue:
                return None
            message = self._queue.popleft()
            self._queued_envelopes -= message.envelopes
            return message

    def take(
        self, limit: int, timeout: float, window: float, busy: Callable[[], bool]
    ) -> list[Message]:
        """A group: wait up to *timeout* for a first message; then, while
        *busy()* (earlier groups are still being committed), up to *window*
        more for the queue to hold *limit* envelopes; take up to that many
        ([] if nothing came). The taker is woken when the first message
        arrives, when there are enough, and by `nudge` (no longer busy): not
        for every message in between."""
        with self._lock:
            if not self._queue and timeout > 0 and not self.closed:
                self._not_empty.wait(timeout)
            if not self._queue:
                return []
            deadline = time.monotonic() + window
            while not self.closed and self._queued_envelopes < limit and busy():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wanted = limit
                self._not_empty.wait(remaining)
                self._wanted = 0
            taken: list[Message] = []
            envelopes = 0
            while self._queue and envelopes < limit:
                message = self._queue.popleft()
                taken.append(message)
                envelopes += message.envelopes
            self._queued_envelopes -= envelopes
            return taken

    def nudge(self) -> None:
        """Wake a `take` waiting for more: whatever it waits for has changed."""
        with self._lock:
            self._not_empty.notify_all()

    def release(self, messages: Sequence[Message]) -> None:
        with self._lock:
            self.pending -= len(messages)
            self.pending_bytes -= sum(message.size for message in messages)
            self._not_full.notify_all()

    def close(self) -> None:
        """No more puts; waiting puts return False; gets drain what is queued."""
        with self._lock:
            self.closed = True
            self._not_full.notify_all()
            self._not_empty.notify_all()

    @property
    def drained(self) -> bool:
        with self._lock:
            return self.closed and not self._queue
