"""Acknowledgements in arrival order, and messages that wait for an earlier event.

MQTT (3.1.1 and 5, §4.6) wants a subscriber's PUBACKs in the order the
PUBLISHes arrived. Groups are committed in that order, but a message may
*wait*: on a shared subscription one node can receive an event before the one
it depends on (a reading before its device's attach), which another node holds
(docs/ingest.md, "Several ingest nodes"). `AckOrder` releases
acknowledgements only as a prefix of the arrival order, so a waiting message
holds back the PUBACKs (never the commits) of the messages after it;
`Waiting` keeps the waiting messages and says which are due for another try.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

from provenance.ingest.inbox import Message

RETRY_MIN_S = 0.02  # a waiting message's first retry, doubling up to
RETRY_MAX_S = 0.5


class AckOrder:
    """Messages in arrival order; `done` returns those whose turn has come."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Message] = deque()
        self._done: dict[int, bool] = {}  # id(message) -> acknowledge it?

    def received(self, messages: Iterable[Message]) -> None:
        with self._lock:
            self._queue.extend(messages)

    def done(self, messages: Iterable[Message], ack: bool = True) -> list[tuple[Message, bool]]:
        """Mark *messages* settled (*ack*: acknowledge them); the settled
        messages at the head of the arrival order, each with its ack flag."""
        with self._lock:
            for message in messages:
                self._done[id(message)] = ack
            out = []
            while self._queue and id(self._queue[0]) in self._done:
                message = self._queue.popleft()
                out.append((message, self._done.pop(id(message))))
            return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


class Waiting:
    """Messages that wait for an earlier event, each tried again after a
    growing delay until its wait is over; then once more, for good."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[Message] = []

    def park(self, message: Message, now: float) -> None:
        message.retry_delay = min(RETRY_MAX_S, max(RETRY_MIN_S, message.retry_delay * 2))
        message.retry_at = now + message.retry_delay
        with self._lock:
            self._messages.append(message)

    def due(self, now: float, limit: int, everything: bool = False) -> list[Message]:
        """Up to *limit* envelopes' worth of the messages due for a try
        (*everything*: whatever their time, for good); `may_wait` says whether
        each may wait again."""
        with self._lock:
            due, envelopes = [], 0
            for message in self._messages:
                if envelopes >= limit:
                    break
                if everything or message.retry_at <= now:
                    due.append(message)
                    envelopes += message.envelopes
            if not due:
                return []
            taken = {id(m) for m in due}
            self._messages = [m for m in self._messages if id(m) not in taken]
        for message in due:
            message.may_wait = not everything and now < message.wait_until
        return due

    def next_at(self) -> float | None:
        with self._lock:
            return min((m.retry_at for m in self._messages), default=None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)
