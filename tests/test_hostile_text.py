"""Control and bidirectional characters in free text (issue 9).

The protocol refuses C0/C1 controls (notes, reasons, conditions and
instructions may hold tab and line feed), the line and paragraph separators and
the bidirectional embeddings, overrides and isolates in every free-text field of
every kind, with a reason naming the field: `fields.refuse_controls`, which every
path (CLI, API, portal, MQTT) reaches through `Envelope`/`sign`. And the CLI
escapes such characters in whatever it prints, since older ledgers may hold them.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.world import GTIN, LOT

from provenance.cli.main import main
from provenance.core import fields, gs1, kinds, terminal
from provenance.core.envelope import Envelope
from provenance.core.errors import ValidationError
from provenance.core.signing import did_of

DID = did_of(Ed25519PrivateKey.generate())
OTHER = gs1.lot_uri(GTIN, "B7")
EVENT = "ab" * 32
QTY = {"value": 1, "unit": "KGM"}
SSCC = "106141412345678908"
PLACE = {
    "name": "Shed 4",
    "lat": 1.0,
    "lon": 2.0,
    "country": "KE",
    "gln": "0614141000005",
    "address": {"street": "4 Dock Road", "city": "Mombasa"},
}

# For each kind, data with every field filled (several samples where fields
# exclude each other), and its batches.
DOCUMENT = {"type": "bol", "number": "BOL-4411"}
SAMPLES: dict[str, list[tuple[dict[str, Any], list[str] | None]]] = {
    "enrol": [
        (
            {
                "subject": DID,
                "type": "party",
                "name": "Farm",
                "role": "producer",
                "gs1_company_prefixes": ["9506000"],
                "custodial": True,
                "pgln": "9506000000015",
                "address": {"street": "1 Mill Lane", "city": "Nakuru", "country": "KE"},
            },
            None,
        ),
        ({"subject": DID, "type": "device", "name": "probe-1", "owner": DID}, None),
    ],
    "revoke": [({"subject": DID, "from": "2026-09-21T00:00:00Z", "reason": "lost"}, None)],
    "rotate": [
        (
            {
                "subject": DID,
                "key": did_of(Ed25519PrivateKey.generate()),
                "reason": "laptop stolen",
                "approval": {"regulator": DID, "signature": "c2lnbmF0dXJl"},
                "custodial": False,
            },
            None,
        )
    ],
    "grant": [
        ({"subject": DID, "gs1_company_prefixes": ["9506000"], "reason": "GS1 licence"}, None)
    ],
    "anchor": [({"trail": "portal", "count": 3, "head": "ab" * 32}, None)],
    "stability": [
        (
            {
                "gtin": GTIN,
                "bands": [{"low_c": 2, "high_c": 8, "hours": 720}],
                "arrhenius": {"activation_kj_mol": 83.144, "reference_c": 5, "hours": 720},
                "vvm": "VVM7",
                "source": "SmPC 6.3",
                "ext": {"note": "x"},
            },
            None,
        )
    ],
    "commission": [
        (
            {
                "gtin": GTIN,
                "lot": "LOT42",
                "product": "Kale",
                "category": "food",
                "origin": {"name": "Kiambu", "lat": 1.0, "lon": 2.0, "country": "KE"},
                "produced": "2026-09-20",
                "expiry": "2026-12-31",
                "quantity": QTY,
                "profile": "chilled",
            },
            [LOT],
        ),
        (  # FSMA 204: the CTE a commission records, with its Key Data Elements
            {
                "gtin": GTIN,
                "lot": "LOT42",
                "product": "Kale",
                "cte": "first-land-based-receiving",
                "variety": "Lacinato",
                "harvest": {"date": "2026-09-19", "farm": copy.deepcopy(PLACE), "field": "Block 4"},
                "cooling": {"date": "2026-09-19", "location": copy.deepcopy(PLACE)},
                "landing": {
                    "vessel": {"name": "Bahari Star", "id": "IMO 9123456", "flag": "KE"},
                    "harvest_from": "2026-09-14",
                    "harvest_to": "2026-09-19",
                    "area": "FAO 51",
                },
                "documents": [{"type": "other", "number": "CATCH-5"}],
            },
            [LOT],
        ),
    ],
    "reading": [
        (
            {
                "temperature_c": 4.0,
                "humidity_pct": 80,
                "lat": 1.0,
                "lon": 2.0,
                "shock_g": 0.5,
                "door_open": False,
                "battery_pct": 90,
                "sensor": "probe-1",
            },
            [LOT],
        )
    ],
    "attach": [({"device": DID}, [LOT])],
    "detach": [({"device": DID}, [LOT])],
    "ship": [
        (
            {
                "to": DID,
                "location": PLACE,
                "purpose": "recall-return",
                "pallets": [SSCC],
                "documents": [DOCUMENT],
                "quantities": [{"batch": LOT, "quantity": {"value": 1, "unit": "KGM"}}],
            },
            [LOT],
        )
    ],
    "receive": [
        (
            {
                "shipment": EVENT,
                "location": PLACE,
                "condition": "cold",
                "pallets": [SSCC],
                "documents": [DOCUMENT],
                "quantities": [{"batch": LOT, "quantity": {"value": 1, "unit": "KGM"}}],
                "damaged": [{"batch": LOT, "quantity": {"value": 0, "unit": "KGM"}}],
            },
            [LOT],
        )
    ],
    "pack": [
        (
            {
                "sscc": SSCC,
                "contents": [{"batch": LOT, "quantity": QTY}],
                "parent": "106141410000000019",
                "ext": {"note": "x"},
            },
            [LOT],
        )
    ],
    "unpack": [({"sscc": SSCC}, [LOT])],
    "cool": [({"location": PLACE, "quantity": QTY, "documents": [DOCUMENT]}, [LOT])],
    "transform": [
        (
            {
                "inputs": [{"batch": LOT, "quantity": QTY}],
                "outputs": [
                    {
                        "batch": OTHER,
                        "quantity": dict(QTY),
                        "product": "Salad",
                        "category": "food",
                        "expiry": "2026-12-31",
                        "profile": "chilled",
                    }
                ],
                "location": PLACE,
            },
            [LOT, OTHER],
        )
    ],
    "inspect": [
        (
            {
                "result": "pass",
                "document": {"sha256": EVENT, "name": "lab.pdf", "media_type": "application/pdf"},
                "notes": "ok",
            },
            [LOT],
        )
    ],
    "recall": [({"reason": "Listeria", "class": "I", "instructions": "return"}, [LOT])],
    "recall-lift": [({"reason": "retested"}, [LOT])],
    "dispense": [({"quantity": QTY, "location": PLACE}, [LOT])],
    "epcis": [
        ({"event": {"type": "ObjectEvent", "eventTime": "2026-09-21T00:00:00Z"}}, [LOT]),
    ],
    "hold": [({"rule": "cold", "reason": "4 h at 11 °C", "evidence": {"n": 1}}, [LOT])],
    "release": [({"reason": "retested", "hold": EVENT}, [LOT])],
    "flag": [
        (
            {"signal": "counterfeit", "rule": "far", "reason": "KE", "key": "s:1", "evidence": {}},
            [LOT],
        )
    ],
    "place": [
        (
            {
                "gln": "9506000000008",
                "name": "Riverside packhouse",
                "address": {
                    "street": "1 Mill Lane",
                    "city": "Nakuru",
                    "postal_code": "20100",
                    "region": "Nakuru County",
                    "country": "KE",
                },
                "lat": -0.3,
                "lon": 36.1,
                "type": "packhouse",
            },
            None,
        )
    ],
    "recall-ack": [
        ({"recall": EVENT, "returned": QTY, "destroyed": dict(QTY), "notes": "pallet 1"}, [LOT]),
    ],
    "serials": [({"serials": ["A1", "7QX4M2KP9Z"]}, [LOT])],
}
for _kind in ("ship", "receive", "transform"):  # FSMA 204 reference documents
    SAMPLES[_kind][0][0]["documents"] = [dict(DOCUMENT), {"type": "invoice", "number": "I-2"}]
for _samples in SAMPLES.values():  # partner extras are free text too
    for _data, _ in _samples:
        _data["ext"] = {"lab": "KEBS", "items": ["a"]}

# The epcis event and rule evidence are carried verbatim as the partner or rule made them.
VERBATIM = ("data.event", "data.evidence")

HOSTILE = {
    "\x1b[2J": "U+001B ESCAPE",
    "\x1b]0;owned\x07": "U+001B ESCAPE",
    "\u202e": "U+202E RIGHT-TO-LEFT OVERRIDE",
    "\u2066": "U+2066 LEFT-TO-RIGHT ISOLATE",
    "\u202a": "U+202A LEFT-TO-RIGHT EMBEDDING",
    "\x9b31m": "U+009B CONTROL SEQUENCE INTRODUCER",
    "\x85": "U+0085",
    "\x00": "U+0000",
    "\x7f": "U+007F DELETE",
    "\r": "U+000D CARRIAGE RETURN",
    "\u2028": "U+2028 LINE SEPARATOR",
}
LINE_ONLY = {"\n": "U+000A LINE FEED", "\t": "U+0009 TAB"}


def test_every_kind_has_a_sample_with_every_field():
    assert set(SAMPLES) == set(kinds.KIND_CODES), "add a sample for each new kind"
    for kind, samples in SAMPLES.items():
        required, optional = kinds.DATA_SCHEMAS[kind]
        filled = {name for data, _ in samples for name in data}
        assert filled == {*required, *optional, "ext"}, kind
        for data, lots in samples:
            kinds.validate_data(kind, data, tuple(lots) if lots else None)


def _string_values(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _string_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _string_values(item)


def _string_leaves(value: Any, path: str):
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _string_leaves(item, f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _string_leaves(item, f"{path}[{index}]")


def _with(data: dict[str, Any], path: str, change) -> dict[str, Any]:
    copied = copy.deepcopy(data)
    parts = re.findall(r"\.(\w+)|\[(\d+)\]", path.removeprefix("data"))
    target: Any = copied
    for name, index in parts[:-1]:
        target = target[name] if name else target[int(index)]
    name, index = parts[-1]
    key: Any = name if name else int(index)
    target[key] = change(target[key])
    return copied


def _free_text_fields():
    for kind, samples in SAMPLES.items():
        for number, (data, lots) in enumerate(samples):
            for path in _string_leaves(data, "data"):
                if not path.startswith(VERBATIM):
                    yield pytest.param(kind, data, lots, path, id=f"{kind}{number}-{path}")


@pytest.mark.parametrize(("kind", "data", "lots", "path"), list(_free_text_fields()))
def test_every_text_field_refuses_controls_naming_the_field(kind, data, lots, path):
    lot_tuple = tuple(lots) if lots else None
    free = True
    try:  # is it free text (any letter goes), or a code with its own pattern?
        kinds.validate_data(kind, _with(data, path, lambda v: v + "é"), lot_tuple)
    except ValidationError:
        free = False
    cases = {**HOSTILE, **LINE_ONLY}
    multiline = path.rsplit(".", 1)[-1] in ("reason", "notes", "condition", "instructions")
    if multiline or path.startswith("data.ext"):
        cases = HOSTILE
        kinds.validate_data(kind, _with(data, path, lambda v: v + "\nline two\tok"), lot_tuple)
    for bad, named in cases.items():
        with pytest.raises(ValidationError) as refused:
            kinds.validate_data(kind, _with(data, path, lambda v, b=bad: v + b), lot_tuple)
        assert refused.value.field == path, (path, refused.value.field)
        if free:  # a code with a pattern is refused by it; free text names the character
            assert named in refused.value.rule and "remove it" in refused.value.rule


def test_marks_and_ordinary_scripts_are_free_text():
    for name in ("Ферма", "农场", "مزرعة\u200f 1", "Acme\u200e (שׁ)", "Café ☕", "a\u00adb"):
        kinds.validate_data(
            "enrol", {"subject": DID, "type": "party", "name": name, "role": "producer"}, None
        )


def test_keys_in_partner_extras_are_checked_too():
    data = {"reason": "x", "ext": {"a\u202eb": 1}}
    with pytest.raises(ValidationError, match=r"data.ext \(a name in it\): contains U\+202E"):
        kinds.validate_data("recall-lift", data, (LOT,))


def test_the_wire_refuses_them_as_mqtt_and_the_api_receive_them(file_world):
    """`Envelope.from_json` is what MQTT ingest and POST /api/v1/events parse with."""
    world = file_world
    good = world.sign("farm", "inspect", [LOT], {"result": "pass", "notes": "ok"}).to_json()
    good["data"]["notes"] = "ok\x1b[2J"
    with pytest.raises(ValidationError, match=r"data.notes: contains U\+001B ESCAPE"):
        Envelope.from_json(json.dumps(good))


def test_the_api_and_the_portal_refuse_them_with_the_field(portal):
    token = portal.token("farm")
    body = {"gtin": GTIN, "lot": "EVIL1", "product": "Kale\u202eelaK"}
    response = portal.api("POST", "/api/v1/lots", token, json=body)
    assert response.status_code == 400
    assert "data.product: contains U+202E RIGHT-TO-LEFT OVERRIDE" in response.json["detail"]
    form = {"gtin": GTIN, "lot": "EVIL2", "product": "Kale", "origin": "Shed\x1b[31m"}
    page = portal.post("farm1", "/portal/lots/new", form)
    assert page.status_code == 400
    assert "data.origin.name: contains U+001B ESCAPE" in page.get_data(as_text=True)


# --- the CLI escapes what it prints

PRODUCT = "Kale\x1b[2J\x1b]0;owned\x07\u202eevil\x9b31m"
FARM = "Farm\x1b[31m"
AGENCY = "Agency\u2066x"
REASON = "bad\rgood\x85"


@pytest.fixture
def old_ledger(tmp_path):
    """A ledger written before the text rule (the rule switched off while writing)."""
    runner = CliRunner()
    db, keys = str(tmp_path / "p.db"), str(tmp_path / "keys")
    agency_key = str(tmp_path / "agency.pem")  # the regulator's own key file

    def run(*args: str, code: int = 0):
        if args[0] == "recall":
            args = (*args, "--key", agency_key)
        result = runner.invoke(main, ["--db", db, "--keys", keys, *args])
        assert result.exit_code == code, (args, result.output, result.exception)
        return result

    with fields.text_as_signed():
        run("init")
        run("party", "add", FARM, "--role", "producer", "--prefix", "9506000")
        agency = run("key", "new", "--out", agency_key).output.strip()
        run("party", "add", AGENCY, "--role", "regulator", "--public-key", agency)
        run("device", "add", "probe-1", "--owner", FARM)
        run(
            "lot",
            "register",
            "--gtin",
            GTIN,
            "--lot",
            "LOT42",
            "--product",
            PRODUCT,
            "--as",
            FARM,
        )
        run("recall", LOT, "--as", AGENCY, "--reason", REASON, "--class", "II")
    return run


UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize(
    "args",
    [
        ("trace", LOT),
        ("party", "list"),
        ("device", "list"),
        ("stats",),
        ("rules", "list"),
        ("verify", "--batch", LOT),
        ("recall", LOT, "--as", AGENCY, "--reason", "retested", "--lift"),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_cli_output_of_an_old_ledger_is_escaped(old_ledger, args):
    output = old_ledger(*args).output
    assert not UNSAFE.search(output), repr(output)


def test_what_is_escaped_and_how(old_ledger):
    trace = old_ledger("trace", LOT).output
    # (click itself drops whole ANSI colour and cursor sequences when not on a terminal)
    assert "\\u001b]0;owned\\u0007\\u202eevil\\u009b31m" in trace, trace
    assert "\x1b" not in trace and "\u202e" not in trace
    parties = old_ledger("party", "list").output
    assert "Agency\\u2066x" in parties and "\t" in parties  # columns keep their tabs


@pytest.mark.parametrize(
    "args", [("trace", LOT, "--json"), ("party", "list", "--json"), ("export", "proof", LOT)]
)
def test_json_output_stays_json_with_the_same_values(old_ledger, args):
    output = old_ledger(*args).output
    assert not UNSAFE.search(output)
    values = (
        [json.loads(line) for line in output.splitlines()]
        if "list" in args
        else [json.loads(output)]
    )
    found = set(_string_values(values))
    assert found & {PRODUCT, FARM, AGENCY}, found


def test_new_text_from_the_cli_is_refused_with_the_field(old_ledger):
    result = old_ledger("party", "add", "Evil\x1b[2J", "--role", "producer", code=1)
    assert "Error: data.name: contains U+001B ESCAPE at position 5" in result.output
    assert "\x1b" not in result.output


def test_safe_text():
    assert terminal.safe_text("a\tb\nc") == "a\tb\nc"
    assert terminal.safe_text("\x1b[0m\u202e\x9b\r") == "\\u001b[0m\\u202e\\u009b\\u000d"
    assert (
        json.loads(terminal.safe_text(json.dumps("x\u202e\x85", ensure_ascii=False)))
        == "x\u202e\x85"
    )


def test_an_old_lot_s_proof_bundle_still_verifies(old_ledger, tmp_path):
    """The text rule is for new input: events signed before it still verify."""
    bundle = tmp_path / "bundle.json"
    bundle.write_text(old_ledger("export", "proof", LOT).output, encoding="utf-8")
    key = old_ledger("log", "key").output.strip()
    result = old_ledger("verify", "--bundle", str(bundle), "--log-key", key)
    assert result.output.startswith("OK"), result.output
    assert not UNSAFE.search(result.output)


def test_pages_show_old_ledger_text_without_obeying_it(portal):
    world = portal.world
    uri = gs1.lot_uri(GTIN, "OLD1")
    with fields.text_as_signed():
        data = {"gtin": GTIN, "lot": "OLD1", "product": "Kale\u202eelaK\x1b[2J"}
        world.ok("farm", "commission", [uri], data)
    for client, path in (
        (portal.app.test_client(), gs1.lot_path(uri)),
        (portal.client("farm1"), f"/portal/lots/{portal.lot_id(uri)}"),
    ):
        page = client.get(path)
        assert page.status_code == 200
        body = page.get_data(as_text=True)
        assert not UNSAFE.search(body), path
        assert "Kale\\u202eelaK\\u001b[2J" in body, path
