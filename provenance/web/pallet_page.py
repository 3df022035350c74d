"""What a scan of a pallet or case label opens: ``GET /00/{SSCC}``, the GS1
Digital Link of a logistic unit (docs/scan.md, "Pallets and cases").

The page lists what is on the unit (each lot linked to its own page, with the
quantity packed and the case it is in), who packed it and when, and who has it
now; its JSON twin (``Accept: application/json``) is the same data
(`provenance.ledger.pallet_view`). A code that is not an SSCC is a 400 saying
why (`InvalidCode`); an SSCC the ledger never saw packed is a 404.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template

from provenance.barcodes import digital_link
from provenance.core.errors import ValidationError
from provenance.core.sscc import AI_SSCC
from provenance.ledger.pallet_view import pallet_view

from . import links
from .errors import InvalidCode, wants_json
from .state import store as get_store

bp = Blueprint("pallets", __name__)


def _sscc() -> str:
    """The SSCC the request names, checked as the Digital Link parser checks it."""
    try:
        link = digital_link.parse_digital_link(links.raw_target())
    except ValidationError as exc:
        raise InvalidCode(exc.field, exc.rule) from None
    if link.key_ai != AI_SSCC or link.qualifiers:
        raise InvalidCode("path", "a pallet's code is /00/{SSCC}: 18 digits, nothing after")
    return link.key


@bp.get("/00/<path:_rest>")
def pallet(_rest: str):
    view = pallet_view(get_store(), _sscc())
    if wants_json():
        return jsonify(view)
    return render_template("pallet.html", unit=view)
