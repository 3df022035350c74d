"""Fleet simulator: realistic cold-chain journeys through the real gateway code.

Each site of a scenario (farm → packer → truck → distribution centre → store,
or vaccine plant → national store → regional cold room → clinic fridge) runs
one or more simulated gateways. A simulated gateway is the real thing minus
its hardware: the gateway's `Outbox`, `Intake` (signs keyless sensor readings
with the gateway key and dock events with the site party's key), `DockSession`
(the dock-scan grammar, fed with the scans a person would make) and `Uplink`
(MQTT, store-and-forward). Only the sensors and the scanner are simulated.

Time is compressed: a run of D wall seconds at ``accelerate`` A covers the
D·A seconds that end *now*, so every event is dated in the past and a journey
of days fits in a minute. Journeys move lots stage by stage; at each hand-off
the holder detaches its gateway and ships, and once the shipment has left its
outbox the next holder receives and attaches its own gateway. Excursions
(a stage whose temperature drifts out of band for a while) and offline
stretches (a gateway whose uplink is down while its outbox fills) are drawn at
random with the given probabilities.

The ledger-side set-up (enrolling parties and gateways) is the caller's:
`provenance simulate` does it through the registrar before calling `Fleet.run`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices.drivers import Measurement
from devices.outbox import Outbox
from devices.uplink import Uplink
from gateway.dock import DockSession
from gateway.intake import GatewaySigner, Intake
from gateway.service import seq_counter
from provenance.core import gs1
from provenance.core.errors import ProvenanceError
from provenance.core.signing import did_of
from provenance.core.timefmt import now_micros
from provenance.core.topics import events_topic

log = logging.getLogger(__name__)

TICK_S = 0.05  # reading generation granularity (wall clock)
HANDOFF_WAIT_S = 30.0  # how long a receiver waits for the shipper's outbox to drain
DRAIN_S = 60.0  # how long the end of a run waits for every outbox to drain


@dataclass(frozen=True)
class Stage:
    site: str  # short site id, used in gateway ids
    party: str  # the holding party's name
    role: str
    place: str  # what a person would call it
    band: tuple[float, float]  # normal temperature range, °C


@dataclass(frozen=True)
class Scenario:
    name: str
    product: str
    gtin: str
    category: str
    profile: str
    stages: tuple[Stage, ...]
    # The GS1 company prefix of `gtin` (after its indicator digit): the producer is
    # enrolled with it, else the ledger refuses its commissions (docs/protocol.md §3).
    company_prefix: str = "9506000"


def _gtin(body: str) -> str:
    return body + gs1.check_digit(body)


SCENARIOS: dict[str, Scenario] = {
    "produce": Scenario(
        "produce",
        "Curly kale 250 g",
        _gtin("0950600013435"),
        "food",
        "chilled",
        (
            Stage("farm", "Green Valley Farm", "producer", "farm cold room", (1.0, 4.0)),
            Stage("packer", "Sunrise Packers", "processor", "packhouse", (1.0, 4.0)),
            Stage("truck", "Cold Express", "carrier", "reefer truck", (0.5, 4.5)),
            Stage("dc", "Metro Distribution Centre", "distributor", "chilled dock", (1.0, 4.0)),
            Stage("store", "FreshMart Riverside", "retailer", "store chiller", (1.5, 4.5)),
        ),
    ),
    "vaccine": Scenario(
        "vaccine",
        "MMR vaccine, 10-dose vial",
        _gtin("0950600013436"),
        "vaccine",
        "vaccine",
        (
            Stage("plant", "BioPharm Plant", "producer", "plant cold store", (3.0, 6.0)),
            Stage(
                "national", "National Vaccine Store", "distributor", "walk-in cold room", (3.0, 6.5)
            ),
            Stage("truck", "MedCold Logistics", "carrier", "refrigerated van", (2.5, 7.0)),
            Stage("regional", "Regional Cold Room", "distributor", "cold room", (3.0, 6.5)),
            Stage("clinic", "Riverside Clinic", "clinic", "vaccine fridge", (3.0, 6.0)),
        ),
    ),
}


@dataclass(frozen=True)
class GatewayPlan:
    gateway_id: str
    stage: int
    key: Ed25519PrivateKey
    sensors: tuple[str, ...]


@dataclass(frozen=True)
class FleetPlan:
    """Who takes part: made (and enrolled in the ledger) by the caller."""

    scenario: Scenario
    party_keys: dict[str, Ed25519PrivateKey]  # party name -> key
    gateways: tuple[GatewayPlan, ...]
    lots: tuple[str, ...]  # lot codes, one journey each


def plan(
    scenario: Scenario,
    *,
    gateways: int,
    devices: int,
    party_key: Callable[[str], Ed25519PrivateKey],
    gateway_key: Callable[[str], Ed25519PrivateKey],
    run_id: str,
) -> FleetPlan:
    """Spread *gateways* over the stages (at least one each) and *devices*
    keyless sensors over the gateways; one journey per first-stage gateway."""
    stages = len(scenario.stages)
    count = max(gateways, stages)
    gateway_plans = []
    for index in range(count):
        stage = index % stages
        site = scenario.stages[stage].site
        gateway_id = f"{scenario.name}-{site}-{index // stages + 1}"
        per = max(1, devices // count + (1 if index < devices % count else 0))
        sensors = tuple(f"{gateway_id}-probe{j + 1}" for j in range(per))
        gateway_plans.append(GatewayPlan(gateway_id, stage, gateway_key(gateway_id), sensors))
    journeys = sum(1 for g in gateway_plans if g.stage == 0)
    lots = tuple(f"{run_id}-{j + 1}" for j in range(journeys))
    parties = {stage.party: party_key(stage.party) for stage in scenario.stages}
    return FleetPlan(scenario, parties, tuple(gateway_plans), lots)


@dataclass
class FleetStatus:
    simulated_until_us: int = 0
    readings: int = 0
    dock_events: int = 0
    excursion_readings: int = 0
    queued: int = 0
    delivered: int = 0
    rejects: int = 0
    offline_gateways: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"readings {self.readings:,} (out of band {self.excursion_readings:,}), "
            f"dock events {self.dock_events}, queued {self.queued:,}, "
            f"delivered {self.delivered:,}, rejected {self.rejects}, "
            f"offline gateways {self.offline_gateways}"
        )


class _Gateway:
    """One simulated gateway: the real outbox, intake, dock session and uplink."""

    def __init__(
        self,
        spec: GatewayPlan,
        stage: Stage,
        site_key: Ed25519PrivateKey,
        parties: dict[str, str],
        state: Path,
        broker_url: str,
        clock: Callable[[], int],
        on_reject: Callable[[str, dict[str, Any]], None],
    ):
        self.spec = spec
        self.stage = stage
        directory = state / spec.gateway_id
        directory.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(directory / "outbox.db")
        self.topic = events_topic("gateways", spec.gateway_id)
        # Seqs start at the wall clock (gateway.service.seq_counter): a new state
        # folder with the same keys never reuses an earlier run's seqs.
        gateway_seq = seq_counter(directory, did_of(spec.key), now_micros)
        site_seq = seq_counter(directory, did_of(site_key), now_micros)
        self.intake = Intake(
            self.outbox, self.topic, GatewaySigner(spec.key, gateway_seq), clock=clock
        )
        self.site = GatewaySigner(site_key, site_seq)
        self.dock = DockSession(
            self._emit, parties=parties, gateway_did=did_of(spec.key), name=spec.gateway_id
        )
        self.broker_url = broker_url
        self.on_reject = on_reject
        self.uplink: Uplink | None = None
        self._delivered_before = 0
        self.lots: list[str] = []  # lots this gateway is attached to now
        self.offline_until_us: int | None = None
        self.lock = threading.Lock()

    def _emit(self, kind: str, lots: list[str], data: dict[str, Any]) -> Any:
        return self.intake.signed(self.site, kind, lots, data)

    def connect(self) -> None:
        self.uplink = Uplink(
            self.outbox, self.broker_url, f"sim-{self.spec.gateway_id}", on_reject=self.on_reject
        ).start()

    @property
    def delivered(self) -> int:
        """Outbox entries the broker acknowledged, over every connection."""
        return self._delivered_before + (self.uplink.acked if self.uplink else 0)

    def disconnect(self, timeout: float = 0.5) -> None:
        if self.uplink is not None:
            self.uplink.stop(timeout=timeout)
            self._delivered_before += self.uplink.acked
            self.uplink = None

    def scan(self, *scans: str) -> Any:
        """Feed the dock scanner; returns the signed envelope of the command."""
        result = None
        for line in scans:
            result = self.dock.handle(line)
            if not result.ok:
                raise ProvenanceError(
                    f"{self.spec.gateway_id} dock refused {line!r}: {result.message}"
                )
        return None if result is None else result.envelope

    def close(self) -> None:
        self.disconnect()
        self.outbox.close()
        self.intake.gateway.counter.close()
        self.site.counter.close()


@dataclass
class _Journey:
    lot_uri: str
    product: str
    gateways: list[_Gateway]  # the gateway holding the lot at each stage
    stage: int = -1  # -1: not commissioned yet
    excursion: tuple[int, int] | None = None  # simulated µs window of the current stage


class Fleet:
    """Runs a `FleetPlan` against a broker for a while; see the module docstring."""

    def __init__(
        self,
        plan: FleetPlan,
        broker_url: str,
        state: Path,
        *,
        rate: float,
        duration: float,
        accelerate: float = 3600.0,
        excursions: float = 0.1,
        offline: float = 0.1,
        seed: int | None = None,
        wall: Callable[[], float] = time.monotonic,
    ):
        if rate <= 0 or duration <= 0 or accelerate <= 0:
            raise ProvenanceError("--rate, --duration and --accelerate must be positive")
        for name, probability in (("--excursions", excursions), ("--offline", offline)):
            if not 0 <= probability <= 1:
                raise ProvenanceError(f"{name} is a probability from 0 to 1, got {probability}")
        self.plan = plan
        self.rate = rate
        self.duration = duration
        self.accelerate = accelerate
        self.excursions = excursions
        self.offline = offline
        self.random = random.Random(seed)
        self.wall = wall
        self.status = FleetStatus()
        self._status_lock = threading.Lock()
        self._wall_start = wall()
        span_us = int(duration * accelerate * 1_000_000)
        self.sim_start_us = now_micros() - span_us
        self.span_us = span_us
        parties = {name: did_of(key) for name, key in plan.party_keys.items()}
        stages = plan.scenario.stages
        self.gateways = [
            _Gateway(
                spec,
                stages[spec.stage],
                plan.party_keys[stages[spec.stage].party],
                parties,
                state,
                broker_url,
                self.sim_now,
                self._on_reject,
            )
            for spec in plan.gateways
        ]
        by_stage: list[list[_Gateway]] = [[] for _ in stages]
        for gateway in self.gateways:
            by_stage[gateway.spec.stage].append(gateway)
        self.journeys = [
            _Journey(
                gs1.lot_uri(plan.scenario.gtin, lot),
                plan.scenario.product,
                [by_stage[s][j % len(by_stage[s])] for s in range(len(stages))],
            )
            for j, lot in enumerate(plan.lots)
        ]

    # --- time

    def sim_now(self) -> int:
        elapsed = self.wall() - self._wall_start
        return self.sim_start_us + int(min(elapsed, self.duration) * self.accelerate * 1_000_000)

    def _stage_start_us(self, stage: int) -> int:
        """When a journey enters *stage* (stage 0 just after the start)."""
        stages = len(self.plan.scenario.stages)
        return self.sim_start_us + int(self.span_us * (0.02 + 0.96 * stage / stages))

    # --- callbacks

    def _on_reject(self, topic: str, notice: dict[str, Any]) -> None:
        reason = str(notice.get("reason", "?"))
        with self._status_lock:
            self.status.rejects += 1
            self.status.reject_reasons[reason] = self.status.reject_reasons.get(reason, 0) + 1
        log.warning(
            "ledger rejected an event from %s: %s: %s", topic, reason, notice.get("message")
        )

    # --- the run

    def run(
        self,
        stop: threading.Event,
        progress: Callable[[FleetStatus], None] | None = None,
        progress_every_s: float = 2.0,
    ) -> FleetStatus:
        """Simulate until *duration* has passed or *stop* is set; then deliver
        everything queued (bounded wait) and return the final status."""
        for gateway in self.gateways:
            gateway.connect()
        next_progress = self.wall() + progress_every_s
        budget = 0.0
        last = self.wall()
        try:
            while not stop.is_set() and self.wall() - self._wall_start < self.duration:
                now = self.sim_now()
                self._advance_journeys(now)
                self._toggle_offline(now)
                current = self.wall()
                budget = min(budget + (current - last) * self.rate, self.rate)  # ≤ 1 s burst
                last = current
                whole = int(budget)
                if whole:
                    # Dated after any hand-over above: a reading never predates its attach.
                    self._readings(whole, self.sim_now())
                    budget -= whole
                if current >= next_progress and progress:
                    progress(self.snapshot())
                    next_progress = current + progress_every_s
                stop.wait(TICK_S)
            self._finish()
        finally:
            drained = self._drain(stop)
            final = self.snapshot()
            if progress:
                progress(final)
            for gateway in self.gateways:
                gateway.close()
        if not drained:
            log.warning(
                "some envelopes were still queued when the run ended; they stay in the "
                "gateways' outboxes for the next run"
            )
        return final

    def snapshot(self) -> FleetStatus:
        with self._status_lock:
            status = FleetStatus(
                **{**self.status.__dict__, "reject_reasons": dict(self.status.reject_reasons)}
            )
        status.simulated_until_us = self.sim_now()
        status.queued = sum(len(g.outbox) for g in self.gateways)
        status.delivered = sum(g.delivered for g in self.gateways)
        status.offline_gateways = sum(1 for g in self.gateways if g.uplink is None)
        return status

    def _advance_journeys(self, now: int) -> None:
        stages = len(self.plan.scenario.stages)
        for journey in self.journeys:
            while journey.stage + 1 < stages and now >= self._stage_start_us(journey.stage + 1):
                if not self._hand_over(journey):
                    break  # the shipper is offline: try again next tick

    def _hand_over(self, journey: _Journey) -> bool:
        """Move *journey* to its next stage through the dock scanners."""
        nxt = journey.stage + 1
        receiver = journey.gateways[nxt]
        scenario = self.plan.scenario
        if journey.stage < 0:
            data = {
                "gtin": scenario.gtin,
                "lot": gs1.parse_lot_uri(journey.lot_uri)[1],
                "product": journey.product,
                "category": scenario.category,
                "profile": scenario.profile,
                "origin": {"name": receiver.stage.party},
            }
            receiver.intake.signed(receiver.site, "commission", [journey.lot_uri], data)
            receiver.scan(journey.lot_uri, "ATTACH GATEWAY")
            self._count_dock(2)
        else:
            sender = journey.gateways[journey.stage]
            if sender.uplink is None:
                return False
            sender.scan(journey.lot_uri, "DETACH GATEWAY")
            shipment = sender.scan(journey.lot_uri, f"SHIP PARTY:{receiver.stage.party}")
            self._count_dock(2)
            # The receiver can only receive a shipment the ledger has: let the
            # shipper's outbox deliver it first (bounded; a real dock waits too).
            assert sender.uplink is not None
            if not sender.uplink.wait_drained(HANDOFF_WAIT_S):
                log.warning(
                    "%s: shipment still queued after %ss", sender.spec.gateway_id, HANDOFF_WAIT_S
                )
            with sender.lock:
                if journey.lot_uri in sender.lots:
                    sender.lots.remove(journey.lot_uri)
            receiver.scan(journey.lot_uri, f"RECEIVE {shipment.event_id}")
            receiver.scan(journey.lot_uri, "ATTACH GATEWAY")
            self._count_dock(2)
        with receiver.lock:
            receiver.lots.append(journey.lot_uri)
        journey.stage = nxt
        journey.excursion = None
        if self.random.random() < self.excursions:
            start = self._stage_start_us(nxt)
            length = (
                (self._stage_start_us(nxt + 1) - start)
                if nxt + 1 < len(scenario.stages)
                else self.span_us // 10
            )
            begin = start + int(length * self.random.uniform(0.2, 0.6))
            journey.excursion = (begin, begin + int(length * self.random.uniform(0.1, 0.3)))
        return True

    def _count_dock(self, count: int) -> None:
        with self._status_lock:
            self.status.dock_events += count

    def _toggle_offline(self, now: int) -> None:
        """Gateways go offline for a stretch (their outbox fills) and come back."""
        for gateway in self.gateways:
            if gateway.offline_until_us is not None:
                if now >= gateway.offline_until_us:
                    gateway.offline_until_us = None
                    gateway.connect()
                    log.info(
                        "%s is back online with %d queued",
                        gateway.spec.gateway_id,
                        len(gateway.outbox),
                    )
                continue
            # A chance per simulated hour, scaled so that P is per stage.
            stage_us = self.span_us / len(self.plan.scenario.stages)
            chance = self.offline * (self.accelerate * TICK_S * 1_000_000) / stage_us
            if gateway.lots and self.random.random() < chance:
                gateway.offline_until_us = now + int(stage_us * self.random.uniform(0.1, 0.4))
                gateway.disconnect(timeout=0.1)
                log.info("%s goes offline (no network) for a while", gateway.spec.gateway_id)

    def _readings(self, count: int, now: int) -> None:
        active = [g for g in self.gateways if g.lots]
        if not active:
            return
        sensors = [(g, s) for g in active for s in g.spec.sensors]
        out_of_band = 0
        waiting: dict[int, list[Measurement]] = {}
        for index in range(count):
            gateway, sensor = sensors[(self.status.readings + index) % len(sensors)]
            low, high = gateway.stage.band
            temperature = self.random.uniform(low, high)
            if self._in_excursion(gateway, now):
                temperature = high + self.random.uniform(2.0, 6.0)
                out_of_band += 1
            data = {
                "temperature_c": round(temperature, 2),
                "humidity_pct": round(self.random.uniform(80, 95), 1),
            }
            waiting.setdefault(id(gateway), []).append(Measurement(sensor, data, now))
        for gateway in active:
            measurements = waiting.get(id(gateway))
            if measurements:
                gateway.intake.readings(measurements, source="simulator")
        with self._status_lock:
            self.status.readings += count
            self.status.excursion_readings += out_of_band

    def _in_excursion(self, gateway: _Gateway, now: int) -> bool:
        for journey in self.journeys:
            if journey.excursion and journey.gateways[journey.stage] is gateway:
                begin, end = journey.excursion
                if begin <= now < end:
                    return True
        return False

    def _finish(self) -> None:
        """Bring every journey to its last stage, then bring every gateway online."""
        stages = len(self.plan.scenario.stages)
        for gateway in self.gateways:
            if gateway.uplink is None:
                gateway.offline_until_us = None
                gateway.connect()
        for journey in self.journeys:
            while journey.stage + 1 < stages:
                self._hand_over(journey)

    def _drain(self, stop: threading.Event) -> bool:
        deadline = self.wall() + DRAIN_S
        for gateway in self.gateways:
            if gateway.uplink is None:
                gateway.connect()
        for gateway in self.gateways:
            remaining = max(0.0, deadline - self.wall())
            if stop.is_set():
                remaining = min(remaining, 5.0)
            assert gateway.uplink is not None
            if not gateway.uplink.wait_drained(remaining):
                return False
        return True


def lot_uris(plan_: FleetPlan) -> Sequence[str]:
    """The lot URIs of a plan's journeys (for callers that report on them)."""
    return [gs1.lot_uri(plan_.scenario.gtin, lot) for lot in plan_.lots]
