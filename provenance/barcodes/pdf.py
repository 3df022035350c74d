"""The A4 PDF sheet of labels: a grid of labels, as many pages as needed, written as a
small vector PDF 1.4 by :class:`PDFWriter` (the few objects a sheet needs, with exact xref
offsets). Each QR code is filled rectangles (exact module edges at any printer
resolution); each label is a Form XObject stored once and placed many times; its text is
a grayscale image at ``PDF_TEXT_SCALE`` × the label's dpi, so any script prints without
embedding fonts. docs/labels.md says why this is ours and not fpdf2's.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from provenance.barcodes.labels import (
    A4_MM,
    DEFAULT_SETTINGS,
    MM_PER_INCH,
    PT_PER_INCH,
    SHEET_GAP_MM,
    SHEET_MARGIN_MM,
    Label,
    Layout,
    PrintSettings,
    dark_runs,
    layout_of,
    text_image,
)
from provenance.core.errors import ValidationError
from provenance.core.progress import Progress, report

PDF_TEXT_SCALE = 2  # PDF text is drawn at twice the label's dpi (600 dpi by default)
COMPRESS_LEVEL = 6  # deflate: level 9 took 5× as long (25 ms a label) for 2-10 % smaller files


@dataclass(frozen=True)
class _LabelSheet:
    columns: int
    rows: int
    cell_width: float  # mm
    cell_height: float

    @property
    def per_page(self) -> int:
        return self.columns * self.rows


def _sheet(layouts: Sequence[Layout], settings: PrintSettings) -> _LabelSheet:
    width = settings.mm(max(layout.width for layout in layouts))
    height = settings.mm(max(layout.height for layout in layouts))
    usable_w, usable_h = (side - 2 * SHEET_MARGIN_MM for side in A4_MM)
    columns = int((usable_w + SHEET_GAP_MM) // (width + SHEET_GAP_MM))
    rows = int((usable_h + SHEET_GAP_MM) // (height + SHEET_GAP_MM))
    if columns < 1 or rows < 1:
        raise ValidationError(
            "label", f"a {width:.0f} × {height:.0f} mm label does not fit on an A4 page"
        )
    return _LabelSheet(columns, rows, width, height)


def sheet_capacity(label: Label, settings: PrintSettings = DEFAULT_SETTINGS) -> int:
    """How many copies of ``label`` one A4 page of :func:`sheet_pdf` holds."""
    return _sheet([layout_of(label, settings)], settings).per_page


class PDFWriter:
    """The few PDF 1.4 objects a label sheet needs, written with exact xref offsets."""

    def __init__(self) -> None:
        self.objects: list[bytes] = []

    def reserve(self) -> int:
        self.objects.append(b"")
        return len(self.objects)

    def put(self, number: int, body: bytes) -> int:
        self.objects[number - 1] = body
        return number

    def add(self, body: bytes) -> int:
        return self.put(self.reserve(), body)

    @staticmethod
    def stream(entries: str, data: bytes) -> bytes:
        packed = zlib.compress(data, COMPRESS_LEVEL)
        head = f"<< {entries} /Filter /FlateDecode /Length {len(packed)} >>\nstream\n"
        return head.encode("ascii") + packed + b"\nendstream"

    def build(self, root: int, info: int) -> bytes:
        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, body in enumerate(self.objects, start=1):
            offsets.append(len(out))
            out += f"{number} 0 obj\n".encode("ascii") + body + b"\nendobj\n"
        xref = len(out)
        out += f"xref\n0 {len(self.objects) + 1}\n0000000000 65535 f \n".encode("ascii")
        out += b"".join(f"{offset:010d} 00000 n \n".encode("ascii") for offset in offsets)
        out += (
            f"trailer\n<< /Size {len(self.objects) + 1} /Root {root} 0 R /Info {info} 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n"
        ).encode("ascii")
        return bytes(out)


def _label_form(pdf: PDFWriter, layout: Layout) -> int:
    """One label as a Form XObject in dots (y up): the code as vector rectangles, the text
    as a Flate-compressed grayscale image at PDF_TEXT_SCALE × the label's dpi."""
    text = text_image(layout, PDF_TEXT_SCALE)
    image = pdf.add(
        pdf.stream(
            f"/Type /XObject /Subtype /Image /Width {text.width} /Height {text.height}"
            " /ColorSpace /DeviceGray /BitsPerComponent 8",
            text.tobytes(),
        )
    )
    m = layout.settings.module_dots
    text_height = layout.height - layout.text_top
    content = ""
    for symbol, left, top in layout.codes:
        rects = "\n".join(f"{x} {y} {n} 1 re" for x, y, n in dark_runs(symbol.modules))
        content += (
            f"q 0 g 1 0 0 -1 0 {layout.height} cm {m} 0 0 {m} {left} {top} cm\n{rects}\nf Q\n"
        )
    content += f"q {layout.width} 0 0 {text_height} 0 0 cm /Text Do Q\n"
    return pdf.add(
        pdf.stream(
            f"/Type /XObject /Subtype /Form /BBox [0 0 {layout.width} {layout.height}]"
            f" /Resources << /XObject << /Text {image} 0 R >> >>",
            content.encode("ascii"),
        )
    )


def sheet_pdf(
    labels: Sequence[Label],
    settings: PrintSettings = DEFAULT_SETTINGS,
    progress: Progress | None = None,
) -> bytes:
    """A4 pages of ``labels`` in a grid, left to right and top to bottom, as many pages as
    needed. Vector PDF: each QR code is filled rectangles (exact module edges at any
    printer resolution); the text is an image, so any script prints without embedding
    fonts. A label that repeats is stored once and placed many times. *progress* is told
    how many labels are laid out, page by page (`provenance.core.progress`)."""
    if not labels:
        raise ValidationError("labels", "is empty; give at least one label")
    report(progress, 0, len(labels))
    layouts = {label: layout_of(label, settings) for label in labels}
    sheet = _sheet(list(layouts.values()), settings)
    pdf = PDFWriter()
    catalog, pages = pdf.reserve(), pdf.reserve()
    forms = {label: _label_form(pdf, layout) for label, layout in layouts.items()}
    names = {label: f"L{i}" for i, label in enumerate(forms)}
    scale = PT_PER_INCH / settings.dpi
    page_w, page_h = (side * PT_PER_INCH / MM_PER_INCH for side in A4_MM)
    left = (A4_MM[0] - sheet.columns * (sheet.cell_width + SHEET_GAP_MM) + SHEET_GAP_MM) / 2
    kids = []
    for start in range(0, len(labels), sheet.per_page):
        batch = labels[start : start + sheet.per_page]
        ops = []
        for i, label in enumerate(batch):
            column, row = i % sheet.columns, i // sheet.columns
            x_mm = left + column * (sheet.cell_width + SHEET_GAP_MM)
            top_mm = SHEET_MARGIN_MM + row * (sheet.cell_height + SHEET_GAP_MM)
            y_mm = A4_MM[1] - top_mm - settings.mm(layouts[label].height)
            x, y = (v * PT_PER_INCH / MM_PER_INCH for v in (x_mm, y_mm))
            ops.append(f"q {scale:.6f} 0 0 {scale:.6f} {x:.3f} {y:.3f} cm /{names[label]} Do Q")
        content = pdf.add(pdf.stream("", "\n".join(ops).encode("ascii")))
        used = dict.fromkeys(batch)
        xobjects = " ".join(f"/{names[label]} {forms[label]} 0 R" for label in used)
        kids.append(
            pdf.add(
                f"<< /Type /Page /Parent {pages} 0 R /MediaBox [0 0 {page_w:.3f} {page_h:.3f}]"
                f" /Resources << /XObject << {xobjects} >> >> /Contents {content} 0 R >>".encode(
                    "ascii"
                )
            )
        )
        report(progress, start + len(batch), len(labels))
    refs = " ".join(f"{kid} 0 R" for kid in kids)
    pdf.put(pages, f"<< /Type /Pages /Kids [{refs}] /Count {len(kids)} >>".encode("ascii"))
    pdf.put(catalog, f"<< /Type /Catalog /Pages {pages} 0 R >>".encode("ascii"))
    info = pdf.add(b"<< /Producer (Provenance labels) /Title (GS1 Digital Link labels) >>")
    return pdf.build(catalog, info)
