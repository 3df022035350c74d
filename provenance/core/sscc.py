"""Serial Shipping Container Codes: the GS1 key of a logistic unit (a case or a
pallet), AI (00). Pure: strings in, values out, ValidationError on bad input.

An SSCC is 18 digits: an extension digit the company chooses, its GS1 company
prefix (6 to 12 digits), a serial reference, and the GS1 mod-10 check digit
(GS1 General Specifications §2.2.1). Nothing in the 18 digits says where the
company prefix ends; the ledger learns it from the packer's enrolled prefixes
(docs/protocol.md, "Pallets and cases").
"""

from __future__ import annotations

from typing import Any

from provenance.core import gs1
from provenance.core.errors import ValidationError

AI_SSCC = "00"
SSCC_LENGTH = 18

# What one logistic unit may hold, all levels together: every lot on it is named
# in the `batches` of its pack, unpack and shipment, which hold at most 64 lots
# (provenance/core/envelope.py MAX_LOTS).
MAX_PALLET_LOTS = 64
MAX_SHIPMENT_PALLETS = 16  # SSCCs one ship or receive may list
MAX_DEPTH = 2  # a case may sit on a pallet; a pallet sits on nothing


def validate_sscc(value: Any, field: str = "sscc") -> str:
    """Return *value* if it is an SSCC: 18 digits ending in the right check digit."""
    if not isinstance(value, str) or len(value) != SSCC_LENGTH or not value.isascii():
        raise ValidationError(
            field,
            f"must be an SSCC: {SSCC_LENGTH} digits (extension digit, GS1 company prefix, "
            f"serial reference, check digit), e.g. 106141412345678908; got {value!r}",
        )
    if not value.isdigit():
        raise ValidationError(field, f"must be {SSCC_LENGTH} digits, got {value!r}")
    return gs1.validate_check_digit(value, field)


def sscc_uri(sscc: str, base: str = gs1.DEFAULT_BASE) -> str:
    """GS1 Digital Link URI of a logistic unit: ``{base}/00/{SSCC}``."""
    return f"{gs1._stem(base)}/{AI_SSCC}/{validate_sscc(sscc)}"


def sscc_path(sscc: str) -> str:
    """The path of a pallet's page on a resolver: ``/00/{SSCC}``."""
    return f"/{AI_SSCC}/{validate_sscc(sscc)}"


def company_prefix_of(sscc: str, prefixes: Any) -> str | None:
    """The longest of *prefixes* (GS1 company prefixes) the SSCC lies under: its
    digits after the extension digit start with it. None when none does."""
    digits = sscc[1:]
    found = [prefix for prefix in prefixes or () if digits.startswith(prefix)]
    return max(found, key=len) if found else None


def sscc_epc(sscc: str, prefix_length: int | None) -> str:
    """The SSCC as EPCIS names a logistic unit: the EPC URI
    ``urn:epc:id:sscc:{company prefix}.{extension digit}{serial reference}``
    (GS1 EPC Tag Data Standard §6.3.2) when the company prefix's length is known,
    else its GS1 Digital Link URI (EPCIS 2.0 accepts either)."""
    validate_sscc(sscc)
    if prefix_length is None or not 6 <= prefix_length <= 12:
        return sscc_uri(sscc)
    prefix = sscc[1 : 1 + prefix_length]
    serial = sscc[0] + sscc[1 + prefix_length : -1]
    return f"urn:epc:id:sscc:{prefix}.{serial}"
