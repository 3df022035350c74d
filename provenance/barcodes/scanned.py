"""What a camera read off a pack, as the GS1 Digital Link of a lot.

A phone's decoder (the browser's ``BarcodeDetector`` or the bundled ZXing, see
docs/scan.md "Camera") hands over the symbol's text, and the text takes one of
these shapes:

- a GS1 Digital Link URI on any resolver, ``https://id.example.com/01/…/10/…``
  (a QR code on our labels), or a path of one, ``/01/…/10/…``;
- a GS1 element string from a GS1 DataMatrix (or GS1 QR): the leading FNC1 is
  given as ``GS`` (ASCII 29, ZXing), as a symbology identifier ``]d2``/``]Q3``
  (readers that transmit one) or dropped (some platform detectors); every later
  FNC1 separator is ``GS``: ``<GS>01095060001343521726123110LOT42<GS>21X7``;
- the same element string as people write it, ``(01)…(17)…(10)…``, or in the
  GS1 engine's ``^01…10…`` notation (a code typed into the scan page's form).

:func:`link_of_scan` turns any of them into a :class:`DigitalLink`, with the
Digital Link rules of :mod:`digital_link` (an element string becomes the path the
GS1 generator would choose: ``(01)(17)(10)(21)`` is ``/01/…/10/…/21/…?17=…``);
:func:`resolver_path` gives the path of that lot's page on this resolver. A URI
keeps only its GS1 data: the host it named is never followed (a code that
points elsewhere still opens our page for that lot, or is refused), and non-AI
query parameters such as ``linkType`` are dropped, so a scan always opens the
consumer page. Pure: text in, values out, :class:`GS1SyntaxError` on a code
that is not GS1 data and :class:`NoLotInCode` on one that names no lot.
"""

from __future__ import annotations

from provenance.barcodes.dictionary import GS1SyntaxError
from provenance.barcodes.digital_link import DigitalLink, parse_digital_link
from provenance.core.errors import ValidationError
from provenance.core.gs1 import _require_str

__all__ = [
    "MAX_SCAN_CHARS",
    "NoLotInCode",
    "link_of_scan",
    "resolver_path",
]

MAX_SCAN_CHARS = 4096
"""Longest text accepted: more than any QR code or DataMatrix can hold (7,089 digits
is the QR maximum, but a GS1 code is at most a few hundred characters)."""

FIELD = "code"
GS = "\x1d"  # ASCII group separator: FNC1 as decoders transmit it
FNC1 = "^"  # FNC1 in the GS1 engine's unbracketed notation

# ISO/IEC 15424 symbology identifiers a reader may put first. GS1 ones say "GS1
# data follows" (the FNC1 in first position is implied); the others are plain data.
GS1_SYMBOLOGY_IDS = ("]d2", "]Q3", "]C1", "]e0", "]J1")
PLAIN_SYMBOLOGY_IDS = ("]d1", "]Q1", "]Q0", "]d0")


class NoLotInCode(ValidationError):
    """A valid GS1 code that names no lot (a GTIN alone, an SSCC, a location):
    the resolver answers for lots (docs/scan.md)."""


def _element_string(text: str) -> str:
    """Decoder output with FNC1 as GS (or dropped first) in the ``^``-notation."""
    if FNC1 in text:
        # '^' is in no GS1 character set, so it can only be a reader's own mark.
        raise GS1SyntaxError(FIELD, "mixes GS separators with '^'", code="BAD_FNC1")
    return FNC1 + text.lstrip(GS).replace(GS, FNC1)


def link_of_scan(text: str) -> DigitalLink:
    """The Digital Link a scanned (or typed) code stands for; see the module doc."""
    _require_str(text, FIELD)
    if len(text) > MAX_SCAN_CHARS:
        raise GS1SyntaxError(
            FIELD,
            f"is {len(text)} characters long; a GS1 code is at most {MAX_SCAN_CHARS}",
            code="TOO_LONG",
        )
    code = text.strip(" \r\n\t")  # a keyboard-wedge scanner's line end; never GS
    if not code:
        raise GS1SyntaxError(FIELD, "is empty: nothing was read", code="EMPTY")
    for prefix in GS1_SYMBOLOGY_IDS:
        if code.startswith(prefix):
            return DigitalLink.from_element_string(_element_string(code[len(prefix) :]))
    for prefix in PLAIN_SYMBOLOGY_IDS:
        if code.startswith(prefix):
            code = code[len(prefix) :]
            break
    lowered = code[:8].lower()
    if lowered.startswith(("https://", "http://")):
        return DigitalLink.parse(code)
    if code.startswith("/"):
        return parse_digital_link(code)
    if code.startswith(("(", FNC1)):
        return DigitalLink.from_element_string(code)
    if code.startswith(GS) or (code[:2].isascii() and code[:2].isdigit()):
        return DigitalLink.from_element_string(_element_string(code))
    shown = code if len(code) <= 40 else code[:40] + "…"
    raise GS1SyntaxError(
        FIELD,
        f"{shown!r} is not a GS1 code: expected a GS1 Digital Link (https://…/01/…/10/…)"
        " or GS1 element strings such as (01)…(10)…",
        code="NOT_GS1",
    )


def resolver_path(link: DigitalLink) -> str:
    """The path of the lot's page on this resolver: ``/01/{GTIN-14}/10/{lot}``, then
    ``/21/{serial}`` and the code's GS1 data attributes (``?17=…``, the page compares
    the label's expiry with the record's), percent-encoded as the GS1 engine does."""
    if link.lot_id is None:
        if link.gtin is not None:
            raise NoLotInCode(
                FIELD,
                f"names the product with GTIN {link.gtin} but not its batch/lot (AI 10):"
                " scan the code that carries the lot, usually beside the expiry date",
            )
        raise NoLotInCode(
            FIELD,
            f"is a valid GS1 code for AI ({link.key_ai}), not a product's lot: this page opens"
            " lots (a code with (01) GTIN and (10) batch/lot)",
        )
    without_params = DigitalLink(link.key_ai, link.key, link.qualifiers, link.attributes)
    return without_params.to_uri(base="")
