"""A small supply chain for tests: a ledger with parties, a device and a lot.

world = World.create(tmp_path)        # file-backed (or World.create() in memory)
world.append("farm", "inspect", [world.lot], {"result": "pass"})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from provenance.core.envelope import Envelope
from provenance.core.signing import did_of, sign
from provenance.core.timefmt import format_time
from provenance.ledger.append import Appended, Ledger
from provenance.store.db import Store

GTIN = "09506000134352"
LOT = f"https://id.gs1.org/01/{GTIN}/10/LOT42"
T0 = 1_790_000_000_000_000  # 2026-09-21T…Z, microseconds; "now" is T0 + 30 days
HOUR = 3_600_000_000
PARTIES = {
    "farm": "producer",
    "packer": "processor",
    "carrier": "carrier",
    "dc": "distributor",
    "store": "retailer",
    "clinic": "clinic",
    "inspector": "inspector",
    "regulator": "regulator",
}
# The GS1 company prefixes the world's producer and processor commission under
# (matched after the GTIN-14's indicator digit): every GTIN the tests use.
PREFIXES = [
    "9506000",
    "9520123",
    "4012345",
    "0614141",
    "0416000",
    "0000002",
    "978034",
    "950123",
    "4054739",
    "999999",
]
COMMISSIONERS = ("producer", "processor")


def at(hours: float) -> str:
    """RFC 3339 text for T0 + hours."""
    return format_time(T0 + int(hours * HOUR))


@dataclass
class World:
    store: Store
    ledger: Ledger
    log_key: Ed25519PrivateKey
    registrar: Ed25519PrivateKey
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)
    lot: str = LOT
    now: int = T0 + 30 * 24 * HOUR

    @classmethod
    def create(
        cls, directory: Path | None = None, *, with_lot: bool = True, store: Store | None = None
    ) -> World:
        if store is None:
            store = Store(directory / "ledger.db") if directory else Store.memory()
        log_key, registrar = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        world = cls(store, None, log_key, registrar)  # type: ignore[arg-type]
        world.ledger = Ledger.initialise(
            store, log_key, registrar, "test.local/log", clock=lambda: world.now
        )
        world.keys["registrar"] = registrar
        world.seqs["registrar"] = 1
        for name, role in PARTIES.items():
            world.enrol_party(name, role)
        world.enrol_device("probe", owner="farm")
        if with_lot:
            world.ok(
                "farm",
                "commission",
                [LOT],
                {
                    "gtin": GTIN,
                    "lot": "LOT42",
                    "product": "Kale",
                    "category": "food",
                    "profile": "chilled",
                },
                time=at(0),
            )
            world.ok("farm", "attach", [LOT], {"device": world.did("probe")}, time=at(0.5))
        return world

    # --- identities

    def did(self, name: str) -> str:
        return did_of(self.keys[name])

    def public_key(self, name: str) -> bytes:
        return self.keys[name].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def log_public_key(self) -> bytes:
        return self.log_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def enrol_party(self, name: str, role: str, prefixes: list[str] | None = None) -> Appended:
        """Enrol a party; a producer or processor gets the world's GS1 company
        prefixes unless *prefixes* says otherwise ([] for none)."""
        self.keys[name] = Ed25519PrivateKey.generate()
        data = {"subject": self.did(name), "type": "party", "name": name, "role": role}
        if prefixes is None and role in COMMISSIONERS:
            prefixes = PREFIXES
        if prefixes:
            data["gs1_company_prefixes"] = list(prefixes)
        return self.ok("registrar", "enrol", None, data)

    def enrol_device(self, name: str, owner: str) -> Appended:
        self.keys[name] = Ed25519PrivateKey.generate()
        return self.ok(
            "registrar",
            "enrol",
            None,
            {"subject": self.did(name), "type": "device", "name": name, "owner": self.did(owner)},
        )

    # --- events

    def sign(
        self,
        who: str,
        kind: str,
        lots: list[str] | None,
        data: dict[str, Any],
        *,
        time: str | None = None,
        seq: int | None = None,
    ) -> Envelope:
        if seq is None:
            seq = self.seqs.get(who, 0)
            self.seqs[who] = seq + 1
        return sign(self.keys[who], kind=kind, seq=seq, time=time or at(1), data=data, lots=lots)

    def append(
        self, who: str, kind: str, lots: list[str] | None, data: dict[str, Any], **kwargs: Any
    ) -> Appended:
        return self.ledger.append([self.sign(who, kind, lots, data, **kwargs)])[0]

    def ok(self, *args: Any, **kwargs: Any) -> Appended:
        result = self.append(*args, **kwargs)
        assert result.status == "accepted", result
        return result

    def reading(
        self, hours: float, temperature: float, who: str = "probe", lots: list[str] | None = None
    ) -> Envelope:
        return self.sign(who, "reading", lots, {"temperature_c": temperature}, time=at(hours))

    def ship_and_receive(self, sender: str, receiver: str, lots: list[str], hours: float) -> None:
        shipped = self.ok(sender, "ship", lots, {"to": self.did(receiver)}, time=at(hours))
        self.ok(receiver, "receive", lots, {"shipment": shipped.event_id}, time=at(hours + 1))
