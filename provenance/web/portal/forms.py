"""Forms that explain themselves: field-level messages in the reader's
language, shown next to the field with the values kept, instead of a full-page
refusal. The JSON API keeps its precise codes (`ValidationError.field` and
rule); only the portal's HTML forms go through here.

`lot_form_errors` checks what a person is likely to get wrong before anything
is signed; `field_of` places a refusal of the ledger itself (a bad check digit,
a profile that does not fit) on the field it concerns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from flask_babel import gettext as _

from provenance.core.errors import ValidationError

_DIGITS = re.compile(r"[0-9]{8}|[0-9]{12,14}")
_UNIT = re.compile(r"[A-Za-z0-9]{2,3}")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
_COUNTRY = re.compile(r"[A-Za-z]{2}")

# The form field a protocol field path lands on, by the last names in the path.
_FIELDS = (
    ("unit", "unit"),
    ("quantity", "quantity"),
    ("gtin", "gtin"),
    ("lot", "lot"),
    ("product", "product"),
    ("expiry", "expiry"),
    ("produced", "produced"),
    ("profile", "profile"),
    ("category", "category"),
    ("country", "country"),
    ("origin", "origin"),
)


def lot_form_errors(form: Mapping[str, str]) -> dict[str, str]:
    """Field name -> what to fix, for the register-a-lot form."""
    errors: dict[str, str] = {}
    gtin = (form.get("gtin") or "").strip()
    if not gtin:
        errors["gtin"] = _("Enter the barcode number of the product.")
    elif not _DIGITS.fullmatch(gtin):
        errors["gtin"] = _("A barcode number has 8, 12, 13 or 14 digits, nothing else.")
    if not (form.get("lot") or "").strip():
        errors["lot"] = _("Enter the lot code printed on the pack.")
    if not (form.get("product") or "").strip():
        errors["product"] = _("Say what the product is, such as “Whole milk 1 L”.")
    amount = (form.get("quantity") or "").strip()
    unit = (form.get("unit") or "").strip()
    if amount and not unit:
        errors["unit"] = _("Choose the unit of the amount.")
    elif unit and not amount:
        errors["quantity"] = _("Enter the amount, or leave the unit empty.")
    if amount and not _NUMBER.fullmatch(amount):
        errors["quantity"] = _("Enter a number such as 1600 or 2.5, with digits only.")
    if unit and not _UNIT.fullmatch(unit):
        errors["unit"] = _("Choose a unit from the list.")
    country = (form.get("country") or "").strip()
    if country and not _COUNTRY.fullmatch(country):
        errors["country"] = _("Use the two-letter country code, such as CN or DE.")
    return errors


def field_of(exc: ValidationError) -> str:
    """The form field a refusal concerns ('' when none fits)."""
    names = re.split(r"[.\[\]]+", exc.field or "")
    for name in reversed([n for n in names if n]):
        for key, field in _FIELDS:
            if name == key or name.startswith(key):
                return field
    return ""


def refusal_message(field: str, exc: ValidationError) -> str:
    """The refusal in the reader's words, for a field of the lot form."""
    if field == "gtin" and "check digit" in exc.rule:
        return _(
            "The last digit of this barcode number (its check digit) does not match"
            " the others: look for a typing mistake."
        )
    messages = {
        "gtin": _("This barcode number does not check out: look for a typing mistake."),
        "lot": _("A lot code has up to 20 letters, digits or simple signs (- . /)."),
        "product": _("Say what the product is."),
        "quantity": _("Enter a number such as 1600 or 2.5, with digits only."),
        "unit": _("Choose a unit from the list."),
        "expiry": _("Give the expiry as a date."),
        "produced": _("Give the production time as a date and time, not in the future."),
        "profile": _("Choose a profile from the list."),
        "category": _("Choose a category from the list."),
        "country": _("Use the two-letter country code, such as CN or DE."),
        "origin": _("Name the farm or plant in up to 200 characters."),
    }
    return messages.get(field) or _("The ledger refused this: %(rule)s", rule=exc.rule)


_ROW = re.compile(r"(inputs|outputs)\[([0-9]+)\]\.?([a-z_]*)")


def transform_form_errors(form: Mapping[str, str], inputs: int, outputs: int) -> dict[str, str]:
    """Field name -> what to fix, for the transformation form's rows."""
    errors: dict[str, str] = {}
    for prefix, rows, key in (("in", inputs, "batch"), ("out", outputs, "lot")):
        for n in range(rows):
            row = f"{prefix}{n}_"
            amount = (form.get(row + "quantity") or "").strip()
            unit = (form.get(row + "unit") or "").strip()
            if not (form.get(row + key) or "").strip():
                if amount or unit:
                    errors[row + key] = (
                        _("Choose the lot this amount is of.")
                        if prefix == "in"
                        else _("Enter the lot code of the new lot.")
                    )
                continue
            if amount and not unit:
                errors[row + "unit"] = _("Choose the unit of the amount.")
            elif unit and not amount:
                errors[row + "quantity"] = _("Enter the amount, or leave the unit empty.")
            if amount and not _NUMBER.fullmatch(amount):
                errors[row + "quantity"] = _(
                    "Enter a number such as 1600 or 2.5, with digits only."
                )
            if prefix == "out":
                gtin = (form.get(row + "gtin") or "").strip()
                if not _DIGITS.fullmatch(gtin):
                    errors[row + "gtin"] = _(
                        "A barcode number has 8, 12, 13 or 14 digits, nothing else."
                    )
    return errors


def transform_field_of(exc: ValidationError) -> str:
    """The transformation form's field a refusal concerns ('' when none fits)."""
    found = _ROW.search(exc.field or "")
    if found is None:
        return ""
    side, n, rest = found.groups()
    prefix = "in" if side == "inputs" else "out"
    names = [name for name in re.split(r"[.\[\]]+", exc.field[found.end() :]) if name]
    for name in reversed([rest, *names]):
        for key, field in (*_FIELDS, ("batch", "batch")):
            if name and (name == key or name.startswith(key)):
                return f"{prefix}{n}_{field}"
    return ""


# --- the lot page's forms (ship, upload), receive, and the regulator's
# release and lift: checked before signing, and a refusal of the ledger said in
# the reader's words on the field it concerns ('' = the top of the form).


def _country_error(form: Mapping[str, str], errors: dict[str, str]) -> None:
    country = (form.get("country") or "").strip()
    if country and not _COUNTRY.fullmatch(country):
        errors["country"] = _("Use the two-letter country code, such as CN or DE.")


def ship_form_errors(form: Mapping[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not (form.get("to") or "").strip():
        errors["to"] = _("Choose the party to ship to.")
    _country_error(form, errors)
    return errors


def receive_form_errors(form: Mapping[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    _country_error(form, errors)
    return errors


def document_form_errors(form: Mapping[str, str], has_file: bool) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not has_file:
        errors["file"] = _("Choose a file to attach.")
    if form.get("result") not in ("pass", "fail"):
        errors["result"] = _("Say whether the lot passed or failed.")
    return errors


def reason_form_errors(form: Mapping[str, str]) -> dict[str, str]:
    """The regulator's release and lift: a reason is required (it is public)."""
    if not (form.get("reason") or "").strip():
        return {"reason": _("Say why: the lot's record shows it.")}
    return {}


def _reasons() -> dict[str, tuple[str, str]]:
    """A ledger's or the portal's refusal reason -> (field, message)."""
    return {
        "recalled": (
            "",
            _(
                "This lot is recalled: it may only go back to its maker, or to whoever"
                " destroys it, as the recall instructs."
            ),
        ),
        "held": ("", _("This lot is on hold: nothing may move it until a regulator releases it.")),
        "conflict": (
            "",
            _(
                "This was already done, or the lot changed since the page was shown:"
                " reload the page to see it as it is now."
            ),
        ),
        "replay": ("", _("This was already recorded; nothing new was signed.")),
        "not-custodian": ("", _("Your party does not hold this lot, so it may not do this.")),
        "unauthorised": ("", _("Your party may not do this.")),
        "unknown-party": ("to", _("Choose a party from the list.")),
        "unknown-shipment": ("", _("This shipment is not in the ledger.")),
        "unknown-lot": ("", _("This lot is not in the ledger.")),
        "not-attached": ("", _("This lot is not in the ledger.")),
        "future-time": ("", _("The time of this record is in the future: check the clock.")),
    }


_FORM_FIELDS = {
    "to": "to",
    "location": "location",
    "country": "country",
    "condition": "condition",
    "reason": "reason",
    "result": "result",
    "notes": "notes",
    "hold": "",
    "purpose": "",
}


def action_refusal(exc: Exception, status: int = 400) -> tuple[int, dict[str, str]]:
    """(HTTP status, {field: message}) for a refusal of one of these forms,
    in the reader's words; the status says whose fault it is (400, 403, 404,
    409, 413, 415), never 500."""
    reason = getattr(exc, "reason", None) or ""
    status = getattr(exc, "status", status)
    if isinstance(exc, ValidationError):
        names = [n for n in re.split(r"[.\[\]]+", exc.field or "") if n]
        if "shipment" in names:
            return 400, {"": _("This shipment is not in the ledger.")}
        if "batches" in names:
            return 400, {"": _("This lot is not in the ledger.")}
        if "gln" in names:
            return 400, {"location": _("Check the GLN: %(rule)s", rule=exc.rule)}
        field = next((_FORM_FIELDS[n] for n in reversed(names) if n in _FORM_FIELDS), "")
        messages = {
            "to": _("Choose a party from the list."),
            "country": _("Use the two-letter country code, such as CN or DE."),
            "location": _("Name the place in up to 200 characters."),
            "condition": _("Say the condition in up to 2000 characters."),
            "reason": _("Say why: the lot's record shows it."),
            "result": _("Say whether the lot passed or failed."),
            "notes": _("Write the notes in up to 2000 characters."),
        }
        return 400, {
            field: messages.get(field) or _("The ledger refused this: %(rule)s", rule=exc.rule)
        }
    if reason == "document":
        if status == 413:
            return status, {"file": _("This file is too large to attach.")}
        return status, {
            "file": _("Attach a PDF, PNG, JPEG, text, CSV or XLSX file; this one is not taken.")
        }
    field, message = _reasons().get(reason, ("", ""))
    if not message:
        message = _(
            "The ledger refused this (%(reason)s); nothing was signed.", reason=reason or "?"
        )
    return status, {field: message}
