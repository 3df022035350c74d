"""provenance.core.envelope and provenance.core.signing: wire protocol v1 envelopes.

- signing bytes = RFC 8785 bytes of the object without `sig`; event id = hex SHA-256
  of the RFC 8785 bytes of the whole object. Both are checked against the reference
  `rfc8785` package on generated envelopes of several kinds.
- Tampering: every bit of the signature, every data value, seq, time, signer, batches.
- `Envelope.from_json` refuses bad input with a ValidationError naming the field and
  the rule: one parametrised row per rule.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from provenance.core import gs1
from provenance.core.envelope import MAX_ENVELOPE_BYTES, Envelope, b64url, b64url_decode
from provenance.core.errors import SignatureError, ValidationError
from provenance.core.fields import MAX_EXT_BYTES
from provenance.core.identity import did_from_public_key, verifier_for
from provenance.core.kinds import KIND_CODES
from provenance.core.signing import did_of, sign

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SIGNER = did_of(KEY)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
OTHER = did_of(OTHER_KEY)
GTIN = "09506000134352"
LOT = gs1.lot_uri(GTIN, "LOT42")
LOT2 = gs1.lot_uri(GTIN, "LOT43")
LOT3 = gs1.lot_uri(GTIN, "LOT44")
TIME = "2026-11-22T10:15:00.123Z"
EVENT_ID = "ab" * 32
MAX_SAFE = 2**53 - 1

BASES: dict[str, tuple[list[str] | None, dict[str, Any]]] = {
    "enrol": (
        None,
        {
            "subject": OTHER,
            "type": "party",
            "name": "Farm",
            "role": "producer",
            "gs1_company_prefixes": ["9506000"],
        },
    ),
    "revoke": (None, {"subject": OTHER, "from": TIME, "reason": "lost"}),
    "commission": (
        [LOT],
        {
            "gtin": GTIN,
            "lot": "LOT42",
            "product": "Kale",
            "category": "food",
            "origin": {"name": "Farm", "lat": -1.28, "lon": 36.82, "country": "KE"},
            "produced": "2026-11-20",
            "expiry": "2026-12-20",
            "quantity": {"value": 120.5, "unit": "KGM"},
            "profile": "chilled",
        },
    ),
    "reading": ([LOT], {"temperature_c": 4.5, "humidity_pct": 80, "door_open": False}),
    "attach": ([LOT], {"device": OTHER}),
    "detach": ([LOT], {"device": OTHER}),
    "ship": ([LOT], {"to": OTHER, "location": {"name": "Dock 4", "gln": "9506000134352"}}),
    "receive": ([LOT], {"shipment": EVENT_ID, "condition": "intact"}),
    "transform": (
        [LOT, LOT2],
        {
            "inputs": [{"batch": LOT, "quantity": {"value": 10, "unit": "KGM"}}],
            "outputs": [
                {"batch": LOT2, "quantity": {"value": 9.5, "unit": "KGM"}, "product": "Chips"}
            ],
        },
    ),
    "inspect": (
        [LOT],
        {
            "result": "pass",
            "document": {"sha256": "0f" * 32, "name": "lab.pdf", "media_type": "application/pdf"},
            "notes": "Listeria: not detected",
            "ext": {"lab": "KEBS", "标签": ["a", 1]},
        },
    ),
    "recall": ([LOT], {"reason": "Listeria", "class": "I", "instructions": "Return it"}),
    "recall-lift": ([LOT], {"reason": "Cleared"}),
    "dispense": ([LOT], {"quantity": {"value": 1, "unit": "EA"}}),
    "epcis": (
        [LOT],
        {"event": {"type": "ObjectEvent", "eventTime": "2026-09-21T10:00:00.000+02:00"}},
    ),
    "hold": (
        [LOT],
        {"rule": "vaccine-excursion", "reason": "3 h at 12 °C", "evidence": {"peak_c": 12}},
    ),
    "release": ([LOT], {"reason": "Stable", "hold": EVENT_ID}),
    "flag": (
        [LOT],
        {
            "signal": "counterfeit",
            "rule": "serial-far-apart",
            "reason": "KE and DE",
            "key": "serial:S1",
            "evidence": {"places": ["DE", "KE"]},
        },
    ),
    "grant": (None, {"subject": OTHER, "gs1_company_prefixes": ["9520123"], "reason": "licence"}),
    "rotate": (
        None,
        {
            "subject": OTHER,
            "key": did_of(Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))),
            "reason": "yearly",
            "custodial": False,
        },
    ),
    "anchor": (None, {"trail": "portal", "count": 3, "head": "ab" * 32}),
    "stability": (
        None,
        {
            "gtin": "09506000134352",
            "bands": [
                {"low_c": 2, "high_c": 8, "hours": 720},
                {"low_c": 8, "high_c": 25, "hours": 12},
            ],
            "arrhenius": {"activation_kj_mol": 83.144, "reference_c": 5, "hours": 720},
            "vvm": "VVM7",
            "source": "SmPC 6.3",
        },
    ),
    "pack": (
        [LOT],
        {
            "sscc": "106141412345678908",
            "contents": [{"batch": LOT, "quantity": {"value": 100, "unit": "KGM"}}],
            "parent": "106141410000000019",
        },
    ),
    "unpack": ([LOT], {"sscc": "106141412345678908"}),
    "place": (
        None,
        {
            "gln": "9506000000008",
            "name": "Riverside packhouse",
            "address": {"street": "1 Mill Lane", "city": "Nakuru", "country": "KE"},
            "lat": -0.3,
            "lon": 36.1,
            "type": "packhouse",
        },
    ),
    "cool": (
        [LOT],
        {
            "location": {"name": "Hydro-cooler 2", "gln": "9506000134352"},
            "quantity": {"value": 98, "unit": "KGM"},
            "documents": [{"type": "work-order", "number": "COOL-7"}],
        },
    ),
    "recall-ack": (
        [LOT],
        {"recall": "ab" * 32, "returned": {"value": 30, "unit": "KGM"}, "notes": "pallet 1"},
    ),
    "serials": (["https://id.gs1.org/01/09506000134352/10/LOT42"], {"serials": ["A1", "B2"]}),
}


def signed(kind: str, **changes: Any) -> Envelope:
    lots, data = BASES[kind]
    fields: dict[str, Any] = {
        "kind": kind,
        "seq": 7,
        "time": TIME,
        "data": copy.deepcopy(data),
        "lots": lots,
    }
    fields.update(changes)
    return sign(KEY, **fields)


def wire(kind: str) -> dict[str, Any]:
    """A fresh, valid, signed envelope object of *kind* to mutate."""
    return copy.deepcopy(signed(kind).to_json())


def unsigned(obj: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in obj.items() if name != "sig"}


def check_canonical_forms(envelope: Envelope) -> None:
    obj = envelope.to_json()
    assert envelope.signing_bytes() == rfc8785.dumps(unsigned(obj))
    assert envelope.canonical_bytes() == rfc8785.dumps(obj)
    assert envelope.event_id == hashlib.sha256(rfc8785.dumps(obj)).hexdigest()
    assert envelope.id_bytes == hashlib.sha256(rfc8785.dumps(obj)).digest()
    # The signature is over exactly the JCS bytes, checked without our Envelope code.
    verifier_for(envelope.signer).verify(b64url_decode(obj["sig"]), rfc8785.dumps(unsigned(obj)))


# --- round trips ---------------------------------------------------------------------------


def test_every_kind_has_a_base() -> None:
    assert set(BASES) == set(KIND_CODES)


@pytest.mark.parametrize("kind", sorted(BASES))
def test_sign_then_from_json_round_trips(kind: str) -> None:
    envelope = signed(kind)
    check_canonical_forms(envelope)
    envelope.verify_signature()
    raw = envelope.canonical_bytes()
    obj = envelope.to_json()
    forms = {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "str": raw.decode("utf-8"),
        "dict": copy.deepcopy(obj),
        "pretty bytes": json.dumps(obj, indent=2, ensure_ascii=True).encode(),
        "reordered str": json.dumps(dict(reversed(obj.items())), ensure_ascii=False),
    }
    for name, form in forms.items():
        again = Envelope.from_json(form)
        assert again == envelope, name
        assert again.event_id == envelope.event_id, name
        assert again.canonical_bytes() == raw, name
        assert again.signing_bytes() == envelope.signing_bytes(), name
        assert (again.kind, again.signer, again.seq, again.time) == (kind, SIGNER, 7, TIME)
        assert again.lots == (None if BASES[kind][0] is None else tuple(BASES[kind][0]))
        assert again.to_json() == json.loads(raw), name
        again.verify_signature()
    assert len(envelope.sig) == 86
    assert envelope.signature == b64url_decode(envelope.sig)
    assert hash(envelope) == hash(Envelope.from_json(raw))


def test_reading_without_batches_round_trips() -> None:
    envelope = signed("reading", lots=None)
    assert "batches" not in envelope.to_json()
    check_canonical_forms(envelope)
    assert Envelope.from_json(envelope.canonical_bytes()).lots is None


def test_event_id_differs_from_hash_of_signing_bytes() -> None:
    envelope = signed("inspect")
    assert envelope.event_id != hashlib.sha256(envelope.signing_bytes()).hexdigest()
    assert envelope.event_id == hashlib.sha256(envelope.canonical_bytes()).hexdigest()


# --- generated envelopes -------------------------------------------------------------------

# Free text as the protocol allows it: no controls, line separators or bidi overrides.
FREE_CHARS = st.characters(
    codec="utf-8",
    exclude_categories=("Cc", "Zl", "Zp"),
    exclude_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
)
KEY_CHARS = FREE_CHARS | st.sampled_from(["é", "标", "\U0001f602", "\ue000"])
texts = st.text(FREE_CHARS, min_size=1, max_size=20).filter(str.strip)
gtins = st.text("0123456789", min_size=13, max_size=13).map(lambda b: b + gs1.check_digit(b))
lots = st.text(st.sampled_from(sorted(gs1.CSET82)), min_size=1, max_size=20).filter(
    lambda lot: lot not in gs1.DOT_SEGMENTS
)
lot_uris = st.builds(gs1.lot_uri, gtins, lots)
dids = st.binary(min_size=32, max_size=32).map(did_from_public_key)
seqs = st.integers(0, MAX_SAFE)


def numbers(low: float, high: float) -> st.SearchStrategy[float | int]:
    return st.floats(low, high) | st.integers(int(low), int(high))


@st.composite
def times(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1)))
    digits = draw(st.integers(0, 9))
    fraction = draw(st.text("0123456789", min_size=digits, max_size=digits))
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + "Z"


ext_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE, MAX_SAFE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(FREE_CHARS, max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(KEY_CHARS), inner),
    max_leaves=12,
)
exts = st.dictionaries(st.text(KEY_CHARS, max_size=8), ext_values, max_size=6)
glns = st.from_regex(r"[0-9]{12}", fullmatch=True).map(lambda body: body + gs1.check_digit(body))
locations = st.fixed_dictionaries(
    {"name": texts},
    optional={
        "lat": numbers(-90, 90),
        "lon": numbers(-180, 180),
        "country": st.from_regex(r"[A-Z]{2}", fullmatch=True),
        "gln": glns,
        "address": st.fixed_dictionaries({"city": texts}, optional={"street": texts}),
    },
)
quantities = st.fixed_dictionaries(
    {"value": numbers(0, 1e12), "unit": st.sampled_from(["KGM", "EA", "H87", "LTR"])}
)
MEASURES = {
    "temperature_c": numbers(-100, 150),
    "humidity_pct": numbers(0, 100),
    "lat": numbers(-90, 90),
    "lon": numbers(-180, 180),
    "shock_g": numbers(0, 1000),
    "door_open": st.booleans(),
    "battery_pct": numbers(0, 100),
}


@st.composite
def readings(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.sets(st.sampled_from(sorted(MEASURES)), min_size=1))
    data = {name: draw(MEASURES[name]) for name in chosen}
    if draw(st.booleans()):
        data["sensor"] = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True))
    lots = draw(st.none() | st.lists(lot_uris, min_size=1, max_size=3, unique=True))
    return {"kind": "reading", "data": data, "lots": lots}


@st.composite
def commissions(draw: st.DrawFn) -> dict[str, Any]:
    gtin14, lot = draw(gtins), draw(lots)
    spelled = draw(st.sampled_from([gtin14, gtin14[1:]])) if gtin14[0] == "0" else gtin14
    optional = {
        "category": st.sampled_from(["food", "vaccine"]),
        "origin": st.fixed_dictionaries(
            {"name": texts}, optional={"lat": numbers(-90, 90), "lon": numbers(-180, 180)}
        ),
        "produced": times() | st.dates().map(str),
        "expiry": st.dates().map(str),
        "quantity": quantities,
        "profile": st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True),
    }
    data = draw(
        st.fixed_dictionaries({"gtin": st.just(spelled), "lot": st.just(lot), "product": texts})
        | st.fixed_dictionaries(
            {"gtin": st.just(spelled), "lot": st.just(lot), "product": texts}, optional=optional
        )
    )
    return {"kind": "commission", "data": data, "lots": [gs1.lot_uri(gtin14, lot)]}


@st.composite
def ships(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(st.fixed_dictionaries({"to": dids}, optional={"location": locations}))
    lots = draw(st.lists(lot_uris, min_size=1, max_size=4, unique=True))
    return {"kind": "ship", "data": data, "lots": lots}


@st.composite
def inspections(draw: st.DrawFn) -> dict[str, Any]:
    document = st.fixed_dictionaries(
        {
            "sha256": st.binary(min_size=32, max_size=32).map(bytes.hex),
            "name": texts,
            "media_type": st.sampled_from(["application/pdf", "image/jpeg", "text/plain"]),
        }
    )
    data = draw(
        st.fixed_dictionaries(
            {"result": st.sampled_from(["pass", "fail"])},
            optional={
                "document": document,
                "notes": st.text(FREE_CHARS | st.sampled_from("\t\n"), min_size=1).filter(
                    str.strip
                ),
                "ext": exts,
            },
        )
    )
    assume(len(rfc8785.dumps(data.get("ext", {}))) <= MAX_EXT_BYTES)
    lots = draw(st.lists(lot_uris, min_size=1, max_size=3, unique=True))
    return {"kind": "inspect", "data": data, "lots": lots}


@st.composite
def transforms(draw: st.DrawFn) -> dict[str, Any]:
    uris = draw(st.lists(lot_uris, min_size=2, max_size=6, unique=True))
    split = draw(st.integers(1, len(uris) - 1))
    inputs = [{"batch": uri, "quantity": draw(quantities)} for uri in uris[:split]]
    outputs = [{"batch": uri, "quantity": draw(quantities)} for uri in uris[split:]]
    lots = draw(st.permutations(uris))
    return {"kind": "transform", "data": {"inputs": inputs, "outputs": outputs}, "lots": lots}


events = st.one_of(readings(), commissions(), ships(), inspections(), transforms())


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(events, seqs, times())
def test_generated_envelopes_are_rfc8785_and_round_trip(
    event: dict[str, Any], seq: int, time: str
) -> None:
    envelope = sign(KEY, seq=seq, time=time, **event)
    check_canonical_forms(envelope)
    again = Envelope.from_json(envelope.canonical_bytes())
    assert again == envelope
    assert again.canonical_bytes() == envelope.canonical_bytes()
    again.verify_signature()
    assert Envelope.from_json(envelope.to_json()).event_id == envelope.event_id


def test_ext_with_a_large_integral_float_signs_rfc8785_bytes() -> None:
    envelope = signed("inspect", data={"result": "pass", "ext": {"n": 9007199254740994.0}})
    check_canonical_forms(envelope)


def test_ext_with_a_large_integral_float_round_trips() -> None:
    envelope = signed("inspect", data={"result": "pass", "ext": {"n": 1e16}})
    assert Envelope.from_json(envelope.canonical_bytes()) == envelope


# --- tampering -----------------------------------------------------------------------------


def _refused(obj: dict[str, Any]) -> SignatureError:
    envelope = Envelope.from_json(obj)  # well-formed: the signature alone must catch it
    with pytest.raises(SignatureError) as info:
        envelope.verify_signature()
    return info.value


def test_bit_flip_anywhere_in_the_signature_fails() -> None:
    obj = wire("commission")
    signature = b64url_decode(obj["sig"])
    for bit in range(len(signature) * 8):
        flipped = bytearray(signature)
        flipped[bit // 8] ^= 1 << (bit % 8)
        error = _refused({**obj, "sig": b64url(bytes(flipped))})
        assert f"signature does not verify for {SIGNER} seq 7" in str(error)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _leaves(item, (*path, key))]
    if isinstance(value, list):
        return [leaf for i, item in enumerate(value) for leaf in _leaves(item, (*path, i))]
    return [(path, value)]


def _changed(value: Any) -> Any:
    """Another valid value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value / 2 if value else 1
    if value in ("pass", "food", "party", "I", "KGM", "KE", "chilled"):
        return {
            "pass": "fail",
            "food": "vaccine",
            "party": "registrar",
            "I": "II",
            "KGM": "EA",
            "KE": "TZ",
            "chilled": "frozen",
        }[value]
    if len(value) == 64 and set(value) <= set("0123456789abcdef"):
        return value[::-1] if value[::-1] != value else "1" + value[1:]
    if value.isdigit():  # a GLN
        return value[:-1] + str((int(value[-1]) + 1) % 10)
    if value.startswith("did:key:"):
        return SIGNER
    if value[:4].isdigit() and "-" in value:  # a date or time
        return value.replace("2026", "2025", 1)
    return value + "x"


@pytest.mark.parametrize("kind", ["commission", "reading", "ship", "inspect", "transform"])
def test_changed_data_value_fails(kind: str) -> None:
    obj = wire(kind)
    leaves = [leaf for leaf in _leaves(obj["data"]) if "batch" not in leaf[0]]
    assert len(leaves) >= 3
    for path, value in leaves:
        tampered = copy.deepcopy(obj)
        target = tampered["data"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = _changed(value)
        if kind == "commission" and path[-1] in ("gtin", "lot"):
            continue  # changing them breaks the batch rule instead (tested below)
        if path[-1] == "gln":
            continue  # changing a digit breaks its check digit instead (tests/test_places.py)
        _refused(tampered)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 8),
        ("time", "2026-11-22T10:15:00.124Z"),
        ("time", "2026-11-22T10:15:00.1230Z"),  # same instant, other spelling: other bytes
        ("signer", OTHER),
        ("batches", [LOT2]),
        ("data", {"result": "fail"}),
        ("data", {"result": "pass", "ext": {}}),
    ],
)
def test_changed_envelope_field_fails(field: str, value: Any) -> None:
    _refused({**wire("inspect"), "batches": [LOT], "data": {"result": "pass"}, field: value})


def test_signature_of_another_envelope_fails() -> None:
    first, second = wire("inspect"), wire("recall")
    _refused({**first, "sig": second["sig"]})


def test_added_ext_fails() -> None:
    obj = wire("reading")
    obj["data"]["ext"] = {"calibrated": True}
    _refused(obj)


# --- the bad-input matrix ------------------------------------------------------------------

DROP = object()  # as a value: delete the field


def bad(id: str, kind: str, path: str, value: Any, rule: str, field: str | None = None) -> Any:
    """One row: in a valid *kind* envelope set *path* (dotted; digits index lists) to
    *value*; from_json must name *field* (default: *path*) and say *rule*."""
    return pytest.param(kind, path, value, path if field is None else field, rule, id=id)


def mutate(obj: dict[str, Any], path: str, value: Any) -> None:
    keys: list[Any] = [int(key) if key.isdigit() else key for key in path.split(".")]
    target = obj
    for key in keys[:-1]:
        target = target[key]
    if value is DROP:
        del target[keys[-1]]
    else:
        target[keys[-1]] = copy.deepcopy(value)


REQUIRED = "is required"
PREFIX = "must be a GS1 company prefix: 6 to 12 digits"
NOT_UTC = "is not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS[.fff]Z, ending in Z)"
NOT_DATE = "is not a real date"
NOT_TIME = "is not a real time of day"
NOT_STRING = "must be an RFC 3339 UTC string like 2026-11-22T10:15:00.123Z"
SEQ = f"must be an integer from 0 to {MAX_SAFE}"
SIG_RULE = "must be a 64-byte Ed25519 signature in base64url without padding (86 chars)"
BATCHES = "must be a list of 1 to 64 lot URIs"
UNKNOWN = "is not a known field (allowed: "
DID = "must be an Ed25519 did:key (did:key:z6Mk…)"
HEX = "64 lowercase hex digits"
OBJECT = "must be an object"
TRANSFORM = "must list exactly the transform's input and output lots"
OWN_LOT = "a commission names exactly its own lot"
UNIT = "must be a UN/CEFACT Rec 20 unit code such as KGM, EA or H87"
NAME = "letters, digits and . _ : - only"
MEASURE = "a reading needs at least one of temperature_c, humidity_pct"
X25519 = "did:key:z6LSrApwZptxFR4jy6U8Z8exYPwTqSXniWLqihApE1oK9WsK"
SIG = wire("inspect")["sig"]
T = "2026-11-22T10:15:00"
LOTS_65 = [gs1.lot_uri(GTIN, f"L{i}") for i in range(65)]
URI = "https://id.gs1.org/01/"
DEVICE = {"subject": OTHER, "type": "device", "name": "probe-1", "owner": SIGNER}

MATRIX = [
    # top level
    *(
        bad(f"missing-{name}", "inspect", name, DROP, REQUIRED)
        for name in ("v", "kind", "signer", "seq", "time", "data", "sig")
    ),
    bad("missing-batches-ship", "ship", "batches", DROP, "is required for ship: the lot URIs"),
    bad("unknown-top", "inspect", "id", EVENT_ID, "is not an envelope field (allowed: batches"),
    bad("unknown-Sig", "inspect", "Sig", SIG, "is not an envelope field"),
    bad("v-3", "inspect", "v", 3, "must be 1, or 2 when data keeps fields private"),
    bad("v-2-nothing-private", "inspect", "v", 2, "is required in a v2 envelope", "data._sd"),
    bad("v-0", "inspect", "v", 0, "must be 1"),
    bad("v-true", "inspect", "v", True, "must be 1"),
    bad("v-string", "inspect", "v", "1", "must be 1"),
    bad("v-null", "inspect", "v", None, "must be 1"),
    bad("kind", "inspect", "kind", "teleport", "unknown kind 'teleport'; known: enrol, revoke"),
    bad("kind-case", "inspect", "kind", "Inspect", "unknown kind 'Inspect'"),
    bad("kind-number", "inspect", "kind", 4, "unknown kind 4"),
    bad("kind-null", "inspect", "kind", None, "unknown kind None"),
    bad("did-web", "inspect", "signer", "did:web:example.com", DID),
    bad("x25519", "inspect", "signer", X25519, "multicodec 0xed01, 32-byte key"),
    bad("signer-long", "inspect", "signer", SIGNER + "x", "did:key"),
    bad("signer-0", "inspect", "signer", SIGNER[:-1] + "0", "'0' is not a base58btc character"),
    bad("signer-null", "inspect", "signer", None, DID),
    bad("seq-negative", "inspect", "seq", -1, SEQ),
    bad("seq-float", "inspect", "seq", 1.5, SEQ),
    bad("seq-integral-float", "inspect", "seq", 7.0, SEQ),
    bad("seq-bool", "inspect", "seq", True, SEQ),
    bad("seq-2**53", "inspect", "seq", 2**53, SEQ),
    bad("seq-2**64", "inspect", "seq", 2**64, SEQ),
    bad("seq-string", "inspect", "seq", "7", SEQ),
    bad("seq-null", "inspect", "seq", None, SEQ),
    bad("time-no-Z", "inspect", "time", T, NOT_UTC),
    bad("time-z", "inspect", "time", T + "z", NOT_UTC),
    bad("time-t", "inspect", "time", T.replace("T", "t") + "Z", NOT_UTC),
    bad("time-+00:00", "inspect", "time", T + "+00:00", NOT_UTC),
    bad("time-+01:00", "inspect", "time", "2026-11-22T11:15:00+01:00", NOT_UTC),
    bad("time--05:00", "inspect", "time", "2026-11-22T05:15:00-05:00", NOT_UTC),
    bad("time-space", "inspect", "time", T.replace("T", " ") + "Z", NOT_UTC),
    bad("time-no-seconds", "inspect", "time", "2026-11-22T10:15Z", NOT_UTC),
    bad("time-dot", "inspect", "time", T + ".Z", NOT_UTC),
    bad("time-10-digits", "inspect", "time", T + ".1234567890Z", NOT_UTC),
    bad("time-date-only", "inspect", "time", "2026-11-22", NOT_UTC),
    bad("time-trailing-space", "inspect", "time", T + "Z ", NOT_UTC),
    bad("time-feb-30", "inspect", "time", "2026-02-30T10:15:00Z", NOT_DATE),
    bad("time-feb-29-2025", "inspect", "time", "2025-02-29T10:15:00Z", NOT_DATE),
    bad("time-month-13", "inspect", "time", "2026-13-01T10:15:00Z", NOT_DATE),
    bad("time-24h", "inspect", "time", "2026-11-22T24:00:00Z", NOT_TIME),
    bad("time-leap-second", "inspect", "time", "2026-11-22T23:59:60Z", NOT_TIME),
    bad("time-number", "inspect", "time", 1795342500, NOT_STRING),
    bad("time-null", "inspect", "time", None, NOT_STRING),
    # batches
    bad("batches-on-enrol", "enrol", "batches", [LOT], "concerns an identity, not lots: omit it"),
    bad("batches-on-revoke", "revoke", "batches", [], "omit it"),
    bad("batches-empty", "inspect", "batches", [], BATCHES),
    bad("batches-empty-reading", "reading", "batches", [], BATCHES),
    bad("batches-string", "inspect", "batches", LOT, BATCHES),
    bad("batches-null", "inspect", "batches", None, BATCHES),
    bad("batches-65", "inspect", "batches", LOTS_65, BATCHES),
    bad("batches-duplicate", "inspect", "batches", [LOT, LOT2, LOT], "lists a lot twice"),
    bad(
        "batches-number", "inspect", "batches", [LOT, 42], "must be a lot URI string", "batches[1]"
    ),
    bad(
        "gtin-unpadded",
        "inspect",
        "batches",
        [URI + "9506000134352/10/LOT42"],
        "not as the 14-digit GTIN '09506000134352'",
        "batches[0]",
    ),
    bad(
        "gtin-check-digit",
        "inspect",
        "batches",
        [URI + "09506000134353/10/LOT42"],
        "check digit is 3, expected 2",
        "batches[0]",
    ),
    bad(
        "lot-http",
        "inspect",
        "batches",
        [LOT.replace("https", "http")],
        "http:// instead of https://",
        "batches[0]",
    ),
    bad("lot-trailing-slash", "inspect", "batches", [LOT + "/"], "ends with '/'", "batches[0]"),
    bad(
        "lot-plus",
        "inspect",
        "batches",
        [URI + "09506000134352/10/A+B"],
        "'+' is %2B",
        "batches[0]",
    ),
    bad(
        "serial-not-lot",
        "inspect",
        "batches",
        [URI + "09506000134352/21/S1"],
        "is not a lot identifier",
        "batches[0]",
    ),
    # data: shape, inspect
    bad("data-list", "inspect", "data", [], OBJECT),
    bad("data-string", "inspect", "data", "pass", OBJECT),
    bad(
        "data-unknown",
        "inspect",
        "data.colour",
        "red",
        UNKNOWN + "document, ext, notes, result; extras go in ext",
    ),
    bad("inspect-no-result", "inspect", "data.result", DROP, REQUIRED),
    bad(
        "inspect-maybe", "inspect", "data.result", "maybe", "must be one of pass, fail; got 'maybe'"
    ),
    bad("notes-number", "inspect", "data.notes", 5, "must be a non-empty string"),
    bad("notes-blank", "inspect", "data.notes", "  ", "must be a non-empty string"),
    bad(
        "notes-long",
        "inspect",
        "data.notes",
        "n" * 2001,
        "must be at most 2000 characters, got 2001",
    ),
    bad("sha256-uppercase", "inspect", "data.document.sha256", "0F" * 32, HEX),
    bad("sha256-short", "inspect", "data.document.sha256", "0f" * 31, HEX),
    bad("document-no-name", "inspect", "data.document.name", DROP, REQUIRED),
    bad("document-unknown", "inspect", "data.document.url", "x", UNKNOWN + "media_type, name"),
    bad("ext-list", "inspect", "data.ext", [], "must be an object (partner-specific extras)"),
    bad("ext-str", "inspect", "data.ext", "x", "must be an object (partner-specific extras)"),
    bad(
        "ext-too-large",
        "inspect",
        "data.ext",
        {"blob": "x" * 4100},
        "must be at most 4096 bytes, got 4111",
    ),
    bad(
        "ext-too-large-utf8",
        "inspect",
        "data.ext",
        {"blob": "é" * 2045},
        "must be at most 4096 bytes, got 4101",
    ),
    # reading
    bad(
        "temperature-500",
        "reading",
        "data.temperature_c",
        500,
        "must be between -100 and 150 °C, got 500",
    ),
    bad("temperature-low", "reading", "data.temperature_c", -100.5, "between -100 and 150"),
    bad("temperature-string", "reading", "data.temperature_c", "4.5", "must be a number"),
    bad("temperature-bool", "reading", "data.temperature_c", True, "must be a number"),
    bad("humidity--1", "reading", "data.humidity_pct", -1, "must be between 0 and 100 %, got -1"),
    bad("lat-91", "reading", "data", {"lat": 91}, "must be between -90 and 90", "data.lat"),
    bad("lon", "reading", "data", {"lon": -180.01}, "must be between -180 and 180", "data.lon"),
    bad("shock", "reading", "data", {"shock_g": 1001}, "between 0 and 1000", "data.shock_g"),
    bad(
        "battery", "reading", "data", {"battery_pct": 101}, "between 0 and 100", "data.battery_pct"
    ),
    bad("door-int", "reading", "data.door_open", 1, "must be true or false"),
    bad("reading-empty", "reading", "data", {}, MEASURE),
    bad("reading-sensor-only", "reading", "data", {"sensor": "probe-1"}, MEASURE),
    bad("sensor-space", "reading", "data.sensor", "probe 1", NAME),
    bad("reading-unknown", "reading", "data.pressure_hpa", 1013, UNKNOWN + "battery_pct"),
    # commission
    bad("commission-lot", "commission", "data.lot", "LOT43", f"{OWN_LOT}: [{LOT2!r}]", "batches"),
    bad("commission-gtin", "commission", "data.gtin", "09520123456788", OWN_LOT, "batches"),
    bad("commission-two-lots", "commission", "batches", [LOT, LOT2], OWN_LOT),
    bad(
        "commission-check-digit",
        "commission",
        "data.gtin",
        "09506000134353",
        "check digit is 3, expected 2",
    ),
    bad(
        "commission-lot-space",
        "commission",
        "data.lot",
        "LOT 42",
        "character ' ' at position 4 is not allowed",
    ),
    bad("no-product", "commission", "data.product", DROP, REQUIRED),
    bad("category", "commission", "data.category", "toy", "must be one of food, vaccine"),
    bad("expiry-feb-30", "commission", "data.expiry", "2026-02-30", NOT_DATE),
    bad("expiry-format", "commission", "data.expiry", "20/12/2026", "in the form YYYY-MM-DD"),
    bad("produced-no-Z", "commission", "data.produced", T, NOT_UTC),
    bad("unit-kg", "commission", "data.quantity.unit", "kg", UNIT),
    bad("quantity-no-value", "commission", "data.quantity.value", DROP, REQUIRED),
    bad("quantity-negative", "commission", "data.quantity.value", -1, "must be between 0 and"),
    bad("origin-lat", "commission", "data.origin.lat", 91, "must be between -90 and 90"),
    bad("origin-country", "commission", "data.origin.country", "Kenya", "at most 2 characters"),
    bad("profile-case", "commission", "data.profile", "Chilled", "must be a profile name"),
    # transform
    bad("transform-missing", "transform", "batches", [LOT], TRANSFORM),
    bad("transform-extra", "transform", "batches", [LOT, LOT2, LOT3], TRANSFORM),
    bad(
        "transform-lot-twice",
        "transform",
        "data.outputs.0.batch",
        LOT,
        "a lot may appear only once among inputs and outputs",
        "data",
    ),
    bad("transform-no-inputs", "transform", "data.inputs", [], "must have 1 to 64 items, got 0"),
    bad(
        "transform-bad-uri",
        "transform",
        "data.inputs.0.batch",
        "LOT42",
        "is not",
        "data.inputs[0].batch",
    ),
    bad(
        "transform-no-quantity",
        "transform",
        "data.outputs.0.quantity",
        DROP,
        REQUIRED,
        "data.outputs[0].quantity",
    ),
    # enrol, revoke
    bad("party-no-role", "enrol", "data.role", DROP, "is required for a party: one of producer"),
    bad("party-role", "enrol", "data.role", "wizard", "must be one of producer, processor"),
    bad(
        "device-no-owner",
        "enrol",
        "data",
        {k: v for k, v in DEVICE.items() if k != "owner"},
        "is required for a device",
        "data.owner",
    ),
    bad("device-name-space", "enrol", "data", {**DEVICE, "name": "probe 1"}, NAME, "data.name"),
    bad(
        "device-role",
        "enrol",
        "data",
        {**DEVICE, "role": "carrier"},
        "only parties have a role",
        "data.role",
    ),
    bad("party-owner", "enrol", "data.owner", SIGNER, "only devices have an owner"),
    bad("subject", "enrol", "data.subject", "farm", DID),
    bad("enrol-type", "enrol", "data.type", "robot", "must be one of party, device, registrar"),
    bad("revoke-from", "revoke", "data.from", "yesterday", NOT_UTC),
    # GS1 company prefixes: digits, 6-12 long, distinct, only for commissioning parties
    bad(
        "prefix-short",
        "enrol",
        "data.gs1_company_prefixes.0",
        "95060",
        PREFIX,
        "data.gs1_company_prefixes[0]",
    ),
    bad(
        "prefix-long",
        "grant",
        "data.gs1_company_prefixes.0",
        "9506000134352",
        PREFIX,
        "data.gs1_company_prefixes[0]",
    ),
    bad(
        "prefix-letters",
        "grant",
        "data.gs1_company_prefixes.0",
        "95O6000",
        PREFIX,
        "data.gs1_company_prefixes[0]",
    ),
    bad(
        "prefix-arabic-digits",
        "grant",
        "data.gs1_company_prefixes.0",
        "٩٥٠٦٠٠٠",
        PREFIX,
        "data.gs1_company_prefixes[0]",
    ),
    bad(
        "prefix-number",
        "grant",
        "data.gs1_company_prefixes.0",
        9506000,
        PREFIX,
        "data.gs1_company_prefixes[0]",
    ),
    bad("prefix-twice", "grant", "data.gs1_company_prefixes", ["950600", "950600"], "twice"),
    bad("prefixes-empty", "grant", "data.gs1_company_prefixes", [], "must have 1 to 64"),
    bad("prefixes-text", "enrol", "data.gs1_company_prefixes", "9506000", "must be a list"),
    bad(
        "prefix-carrier",
        "enrol",
        "data.role",
        "carrier",
        "only parties that commission lots",
        "data.gs1_company_prefixes",
    ),
    bad("grant-no-subject", "grant", "data.subject", DROP, REQUIRED),
    # others
    bad("recall-class-IV", "recall", "data.class", "IV", "must be one of I, II, III; got 'IV'"),
    bad("recall-no-reason", "recall", "data.reason", DROP, REQUIRED),
    bad("ship-to", "ship", "data.to", "carrier", DID),
    bad("ship-lat", "ship", "data.location.lat", 91, "must be between -90 and 90"),
    bad("ship-gln", "ship", "data.location.gln", "123", "must be a 13-digit GLN"),
    bad("receive-uppercase", "receive", "data.shipment", EVENT_ID.upper(), HEX),
    bad("attach-x25519", "attach", "data.device", X25519, DID),
    bad("dispense-kg", "dispense", "data.quantity.unit", "kg", UNIT),
    bad("dispense-quantity-number", "dispense", "data.quantity", 5, OBJECT),
    # sig
    bad("sig-padded", "inspect", "sig", SIG + "==", SIG_RULE),
    bad("sig-85", "inspect", "sig", SIG[:-1], SIG_RULE),
    bad("sig-87", "inspect", "sig", SIG + "A", SIG_RULE),
    bad("sig-non-canonical", "inspect", "sig", SIG[:-1] + "B", SIG_RULE),
    bad("sig-stray-bits", "inspect", "sig", SIG[:-1] + "R", SIG_RULE),
    bad("sig-base64-plus", "inspect", "sig", "+" + SIG[1:], SIG_RULE),
    bad("sig-base64-slash", "inspect", "sig", "/" + SIG[1:], SIG_RULE),
    bad("sig-empty", "inspect", "sig", "", SIG_RULE),
    bad("sig-null", "inspect", "sig", None, SIG_RULE),
    bad("sig-number", "inspect", "sig", 5, SIG_RULE),
    bad("sig-list", "inspect", "sig", [SIG], SIG_RULE),
    bad("sig-hex", "inspect", "sig", bytes(64).hex(), SIG_RULE),
]


@pytest.mark.parametrize(("kind", "path", "value", "field", "rule"), MATRIX)
def test_from_json_refuses(kind: str, path: str, value: Any, field: str, rule: str) -> None:
    obj = wire(kind)
    mutate(obj, path, value)
    for form in (obj, json.dumps(obj).encode()):
        with pytest.raises(ValidationError) as info:
            Envelope.from_json(form)
        error = info.value
        assert error.field == field
        assert rule in error.rule
        assert str(error) == f"{field}: {error.rule}"


def test_matrix_ids_are_unique() -> None:
    ids = [param.id for param in MATRIX]
    assert len(ids) == len(set(ids))


NOT_OBJECT = "an envelope must be a JSON object"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[]", NOT_OBJECT),
        (b"1", NOT_OBJECT),
        (b'"envelope"', NOT_OBJECT),
        (b"null", NOT_OBJECT),
        (b"true", NOT_OBJECT),
        (b"[{}]", NOT_OBJECT),
        ("[]", NOT_OBJECT),
        ([], NOT_OBJECT),
        (None, NOT_OBJECT),
        (5, NOT_OBJECT),
        ("x", "malformed JSON: Expecting value: line 1 column 1 (char 0)"),
    ],
    ids=lambda value: repr(value)[:12],
)
def test_from_json_refuses_non_objects(raw: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Envelope.from_json(raw)
    assert str(info.value) == message
    assert info.value.field == ""


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "malformed JSON: Expecting property name enclosed in double quotes"),
        (b'{"v":1,"v":1}', "malformed JSON: duplicate key 'v'"),
        (b'{"v":NaN}', "malformed JSON: NaN is not valid JSON"),
        (b'{"v":1}\xff', "not UTF-8: the bytes are not valid UTF-8 at byte offset 7 (0xff)"),
        (b'{"v":' + b"[" * 40 + b"]" * 40 + b"}", "nested deeper than 32 levels"),
        (b"[" * 60_000, "nested deeper than 32 levels"),
    ],
    ids=["truncated", "duplicate", "nan", "latin-1", "deep", "very-deep"],
)
def test_from_json_refuses_bad_json(raw: bytes, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Envelope.from_json(raw)
    assert str(info.value).startswith(message)


def _padded(obj: dict[str, Any], size: int) -> bytes:
    raw = json.dumps(obj).encode()
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def test_from_json_refuses_envelopes_over_64_kib() -> None:
    obj = wire("inspect")
    for form in (_padded(obj, MAX_ENVELOPE_BYTES + 1), _padded(obj, 1_000_000)):
        for value in (form, form.decode(), bytearray(form)):
            with pytest.raises(ValidationError) as info:
                Envelope.from_json(value)
            assert str(info.value) == (
                f"envelope of {len(form)} bytes is larger than the limit of "
                f"{MAX_ENVELOPE_BYTES} bytes"
            )
    exactly = _padded(obj, MAX_ENVELOPE_BYTES)
    assert Envelope.from_json(exactly) == Envelope.from_json(obj)


def test_size_limit_counts_utf8_bytes_of_text() -> None:
    text = json.dumps(
        {**wire("inspect"), "data": {"result": "pass", "notes": "😂" * 20_000}}, ensure_ascii=False
    )
    assert len(text) <= MAX_ENVELOPE_BYTES < len(text.encode())
    with pytest.raises(
        ValidationError, match=r"envelope of \d+ bytes is larger than the limit of 65536 bytes"
    ):
        Envelope.from_json(text.encode())
    with pytest.raises(
        ValidationError, match=r"envelope of \d+ bytes is larger than the limit of 65536 bytes"
    ):
        Envelope.from_json(text)


# --- edge cases of the rules ---------------------------------------------------------------


@pytest.mark.parametrize("kind", [["inspect"], {"kind": "inspect"}], ids=["list", "object"])
def test_unhashable_kind_is_a_validation_error(kind: Any) -> None:
    with pytest.raises(ValidationError, match="kind: unknown kind"):
        Envelope.from_json({**wire("inspect"), "kind": kind})


@pytest.mark.parametrize("signer", [[SIGNER], {"did": SIGNER}], ids=["list", "object"])
def test_unhashable_signer_is_a_validation_error(signer: Any) -> None:
    with pytest.raises(ValidationError, match="signer: must be an Ed25519 did:key"):
        Envelope.from_json({**wire("inspect"), "signer": signer})


@pytest.mark.parametrize(
    "time",
    [
        "2026-11-22T１0:15:00Z",  # fullwidth digit one
        "2026-11-22T10:15:00.١٢٣Z",  # Arabic-Indic digits
        "2026-11-22T10:1５:00Z",
    ],
)
def test_time_accepts_only_ascii_digits(time: str) -> None:
    with pytest.raises(ValidationError, match=r"time: .* is not RFC 3339 UTC"):
        Envelope.from_json({**wire("inspect"), "time": time})


def test_gln_accepts_only_ascii_digits() -> None:
    obj = wire("ship")
    obj["data"]["location"]["gln"] = "٩٥٠٦٠٠٠١٣٤٣٥٢"
    with pytest.raises(ValidationError, match=r"data\.location\.gln: must be a 13-digit GLN"):
        Envelope.from_json(obj)


@pytest.mark.parametrize(
    ("data", "field", "as_wire_json"),
    [
        # As wire JSON, 2**60 is an integer literal beyond ±(2**53-1), which parse_json reads
        # as the double it denotes (test_unsafe_integer_literal_is_read_as_a_double); only a
        # Python int handed to from_json cannot be canonicalised.
        ({"result": "pass", "ext": {"n": 2**60}}, "data.ext", False),
        ({"result": "pass", "ext": {"k": "\ud800"}}, "data.ext", True),
        ({"result": "pass", "notes": "bad \udc00 text"}, "data", True),
    ],
    ids=["ext-2**60", "ext-lone-surrogate", "notes-lone-surrogate"],
)
def test_uncanonicalisable_data_names_the_field(
    data: dict[str, Any], field: str, as_wire_json: bool
) -> None:
    obj = {**wire("inspect"), "data": data}
    forms: list[Any] = [obj, json.dumps(obj).encode()] if as_wire_json else [obj]
    for value in forms:
        with pytest.raises(ValidationError) as info:
            Envelope.from_json(value)
        assert info.value.field.startswith(field)
        if isinstance(value, bytes):  # the parser refuses it, naming the very string
            assert "holds the lone surrogate" in info.value.rule
            continue
        assert info.value.field == field
        assert "cannot be canonicalised as RFC 8785 JSON" in info.value.rule


def test_unsafe_integer_literal_is_read_as_a_double() -> None:
    raw = json.dumps({**wire("inspect"), "data": {"result": "pass", "ext": {"n": 2**60}}})
    envelope = Envelope.from_json(raw.encode())
    assert envelope.data["ext"] == {"n": float(2**60)}
    assert isinstance(envelope.data["ext"]["n"], float)
    assert envelope.data_json == '{"ext":{"n":1152921504606847000},"result":"pass"}'


# --- signing -------------------------------------------------------------------------------


class SpyKey:
    """Wraps a private key and records whether sign() was called."""

    def __init__(self, key: Ed25519PrivateKey):
        self.key = key
        self.signed: list[bytes] = []

    def public_key(self) -> Any:
        return self.key.public_key()

    def sign(self, message: bytes) -> bytes:
        self.signed.append(message)
        return self.key.sign(message)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "reading", "data": {"temperature_c": 500}}, "data.temperature_c"),
        ({"kind": "reading", "data": {}}, "data"),
        ({"kind": "inspect", "data": {"result": "maybe"}, "batches": [LOT]}, "data.result"),
        ({"kind": "inspect", "data": {"result": "pass"}}, "batches"),
        ({"kind": "enrol", "data": BASES["enrol"][1], "batches": [LOT]}, "batches"),
        ({"kind": "nope", "data": {}}, "kind"),
        ({"kind": "inspect", "data": {"result": "pass"}, "batches": [LOT], "seq": -1}, "seq"),
        ({"kind": "inspect", "data": {"result": "pass"}, "batches": [LOT], "time": "now"}, "time"),
        ({"kind": "commission", "data": BASES["commission"][1], "batches": [LOT2]}, "batches"),
        ({"kind": "inspect", "data": {"result": "pass", "ext": "x"}, "batches": [LOT]}, "data.ext"),
    ],
)
def test_sign_refuses_invalid_data_before_signing(fields: dict[str, Any], field: str) -> None:
    spy = SpyKey(KEY)
    arguments = {
        "seq": 1,
        "time": TIME,
        **{("lots" if k == "batches" else k): v for k, v in fields.items()},
    }
    with pytest.raises(ValidationError) as info:
        sign(spy, **arguments)  # type: ignore[arg-type]
    assert info.value.field == field
    assert spy.signed == []


def test_sign_signs_the_signing_bytes_once() -> None:
    spy = SpyKey(KEY)
    envelope = sign(
        spy,
        kind="inspect",
        seq=1,
        time=TIME,
        data={"result": "pass"},  # type: ignore[arg-type]
        lots=[LOT],
    )
    assert spy.signed == [envelope.signing_bytes()]
    assert envelope.signer == SIGNER


def test_sign_does_not_keep_the_callers_lots_list() -> None:
    lots = [LOT]
    envelope = signed("inspect", lots=lots)
    lots.append(LOT2)
    assert envelope.lots == (LOT,)
    check_canonical_forms(envelope)
