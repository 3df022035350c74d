"""GS1 DataMatrix for a label: the symbol vaccine packs carry (GTIN, expiry, lot and serial
as GS1 element strings, GS1 General Specifications §2.1.2 and §5.6).

:func:`element_data` writes the label's Application Identifiers in the order the
specifications recommend for healthcare — (01) GTIN-14, (17) expiry ``YYMMDD``, (10) lot,
(21) serial — and :func:`encode_datamatrix` draws an ECC 200 square symbol whose first
codeword is FNC1 (what marks it GS1 DataMatrix: scanners report ``]d2``) with FNC1 again
after each variable-length field that is not last (the GS separator a scanner returns as
ASCII 29). The fixed-length fields come first so that only (10) needs a separator.

Encoding is pyStrich (``pystrich.datamatrix``, Apache-2.0, pure Python): it places FNC1
itself through its GS1 field API, so this module never builds codewords by hand. The
symbol is returned as modules, as :class:`provenance.barcodes.labels.QRSymbol` is, so the
PNG, SVG and PDF writers draw both kinds of code the same way. Pure: values in, values out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date

from pystrich.datamatrix import DataMatrixData, DataMatrixEncoder
from pystrich.exceptions import PyStrichError
from pystrich.gs1 import GS1Fixed, GS1Variable

from provenance.core.errors import ValidationError

__all__ = ["GS", "DataMatrixSymbol", "element_data", "element_pairs", "encode_datamatrix"]

GS = "\x1d"
"""The group separator a scanner returns for an FNC1 that ends a variable-length field."""

_FIXED = frozenset({"01", "17"})


def element_pairs(
    gtin: str, lot: str | None, serial: str | None, expiry: date | None
) -> tuple[tuple[str, str], ...]:
    """The label's AIs in print order: (01)(17)(10)(21), those present."""
    if not (gtin.isascii() and gtin.isdigit() and len(gtin) <= 14):
        raise ValidationError("gtin", f"{gtin!r} is not a GTIN-8/12/13/14")
    pairs = [("01", gtin.zfill(14))]
    if expiry is not None:
        pairs.append(("17", f"{expiry:%y%m%d}"))
    if lot is not None:
        pairs.append(("10", lot))
    if serial is not None:
        pairs.append(("21", serial))
    return tuple(pairs)


def element_data(pairs: tuple[tuple[str, str], ...]) -> str:
    """The element string as a scanner returns it from the symbol (the leading FNC1 is the
    symbology identifier, not data): AI and value, GS after a variable-length field that
    is not last."""
    out = []
    for index, (ai, value) in enumerate(pairs):
        out.append(ai + value)
        if ai not in _FIXED and index < len(pairs) - 1:
            out.append(GS)
    return "".join(out)


@dataclass(frozen=True)
class DataMatrixSymbol:
    """A square ECC 200 DataMatrix without its quiet zone: ``modules[row][column]`` is
    True for dark. ``text`` is :func:`element_data` of ``pairs``."""

    pairs: tuple[tuple[str, str], ...]
    modules: tuple[tuple[bool, ...], ...]

    @property
    def text(self) -> str:
        return element_data(self.pairs)

    @property
    def size(self) -> int:
        """Modules per side, finder pattern included (10-144)."""
        return len(self.modules)


@functools.lru_cache(maxsize=128)
def encode_datamatrix(pairs: tuple[tuple[str, str], ...]) -> DataMatrixSymbol:
    """The smallest square GS1 DataMatrix holding *pairs* (AI, value), FNC1 first."""
    if not pairs:
        raise ValidationError("datamatrix", "has no element strings; give at least (01)")
    fields = [GS1Fixed(ai, v) if ai in _FIXED else GS1Variable(ai, v) for ai, v in pairs]
    try:
        encoder = DataMatrixEncoder(DataMatrixData.gs1(*fields), quiet_zone=0)
    except PyStrichError as exc:
        raise ValidationError("datamatrix", f"cannot encode {pairs!r}: {exc}") from None
    full = encoder.init_renderer().matrix  # the data regions inside the finder pattern
    modules = tuple(tuple(bool(cell) for cell in row) for row in full)
    return DataMatrixSymbol(pairs, modules)
