"""Reasons in the reader's language: the scan page's words for the codes that
reasons carry (`provenance.core.reason.Reason`), for holds and flags the rules
engine signed (their evidence: ``code`` and what the rule saw), and free text
typed by a person, which is shown as typed and marked with its language
(``lang``) so that read-aloud and screen readers say it in the right voice.

Nothing here is English on a Chinese page unless a person typed it so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_babel import gettext as _
from flask_babel import ngettext
from markupsafe import Markup

from provenance.core.errors import ValidationError
from provenance.core.reason import code_of
from provenance.core.terminal import safe_text
from provenance.core.timefmt import parse_time

from . import i18n, wording

SECOND = 1_000_000
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(
        reason_text=reason_text,
        hold_reason=hold_reason,
        flag_reason=flag_reason,
        typed=typed,
        recall_class=recall_class,
    )


CLASS_NUMBERS = {"I": "1", "II": "2", "III": "3"}


def recall_class(name: Any) -> Markup:
    """A recall class as written (I, II, III), read aloud as its number, which
    every language's voice says in its own words."""
    number = CLASS_NUMBERS.get(str(name))
    if number is None:
        return typed(name)
    return Markup('<span data-speak-as="{}">{}</span>').format(number, name)


def text_lang(text: str) -> str | None:
    """The language a person most likely typed *text* in, as a ``lang`` value:
    Chinese if it has Han characters, else English if it has Latin letters,
    else None (numbers and codes are read the same in either)."""
    if _HAN.search(text):
        return "zh-CN"
    if _LATIN.search(text):
        return "en"
    return None


def typed(text: Any) -> Markup:
    """Free text as a person typed it, marked with its language."""
    shown = safe_text(str(text))  # shown, never obeyed (docs/scan.md)
    lang = text_lang(shown)
    if lang is None or lang == i18n.HTML_LANG.get(i18n.language()):
        return Markup("{}").format(shown)
    return Markup('<span lang="{}">{}</span>').format(lang, shown)


def reason_text(reason: Any) -> Markup:
    """A reason in the page's language: worded again from its code when it has
    one this page knows, else shown as typed (a recall's reason, a note)."""
    code = code_of(reason) if isinstance(reason, str) else None
    if code is not None:
        words = _coded(code, reason.params)
        if words is not None:
            return words if isinstance(words, Markup) else Markup("{}").format(words)
    return typed(reason)


def _say(template: str, **params: Any) -> Markup:
    """A translated template (ours: trusted) with its values escaped, unless
    they are markup we made (a <time>, a marked typed text)."""
    return Markup(template) % {
        name: value if isinstance(value, Markup) else safe_text(str(value))
        for name, value in params.items()
    }


def _coded(code: str, params: Mapping[str, Any]) -> Markup | str | None:
    if code == "chain-broken":
        return _("The lot's chain of records does not match the one stored for it.")
    if code == "bad-signatures":
        count = _whole(params.get("count", 0))
        return ngettext(
            "%(num)d signature does not verify.", "%(num)d signatures do not verify.", count
        )
    if code == "no-checkpoint":
        return _("The ledger has no signed checkpoint yet.")
    if code == "not-yet-logged":
        return _("The newest event is not yet in the signed public log.")
    if code == "log-fails":
        return _("The public log does not check out.")
    if code == "history-differs":
        return _("This lot's events differ from those the signed public log holds.")
    if code == "heads-mismatch":
        return _(
            "The ledger's records do not match its signed public log, so this lot's "
            "history cannot be confirmed."
        )
    if code == "recalled":
        return _("Recalled by a regulator.")
    if code == "held":
        return _("Held by a safety rule.")
    if code == "not-checked":
        return _("The record could not be checked.")
    if code == "expired":
        return _say(_("Expired on %(d)s."), d=params.get("date", ""))
    return None


def hold_reason(hold: Any) -> Markup:
    """A hold's reason in the page's language, from the evidence the rules
    engine signed with it; a hold it cannot word (a person's) as typed."""
    words = _from_evidence(getattr(hold, "evidence", None) or {})
    return words if words is not None else typed(hold.reason)


def flag_reason(flag: Any) -> Markup:
    """A flag's reason in the page's language (as `hold_reason`)."""
    return hold_reason(flag)


def _from_evidence(evidence: Mapping[str, Any]) -> Markup | None:
    """Words for what a rule saw. The code is in the evidence of holds and flags
    signed since rules carried it; older ones are known by their evidence's shape."""
    code = evidence.get("code")
    try:
        if code == "coldchain-exceeded" or (
            code is None and "excursions" in evidence and "tolerated" in evidence
        ):
            return _coldchain(evidence)
        if code == "logger-silent" or (code is None and "silent_from" in evidence):
            return _silent(evidence)
        if code == "serial-far-apart" or (code is None and "places" in evidence):
            return _far_apart(evidence)
        if code in _SERIAL_WORDS:
            return _SERIAL_WORDS[code](evidence)
    except (KeyError, TypeError, ValueError, ValidationError):
        return None  # evidence of another shape: the signed sentence, as typed
    return None


def _whole(value: Any) -> int:
    """A whole number as signed or counted (never parsed from text here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not a whole number: {value!r}")
    return value


def _celsius(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a temperature: {value!r}")
    return value


def _seconds(value: Any) -> str:
    return i18n.duration(_whole(value) * SECOND)


def _coldchain(evidence: Mapping[str, Any]) -> Markup:
    excursions = evidence.get("excursions") or []
    longest = max((_whole(e["duration_s"]) for e in excursions), default=0)
    peak = max(
        (_celsius(e["peak_c"]) for e in excursions if e.get("direction") == "high"),
        default=None,
    )
    tolerated = evidence.get("tolerated") or {}
    parts = [
        _say(
            _(
                "Logger %(logger)s recorded temperatures beyond what this product tolerates "
                "(%(band)s)."
            ),
            logger=typed(evidence["logger_name"]),
            band=evidence.get("band", ""),
        )
    ]
    out = _whole(evidence.get("time_out_of_range_s", 0))
    if out:
        allowed = tolerated.get("max_total_s")
        parts.append(
            _say(
                _("Out of range for %(d)s in all (tolerated: %(t)s)."),
                d=_seconds(out),
                t=_seconds(allowed),
            )
            if allowed is not None
            else _say(_("Out of range for %(d)s in all."), d=_seconds(out))
        )
    if longest:
        allowed = tolerated.get("max_excursion_s")
        parts.append(
            _say(
                _("The longest excursion lasted %(d)s (tolerated: %(t)s)."),
                d=_seconds(longest),
                t=_seconds(allowed),
            )
            if allowed is not None
            else _say(_("The longest excursion lasted %(d)s."), d=_seconds(longest))
        )
    if peak is not None:
        parts.append(_say(_("Peak %(p)s °C."), p=f"{peak:.1f}"))
    return Markup(" ").join(parts)


def _silent(evidence: Mapping[str, Any]) -> Markup:
    since = wording.time_element(parse_time(evidence["silent_from"]))
    limit = _seconds(evidence["limit_s"])
    logger = typed(evidence["logger_name"])
    until = evidence.get("silent_until")
    if until is None:
        return _say(
            _("Logger %(logger)s has sent no reading since %(t)s (limit %(limit)s)."),
            logger=logger,
            t=since,
            limit=limit,
        )
    span = i18n.duration(parse_time(until) - parse_time(evidence["silent_from"]))
    return _say(
        _("Logger %(logger)s sent no reading for %(d)s from %(t)s (limit %(limit)s)."),
        logger=logger,
        d=span,
        t=since,
        limit=limit,
    )


def _far_apart(evidence: Mapping[str, Any]) -> Markup:
    places = ", ".join(str(p) for p in evidence["places"])
    return _say(
        _("serial %(s)s scanned in %(places)s within %(d)s"),
        s=evidence.get("serial", ""),
        places=places,
        d=_seconds(evidence.get("window_s", 0)),
    )


def _never_issued(evidence: Mapping[str, Any]) -> Markup:
    return _say(
        _("%(n)s serials never issued for this lot were scanned on %(day)s: %(serials)s"),
        n=_whole(evidence["count"]),
        day=str(evidence["day"]),
        serials=", ".join(str(s) for s in evidence["serials"]),
    )


def _over_scanned(evidence: Mapping[str, Any]) -> Markup:
    return _say(
        _(
            "serial %(s)s scanned %(n)s times (a pack is scanned a few times; "
            "limit %(max)s in %(d)s)"
        ),
        s=evidence.get("serial", ""),
        n=_whole(evidence["scans"]),
        max=_whole(evidence["max_scans"]),
        d=_seconds(evidence.get("window_s", 0)),
    )


def _travel(evidence: Mapping[str, Any]) -> Markup:
    return _say(
        _("serial %(s)s scanned %(km)s km apart within %(m)s minutes"),
        s=evidence.get("serial", ""),
        km=_whole(evidence["km"]),
        m=_whole(evidence["minutes"]),
    )


_SERIAL_WORDS = {
    "serial-never-issued": _never_issued,
    "serial-over-scanned": _over_scanned,
    "serial-impossible-travel": _travel,
}
