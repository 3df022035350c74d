"""The rules service: follows the ledger, evaluates the rules (`provenance.domain.rules`)
on each new accepted event and, every timer round, the time-based ones, and
appends the resulting holds and flags, signed with the rules key, through
`Ledger.append` (docs/rules.md).

One round:

1. read, in one snapshot, the events from the cursor (a log index kept in a
   file, like the recall notifier's) to the log's end: which lots had new
   readings, attachments or detachments, and which holds, flags and releases
   were logged;
2. evaluate each such lot once, with its facts as they are now (its loggers and
   readings, the holds and flags in force);
3. on a timer round also: every lot with a logger attached now (silence), and
   every lot whose serials were scanned lately (the accounts database);
4. sign and append the actions (a refusal because another writer got there
   first, `conflict`, is expected and harmless);
5. publish, retained, the current alert notice of every lot a notifying hold or
   flag, or a release, reached in the events read (step 1) — so an action is
   announced in the round after it was appended, and a crash before the PUBACKs
   means it is announced again;
6. move the cursor to where step 1 stopped.

A crash anywhere means the same events are looked at again; the rules are
idempotent against the ledger's state (a rule holds a lot once, raises a flag
once), so that costs nothing but time.

Also here, for the scan page and the regulator: `lot_holds`, `lot_flags`,
`active_holds` and `recent_flags` read holds and flags as records. This module
imports no MQTT code: the CLI passes the cursor (`provenance.services.notifier.Cursor`) and,
with a broker, the publisher (`provenance.services.notifier.RetainedPublisher`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.errors import ProvenanceError
from provenance.core.signing import did_of, sign_alert_notice
from provenance.core.timefmt import format_time, now_micros, parse_time
from provenance.domain import rules as rulebook
from provenance.domain.rule_decisions import alert_topic, build_notice, notice_bytes
from provenance.domain.rule_facts import Logger, LotFacts, Reading
from provenance.domain.rules import Action, RuleSet
from provenance.ledger.append import Appended, Ledger
from provenance.ledger.decisions import _Cache, active_holds, lot_flags, lot_holds, recent_flags
from provenance.ledger.signer import Signer, Unsigned
from provenance.services.serial_scans import (
    ScannedLot,
    SightingSource,
    look_back_us,
    scanned_lots,
    serial_rules,
)
from provenance.store.errors import DATABASE_ERRORS

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0  # how often the ledger is looked at for new events
TIMER_INTERVAL_S = 60.0  # how often the time-based rules run
MAX_ROUNDS_ONCE = 4  # --once: rounds until nothing is left to append or announce
MAX_CACHED_READINGS = 500_000  # readings kept in memory between rounds (~60 MB)
HOUR_US = 3_600_000_000
WAKE_KINDS = ("reading", "attach", "detach")
NOTICE_KINDS = ("hold", "release", "flag")

Notice = tuple[str, bytes]  # (topic, payload)


class ScanSource(Protocol):
    """Serial scans from the hour of *since_us* on: (lot URI, serial, hour, place, count)."""

    def __call__(self, since_us: int) -> list[tuple[str, str, str, str, int]]: ...


# --- the service


class CursorFile(Protocol):
    """Where a position is kept: `provenance.services.notifier.Cursor` (a small file)."""

    def load(self) -> int: ...

    def save(self, value: int) -> None: ...


def default_cursor_path(db_path: str | os.PathLike[str]) -> Path:
    """`DB.rules-cursor`: the next log index to look at (the scan position is kept
    beside it, in `DB.rules-cursor.scans`)."""
    return Path(str(db_path) + ".rules-cursor")


@dataclass
class RoundResult:
    evaluated: int = 0  # lots evaluated
    appended: list[Appended] = field(default_factory=list)  # accepted actions
    refused: list[Appended] = field(default_factory=list)
    notices: int = 0  # alert notices acknowledged
    acknowledged: bool = True  # False: the broker did not acknowledge; the cursor stayed


class RulesService:
    """Evaluates *rules* against the ledger behind *ledger* and appends the actions
    signed with *rules_key*. *scans* gives serial scans (the accounts database);
    *publish(notices)* returns True once the broker acknowledged them all."""

    def __init__(
        self,
        ledger: Ledger,
        rules_key: Ed25519PrivateKey,
        rules: RuleSet,
        cursor: CursorFile,
        *,
        scan_cursor: CursorFile | None = None,
        scans: ScanSource | None = None,
        sightings: SightingSource | None = None,
        publish: Callable[[Sequence[Notice]], bool] | None = None,
        clock: Callable[[], int] = now_micros,
    ):
        self.ledger = ledger
        self.store = ledger.store
        self.rules = rules
        self.rules_key = rules_key
        self.did = did_of(rules_key)
        self.cursor = cursor
        self.scan_cursor = scan_cursor
        self.scans = scans if serial_rules(rules) else None
        self.sightings = sightings if serial_rules(rules) else None
        self.publish = publish
        self.clock = clock
        self._last_seen: dict[tuple[int, int], int] = {}  # (device, lot) -> latest reading µs
        # lot -> (next chain position to read, [(device id, reading)]), least recent first
        self._readings: OrderedDict[int, tuple[int, list[tuple[int, Reading]]]] = OrderedDict()
        self._cached = 0  # readings held in self._readings
        self._known: set[int] = set()  # lots whose loggers' latest readings are in _last_seen
        self._devices: dict[int, tuple[str, str]] = {}  # device id -> (did, name)
        self.appended = 0
        self.published = 0
        identity = self.store.identity_by_did(self.did)
        if identity is None or identity.type != "rules":
            raise ProvenanceError(
                f"the rules key {self.did} is not enrolled as the rules identity: run "
                "`provenance rules init`"
            )

    # --- one round

    def round(self, *, timer: bool = True) -> RoundResult:
        """Evaluate what is new (and, with *timer*, the time-based rules), append,
        announce, move the cursor."""
        result = RoundResult()
        now = self.clock()
        begin = self.cursor.load()
        store = self.store
        with store.snapshot():
            end = store.log_size()
            woken: dict[int, set[str]] = {}
            for _, kind, signer, when, lots in store.lot_events_since(begin, end, WAKE_KINDS):
                for lot_id in lots:
                    woken.setdefault(lot_id, set()).add(kind)
                    if kind == "reading" and lot_id in self._known:
                        self._seen(signer, lot_id, parse_time(when))
            announce = self._to_announce(begin, end)
            actions: list[Action] = []
            for lot_id in sorted(woken):
                facts = self._facts(lot_id, readings=True)
                if facts is not None:
                    result.evaluated += 1
                    actions += rulebook.evaluate(self.rules, facts, now, kinds=woken[lot_id])
            scan_mark = None
            if timer and self.rules.has_timer:
                timed, scan_mark = self._timer_facts(now)
                for facts in timed:
                    result.evaluated += 1
                    actions += rulebook.evaluate(self.rules, facts, now, timer=True)
            actions = rulebook.merge(actions)
            event_ids = store.event_ids([i for action in actions for i in action.events])
        if actions:
            self._append(actions, event_ids, now, result)
        if self.publish is not None and announce:
            notices = self.notices(announce)
            if notices and not self.publish(notices):
                result.acknowledged = False
                log.warning("rules: the broker did not acknowledge %d notices", len(notices))
                return result
            result.notices = len(notices)
            self.published += len(notices)
        self.cursor.save(end)
        if scan_mark is not None and self.scan_cursor is not None:
            self.scan_cursor.save(scan_mark)
        return result

    def run(
        self,
        stop: threading.Event,
        interval: float = POLL_INTERVAL_S,
        timer_interval: float = TIMER_INTERVAL_S,
    ) -> None:
        """Rounds until *stop* is set: every *interval* seconds when the database
        changed, and a timer round every *timer_interval* seconds."""
        seen_version = None
        next_timer = 0.0
        clock = time.monotonic
        behind = False
        while not stop.is_set():
            timer = clock() >= next_timer
            version = self.store.data_version()
            if timer or behind or version != seen_version:
                try:
                    outcome = self.round(timer=timer)
                    behind = not outcome.acknowledged or bool(outcome.appended)
                    seen_version = version
                    if timer:
                        next_timer = clock() + timer_interval
                except (OSError, *DATABASE_ERRORS, ProvenanceError) as exc:
                    log.warning("rules: round failed, will retry: %s", exc)
                    behind = True
            stop.wait(interval)

    def run_once(self) -> list[RoundResult]:
        """A timer round, then rounds until nothing is left to append or announce
        (an action appended is announced in the next round)."""
        results = [self.round(timer=True)]
        while len(results) < MAX_ROUNDS_ONCE and (
            results[-1].appended or not results[-1].acknowledged
        ):
            results.append(self.round(timer=False))
        return results

    # --- facts

    def _device(self, device_id: int) -> tuple[str, str]:
        if device_id not in self._devices:
            identity = self.store.identity_by_id(device_id)
            self._devices[device_id] = (
                (identity.did, identity.name) if identity else (f"device {device_id}", "?")
            )
        return self._devices[device_id]

    def _seen(self, device_id: int, lot_id: int, time_us: int) -> None:
        key = (device_id, lot_id)
        if time_us > self._last_seen.get(key, -1):
            self._last_seen[key] = time_us

    def _lot_readings(self, lot_id: int) -> list[tuple[int, Reading]]:
        """The lot's readings, read incrementally: a lot's chain only grows, so only
        the positions after those cached are read. The least recently used lots
        are forgotten beyond MAX_CACHED_READINGS."""
        position, items = self._readings.pop(lot_id, (0, []))
        rows = self.store.lot_readings(lot_id, position)
        for pos, index, device, when, temperature, sensor in rows:
            time_us = parse_time(when)
            self._seen(device, lot_id, time_us)
            items.append((device, Reading(time_us, temperature, index, sensor)))
            position = pos + 1
        self._cached += len(rows)
        self._readings[lot_id] = (position, items)
        self._known.add(lot_id)
        while self._cached > MAX_CACHED_READINGS and len(self._readings) > 1:
            _, (_, forgotten) = self._readings.popitem(last=False)
            self._cached -= len(forgotten)
        return items

    def _facts(
        self,
        lot_id: int,
        *,
        readings: bool,
        scanned: ScannedLot | None = None,
        attached_only: bool = False,
    ) -> LotFacts | None:
        store = self.store
        lot = store.lot_by_id(lot_id)
        if lot is None:
            return None
        by_device: dict[int, list[Reading]] = {}
        if readings or lot_id not in self._known:  # the timer needs only the latest reading
            for device, reading in self._lot_readings(lot_id):
                if readings:
                    by_device.setdefault(device, []).append(reading)
        loggers = []
        for device, from_us, until_us in store.lot_attachments(lot_id):
            if attached_only and until_us is not None:
                continue
            did, name = self._device(device)
            own = tuple(
                r
                for r in by_device.get(device, ())
                if from_us <= r.time_us and (until_us is None or r.time_us < until_us)
            )
            last = self._last_seen.get((device, lot_id)) if until_us is None else None
            loggers.append(Logger(did, name, from_us, until_us, own, last))
        holding, released = set(), {}
        for _event, rule, release in store.hold_rows(lot_id):
            if release is None:
                holding.add(rule)
                continue
            stored = store.event_at(release)
            if stored is not None:
                released[rule] = max(released.get(rule, 0), stored.envelope.time_us)
        flagged = frozenset((rule, key) for _, rule, _, key in store.flag_rows(lot_id))
        return LotFacts(
            lot.uri,
            lot.product,
            lot.category,
            lot.profile,
            tuple(loggers),
            tuple(scanned.scans) if scanned else (),
            frozenset(holding),
            released,
            flagged,
            tuple(scanned.sightings) if scanned else (),
            scanned.issued if scanned else None,
        )

    def _timer_facts(self, now: int) -> tuple[list[LotFacts], int | None]:
        """Facts of every lot with a logger attached now (readings summarised by
        the latest one) and of every lot whose serials were scanned lately; and
        the scan cursor to keep once this round is done."""
        store = self.store
        lots = {lot for lot, _, _ in store.open_attachments()}
        mark = None
        scanned: dict[int, ScannedLot] = {}
        if self.scans is not None and self.scan_cursor is not None:
            since = max(self.scan_cursor.load() - look_back_us(self.rules), 0)
            sighted = self.sightings(since) if self.sightings is not None else []
            scanned = scanned_lots(store, self.scans(since), sighted)
            mark = now - now % HOUR_US  # the current hour is read again next time
        facts = []
        for lot_id in sorted(lots | set(scanned)):
            item = self._facts(
                lot_id, readings=False, scanned=scanned.get(lot_id), attached_only=True
            )
            if item is not None:
                facts.append(item)
        return facts, mark

    # --- acting

    def _append(
        self, actions: Sequence[Action], event_ids: Mapping[int, str], now: int, result: RoundResult
    ) -> None:
        when = format_time(now)
        events = [
            Unsigned(action.kind, action.data(event_ids), [action.lot], when) for action in actions
        ]
        outcomes = Signer(self.ledger, self.rules_key).sign_and_append(events, source="rules")
        for action, outcome in zip(actions, outcomes, strict=True):
            if outcome.status == "accepted":
                result.appended.append(outcome)
                self.appended += 1
                log.info(
                    "rules: %s %s by rule %s: %s",
                    action.kind,
                    action.lot,
                    action.rule,
                    action.reason,
                )
            elif outcome.status == "rejected":
                result.refused.append(outcome)
                level = logging.INFO if outcome.reason == "conflict" else logging.WARNING
                log.log(
                    level,
                    "rules: %s of %s by rule %s refused: %s: %s",
                    action.kind,
                    action.lot,
                    action.rule,
                    outcome.reason,
                    outcome.message,
                )

    def _to_announce(self, begin: int, end: int) -> list[int]:
        """Lots to announce: those a release, or a hold or flag by a notifying
        rule, reached in [begin, end)."""
        if self.publish is None:
            return []
        lots: dict[int, None] = {}
        for index, kind, lot_ids in self.store.hold_events_since(begin):
            if index >= end:
                break
            if kind != "release":
                stored = self.store.event_at(index)
                rule = None if stored is None else self.rules.rule(stored.envelope.data["rule"])
                if rule is None or not rule.notify:
                    continue
            lots.update(dict.fromkeys(lot_ids))
        return list(lots)

    def notices(self, lot_ids: Iterable[int]) -> list[Notice]:
        """The current alert notice of each lot, signed with the rules key."""
        store = self.store
        notices = []
        with store.snapshot():
            origin = store.get_meta("origin") or ""
            size = store.log_size()
            cache = _Cache(store)
            for lot_id in lot_ids:
                lot = store.lot_by_id(lot_id)
                if lot is None:
                    continue
                holds = [cache.hold(lot.uri, e, r) for e, _, r in store.hold_rows(lot_id)]
                flags = [cache.flag(lot.uri, e) for e, *_ in store.flag_rows(lot_id)]
                notice = sign_alert_notice(
                    self.rules_key,
                    build_notice(lot.uri, lot.product, holds, flags, origin=origin, log_size=size),
                )
                notices.append((alert_topic(lot.uri), notice_bytes(notice)))
        return notices


def accounts_scans(directory: str | os.PathLike[str]) -> ScanSource:
    """Serial scans from the accounts database in *directory* (opened on first
    use; none while it does not exist yet)."""
    from provenance.store.accounts.accounts import Accounts
    from provenance.store.accounts.db import DATABASE_FILE
    from provenance.store.accounts.models import HashParams

    folder = Path(directory)
    opened: list[Any] = []

    def read(since_us: int) -> list[tuple[str, str, str, str, int]]:
        if not opened:
            if not (folder / DATABASE_FILE).exists():
                log.info("rules: no accounts database in %s yet: no serial scans", folder)
                return []
            # This reader never checks a password: the cheapest hasher spares the
            # 64 MiB argon2 run Accounts makes at start for constant-time refusals.
            opened.append(Accounts(folder, hash_params=HashParams(1, 8, 1)))
        return opened[0].serial_scans_since(since_us)

    return read


def release(
    ledger: Ledger,
    key: Ed25519PrivateKey,
    lot_uris: Sequence[str],
    reason: str,
    *,
    hold: str | None = None,
    clock: Callable[[], int] = now_micros,
) -> Appended:
    """Sign and append a `release` of *lot_uris* (every hold in force on them, or
    the hold with event id *hold*) with *key*: the rules key or a regulator's."""
    data: dict[str, Any] = {"reason": reason}
    if hold:
        data["hold"] = hold
    event = Unsigned("release", data, list(dict.fromkeys(lot_uris)))
    return Signer(ledger, key, clock=clock).sign_and_append([event], atomic=True, source="cli")[0]


__all__ = [
    "CursorFile",
    "RoundResult",
    "RulesService",
    "ScanSource",
    "accounts_scans",
    "active_holds",
    "default_cursor_path",
    "lot_flags",
    "lot_holds",
    "recent_flags",
    "release",
]
