"""GS1 DataMatrix labels: every symbol is decoded by an independent decoder (zxing-cpp),
which must report a GS1 DataMatrix (symbology identifier ``]d2``: FNC1 first) holding
exactly the label's element strings, (01)(17)(10)(21) in that order with a GS after a
variable-length field that is not last. PNG as written, SVG drawn from its paths here,
PDF through Poppler; beside the QR code, which still decodes to the Digital Link."""

from __future__ import annotations

import io
import re
import subprocess
import xml.etree.ElementTree as ET
from datetime import date

import pytest
import zxingcpp
from click.testing import CliRunner
from PIL import Image, ImageDraw

from provenance.barcodes import datamatrix, labels, pdf
from provenance.barcodes.element_strings import parse_element_string
from provenance.barcodes.labels import Label, PrintSettings
from provenance.cli.label import command as label_command
from provenance.core.errors import ValidationError

GTIN = "09506000134352"
GS = "\x1d"
SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch):
    monkeypatch.delenv(labels.BASE_URL_ENV, raising=False)


def read(image: Image.Image, kind=zxingcpp.BarcodeFormat.DataMatrix) -> list:
    return list(zxingcpp.read_barcodes(image.convert("L"), formats=kind))


def check_datamatrix(code, label: Label) -> None:
    """The decoded symbol is GS1 DataMatrix with exactly the label's AIs, in order."""
    assert code.valid and code.symbology_identifier == "]d2"
    assert code.bytes.decode("ascii") == datamatrix.element_data(label.element_pairs)
    assert parse_element_string(code.text) == label.element_pairs
    expected = [("01", label.gtin), ("17", f"{label.expiry:%y%m%d}"), ("10", label.lot)]
    expected += [("21", label.serial)] if label.serial else []
    assert list(label.element_pairs) == expected


LABELS = [
    Label.for_lot(GTIN, "LOT42", serial="7QX4M2KP9Z", expiry=date(2027, 12, 31), product="Kale"),
    Label.for_lot(GTIN, "A/B%c-1", expiry=date(2030, 1, 1)),  # no serial: (10) ends the string
    Label.for_lot(GTIN, "L" * 20, serial="S" * 20, expiry=date(2029, 6, 30), product="疫苗"),
]


@pytest.mark.parametrize("label", LABELS, ids=["serial", "lot-only", "longest"])
def test_png_datamatrix_decodes_to_the_labels_element_strings(label):
    image = Image.open(io.BytesIO(labels.label_png(label, PrintSettings(symbology="datamatrix"))))
    (code,) = read(image)
    check_datamatrix(code, label)
    assert read(image, zxingcpp.BarcodeFormat.QRCode) == []


def test_the_separator_follows_the_lot_only_when_a_serial_comes_after_it():
    with_serial, lot_only = LABELS[0].element_pairs, LABELS[1].element_pairs
    assert datamatrix.element_data(with_serial) == f"01{GTIN}17271231" + f"10LOT42{GS}217QX4M2KP9Z"
    assert datamatrix.element_data(lot_only) == f"01{GTIN}1730010110A/B%c-1"


def test_both_codes_sit_side_by_side_and_each_decodes():
    label = LABELS[0]
    settings = PrintSettings(symbology="both")
    layout = labels.layout_of(label, settings)
    (qr, qx, qy), (dm, dx, dy) = layout.codes
    quiet = settings.quiet_zone * settings.module_dots
    assert dx >= qx + qr.size * settings.module_dots + 2 * quiet - 1  # quiet zones never overlap
    image = Image.open(io.BytesIO(labels.label_png(label, settings)))
    (code,) = read(image)
    check_datamatrix(code, label)
    (link,) = read(image, zxingcpp.BarcodeFormat.QRCode)
    assert link.text == label.uri
    assert layout.text_top >= max(qy, dy) + max(qr.size, dm.size) * settings.module_dots


_RUN = re.compile(r"M(\d+) (\d+)h(\d+)v1h-\3z")
_PLACE = re.compile(r"translate\((\d+) (\d+)\) scale\((\d+)\)")


def svg_codes(data: bytes) -> Image.Image:
    """Draw every code path of a label SVG (runs of unit-high rectangles) at 1 px a dot."""
    root = ET.fromstring(data)
    width, height = (int(v) for v in root.get("viewBox").split()[2:])
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    paths = root.findall(f"{SVG_NS}path")
    assert paths
    for path in paths:
        x0, y0, m = (int(v) for v in _PLACE.fullmatch(path.get("transform")).groups())
        runs = _RUN.findall(path.get("d"))
        assert "".join(f"M{x} {y}h{n}v1h-{n}z" for x, y, n in runs) == path.get("d")
        for x, y, n in runs:
            left, top = x0 + int(x) * m, y0 + int(y) * m
            draw.rectangle((left, top, left + int(n) * m - 1, top + m - 1), fill=0)
    return image


def test_svg_datamatrix_decodes_beside_the_qr_code():
    label = LABELS[0]
    image = svg_codes(labels.label_svg(label, PrintSettings(symbology="both")))
    (code,) = read(image)
    check_datamatrix(code, label)
    (link,) = read(image, zxingcpp.BarcodeFormat.QRCode)
    assert link.text == label.uri


def test_a_pdf_sheet_of_distinct_serials_decodes_every_label(tmp_path):
    made = [
        Label.for_lot(GTIN, "LOT42", serial=f"SN{i:03d}", expiry=date(2027, 12, 31))
        for i in range(12)
    ]
    data = pdf.sheet_pdf(made, PrintSettings(symbology="both"))
    (tmp_path / "sheet.pdf").write_bytes(data)
    subprocess.run(
        [
            "pdftoppm",
            "-r",
            "200",
            "-gray",
            "-png",
            str(tmp_path / "sheet.pdf"),
            str(tmp_path / "p"),
        ],
        check=True,
        timeout=60,
    )
    page = Image.open(tmp_path / "p-1.png")
    found = {c.text: c for c in read(page)}
    assert len(found) == 12
    for label in made:
        check_datamatrix(found[f"(01){GTIN}(17)271231(10)LOT42(21){label.serial}"], label)
    assert sorted(c.text for c in read(page, zxingcpp.BarcodeFormat.QRCode)) == sorted(
        label.uri for label in made
    )


def test_the_label_command_takes_a_symbology(tmp_path):
    out = tmp_path / "pack.png"
    uri = f"https://id.gs1.org/01/{GTIN}/10/LOT42/21/X9?17=271231"
    result = CliRunner().invoke(label_command, [uri, "--out", str(out), "--symbology", "both"])
    assert result.exit_code == 0, result.output
    image = Image.open(out)
    (code,) = read(image)
    assert code.bytes.decode() == f"01{GTIN}17271231" + f"10LOT42{GS}21X9"
    bad = CliRunner().invoke(label_command, [uri, "--out", str(out), "--symbology", "aztec"])
    assert bad.exit_code == 2 and "'aztec' is not one of" in bad.output


def test_bad_settings_and_element_strings_say_what_is_wrong():
    with pytest.raises(ValidationError, match="symbology"):
        PrintSettings(symbology="aztec")
    with pytest.raises(ValidationError, match="GTIN"):
        datamatrix.element_pairs("95O6", "L", None, None)
    with pytest.raises(ValidationError, match="no element strings"):
        datamatrix.encode_datamatrix(())
