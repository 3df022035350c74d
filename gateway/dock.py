"""Dock scans: a line-oriented barcode scanner (or a small local form) records
ship, receive, attach and detach events for the lots on the dock, signed with
the site party's key.

Grammar (one scan per line; keywords are case-insensitive; docs/gateway.md):

    scan    = lot | command | argument
    lot     = GS1 Digital Link URI            https://id.gs1.org/01/09506000134352/10/LOT42
            | bracketed element string        (01)09506000134352(10)LOT42
            | raw element string (FNC1 = GS)  ]d20109506000134352 10LOT42  (GS-separated)
    command = ["CMD:"] ("SHIP" | "RECEIVE" | "ATTACH" | "DETACH") [" " argument]
            | ["CMD:"] ("CLEAR" | "CANCEL")
    argument (SHIP)           = did:key | ["PARTY:"] known party name
    argument (RECEIVE)        = ["SHIPMENT:"] 64-hex ship event id [" " condition text]
    argument (ATTACH/DETACH)  = did:key | ["DEVICE:"] known device name | "GATEWAY"

Scan the lots first (each one once; up to 64), then the command and its
argument, as one line (``SHIP Cold Express``) or as two scans (``CMD:SHIP``
from a command sheet, then the party's code). A complete command signs one
event over all scanned lots and clears the dock. A bad scan is reported (logged
and shown) and changes nothing; lots left idle for ``session_timeout_s`` are
dropped so yesterday's scans never join today's shipment.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from provenance.core import gs1
from provenance.core.envelope import MAX_LOTS, Envelope
from provenance.core.errors import ProvenanceError, ValidationError
from provenance.core.identity import is_did_key

log = logging.getLogger(__name__)

COMMANDS = ("SHIP", "RECEIVE", "ATTACH", "DETACH")
CLEAR_WORDS = ("CLEAR", "CANCEL")
GATEWAY_WORDS = ("GATEWAY", "SELF")
MAX_SCAN = 4096
GS = "\x1d"  # ASCII group separator: how scanners transmit FNC1 inside an element string
_EVENT_ID = re.compile(r"[0-9a-fA-F]{64}")
_SYMBOLOGY_ID = re.compile(r"\][A-Za-z][0-9A-Za-z]")  # ]C1 GS1-128, ]d2 DataMatrix, ]Q3 QR…
_COMMAND = re.compile(r"(?:CMD:)?([A-Za-z]+)(?:[ \t:]+(.*))?", re.IGNORECASE | re.DOTALL)

Emit = Callable[[str, list[str], dict[str, Any]], Envelope]


class ScanError(ProvenanceError, ValueError):
    """A scan that cannot be used. The message is for the person at the dock."""


# --- lot codes -------------------------------------------------------------------------------


_GS1_SYMBOLOGIES = ("]C1", "]d2", "]e0", "]Q3", "]J1")  # GS1-128, DataMatrix, DataBar, QR, DotCode


def looks_like_lot(scan: str) -> bool:
    """Whether a scan is meant as a lot code (URI or element string) rather than a command."""
    raw = scan.strip()
    text = _strip_symbology(raw)
    return (
        raw.startswith(_GS1_SYMBOLOGIES)
        or text.lower().startswith(("http://", "https://"))
        or text.startswith("(")
        or GS in text
        or bool(re.match(r"0[12][0-9]{14}", text))
    )


def parse_lot_scan(scan: str) -> str:
    """The canonical lot URI of a scanned GS1 code, or ScanError saying what is wrong."""
    text = _strip_symbology(scan.strip())
    try:
        if text.lower().startswith(("http://", "https://")):
            return _digital_link(text)
        elements = _bracketed(text) if text.startswith("(") else _raw(text)
        return _lot_from_elements(elements)
    except ValidationError as exc:
        raise ScanError(f"not a usable lot code: {exc}") from None


def _strip_symbology(text: str) -> str:
    """Drop a leading AIM symbology identifier (]C1, ]d2, ]Q3…) if the scanner sends one."""
    return text[3:] if _SYMBOLOGY_ID.match(text) else text


def _digital_link(uri: str) -> str:
    # Data attributes (?17=261231 expiry, …) and a fragment say nothing about which lot it is.
    uri = uri.split("#", 1)[0].split("?", 1)[0]
    segments = uri.split("/")
    # A serialised item (/01/…/10/LOT/21/SERIAL) belongs to its lot.
    if len(segments) >= 6 and segments[-2] == gs1.AI_SERIAL and segments[-4] == gs1.AI_BATCH_LOT:
        uri = "/".join(segments[:-2])
    gtin, lot = gs1.parse_lot_uri(uri, require_canonical_base=False, field="URI")
    return gs1.lot_uri(gtin, lot)


def _bracketed(text: str) -> dict[str, str]:
    """``(01)09506000134352(10)LOT42``; a literal '(' in a value is written ``\\(``."""
    elements: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = re.match(r"\(([0-9]{2,4})\)", text[position:])
        if not match:
            raise ValidationError("", f"expected '(AI)' at position {position + 1}")
        ai = match.group(1)
        position += match.end()
        value: list[str] = []
        while position < len(text) and text[position] != "(":
            if text[position] == "\\" and text[position + 1 : position + 2] == "(":
                position += 1
            value.append(text[position])
            position += 1
        _add(elements, ai, "".join(value))
    return elements


# Raw element strings: (AI length, fixed value length or None for variable, max length).
_AI_PREFIXES: dict[str, tuple[int, int | None, int]] = {
    "00": (2, 18, 18),
    "01": (2, 14, 14),
    "02": (2, 14, 14),
    "10": (2, None, 20),
    "11": (2, 6, 6),
    "12": (2, 6, 6),
    "13": (2, 6, 6),
    "15": (2, 6, 6),
    "16": (2, 6, 6),
    "17": (2, 6, 6),
    "20": (2, 2, 2),
    "21": (2, None, 20),
    "22": (2, None, 20),
    "30": (2, None, 8),
    "37": (2, None, 8),
    "24": (3, None, 30),  # 240, 241, 242 …
    "25": (3, None, 30),  # 250, 251, 253, 254 …
    "40": (3, None, 30),
    "41": (3, 13, 13),  # 410–417: GLNs
    "42": (3, None, 30),
    **{f"3{digit}": (4, 6, 6) for digit in "123456"},  # 310n–369n: measures
}


def _raw(text: str) -> dict[str, str]:
    """Unbracketed element string; variable-length values end at GS (FNC1)."""
    elements: dict[str, str] = {}
    position = 0
    while position < len(text):
        if text[position] == GS:
            position += 1
            continue
        spec = _AI_PREFIXES.get(text[position : position + 2])
        if spec is None:
            raise ValidationError(
                "",
                f"AI starting {text[position : position + 2]!r} at position {position + 1} is"
                " not understood here; scan the Digital Link QR code, or set the scanner to"
                " send element strings in brackets",
            )
        ai_len, fixed, max_len = spec
        ai = text[position : position + ai_len]
        position += ai_len
        if fixed is not None:
            value = text[position : position + fixed]
            position += fixed
        else:
            end = text.find(GS, position)
            end = len(text) if end < 0 else end
            value = text[position:end]
            position = end
        if len(value) > max_len:
            raise ValidationError("", f"AI ({ai}) value is longer than {max_len}")
        _add(elements, ai, value)
    return elements


def _add(elements: dict[str, str], ai: str, value: str) -> None:
    if ai in elements:
        raise ValidationError("", f"AI ({ai}) appears twice")
    elements[ai] = value


def _lot_from_elements(elements: Mapping[str, str]) -> str:
    if gs1.AI_GTIN not in elements:
        raise ValidationError("", "has no GTIN (01); scan the code that names the product")
    if gs1.AI_BATCH_LOT not in elements:
        raise ValidationError("", "has no batch/lot (10): it names a product, not a lot")
    gtin = gs1.normalize_gtin(elements[gs1.AI_GTIN], field="(01)")
    lot = gs1.validate_lot(elements[gs1.AI_BATCH_LOT], field="(10)")
    return gs1.lot_uri(gtin, lot)


# --- the dock session ------------------------------------------------------------------------


@dataclass(frozen=True)
class DockResult:
    """What one scan did. `ok` False: nothing was queued, `message` says why."""

    ok: bool
    message: str
    envelope: Envelope | None = None
    lots: tuple[str, ...] = ()
    awaiting: str | None = None


class DockSession:
    """The state of one dock: lots scanned so far and a command waiting for its
    argument. Not thread-safe: one scanner feeds one session (the form makes a
    fresh session per submission). *emit* signs and queues one event and
    returns its envelope; it must be thread-safe (the scanner and the form share
    it) and may raise ValidationError, which becomes an error result with
    nothing queued."""

    def __init__(
        self,
        emit: Emit,
        *,
        parties: Mapping[str, str] | None = None,
        devices: Mapping[str, str] | None = None,
        gateway_did: str | None = None,
        location: Mapping[str, Any] | None = None,
        timeout_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        name: str = "dock",
    ):
        self.emit = emit
        self.parties = dict(parties or {})
        self.devices = dict(devices or {})
        self.gateway_did = gateway_did
        self.location = dict(location) if location else None
        self.timeout_s = timeout_s
        self.clock = clock
        self.name = name
        self.lots: list[str] = []
        self.awaiting: str | None = None
        self._last = clock()

    # public entry points

    def handle(self, scan: str) -> DockResult:
        """Process one scanned line; never raises for bad input."""
        try:
            result = self._handle(scan)
        except ScanError as exc:
            result = self._result(False, str(exc))
        except ValidationError as exc:
            result = self._result(False, f"refused: {exc}")
        except (OSError, ProvenanceError) as exc:
            log.exception("%s: could not queue the event", self.name)
            result = self._result(False, f"could not queue the event: {exc}")
        (log.info if result.ok else log.warning)(
            "%s: %s -> %s", self.name, _shown(scan), result.message
        )
        return result

    def clear(self) -> None:
        self.lots.clear()
        self.awaiting = None

    def execute(self, command: str, argument: str) -> DockResult:
        """Run a complete command over the scanned lots (the form's entry point)."""
        command = command.upper()
        if command not in COMMANDS:
            raise ScanError(f"unknown command {command!r}; use one of {', '.join(COMMANDS)}")
        if not self.lots:
            raise ScanError(f"{command}: scan the lots first, then the command")
        kind, data = self._event(command, argument.strip())
        envelope = self.emit(kind, list(self.lots), data)
        lots = tuple(self.lots)
        self.clear()
        return DockResult(
            True,
            f"{kind} of {len(lots)} lot{'s' * (len(lots) != 1)} queued: event {envelope.event_id}",
            envelope,
            lots,
        )

    def add_lot(self, scan: str) -> DockResult:
        uri = parse_lot_scan(scan)
        if uri in self.lots:
            return self._result(True, f"{_lot_name(uri)} already scanned ({len(self.lots)} lots)")
        if len(self.lots) >= MAX_LOTS:
            raise ScanError(f"at most {MAX_LOTS} lots per event; run the command first")
        self.lots.append(uri)
        count = len(self.lots)
        return self._result(True, f"lot {_lot_name(uri)} ({count} lot{'s' * (count != 1)})")

    # internals

    def _handle(self, scan: str) -> DockResult:
        if len(scan) > MAX_SCAN:
            raise ScanError(f"scan longer than {MAX_SCAN} characters")
        text = _strip_symbology(scan.strip().strip("\x00"))
        if not text:
            return self._result(True, "empty scan ignored")
        if not (text.isprintable() or GS in text):
            raise ScanError("scan contains control characters; check the scanner's settings")
        now = self.clock()
        expired = (self.lots or self.awaiting) and now - self._last > self.timeout_s
        self._last = now
        if expired:
            log.warning(
                "%s: %d scanned lots dropped after %.0f s idle",
                self.name,
                len(self.lots),
                self.timeout_s,
            )
            self.clear()
        if looks_like_lot(scan.strip()):
            if self.awaiting:
                raise ScanError(
                    f"{self.awaiting} is waiting for {_ARGUMENT_NAMES[self.awaiting]}, not a lot;"
                    " scan it, or CMD:CLEAR to start over"
                )
            return self.add_lot(scan)
        match = _COMMAND.fullmatch(text)
        word = match.group(1).upper() if match else ""
        argument = (match.group(2) or "").strip() if match else ""
        if self.awaiting and not text.upper().startswith("CMD:") and word not in CLEAR_WORDS:
            # While a command waits for its argument, only CMD:… and CLEAR are commands,
            # so a party called "Ship & Co" can still be the argument of SHIP.
            return self.execute(self.awaiting, text)
        if word in CLEAR_WORDS and not argument:
            dropped = len(self.lots)
            self.clear()
            return self._result(True, f"cleared ({dropped} lots dropped)")
        if word in COMMANDS:
            if not argument:
                if not self.lots:
                    raise ScanError(f"{word}: scan the lots first, then the command")
                self.awaiting = word
                return self._result(True, f"{word}: now scan {_ARGUMENT_NAMES[word]}")
            self.awaiting = None
            return self.execute(word, argument)
        raise ScanError(
            f"not a lot code or a command: {_shown(text)}; commands are "
            f"{', '.join(COMMANDS)} and CLEAR"
        )

    def _event(self, command: str, argument: str) -> tuple[str, dict[str, Any]]:
        if not argument:
            raise ScanError(f"{command} needs {_ARGUMENT_NAMES[command]}")
        if command == "SHIP":
            data: dict[str, Any] = {"to": self._party(argument)}
            if self.location:
                data["location"] = self.location
            return "ship", data
        if command == "RECEIVE":
            shipment, _, condition = argument.partition(" ")
            shipment = _unprefix(shipment, "SHIPMENT:")
            if not _EVENT_ID.fullmatch(shipment):
                raise ScanError(
                    f"RECEIVE needs the ship event id (64 hex digits), got {_shown(shipment)}"
                )
            data = {"shipment": shipment.lower()}
            if self.location:
                data["location"] = self.location
            if condition.strip():
                data["condition"] = condition.strip()
            return "receive", data
        return command.lower(), {"device": self._device(argument)}

    def _party(self, text: str) -> str:
        if is_did_key(text):
            return text
        name = _unprefix(text, "PARTY:")
        did = _lookup(self.parties, name)
        if did is None:
            known = ", ".join(sorted(self.parties)) or "none configured"
            raise ScanError(f"unknown party {name!r} (known: {known}; or scan its did:key)")
        return did

    def _device(self, text: str) -> str:
        if is_did_key(text):
            return text
        name = _unprefix(text, "DEVICE:")
        if name.upper() in GATEWAY_WORDS and self.gateway_did:
            return self.gateway_did
        did = _lookup(self.devices, name)
        if did is None:
            known = ", ".join(sorted(self.devices)) or "none configured"
            raise ScanError(
                f"unknown device {name!r} (known: {known}, GATEWAY; or scan its did:key)"
            )
        return did

    def _result(self, ok: bool, message: str) -> DockResult:
        return DockResult(ok, message, None, tuple(self.lots), self.awaiting)


_ARGUMENT_NAMES = {
    "SHIP": "the receiving party (PARTY:name or did:key)",
    "RECEIVE": "the shipment (SHIPMENT:event id)",
    "ATTACH": "the device (DEVICE:name, did:key or GATEWAY)",
    "DETACH": "the device (DEVICE:name, did:key or GATEWAY)",
}


def _unprefix(text: str, prefix: str) -> str:
    return text[len(prefix) :].strip() if text.upper().startswith(prefix) else text


def _lookup(names: Mapping[str, str], name: str) -> str | None:
    if name in names:
        return names[name]
    folded = {key.casefold(): value for key, value in names.items()}
    return folded.get(name.casefold())


def _lot_name(uri: str) -> str:
    gtin, lot = gs1.parse_lot_uri(uri)
    return f"{gtin}/{lot}"


def _shown(text: str, limit: int = 80) -> str:
    shown = text.replace(GS, "<GS>")
    return repr(shown if len(shown) <= limit else shown[:limit] + "…")


# --- the local form ----------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Dock {name}</title>
<style>
body{{font:18px/1.4 system-ui,sans-serif;max-width:40em;margin:1em auto;padding:0 1em}}
textarea,input,select,button{{font:inherit;width:100%;box-sizing:border-box;margin:.2em 0 .8em}}
button{{padding:.6em;background:#124;color:#fff;border:0}}
.ok{{background:#dfd;padding:.6em}} .err{{background:#fdd;padding:.6em}}
code{{word-break:break-all}}
</style></head><body>
<h1>Dock {name}</h1>
<p>Signs as <b>{party}</b>.</p>
{message}
<form method="post" action="/">
<input type="hidden" name="token" value="{token}">
<label>Lots (one GS1 Digital Link URI or element string per line)
<textarea name="lots" rows="6" autofocus>{lots}</textarea></label>
<label>Action <select name="action">{options}</select></label>
<label>Party (ship), shipment event id and condition (receive), or device (attach/detach)
<input name="argument" value="{argument}"></label>
<button type="submit">Sign and queue</button>
</form>
<p>Known parties: {parties}. Known devices: {devices}, GATEWAY.</p>
</body></html>
"""


class DockForm:
    """Renders and handles the dock form; transport-free, so tests call it directly."""

    def __init__(self, make_session: Callable[[], DockSession], party: str, name: str = "dock"):
        self.make_session = make_session
        self.party = party
        self.name = name
        self.token = secrets.token_urlsafe(16)

    def page(
        self, result: DockResult | None = None, fields: Mapping[str, str] | None = None
    ) -> str:
        fields = fields or {}
        message = ""
        if result is not None:
            css = "ok" if result.ok else "err"
            message = f'<p class="{css}" role="status">{html.escape(result.message)}</p>'
        chosen = fields.get("action", "ship")
        options = "".join(
            f'<option value="{word.lower()}"{" selected" * (word.lower() == chosen)}>'
            f"{word.capitalize()}</option>"
            for word in COMMANDS
        )
        session = self.make_session()
        return _PAGE.format(
            name=html.escape(self.name),
            party=html.escape(self.party),
            message=message,
            token=self.token,
            lots=html.escape(fields.get("lots", "")),
            options=options,
            argument=html.escape(fields.get("argument", "")),
            parties=html.escape(", ".join(sorted(session.parties)) or "none"),
            devices=html.escape(", ".join(sorted(session.devices)) or "none"),
        )

    def submit(self, fields: Mapping[str, str]) -> tuple[HTTPStatus, DockResult]:
        """Check every lot first, then sign one event; all or nothing."""
        if not secrets.compare_digest(fields.get("token", ""), self.token):
            return HTTPStatus.FORBIDDEN, DockResult(False, "stale form: reload the page")
        session = self.make_session()
        errors = []
        for number, line in enumerate(fields.get("lots", "").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                session.add_lot(line)
            except ScanError as exc:
                errors.append(f"line {number}: {exc}")
        if errors:
            return HTTPStatus.BAD_REQUEST, DockResult(False, "; ".join(errors))
        try:
            result = session.execute(fields.get("action", ""), fields.get("argument", ""))
        except ScanError as exc:
            result = DockResult(False, str(exc))
        except ValidationError as exc:
            result = DockResult(False, f"refused: {exc}")
        except (OSError, ProvenanceError) as exc:
            log.exception("%s form: could not queue the event", self.name)
            result = DockResult(False, f"could not queue the event: {exc}")
        (log.info if result.ok else log.warning)("%s form: %s", self.name, result.message)
        return (HTTPStatus.OK if result.ok else HTTPStatus.BAD_REQUEST), result

    def handle_request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[HTTPStatus, str, bytes]:
        """(status, content type, body) for one HTTP request."""
        route = urlsplit(path).path
        if route != "/":
            return HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n"
        if method == "GET":
            return HTTPStatus.OK, "text/html; charset=utf-8", self.page().encode()
        if method != "POST":
            return HTTPStatus.METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", b"GET or POST\n"
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            result = DockResult(False, "the form data is not UTF-8 form encoding")
            return HTTPStatus.BAD_REQUEST, "text/html; charset=utf-8", self.page(result).encode()
        fields = {key: values[0] for key, values in parsed.items()}
        status, result = self.submit(fields)
        shown = {} if result.ok else fields
        return status, "text/html; charset=utf-8", self.page(result, shown).encode()
