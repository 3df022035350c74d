"""Collecting exported EPCIS events: input order in, time order out, in memory or spilled.

:class:`EventCollector` takes ledger events in the order they are read, maps each finished
event at once, groups readings by device, lots and window (one sensor ObjectEvent each, hashed
from its sensorElements' pre-hash pieces), and gives them back sorted by eventTime as objects
or as JSON text. :class:`MemoryKeeper` keeps what is collected as objects; :class:`SpillKeeper`
writes it to a temporary file so that a whole ledger's export holds only a few integers per
event in memory.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Iterator
from typing import IO, Any

from provenance.core.envelope import Envelope
from provenance.exchange.epcis_mapping import (
    EventMapper,
    sensor_element,
    sensor_event,
    with_event_id,
)
from provenance.exchange.epcis_master_data import MasterDataReferences
from provenance.exchange.epcis_vocabulary import IMPORTED, LedgerEvent, context, dumps
from provenance.exchange.event_hash import Prehasher

_GroupKey = tuple[str, tuple[str, ...], int]  # readings grouped by (device did, lots, window)


# --- collecting: events in input order, readings into groups, then out in time order


class MemoryKeeper:
    """Keeps finished events and readings (sensorElement, pre-hash piece) as objects."""

    def __init__(self) -> None:
        self.objects: list[Any] = []

    def put(self, value: Any) -> tuple[int, int]:
        self.objects.append(value)
        return len(self.objects) - 1, 0

    def put_reading(self, element: dict[str, Any], piece: str) -> tuple[int, int]:
        return self.put((element, piece))

    def get(self, a: int, _b: int) -> Any:
        return self.objects[a]

    def text(self, a: int, _b: int) -> str:
        return dumps(self.objects[a])

    def readings(self, handles: Iterable[tuple[int, int]]) -> tuple[list[Any], list[str]]:
        pairs = [self.objects[a] for a, _ in handles]
        return [element for element, _ in pairs], [piece for _, piece in pairs]


class SpillKeeper:
    """Keeps finished events and readings as text in a temporary file — an event as its
    JSON, a reading as its sensorElement's JSON, a newline and its pre-hash piece — so that
    (offset, length) is all memory holds of each."""

    def __init__(self, file: IO[bytes]):
        self.file = file
        self.size = 0

    def _write(self, text: str) -> tuple[int, int]:
        data = text.encode("utf-8")
        self.file.write(data)
        offset, self.size = self.size, self.size + len(data)
        return offset, len(data)

    def put(self, value: Any) -> tuple[int, int]:
        return self._write(dumps(value))

    def put_reading(self, element: dict[str, Any], piece: str) -> tuple[int, int]:
        return self._write(dumps(element) + "\n" + piece)  # JSON text has no raw newline

    def text(self, a: int, b: int) -> str:
        self.file.seek(a)
        return self.file.read(b).decode("utf-8")

    def get(self, a: int, b: int) -> Any:
        return json.loads(self.text(a, b))

    def readings(self, handles: Iterable[tuple[int, int]]) -> tuple[list[str], list[str]]:
        texts, pieces = [], []
        for a, b in handles:
            text, piece = self.text(a, b).split("\n", 1)
            texts.append(text)
            pieces.append(piece)
        return texts, pieces


class _ReadingGroup:
    """The readings of one sensor event: their times, the first 8 bytes of their ids (for
    ties), where they are kept, and the time text of the last one (the event's time)."""

    __slots__ = ("handles", "ids", "key", "last", "last_time", "times")

    def __init__(self, key: _GroupKey):
        self.key = key
        self.times = array("q")
        self.ids = array("Q")
        self.handles = array("q")
        self.last: tuple[int, int] = (-1, -1)
        self.last_time = ""

    def add(self, envelope: Envelope, handle: tuple[int, int]) -> None:
        moment = (envelope.time_us, int.from_bytes(envelope.id_bytes[:8], "big"))
        self.times.append(moment[0])
        self.ids.append(moment[1])
        self.handles.extend(handle)
        if moment > self.last:
            self.last, self.last_time = moment, envelope.time

    def ordered_handles(self) -> list[tuple[int, int]]:
        """Where the readings are kept, ordered by (time, id)."""
        order = sorted(range(len(self.times)), key=lambda i: (self.times[i], self.ids[i]))
        return [(self.handles[2 * i], self.handles[2 * i + 1]) for i in order]


_SENSOR_PLACEHOLDER = '"sensorElementList":[]'


class EventCollector:
    """Ledger events in, EPCIS events (readings grouped) out in time order."""

    def __init__(
        self, mapper: EventMapper, reading_window_s: int, keeper: MemoryKeeper | SpillKeeper
    ):
        if reading_window_s <= 0:
            raise ValueError("reading_window_s must be positive")
        self.mapper = mapper
        self.window_us = reading_window_s * 1_000_000
        self.keeper = keeper
        self.prehasher = Prehasher(context())
        self.references = MasterDataReferences()
        # One slot per finished event or reading group, in input order: its sort time, and
        # either a kept event (a, b) or a group (-1, group index).
        self.times = array("q")
        self.slots = array("q")
        self.groups: list[_ReadingGroup] = []
        self.group_of: dict[_GroupKey, int] = {}

    def add(self, item: LedgerEvent) -> None:
        envelope = item.envelope
        if envelope.kind == "reading":
            key = (envelope.signer, tuple(sorted(item.lots)), envelope.time_us // self.window_us)
            index = self.group_of.get(key)
            if index is None:
                index = self.group_of[key] = len(self.groups)
                self.groups.append(_ReadingGroup(key))
                self.times.append(envelope.time_us)
                self.slots.extend((-1, index))
                self.references.add_reading(envelope.signer, key[1])
            element = sensor_element(envelope)
            piece = self.prehasher.sensor_piece(element)
            self.groups[index].add(envelope, self.keeper.put_reading(element, piece))
            return
        if envelope.kind == IMPORTED:
            event = envelope.data["event"]  # verbatim: the partner's event and eventID
        else:
            mapped = self.mapper.event(item)
            if mapped is None:
                return
            event = with_event_id(mapped, self.prehasher)
        self.references.add(event)
        self.times.append(envelope.time_us)
        self.slots.extend(self.keeper.put(event))

    def _ordered(self) -> Iterator[tuple[int, int]]:
        for slot in range(len(self.times)):  # a group sorts by the time of its last reading
            if self.slots[2 * slot] == -1:
                self.times[slot] = self.groups[self.slots[2 * slot + 1]].last[0]
        for slot in sorted(range(len(self.times)), key=self.times.__getitem__):
            yield self.slots[2 * slot], self.slots[2 * slot + 1]

    def _group(self, index: int) -> tuple[dict[str, Any], list[Any]]:
        """A group's event with its eventID but an empty sensorElementList, and its
        sensorElements (objects or JSON text, as kept) in order."""
        group = self.groups[index]
        elements, pieces = self.keeper.readings(group.ordered_handles())
        device, lots, _ = group.key
        shell = sensor_event(device, lots, [], group.last_time)
        event_id = self.prehasher.event_hash(shell, sensor_pieces=pieces)
        return {"type": shell.pop("type"), "eventID": event_id, **shell}, elements

    def finished(self) -> Iterator[dict[str, Any]]:
        """The events as objects, in time order."""
        for a, b in self._ordered():
            if a != -1:
                yield self.keeper.get(a, b)
                continue
            event, elements = self._group(b)
            event["sensorElementList"] = elements
            yield event

    def finished_text(self) -> Iterator[str]:
        """The events as JSON text, in time order."""
        for a, b in self._ordered():
            if a != -1:
                yield self.keeper.text(a, b)
                continue
            event, elements = self._group(b)
            texts = [e if isinstance(e, str) else dumps(e) for e in elements]
            yield dumps(event).replace(
                _SENSOR_PLACEHOLDER, '"sensorElementList":[' + ",".join(texts) + "]", 1
            )
