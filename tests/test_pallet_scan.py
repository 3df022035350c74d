"""A scan of a pallet label (docs/scan.md, "Pallets and cases"): `/00/{SSCC}`
opens a page listing what is on the pallet, who packed it and where it is now,
with a JSON twin; bad codes get a 400 or 404 with a reason. The `provenance
pallet` commands, and the pallet label read back by an independent decoder."""

from __future__ import annotations

import io
import json

import pytest
import zxingcpp
from click.testing import CliRunner
from PIL import Image
from support.pallets import CASE, LOT2, LOT3, PALLET, pallet_world, ship_pallet, sscc
from support.world import LOT, at

from provenance.barcodes import labels
from provenance.barcodes.pallet_label import PalletLabel, pallet_label_png, pallet_label_svg
from provenance.cli.main import main
from provenance.web import create_app

JSON = {"Accept": "application/json"}
BAD_CHECK = PALLET[:-1] + str((int(PALLET[-1]) + 1) % 10)


@pytest.fixture
def client(shared_world):
    world = pallet_world(shared_world)
    app = create_app(
        {
            "DATABASE": str(world.store.path),
            "CLOCK": lambda: world.now,
            "LOG_PUBLIC_KEY": world.log_public_key,
            "TESTING": True,
        }
    )
    client = app.test_client()
    client.world = world
    return client


def test_the_pallet_page_lists_what_is_on_it_and_where_it_is(client):
    page = client.get(f"/00/{PALLET}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f"(00) {PALLET}" in html
    for lot_code in ("LOT42", "LOT43", "LOT44"):
        assert f'href="/01/09506000134352/10/{lot_code}"' in html
    assert "100 KGM" in html and "20 KGM" in html
    assert f'href="/00/{CASE}"' in html  # LOT44 is in a case on the pallet
    assert "farm" in html  # packed by, and with it now

    twin = client.get(f"/00/{PALLET}", headers=JSON).get_json()
    assert twin["sscc"] == PALLET and twin["uri"] == f"https://id.gs1.org/00/{PALLET}"
    assert twin["where"]["state"] == "held" and twin["where"]["holder"]["name"] == "farm"
    assert twin["packed_by"]["name"] == "farm" and twin["packed"]["time"] == at(2)
    assert [(c["batch"], c["quantity"]["value"], c["case"]) for c in twin["contents"]] == [
        (LOT, 100, None),
        (LOT2, 100, None),
        (LOT3, 20, CASE),
    ]
    case = client.get(f"/00/{CASE}", headers=JSON).get_json()
    assert case["kind"] == "case" and case["on_pallet"] == PALLET


def test_the_page_follows_the_pallet_through_its_shipment(client):
    world = client.world
    shipment = ship_pallet(world)
    twin = client.get(f"/00/{PALLET}", headers=JSON).get_json()
    assert twin["where"]["state"] == "in-transit"
    assert (twin["where"]["holder"]["name"], twin["where"]["to"]["name"]) == ("farm", "dc")
    assert "In transit from" in client.get(f"/00/{PALLET}").get_data(as_text=True)
    world.ok("dc", "receive", [LOT, LOT2, LOT3], {"shipment": shipment}, time=at(4))
    twin = client.get(f"/00/{PALLET}", headers=JSON).get_json()
    assert twin["where"] == {"state": "held", "holder": twin["where"]["holder"]}
    assert twin["where"]["holder"]["name"] == "dc"
    world.ok("dc", "unpack", [LOT, LOT2, LOT3], {"sscc": PALLET}, time=at(5))
    twin = client.get(f"/00/{PALLET}", headers=JSON).get_json()
    assert twin["where"]["state"] == "unpacked" and not twin["open"]
    assert "What was on it" in client.get(f"/00/{PALLET}").get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        (f"/00/{BAD_CHECK}", 400, "check digit"),
        ("/00/12345", 400, "SSCC"),
        ("/00/10614141000000001X", 400, "SSCC"),
        (f"/00/{PALLET}/10/LOT42", 400, ""),
        (f"/00/{sscc(99)}", 404, "no case or pallet"),
    ],
)
def test_bad_and_unknown_codes_say_why(client, path, status, words):
    answer = client.get(path, headers=JSON)
    assert answer.status_code == status, answer.get_data(as_text=True)
    body = answer.get_json()
    assert words in body["detail"]
    page = client.get(path)
    assert page.status_code == status and "<html" in page.get_data(as_text=True)


def test_a_lots_page_says_it_was_packed_on_the_pallet(client):
    html = client.get("/01/09506000134352/10/LOT44").get_data(as_text=True)
    assert f"Packed by farm on (00) {CASE}" in html


def test_the_page_is_translated(client):
    html = client.get(f"/00/{PALLET}?lang=zh").get_data(as_text=True)
    assert "托盘" in html and "装箱方" in html


# --- the label


def decode(png: bytes) -> str:
    found = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode
    )
    assert len(found) == 1
    return found[0].text


def test_the_label_carries_the_digital_link_and_the_sscc_in_words(monkeypatch):
    monkeypatch.delenv(labels.BASE_URL_ENV, raising=False)
    made = PalletLabel.for_sscc(PALLET, base="https://scan.example.com", contents=("Kale 100 KGM",))
    assert decode(pallet_label_png(made)) == f"https://scan.example.com/00/{PALLET}"
    svg = pallet_label_svg(made).decode()
    assert f"(00) {PALLET}" in svg and "Kale 100 KGM" in svg
    with pytest.raises(Exception, match="check digit"):
        PalletLabel.for_sscc(BAD_CHECK)


# --- the commands


class Cli:
    def __init__(self, tmp_path):
        self.env = {"PROVENANCE_DB": str(tmp_path / "p.db"), "PROVENANCE_KEYS": str(tmp_path / "k")}
        self.runner = CliRunner()

    def __call__(self, *args, code=0, input=None):
        result = self.runner.invoke(main, [str(a) for a in args], env=self.env, input=input)
        assert result.exit_code == code, (args, result.output, result.exception)
        if code:
            assert result.output.startswith("Error:") or "Error:" in result.output
            assert "Traceback" not in result.output
        return result.output


def test_pallet_commands_pack_ship_show_unpack_and_label(tmp_path):
    cli = Cli(tmp_path)
    cli("init")
    cli("party", "add", "Farm", "--role", "producer", "--prefix", "9506000", "--prefix", "0614141")
    cli("party", "add", "DC", "--role", "distributor")
    for code in ("LOT42", "LOT43"):
        cli("lot", "register", "--gtin", "09506000134352", "--lot", code, "--product", "Kale",
            "--as", "Farm", "--time", at(0))  # fmt: skip
    path = cli("pallet", "pack", PALLET, "--lot", f"{LOT}=100KGM", "--lot", f"{LOT2}=50.5 KGM",
               "--as", "Farm", "--time", at(1))  # fmt: skip
    assert path.strip() == f"/00/{PALLET}"
    shown = cli("pallet", "show", PALLET)
    assert "with Farm" in shown and "50.5 KGM" in shown
    shipment = cli("pallet", "ship", PALLET, "--to", "DC", "--as", "Farm", "--time", at(2))
    shipment = shipment.strip()
    assert "in transit from Farm to DC" in cli("pallet", "show", PALLET)
    # A trace forward and a recall name the pallet the lot is on.
    traced = cli("trace", LOT, "--direction", "forward")
    assert f"LOT42 on pallet {PALLET} (in transit)" in traced
    units = json.loads(cli("trace", LOT2, "--json"))["pallets"]
    assert units[LOT2][0]["sscc"] == PALLET and units[LOT2][0]["quantity"]["value"] == 50.5
    authority = str(tmp_path / "authority.pem")
    cli("party", "add", "Authority", "--role", "regulator", "--public-key",
        cli("key", "new", "--out", authority).strip())  # fmt: skip
    recalled = cli("recall", LOT, "--as", "Authority", "--key", authority, "--reason", "Listeria")
    assert f"on pallet {PALLET} (in transit)" in recalled
    cli("recall", LOT, "--lift", "--as", "Authority", "--key", authority, "--reason", "Clean")
    receive = {"kind": "receive", "batches": [LOT, LOT2], "time": at(3),
               "data": {"shipment": shipment, "pallets": [PALLET]}}  # fmt: skip
    cli("event", "append", "-", "--as", "DC", input=json.dumps(receive))
    assert json.loads(cli("pallet", "show", PALLET, "--json"))["where"]["holder"]["name"] == "DC"
    out = cli("pallet", "unpack", PALLET, "--as", "Farm", code=1)
    assert "does not hold" in out
    assert "unpacked" in cli("pallet", "unpack", PALLET, "--as", "DC", "--time", at(4))
    cli("pallet", "label", PALLET, "--out", tmp_path / "p.png", "--base-url", "https://s.example")
    assert decode((tmp_path / "p.png").read_bytes()) == f"https://s.example/00/{PALLET}"
    # Bad input: a clear Error, never a traceback.
    assert "check digit" in cli("pallet", "show", BAD_CHECK, code=2)
    assert "LOT_URI=QUANTITY" in cli("pallet", "pack", sscc(5), "--lot", LOT, "--as", "Farm",
                                     code=2)  # fmt: skip
    assert "no case or pallet" in cli("pallet", "show", sscc(6), code=1)
    assert "no party named" in cli("pallet", "ship", PALLET, "--to", "Nobody", "--as", "DC",
                                   code=1)  # fmt: skip


def test_a_label_needs_no_ledger(tmp_path):
    cli = Cli(tmp_path)  # no `init`: nothing at --db, and nothing made there
    out = tmp_path / "bare.png"
    cli("pallet", "label", PALLET, "--out", out, "--base-url", "https://s.example")
    assert decode(out.read_bytes()) == f"https://s.example/00/{PALLET}"
    assert not (tmp_path / "p.db").exists()
    assert "name it .png or .svg" in cli("pallet", "label", PALLET, "--out", "x.pdf", code=2)
