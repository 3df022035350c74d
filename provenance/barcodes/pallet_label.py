"""The label of a logistic unit (a case or a pallet): a QR code with its GS1
Digital Link ``{resolver}/00/{SSCC}`` and, under it, the SSCC as people and
GS1 logistic labels write it, ``(00) {SSCC}``, then what is on it.

Same layout, sizes and files as a lot's label (:mod:`provenance.barcodes.labels`:
PNG or SVG); the URI is generated and checked by the Digital Link code, so the
text under the code never disagrees with the code. docs/labels.md, "Pallet
labels".
"""

from __future__ import annotations

from dataclasses import dataclass

from provenance.barcodes import digital_link, labels
from provenance.core.errors import ValidationError
from provenance.core.sscc import AI_SSCC, sscc_uri, validate_sscc

MAX_CONTENT_LINES = 6  # lots listed under the code; more are counted, not listed


@dataclass(frozen=True)
class PalletLabel:
    """What a pallet label says: the URI in the code and the lines under it."""

    uri: str
    sscc: str
    product: str | None = None  # a heading, e.g. "Pallet · 2 lots"
    contents: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        link = digital_link.DigitalLink.parse(self.uri)
        if link.key_ai != AI_SSCC or link.key != self.sscc:
            raise ValidationError("label", f"the URI {self.uri!r} does not carry SSCC {self.sscc}")

    @classmethod
    def for_sscc(
        cls,
        sscc: str,
        *,
        base: str | None = None,
        heading: str | None = None,
        contents: tuple[str, ...] = (),
    ) -> PalletLabel:
        validate_sscc(sscc, "sscc")
        uri = sscc_uri(sscc, labels.resolver_base(base))
        return cls(uri=uri, sscc=sscc, product=heading, contents=contents)

    @property
    def lines(self) -> tuple[str, ...]:
        shown = list(self.contents[:MAX_CONTENT_LINES])
        if len(self.contents) > MAX_CONTENT_LINES:
            shown.append(f"+{len(self.contents) - MAX_CONTENT_LINES} more")
        return (f"(00) {self.sscc}", *shown)


def pallet_label_png(label: PalletLabel) -> bytes:
    return labels.label_png(label)  # type: ignore[arg-type]  # the same layout, duck-typed


def pallet_label_svg(label: PalletLabel) -> bytes:
    return labels.label_svg(label)  # type: ignore[arg-type]
