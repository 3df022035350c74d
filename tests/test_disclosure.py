"""Selective disclosure, wire protocol v2 (docs/protocol.md §14): the vectors,
the rules of what may be private, and the ledger's checks when it appends."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.disclosure_vectors import build
from support.world import LOT, at

from provenance.core import disclosure
from provenance.core.disclosure import Disclosed, DisclosureError, conceal, open_disclosures
from provenance.core.envelope import Envelope, canonical_pair
from provenance.core.errors import ValidationError
from provenance.core.jcs import canonicalize
from provenance.core.signing import sign, sign_private
from provenance.store.disclosures import disclosures_of

VECTORS = json.loads(
    (Path(__file__).parent / "fixtures" / "disclosure" / "vectors.json").read_text("utf-8")
)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SHIP = {"to": "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"}
PLACE = {"name": "Naivasha pack-house 3", "lat": -0.72, "lon": 36.43}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- the vectors, checked independently of the code that made them


def test_the_vector_file_is_what_the_code_makes():
    assert build() == VECTORS


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["desc"])
def test_vector_digests_and_disclosures_by_hand(case):
    data = case["envelope"]["data"]
    assert case["envelope"]["v"] == 2
    assert data["_sd_alg"] == "sha-256"
    digests = []
    for encoded, name, salt in zip(
        case["disclosures"], case["private"], case["salts"], strict=True
    ):
        # RFC 9901 §4.2.1: base64url of the JSON array [salt, name, value]
        array = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        assert array == [salt, name, case["data"][name]]
        assert len(base64.urlsafe_b64decode(salt + "==")) >= 16  # ≥ 128-bit salt
        # RFC 9901 §4.2.3: the digest is over the ASCII of the encoded disclosure
        digests.append(_b64(hashlib.sha256(encoded.encode("ascii")).digest()))
        assert name not in data  # the value is not in the signed envelope
    assert data["_sd"] == sorted(digests)
    # the signature and the event id cover the digests, never the values
    unsigned = {k: v for k, v in case["envelope"].items() if k != "sig"}
    assert canonicalize(unsigned).decode() == case["signing_bytes"]
    assert hashlib.sha256(canonicalize(case["envelope"])).hexdigest() == case["event_id"]
    envelope = Envelope.from_json(case["envelope"])
    envelope.verify_signature()
    assert envelope.version == 2 and envelope.event_id == case["event_id"]
    signing, whole = canonical_pair(
        envelope.kind,
        envelope.signer,
        envelope.seq,
        envelope.time,
        envelope.lots,
        envelope.data_json,
        envelope.sig,
    )
    assert signing.decode() == case["signing_bytes"]
    assert hashlib.sha256(whole).hexdigest() == case["event_id"]
    opened = open_disclosures(
        envelope.kind, envelope.data, envelope.lots, case["disclosures"], complete=True
    )
    assert disclosure.disclose(envelope.data, opened) == case["data"]


def test_v1_envelopes_verify_exactly_as_before():
    v1 = VECTORS["v1"]
    envelope = Envelope.from_json(v1["envelope"])
    envelope.verify_signature()
    assert envelope.version == 1 and envelope.to_json()["v"] == 1
    assert envelope.signing_bytes().endswith(b',"v":1}')
    assert envelope.event_id == v1["event_id"]
    assert hashlib.sha256(canonicalize(v1["envelope"])).hexdigest() == v1["event_id"]


# --- what the envelope itself must say


def _v2(data_changes: dict, *, version: int = 2, kind: str = "ship") -> dict:
    disclosed = sign_private(
        KEY,
        kind=kind,
        seq=1,
        time=at(1),
        data={**SHIP, "location": PLACE},
        lots=[LOT],
        private=["location"],
    )
    raw = disclosed.envelope.to_json()
    raw["data"] = {**raw["data"], **data_changes}
    raw["v"] = version
    return raw


@pytest.mark.parametrize(
    ("changes", "version", "field", "rule"),
    [
        ({}, 1, "v", "must be 2"),
        ({"_sd": None}, 2, "data._sd", "must list 1 to"),
        ({"_sd_alg": "sha-512"}, 2, "data._sd_alg", "sha-256"),
        ({"_sd": ["not-a-digest"]}, 2, "data._sd[0]", "SHA-256 digest"),
        ({"_sd": ["A" * 43, "E" * 43, "I" * 43]}, 2, "data._sd", "must list 1 to 2"),
        ({"_sd": ["A" * 43, "A" * 43]}, 2, "data._sd", "distinct"),
        ({"_sd": ["E" * 43, "A" * 43]}, 2, "data._sd", "ascending"),
        ({"_sd": ["A" * 42 + "B"]}, 2, "data._sd[0]", "SHA-256 digest"),  # stray bits
        ({"to": 5}, 2, "data.to", ""),  # the public fields keep the kind's schema
    ],
)
def test_v2_structure_is_checked(changes, version, field, rule):
    raw = _v2(changes, version=version)
    if changes.get("_sd", 1) is None:
        del raw["data"]["_sd"]
        rule, field = "is required in a v2 envelope", "data._sd"
    with pytest.raises(ValidationError) as caught:
        Envelope.from_json(raw)
    assert caught.value.field == field and rule in caught.value.rule


def test_v3_and_v2_without_private_fields_are_refused():
    raw = _v2({})
    raw["v"] = 3
    with pytest.raises(ValidationError, match="must be 1, or 2"):
        Envelope.from_json(raw)
    plain = sign(KEY, kind="ship", seq=1, time=at(1), data=SHIP, lots=[LOT]).to_json()
    plain["v"] = 2
    with pytest.raises(ValidationError, match="is required in a v2 envelope"):
        Envelope.from_json(plain)


@pytest.mark.parametrize(
    ("kind", "lots", "data", "name"),
    [
        ("ship", [LOT], {**SHIP}, "to"),
        ("receive", [LOT], {"shipment": "a" * 64}, "shipment"),
        ("recall", [LOT], {"reason": "Listeria", "class": "I"}, "class"),
        (
            "commission",
            [LOT],
            {"gtin": "09506000134352", "lot": "LOT42", "product": "Kale"},
            "gtin",
        ),
        ("reading", [LOT], {"temperature_c": 4, "lat": 1}, "lat"),
        ("ship", [LOT], {**SHIP, "purpose": "recall-return"}, "purpose"),
    ],
)
def test_a_field_the_ledger_needs_cannot_be_private(kind, lots, data, name):
    with pytest.raises(ValidationError, match="ledger") as caught:
        conceal(kind, data, [name])
    assert caught.value.field == f"data.{name}"
    # nor when a signer builds the digest by hand: the disclosure is refused
    encoded = disclosure.encode(disclosure.new_salt(), name, data[name])
    public = {k: v for k, v in data.items() if k != name}
    if disclosure.private_fields(kind):
        committed = {**public, "_sd": [disclosure.digest_of(encoded)], "_sd_alg": "sha-256"}
        with pytest.raises(DisclosureError, match=r"ledger needs it|keeps nothing private"):
            open_disclosures(kind, committed, tuple(lots), [encoded])


def test_disclosures_that_do_not_match_are_refused():
    made = sign_private(
        KEY,
        kind="ship",
        seq=1,
        time=at(1),
        data={**SHIP, "location": PLACE},
        lots=[LOT],
        private=["location"],
    )
    envelope, (encoded,) = made.envelope, made.disclosures
    salt, name, value = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    forged = disclosure.encode(salt, name, {**value, "name": "Elsewhere"})
    other_salt = disclosure.encode(disclosure.new_salt(), name, value)
    short_salt = disclosure.encode(_b64(b"x" * 8), name, value)
    cases = {
        forged: "not among the envelope's signed digests",
        other_salt: "not among the envelope's signed digests",
        short_salt: "128 bits",
        encoded + "=": "base64url",
        _b64(b"[1,2]"): "[salt, name, value]",
    }
    for bad, why in cases.items():
        with pytest.raises(DisclosureError, match=why):
            open_disclosures("ship", envelope.data, envelope.lots, [bad])
    with pytest.raises(DisclosureError, match="at most 1"):
        open_disclosures("ship", envelope.data, envelope.lots, [encoded, encoded])
    with pytest.raises(DisclosureError, match="every one"):
        open_disclosures("ship", envelope.data, envelope.lots, [], complete=True)
    assert open_disclosures("ship", envelope.data, envelope.lots, []) == []  # the public view


def test_a_disclosed_value_must_pass_the_kinds_schema():
    data = {**SHIP}
    encoded = disclosure.encode(disclosure.new_salt(), "location", {"name": "x", "lat": 200})
    committed = {**data, "_sd": [disclosure.digest_of(encoded)], "_sd_alg": "sha-256"}
    with pytest.raises(DisclosureError, match=r"breaks the ship schema: data\.location\.lat"):
        open_disclosures("ship", committed, (LOT,), [encoded])
    # and a field both public and disclosed
    encoded = disclosure.encode(disclosure.new_salt(), "location", PLACE)
    committed = {**data, "location": PLACE, "_sd": [disclosure.digest_of(encoded)]}
    committed["_sd_alg"] = "sha-256"
    with pytest.raises(DisclosureError, match="also public"):
        open_disclosures("ship", committed, (LOT,), [encoded])


# --- the ledger


def _private_ship(world, **kwargs) -> Disclosed:
    seq = world.seqs.get("farm", 0)
    world.seqs["farm"] = seq + 1
    return sign_private(
        world.keys["farm"],
        kind="ship",
        seq=seq,
        time=at(2),
        data={"to": world.did("dc"), "location": PLACE},
        lots=[world.lot],
        private=["location"],
        **kwargs,
    )


def test_the_ledger_stores_disclosures_beside_the_log(world):
    made = _private_ship(world)
    (result,) = world.ledger.append([made])
    assert result.status == "accepted", result
    assert disclosures_of(world.store, result.index) == list(made.disclosures)
    stored = world.store.event_at(result.index)
    assert "Naivasha" not in stored.envelope.data_json  # the log holds only the digest
    assert stored.envelope.version == 2 and stored.envelope.event_id == made.event_id
    stored.envelope.verify_signature()  # rebuilt from the stored fields, v2 from its data
    (again,) = world.ledger.append([made.to_json()])  # the wrapper form: a duplicate
    assert again.status == "duplicate"


@pytest.mark.parametrize("how", ["bare", "forged", "extra", "wrapper-junk", "v1-with"])
def test_the_ledger_refuses_v2_without_matching_disclosures(world, how):
    made = _private_ship(world)
    item: object
    if how == "bare":
        item = made.envelope.to_json()
    elif how == "forged":
        salt = disclosure.new_salt()
        item = {
            "envelope": made.envelope.to_json(),
            "disclosures": [disclosure.encode(salt, "location", {"name": "Elsewhere"})],
        }
    elif how == "extra":
        item = {**made.to_json(), "note": 1}
    elif how == "wrapper-junk":
        item = {"envelope": made.envelope.to_json(), "disclosures": "nope"}
    else:
        v1 = world.sign("farm", "inspect", [world.lot], {"result": "pass"})
        item = {"envelope": v1.to_json(), "disclosures": list(made.disclosures)}
    (result,) = world.ledger.append([json.dumps(item).encode()])
    assert result.status == "rejected"
    assert result.reason == ("schema" if how in ("extra", "wrapper-junk") else "disclosure")
    assert result.message
    rejects = world.store.conn.execute("SELECT count(*) FROM rejects").fetchone()[0]
    assert rejects >= 1  # recorded with its reason, nothing accepted is lost


def test_the_protocol_doc_gives_the_vectors_the_file_holds():
    doc = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text("utf-8")
    section = doc.split("## 14. Selective disclosure", 1)[1]
    case = VECTORS["cases"][1]
    for value in (
        case["salts"][0],
        case["disclosures"][0],
        case["envelope"]["data"]["_sd"][0],
        case["signing_bytes"],
        case["event_id"],
        case["envelope"]["signer"],
    ):
        assert value in section, value
    for kind, names in disclosure.PRIVATE_FIELDS.items():  # the table is the code's
        row = next(line for line in section.splitlines() if line.startswith(f"| `{kind}` |"))
        assert sorted(re.findall(r"`([a-z_]+)`", row.split("|")[2])) == sorted(names)


def test_verify_replays_v2_events_with_their_disclosures_and_catches_an_edited_one(world):
    from provenance.ledger.audit import verify_ledger

    made = _private_ship(world)
    assert world.ledger.append([made])[0].status == "accepted"
    assert verify_ledger(world.store, world.log_public_key).ok
    other = disclosure.encode(disclosure.new_salt(), "location", {"name": "Elsewhere"})
    with world.store.transaction():
        world.store.conn.execute("UPDATE disclosures SET disclosure = ?", (other,))
    report = verify_ledger(world.store, world.log_public_key)
    assert not report.ok
    assert any("disclosure" in problem for problem in map(str, report.problems))
