"""A scanned lot's temperature, from the readings its history holds: each leg
with its loggers, its status and its chart buckets (`leg_records`), and the
verdict over the whole life (`life_of`: `domain.coldchain_life.judge_life`, as
the rules engine judges it). Each is kept in the lot's history until what it
depends on changes (docs/coldchain.md)."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provenance.domain import coldchain, coldchain_downsample, coldchain_life, coldchain_status
from provenance.domain.custody import Custody, Leg, Party
from provenance.ledger.lot_model import LegRecord

if TYPE_CHECKING:
    from provenance.ledger.lot_view import _History

CHART_BUCKETS = 160  # chart columns per leg: ~2 px each on a phone, peaks kept (M4)
MINUTE = 60_000_000


def leg_records(
    custody: Custody,
    history: _History,
    profile: coldchain.Profile | None,
    lookup: Callable[[str], Party],
    now: int,
) -> tuple[LegRecord, ...]:
    """Each leg with its readings judged and downsampled. A leg's record is kept
    until its readings, bounds or profile change (or, while a logger is still
    attached to the open leg, the minute): a new reading rebuilds one leg."""
    legs = custody.legs
    if not legs:
        return ()
    if not history.in_order:
        history.readings.sort()
        history.times[:] = [reading[0] for reading in history.readings]
        history.in_order = True
    times, last = history.times, len(legs) - 1
    kept: dict[Any, LegRecord] = {}
    records = []
    for position, leg in enumerate(legs):
        # A reading belongs to the last leg that started at or before it; readings
        # from before the first leg belong to the first.
        low = 0 if position == 0 else bisect.bisect_left(times, leg.start_us)
        high = (
            len(times)
            if position == last
            else bisect.bisect_left(times, legs[position + 1].start_us)
        )
        watched = position == last and leg.end_us is None and bool(custody.attached)
        key = (leg, high - low, profile, now // MINUTE if watched else None)
        record = history.leg_records.get(key)
        if record is None:
            record = _leg_record(
                leg, history.readings[low:high], profile, lookup, now if watched else None
            )
        kept[key] = record
        records.append(record)
    history.leg_records = kept
    return tuple(records)


def _leg_record(
    leg: Leg,
    readings: list[tuple[int, float, str, str | None]],
    profile: coldchain.Profile | None,
    lookup: Callable[[str], Party],
    now: int | None,
) -> LegRecord:
    loggers = tuple(lookup(did) for did in dict.fromkeys(reading[2] for reading in readings))
    status, buckets = None, ()
    if readings:
        data = coldchain.series([(reading[0], reading[1]) for reading in readings])
        if profile is not None:
            # now: the logger should still read
            status = coldchain_status.assess(data, profile, now)
        buckets = tuple(coldchain_downsample.downsample(data, CHART_BUCKETS, profile))
    return LegRecord(leg, loggers, len(readings), status, buckets)


# --- the cold chain over the whole life (docs/coldchain.md, "The whole life of a lot")


def life_of(
    history: _History,
    custody: Custody,
    legs: tuple[LegRecord, ...],
    profile: coldchain.Profile | None,
    lookup: Callable[[str], Party],
    now: int,
) -> coldchain_life.LifeVerdict | None:
    """The lot's whole life judged by `coldchain_life.judge_life`, as the rules engine
    judges it: one record per logger (per probe of a gateway), each read on its own.
    Kept until the readings, legs or profile change (or the minute, while a logger
    is attached to the open leg)."""
    if profile is None:
        return None
    attached = frozenset(party.did for party in custody.attached)
    still_going = bool(custody.legs) and custody.legs[-1].end_us is None
    live = attached if still_going else frozenset()
    key = (len(history.readings), custody.legs, profile, live, now // MINUTE if live else None)
    if history.life_key == key and history.life is not None:
        return history.life
    by_record: dict[tuple[str, str | None], list[tuple[int, float]]] = {}
    for time_us, temperature, signer, sensor in history.readings:
        by_record.setdefault((signer, sensor), []).append((time_us, temperature))
    records = []
    for (signer, sensor), readings in by_record.items():
        name = lookup(signer).name + (f" ({sensor})" if sensor else "")
        key_text = signer + (f"/{sensor}" if sensor else "")
        records.append(coldchain_life.Record(name, readings, key_text, signer in live))
    covers = [
        coldchain_life.LegCover(
            record.leg.holder.name,
            record.leg.start_us,
            record.leg.end_us,
            record.readings,
            record.leg.receiver.name if record.leg.receiver else None,
        )
        for record in legs
    ]
    history.life = coldchain_life.judge_life(records, profile, legs=covers, now_us=now)
    history.life_key = key
    return history.life
