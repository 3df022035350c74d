"""The rules service's test world: a ledger file with a rules identity and a
vaccine lot whose probe saw an excursion, and a rules service over it with the
example rules (shared by the rules-service and signed-notice tests)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core import gs1
from provenance.domain.rules import parse_rules
from provenance.services.notifier import Cursor
from provenance.services.rules import RulesService
from support.broker import Collector
from support.world import GTIN, HOUR, LOT, T0, World, at

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE_FILE = ROOT / "rules.example.toml"
EXAMPLE = parse_rules(EXAMPLE_FILE.read_bytes(), str(EXAMPLE_FILE))
VAX = gs1.lot_uri(GTIN, "VAX1")
ALERTS = "provenance/v1/alerts/#"  # every alert notice
WAIT = 30.0  # every wait has this deadline; a healthy run needs a fraction of it


def vaccine_lot(directory: Path) -> World:
    """A ledger file with a rules identity and lot VAX1 (a vaccine), the probe
    on it from 0.5 h; no readings yet."""
    directory.mkdir()
    world = World.create(directory)
    world.keys["rules"] = Ed25519PrivateKey.generate()
    world.ok(
        "registrar",
        "enrol",
        None,
        {"subject": world.did("rules"), "type": "rules", "name": "rules"},
    )
    world.ok(
        "farm",
        "commission",
        [VAX],
        {"gtin": GTIN, "lot": "VAX1", "product": "Vaccine", "category": "vaccine"},
        time=at(0),
    )
    world.ok("farm", "attach", [VAX], {"device": world.did("probe")}, time=at(0.5))
    world.ok("farm", "detach", [LOT], {"device": world.did("probe")}, time=at(0.75))
    return world


def vaccine_world(directory: Path) -> World:
    """`vaccine_lot` whose probe read 5 °C, then 12 °C from 2 h to 5 h, then
    5 °C until 8 h."""
    world = vaccine_lot(directory)
    readings(world, VAX, (0.5, 2, 5.0), (2, 5, 12.0), (5, 8, 5.0))
    world.now = T0 + 8 * HOUR
    return world


def readings(world: World, lot: str, *spans: tuple[float, float, float]) -> None:
    envelopes = []
    for start, end, temperature in spans:
        hour = start
        while hour < end - 1e-9:
            envelopes.append(world.reading(hour, temperature, lots=[lot]))
            hour += 0.25
    assert all(r.status == "accepted" for r in world.ledger.append(envelopes))


def service(world: World, tmp: Path, **kwargs) -> RulesService:
    kwargs.setdefault("publish", Collector())
    return RulesService(
        world.ledger,
        world.keys["rules"],
        kwargs.pop("rules", EXAMPLE),
        Cursor(tmp / "cursor"),
        scan_cursor=Cursor(tmp / "cursor.scans"),
        clock=lambda: world.now,
        **kwargs,
    )
