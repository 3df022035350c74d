"""Values as the EPCIS Event Hash writes them (GS1 CBV 2.0 §8.9, step 3 of the pre-hash).

:func:`canonical_number` drops trailing zeros (``26.0`` → ``26``); :func:`normalise_time`
writes a timestamp in UTC with exactly three fraction digits (the third rounded up when the
fourth is 5–9); :func:`normalise_identifier` rewrites EPC URNs (``urn:epc:id:…``,
``urn:epc:class:…``, ``urn:epc:idpat:…``) as canonical GS1 Digital Link URIs and constrains
Digital Link URIs (``https://id.gs1.org``, no query string, primary-key AI codes, GTIN-14, no
CPV, no lot when a serial is present). The import also uses these to compare identifiers in
any spelling. Pure: strings in, strings (or None for what is not such a value) out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from provenance.core import gs1

CBV = "https://ref.gs1.org/cbv/"


_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# UTC with exactly three fraction digits and a four-digit year from 1000: nothing to change.
_CANONICAL_TIME = re.compile(
    r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"
)
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:[.,]([0-9]+))?)?\s*(Z|z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)


# --- value normalisation


def canonical_number(text: str) -> str:
    """A decimal number without leading ``+``, leading zeros or trailing zeros
    (``"026.50"`` → ``"26.5"``, ``"1.0"`` → ``"1"``), as the reference implementation
    writes it (through an IEEE double); anything else unchanged."""
    if not _NUMBER.fullmatch(text):
        return text
    number = float(text)
    if number != number or number in (float("inf"), float("-inf")):
        return text
    if number == int(number):
        return str(int(number))
    return repr(number)


@lru_cache(maxsize=4096)
def _real_day(day: str) -> bool:
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        return False
    return True


def _real_time(text: str) -> bool:
    """Whether a ``YYYY-MM-DDTHH:MM:SS.mmmZ`` text names a real instant (no leap second)."""
    return (
        _real_day(text[:10])
        and int(text[11:13]) < 24
        and int(text[14:16]) < 60
        and int(text[17:19]) < 60
    )


def normalise_time(text: str) -> str | None:
    """An ISO 8601 date-time in UTC with milliseconds (``…T10:00:30.000Z``), the third
    fraction digit rounded up when the fourth is 5–9; None if *text* is not a date-time.
    A time without an offset is taken as UTC."""
    if _CANONICAL_TIME.fullmatch(text) and _real_time(text):
        return text  # already UTC with milliseconds (every time the ledger writes)
    match = _TIMESTAMP.fullmatch(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=UTC
        )
    except ValueError:
        return None
    fraction = fraction or ""
    millis = int(fraction[:3].ljust(3, "0"))
    if len(fraction) > 3 and fraction[3] >= "5":
        millis += 1
    moment += timedelta(milliseconds=millis)
    if zone and zone not in ("Z", "z"):
        digits = zone[1:].replace(":", "").ljust(4, "0")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        moment -= offset if zone[0] == "+" else -offset
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- identifiers: EPC URNs and GS1 Digital Link URIs

DL_STEM = "https://id.gs1.org/"

# Characters GS1 Digital Link percent-encodes but EPC URIs may carry literally.
_DL_ESCAPES = {"!": "%21", "(": "%28", ")": "%29", "*": "%2A", "+": "%2B", ",": "%2C", ":": "%3A"}
_EPC_CHAR = r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9!'()*+,\-.:;=_])"
_SERIAL = re.compile(_EPC_CHAR + r"+")


def _dl_escape(text: str) -> str:
    return "".join(_DL_ESCAPES.get(char, char) for char in text)


def _with_check_digit(body: str) -> str:
    return body + gs1.check_digit(body)


def _split(rest: str, count: int) -> list[str] | None:
    parts = rest.split(".", count - 1)
    return parts if len(parts) == count else None


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _prefix_and_reference(cp: str, ref: str, digits: int) -> bool:
    """A company prefix of 6–12 digits and a numeric reference filling *digits* together."""
    return (6 <= len(cp) <= 12 and _digits(cp) and (ref == "" or _digits(ref))) and len(cp) + len(
        ref
    ) == digits


def _gtin(cp: str, indicator_and_item: str) -> str | None:
    if not _prefix_and_reference(cp, indicator_and_item, 13) or not indicator_and_item:
        return None
    return _with_check_digit(indicator_and_item[0] + cp + indicator_and_item[1:])


def _serial(text: str) -> str | None:
    return _dl_escape(text) if _SERIAL.fullmatch(text) else None


def _epc_id(scheme: str, rest: str) -> str | None:
    """Digital Link path (after the stem) of an EPC pure identity URI body."""
    if scheme in ("sgtin", "upui"):
        parts = _split(rest, 3)
        gtin = parts and _gtin(parts[0], parts[1])
        serial = parts and _serial(parts[2])
        if not gtin or not serial:
            return None
        return f"01/{gtin}/{'21' if scheme == 'sgtin' else '235'}/{serial}"
    if scheme == "sscc":
        parts = _split(rest, 2)
        if not parts or not _prefix_and_reference(parts[0], parts[1], 17):
            return None
        return "00/" + _with_check_digit(parts[1][0] + parts[0] + parts[1][1:])
    if scheme in ("sgln", "grai", "gdti", "sgcn"):
        parts = _split(rest, 3)
        if not parts or not _prefix_and_reference(parts[0], parts[1], 12):
            return None
        key = _with_check_digit(parts[0] + parts[1])
        extra = parts[2]
        if scheme == "sgln":
            serial = _serial(extra)
            if serial is None:
                return None
            return f"414/{key}" if extra == "0" else f"414/{key}/254/{serial}"
        if scheme == "grai":
            serial = _serial(extra)
            return None if serial is None else f"8003/0{key}{serial}"
        if scheme == "sgcn":
            return f"255/{key}{extra}" if _digits(extra) else None
        serial = _serial(extra) if extra else ""
        return None if serial is None else f"253/{key}{serial}"
    if scheme in ("gsrn", "gsrnp", "gsin", "pgln"):
        parts = _split(rest, 2)
        digits = {"gsrn": 17, "gsrnp": 17, "gsin": 16, "pgln": 12}[scheme]
        if not parts or not _prefix_and_reference(parts[0], parts[1], digits):
            return None
        ai = {"gsrn": "8018", "gsrnp": "8017", "gsin": "402", "pgln": "417"}[scheme]
        return f"{ai}/" + _with_check_digit(parts[0] + parts[1])
    if scheme in ("giai", "ginc"):
        parts = _split(rest, 2)
        if not parts or not (6 <= len(parts[0]) <= 12 and _digits(parts[0])):
            return None
        serial = _serial(parts[1])
        return (
            None
            if serial is None
            else f"{'8004' if scheme == 'giai' else '401'}/{parts[0]}{serial}"
        )
    if scheme == "cpi":
        parts = rest.split(".")
        if len(parts) < 3 or not (6 <= len(parts[0]) <= 12 and _digits(parts[0])):
            return None
        cp, reference, serial = parts[0], ".".join(parts[1:-1]), parts[-1]
        if not _digits(serial) or not _SERIAL.fullmatch(reference):
            return None
        return f"8010/{cp}{_dl_escape(reference)}/8011/{serial}"
    if scheme == "itip":
        parts = _split(rest, 5)
        gtin = parts and _gtin(parts[0], parts[1])
        if not gtin or not _digits(parts[2] + parts[3]) or len(parts[2] + parts[3]) != 4:
            return None
        serial = _serial(parts[4])
        return None if serial is None else f"8006/{gtin}{parts[2]}{parts[3]}/21/{serial}"
    return None


def _epc_pattern(scheme: str, rest: str) -> str | None:
    """Digital Link path of an EPC ID pattern URI whose last component is ``*``."""
    parts = rest.split(".")
    if len(parts) < 3 or parts[-1] != "*":
        return None
    if scheme in ("sgtin", "upui") and len(parts) == 3:
        gtin = _gtin(parts[0], parts[1])
        return gtin and f"01/{gtin}"
    if scheme in ("grai", "gdti", "sgcn") and len(parts) == 3:
        if not _prefix_and_reference(parts[0], parts[1], 12):
            return None
        key = _with_check_digit(parts[0] + parts[1])
        return {"grai": f"8003/0{key}", "gdti": f"253/{key}", "sgcn": f"255/{key}"}[scheme]
    if scheme == "cpi" and len(parts) >= 3 and 6 <= len(parts[0]) <= 12 and _digits(parts[0]):
        reference = ".".join(parts[1:-1])
        return f"8010/{parts[0]}{_dl_escape(reference)}" if _SERIAL.fullmatch(reference) else None
    if scheme == "itip" and len(parts) == 5:
        gtin = _gtin(parts[0], parts[1])
        piece_total = parts[2] + parts[3]
        if not gtin or not _digits(piece_total) or len(piece_total) != 4:
            return None
        return f"8006/{gtin}{piece_total}"
    return None


def _epc_class(scheme: str, rest: str) -> str | None:
    if scheme != "lgtin":
        return None
    parts = _split(rest, 3)
    gtin = parts and _gtin(parts[0], parts[1])
    lot = parts and _serial(parts[2])
    return f"01/{gtin}/10/{lot}" if gtin and lot else None


_EPC_URN = re.compile(r"urn:epc:(id|idpat|class):([a-z]+):(.+)")

# Digital Link primary keys (AI codes and their short names) and the shapes we keep.
_DL_KEYS = {
    "00": "00", "sscc": "00", "01": "01", "gtin": "01", "253": "253", "gdti": "253",
    "255": "255", "gcn": "255", "401": "401", "ginc": "401", "402": "402", "gsin": "402",
    "414": "414", "gln": "414", "417": "417", "party": "417", "8003": "8003", "grai": "8003",
    "8004": "8004", "giai": "8004", "8006": "8006", "itip": "8006", "8010": "8010",
    "cpid": "8010", "8017": "8017", "gsrnp": "8017", "8018": "8018", "gsrn": "8018",
}  # fmt: skip
_DL_QUALIFIERS = {"cpv": "22", "lot": "10", "ser": "21"}
_DL_VALUE = r"(?:%[0-9A-Fa-f]{2}|[\"'\-.0-9;<=>?A-Z_a-z])"
_DL_SHAPES = re.compile(
    "|".join(
        (
            r"00/\d{18}",
            rf"01/\d{{14}}(?:/(?:21|10)/{_DL_VALUE}{{1,20}}|/235/{_DL_VALUE}{{1,28}})?",
            rf"253/\d{{13}}{_DL_VALUE}{{0,17}}",
            r"255/\d{13}\d{0,12}",
            rf"401/{_DL_VALUE}{{1,30}}",
            r"402/\d{17}",
            rf"414/\d{{13}}(?:/254/{_DL_VALUE}{{1,20}})?",
            r"417/\d{13}",
            rf"8003/\d{{14}}{_DL_VALUE}{{0,16}}",
            rf"8004/{_DL_VALUE}{{1,30}}",
            rf"8006/\d{{18}}(?:/(?:21|10)/{_DL_VALUE}{{1,20}})?",
            r"8010/(?:%[0-9A-Fa-f]{2}|[#\-/0-9A-Z]){1,30}(?:/8011/\d{1,12})?",
            r"801[78]/\d{18}",
        )
    ),
    re.ASCII,
)
_URL = re.compile(r"https?://[^/?#]*(/[^?#]*)(?:[?#].*)?", re.IGNORECASE | re.DOTALL)


def _constrain_digital_link(uri: str) -> str | None:
    """A GS1 Digital Link URI as CBV 2.0 wants it in a pre-hash string, or None if *uri*
    does not carry a GS1 primary key."""
    match = _URL.fullmatch(uri)
    if not match:
        return None
    segments = match[1].split("/")
    for start in range(1, len(segments) - 1):
        ai = _DL_KEYS.get(segments[start])
        value = segments[start + 1]
        if ai is None or not _digits(value[:4]) or len(value) < 5:
            continue
        if ai == "01" and _digits(value) and len(value) in (8, 12, 13):
            value = value.zfill(14)
        pairs = [(ai, value)]
        rest = segments[start + 2 :]
        if rest and rest[-1] == "":
            rest = rest[:-1]  # one trailing slash
        if len(rest) % 2:
            return None
        pairs += [
            (_DL_QUALIFIERS.get(rest[i], rest[i]), rest[i + 1]) for i in range(0, len(rest), 2)
        ]
        names = [name for name, _ in pairs]
        if ai in ("01", "8006"):
            pairs = [(n, v) for n, v in pairs if n != "22" and not (n == "10" and "21" in names)]
        path = "/".join(f"{name}/{value}" for name, value in pairs)
        return DL_STEM + path if _DL_SHAPES.fullmatch(path) else None
    return None


def normalise_identifier(value: str) -> str | None:
    """The constrained canonical GS1 Digital Link URI for an EPC URI, EPC class URI, EPC ID
    pattern URI or GS1 Digital Link URI; None for anything else (left as it is)."""
    if value.startswith("urn:epc:"):
        match = _EPC_URN.fullmatch(value)
        if not match:
            return None
        form, scheme, rest = match.groups()
        convert = {"id": _epc_id, "idpat": _epc_pattern, "class": _epc_class}[form]
        path = convert(scheme, rest)
        return DL_STEM + path if path else None
    if value[:4].lower() == "http":
        return _constrain_digital_link(value)
    return None
