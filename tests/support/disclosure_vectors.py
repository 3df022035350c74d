"""The selective-disclosure test vectors (docs/protocol.md §14), and how they
are made: fixed keys and fixed salts, which production never uses (a salt is
128 fresh random bits per field). Reproduce the file with

    python -m tests.support.disclosure_vectors > tests/fixtures/disclosure/vectors.json

tests/test_disclosure.py checks the file against the code both ways."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.signing import sign, sign_private

SEED = bytes(range(32))  # the signer's Ed25519 seed: test only
CASES: list[dict[str, Any]] = [
    {
        "desc": "commission keeping the farm's coordinates and the supplier (ext) private",
        "kind": "commission",
        "seq": 7,
        "time": "2026-09-21T08:00:00Z",
        "batches": ["https://id.gs1.org/01/09506000134352/10/LOT42"],
        "data": {
            "gtin": "09506000134352",
            "lot": "LOT42",
            "product": "Kale",
            "category": "food",
            "origin": {"name": "Kinangop farm", "lat": -0.6, "lon": 36.5, "country": "KE"},
            "ext": {"supplier": "Wanjiru Seeds Ltd", "price": {"value": 1.8, "currency": "EUR"}},
        },
        "private": ["origin", "ext"],
        "salts": ["2GLC42sKQveCfGfryNRN9w", "eluV5Og3gSNII8EYnsxA_A"],
    },
    {
        "desc": "ship keeping the loading location private",
        "kind": "ship",
        "seq": 8,
        "time": "2026-09-21T09:30:00.5Z",
        "batches": ["https://id.gs1.org/01/09506000134352/10/LOT42"],
        "data": {
            "to": "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
            "location": {"name": "Naivasha pack-house 3", "lat": -0.72, "lon": 36.43},
        },
        "private": ["location"],
        "salts": ["6Ij7tM-a5iVPGboS5tmvVA"],
    },
]
V1_CASE: dict[str, Any] = {
    "desc": "a v1 envelope (nothing private): verifies exactly as before v2",
    "kind": "inspect",
    "seq": 9,
    "time": "2026-09-21T10:00:00Z",
    "batches": ["https://id.gs1.org/01/09506000134352/10/LOT42"],
    "data": {"result": "pass", "notes": "leaves crisp, 3 °C"},
}


def build() -> dict[str, Any]:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    vectors: dict[str, Any] = {
        "about": "docs/protocol.md §14; test-only fixed seed and salts; "
        "python -m tests.support.disclosure_vectors reproduces this file",
        "seed": SEED.hex(),
        "cases": [],
    }
    for case in CASES:
        salts = iter(case["salts"])
        disclosed = sign_private(
            key,
            kind=case["kind"],
            seq=case["seq"],
            time=case["time"],
            data=case["data"],
            lots=case["batches"],
            private=case["private"],
            salt=salts.__next__,
        )
        vectors["cases"].append(
            {
                **case,
                "disclosures": list(disclosed.disclosures),
                "envelope": disclosed.envelope.to_json(),
                "signing_bytes": disclosed.envelope.signing_bytes().decode("utf-8"),
                "event_id": disclosed.envelope.event_id,
            }
        )
    v1 = sign(
        key,
        kind=V1_CASE["kind"],
        seq=V1_CASE["seq"],
        time=V1_CASE["time"],
        data=V1_CASE["data"],
        lots=V1_CASE["batches"],
    )
    vectors["v1"] = {**V1_CASE, "envelope": v1.to_json(), "event_id": v1.event_id}
    return vectors


if __name__ == "__main__":
    print(json.dumps(build(), indent=2, ensure_ascii=False))
