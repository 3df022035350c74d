"""Human wording shared by the scan page and the portal: what happened to a lot
as a sentence ("Shipped by A to B"), amounts with their units by name
("1,600 packs", "500 kg"), moments in the reader's time zone and language, and
the few technical terms that must stay, explained on hover.

Plurals come from the catalog (`ngettext`), numbers and dates from Babel in the
page's language; nothing here builds a plural or a date by hand. The time zone
comes from ``?tz=`` (remembered in a cookie), then that cookie (set once by
``static/tz.js`` from the browser's own zone), else UTC, shown as such.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_datetime
from babel.numbers import format_decimal
from flask import Response, current_app, g, request
from flask_babel import get_locale, lazy_gettext, ngettext
from flask_babel import gettext as _
from markupsafe import Markup, escape

from provenance.core.errors import ValidationError
from provenance.core.timefmt import format_time, parse_time

COOKIE_AGE = 365 * 24 * 3600
FRACTION_COUNT = 2  # the count a fraction takes its plural form from
MAX_ZONE_NAME = 64

# The common UN/CEFACT Recommendation 20 codes a form offers, in the order of
# the list; any other valid code still shows, as its code.
UNIT_CHOICES = ("EA", "KGM", "GRM", "TNE", "LTR", "MLT", "CS", "BX", "PK", "BO", "DZN", "MTR")

# The name of each unit as a list shows it (no number).
UNIT_NAMES = {
    "EA": lazy_gettext("packs (each)"),
    "KGM": lazy_gettext("kilograms (kg)"),
    "GRM": lazy_gettext("grams (g)"),
    "TNE": lazy_gettext("tonnes (t)"),
    "LTR": lazy_gettext("litres (L)"),
    "MLT": lazy_gettext("millilitres (mL)"),
    "CS": lazy_gettext("cases"),
    "BX": lazy_gettext("boxes"),
    "PK": lazy_gettext("packages"),
    "BO": lazy_gettext("bottles"),
    "DZN": lazy_gettext("dozens"),
    "MTR": lazy_gettext("metres (m)"),
}

# Party roles and how a recall reached a lot, as a person says them.
ROLE_NAMES = {
    "producer": lazy_gettext("producer"),
    "processor": lazy_gettext("processor"),
    "carrier": lazy_gettext("carrier"),
    "distributor": lazy_gettext("distributor"),
    "retailer": lazy_gettext("retailer"),
    "clinic": lazy_gettext("clinic"),
    "inspector": lazy_gettext("inspector"),
    "regulator": lazy_gettext("regulator"),
    "registrar": lazy_gettext("registrar"),
    "admin": lazy_gettext("administrator"),
    "device": lazy_gettext("device"),
}
RELATIONS = {
    "named": lazy_gettext("named in the recall"),
    "downstream": lazy_gettext("made from a recalled lot"),
}


def role_name(role: str | None) -> str:
    return str(ROLE_NAMES.get(role or "", role or ""))


def relation_name(relation: str | None) -> str:
    return str(RELATIONS.get(relation or "", relation or ""))


# The glossary: technical terms that stay on the portal, each explained on hover.
GLOSSARY = {
    "GTIN": lazy_gettext("Global Trade Item Number: the product's barcode number"),
    "SHA-256": lazy_gettext("A fingerprint of the file: any change to it gives another"),
    "checkpoint": lazy_gettext(
        "A signed summary of the public log at one size; a later one must contain it"
    ),
    "lot URI": lazy_gettext("The lot's web address, printed in its QR code"),
    "chain": lazy_gettext("Each event of a lot names the one before it, so none can be removed"),
    "UN/CEFACT": lazy_gettext("The United Nations' list of unit codes (KGM for kilograms…)"),
}


def amount(value: Any, unit: str | None) -> str:
    """``1,600 packs`` / ``1,600 件``: the number in the page's language, the unit
    by name with its plural from the catalog."""
    number = _number(value)
    if number is None:
        return f"{value} {unit or ''}".strip()
    n = format_decimal(number, locale=_locale())
    # gettext's plural rules take whole numbers; a fraction ("2.5 packs") reads
    # as many, as CLDR's English and Chinese rules have it.
    plural = round(number) if number % 1 == 0 else FRACTION_COUNT
    code = (unit or "").upper()
    if code == "EA":
        return ngettext("%(n)s pack", "%(n)s packs", plural, n=n)
    if code == "KGM":
        return _("%(n)s kg", n=n)
    if code == "GRM":
        return _("%(n)s g", n=n)
    if code == "TNE":
        return _("%(n)s t", n=n)
    if code == "LTR":
        return _("%(n)s L", n=n)
    if code == "MLT":
        return _("%(n)s mL", n=n)
    if code == "MTR":
        return _("%(n)s m", n=n)
    if code == "CS":
        return ngettext("%(n)s case", "%(n)s cases", plural, n=n)
    if code == "BX":
        return ngettext("%(n)s box", "%(n)s boxes", plural, n=n)
    if code == "PK":
        return ngettext("%(n)s package", "%(n)s packages", plural, n=n)
    if code == "BO":
        return ngettext("%(n)s bottle", "%(n)s bottles", plural, n=n)
    if code == "DZN":
        return ngettext("%(n)s dozen", "%(n)s dozen", plural, n=n)
    return f"{n} {code}".strip()


def quantity_text(quantity: Any) -> str:
    """A protocol quantity ``{value, unit}`` (or a `Quantity`-like object) as words."""
    if isinstance(quantity, dict):
        return amount(quantity.get("value"), quantity.get("unit"))
    value, unit = getattr(quantity, "value", None), getattr(quantity, "unit", None)
    if value is None:
        return str(quantity)
    return amount(value, unit)


def _number(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def count(n: int, singular: str, plural: str) -> str:
    return ngettext(singular, plural, n)


def step_sentence(step: Any) -> str:
    """What one event did to the lot, as a sentence in the page's language.
    The one mapping of event kinds to words: the scan page and the portal
    both use it."""
    kind = step.kind
    a = step.actor.name
    other = step.counterpart.name if step.counterpart else "?"
    details = step.details or {}
    if kind == "commission":
        return _("Produced by %(a)s", a=a)
    if kind == "transform":
        if details.get("role") == "output":
            return ngettext(
                "Made by %(a)s from %(num)d lot",
                "Made by %(a)s from %(num)d lots",
                details.get("inputs", 0),
                a=a,
            )
        return ngettext(
            "Used by %(a)s to make %(num)d new lot",
            "Used by %(a)s to make %(num)d new lots",
            details.get("outputs", 0),
            a=a,
        )
    if kind == "ship":
        if details.get("purpose") == "recall-return":
            return _("Sent back under the recall by %(a)s to %(b)s", a=a, b=other)
        return _("Shipped by %(a)s to %(b)s", a=a, b=other)
    if kind == "receive":
        return _("Received by %(a)s", a=a)
    if kind == "attach":
        return _("Temperature logger %(d)s attached by %(a)s", d=other, a=a)
    if kind == "detach":
        return _("Temperature logger %(d)s removed by %(a)s", d=other, a=a)
    if kind == "inspect":
        if details.get("result") == "pass":
            return _("Inspected by %(a)s: passed", a=a)
        return _("Inspected by %(a)s: failed", a=a)
    if kind == "recall":
        return _("Recalled by %(a)s", a=a)
    if kind == "recall-lift":
        return _("Recall lifted by %(a)s", a=a)
    if kind == "recall-ack":
        return _("Recall acknowledged by %(a)s", a=a)
    if kind == "dispense":
        return _("Dispensed by %(a)s", a=a)
    if kind == "hold":
        return _("Put on hold by the safety rule %(r)s", r=details.get("rule", "?"))
    if kind == "release":
        return _("Released from hold by %(a)s", a=a)
    if kind == "flag":
        return _("Flagged by a safety rule: %(s)s", s=details.get("signal", "?"))
    if kind == "epcis":
        return _("Record imported by %(a)s", a=a)
    if kind == "pack":  # docs/protocol.md, "Pallets and cases"
        return _("Packed by %(a)s on (00) %(s)s", a=a, s=details.get("sscc", "?"))
    if kind == "unpack":
        return _("Unpacked by %(a)s from (00) %(s)s", a=a, s=details.get("sscc", "?"))
    if kind == "cool":
        return _("Cooled by %(a)s", a=a)
    if kind == "serials":
        return ngettext(
            "%(num)d serial number issued by %(a)s",
            "%(num)d serial numbers issued by %(a)s",
            details.get("serials", 0),
            a=a,
        )
    return f"{kind} · {a}"


def term(word: str, shown: str | None = None) -> Markup:
    """A glossary term with its explanation on hover (``<abbr title>``)."""
    explained = GLOSSARY.get(word)
    text = escape(shown if shown is not None else word)
    if explained is None:
        return Markup(text)
    return Markup('<abbr title="{}">{}</abbr>').format(str(explained), text)


def _locale() -> str:
    return str(get_locale() or "en")


def zone_name() -> str:
    """The reader's time zone: ``?tz=``, the ``tz`` cookie (set by ``static/tz.js``
    from the browser's zone), else the app's ``DEFAULT_TZ`` (``provenance serve
    --default-tz``), else UTC (docs/scan.md, "Times")."""
    if "zone" not in g:
        g.zone = default_zone()
        for asked in (request.args.get("tz"), request.cookies.get("tz")):
            if asked and _zone(asked) is not None:
                g.zone = asked
                break
    return str(g.zone)


def zone_name_element() -> Markup:
    """The zone's name where a page states it once, for ``static/tz.js`` to
    rewrite when it shows the page's times in the browser's zone."""
    return Markup('<span data-zone-name="">{}</span>').format(zone_name())


def default_zone() -> str:
    """The zone of pages for readers who have none yet (no JavaScript, or the
    first page before it runs): the app's DEFAULT_TZ, checked at start."""
    return str(current_app.config.get("DEFAULT_TZ") or "UTC")


def check_zone(name: str) -> str:
    """*name* if it is an IANA time zone this machine knows, else ValueError
    saying what to give."""
    if _zone(name) is None:
        raise ValueError(
            f"{name!r} is not a time zone this machine knows; give an IANA name such as "
            "Asia/Shanghai, Europe/Berlin or UTC"
        )
    return name


def _zone(name: str) -> ZoneInfo | None:
    if len(name) > MAX_ZONE_NAME or name.startswith("/") or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def moment(time_us: int | None, *, with_zone: bool = True) -> str:
    """A moment in the reader's zone and language: ``6 Dec 2026, 14:28 (Europe/Berlin)``,
    ``2026年12月6日 14:28 (UTC)``; without the zone's name when the page says it
    once (the scan page's footer)."""
    if time_us is None:
        return _("now")
    name = zone_name()
    zone = _zone(name) or ZoneInfo("UTC")
    at = datetime.fromtimestamp(time_us / 1_000_000, tz=UTC)
    pattern = "d MMM y, HH:mm" if _locale().startswith("en") else "y年M月d日 HH:mm"
    text = format_datetime(at, pattern, tzinfo=zone, locale=_locale())
    return f"{text} ({name})" if with_zone else text


def time_element(time_us: int | None, *, with_zone: bool = False) -> Markup | str:
    """`moment` in a ``<time>`` element that says the instant (``datetime``) and
    the UTC time on hover (``title``), and that ``static/tz.js`` may rewrite in
    the browser's own zone (``data-local``)."""
    if time_us is None:
        return _("now")
    utc = datetime.fromtimestamp(time_us / 1_000_000, tz=UTC)
    return Markup('<time datetime="{}" title="{}" data-local="{}">{}</time>').format(
        format_time(time_us),
        utc.strftime("%Y-%m-%d %H:%M UTC"),
        "zoned" if with_zone else "plain",
        moment(time_us, with_zone=with_zone),
    )


def time_element_text(text: str | None, *, with_zone: bool = False) -> Markup | str:
    """`time_element` of a protocol time string; other text as it is."""
    if not text:
        return ""
    try:
        return time_element(parse_time(text), with_zone=with_zone)
    except ValidationError:
        return text


def moment_text(text: str | None, *, with_zone: bool = True) -> str:
    """`moment` of a protocol time string (``2026-12-06T13:28:27.076Z``)."""
    if not text:
        return ""
    try:
        return moment(parse_time(text), with_zone=with_zone)
    except ValidationError:
        return text


def remember_zone(response: Response) -> Response:
    asked = request.args.get("tz")
    if asked and _zone(asked) is not None and request.cookies.get("tz") != asked:
        response.set_cookie(
            "tz", asked, max_age=COOKIE_AGE, samesite="Lax", secure=request.is_secure
        )
    return response


def size_text(n_bytes: int) -> str:
    """``4.2 MB`` in the page's language."""
    units = ((1_000_000_000, "GB"), (1_000_000, "MB"), (1_000, "kB"))
    for factor, name in units:
        if n_bytes >= factor:
            return f"{format_decimal(round(n_bytes / factor, 1), locale=_locale())} {name}"
    return ngettext("%(num)d byte", "%(num)d bytes", n_bytes)


GLOBALS = {
    "amount": amount,
    "role_name": role_name,
    "relation_name": relation_name,
    "quantity_text": quantity_text,
    "step_sentence": step_sentence,
    "term": term,
    "moment": moment,
    "moment_text": moment_text,
    "zone_name": zone_name,
    "time_element": time_element,
    "zone_name_element": zone_name_element,
    "time_element_text": time_element_text,
    "size_text": size_text,
    "UNIT_CHOICES": UNIT_CHOICES,
    "UNIT_NAMES": UNIT_NAMES,
    "format_time": format_time,
}


# --- the cold chain over a lot's whole life, and what it inherits from its ingredients
# (docs/coldchain.md, "The whole life of a lot"; docs/scan.md, "Ingredients"). The
# verdict is `provenance.domain.coldchain_life`'s; these only say it.


def leg_name(leg: Any) -> str:
    """A leg of the journey (`coldchain_life.LegCover`) as a person says it."""
    if leg.receiver is not None:
        return _("in transit from %(a)s to %(b)s", a=leg.holder, b=leg.receiver)
    return _("with %(a)s", a=leg.holder)


def _direction(excursion: Any) -> str:
    if excursion is None:
        return _("out of range")
    return {"high": _("too warm"), "low": _("too cold")}.get(excursion.direction, _("out of range"))


def life_sentences(life: Any, *, with_zone: bool = True) -> list[str]:
    """What is known of the lot's temperature over its whole life, and what is not,
    in the page's language: the same for the scan page and the portal (the scan page
    names the time zone once, in its footer: *with_zone* False)."""
    from provenance.web.i18n import duration  # i18n imports this module

    if life is None:
        return []
    said: list[str] = []
    if life.state == "unmonitored":
        said.append(
            _(
                "No temperature logger recorded it on any leg of its journey. It must be "
                "kept at %(band)s; whether it was is not known.",
                band=life.band,
            )
        )
        return said
    if life.excursions:
        said.append(
            _(
                "Outside %(band)s for %(d)s in all over its journey.",
                band=life.band,
                d=duration(life.time_out_of_range_us),
            )
        )
        longest = life.longest
        said.append(
            _(
                "Longest excursion: %(d)s %(dir)s from %(t)s.",
                d=duration(longest.duration_us),
                dir=_direction(longest),
                t=moment(longest.start_us, with_zone=with_zone),
            )
        )
        if life.peak is not None:
            said.append(_("Peak: %(p)s °C.", p=f"{life.peak.peak_c:.1f}"))
    if life.mkt_c is not None and life.excursions:
        said.append(_("On average, as good as kept at %(m)s °C.", m=f"{life.mkt_c:.1f}"))
    if life.state == "tolerance-exceeded":
        said.append(_("Beyond what this product tolerates."))
    elif life.state == "excursion":
        said.append(_("Within what this product tolerates."))
    if life.unmonitored_legs or life.gaps:  # partly known: say what is, then what is not
        watched = len(life.legs) - len(life.unmonitored_legs)
        said.append(
            ngettext(
                "Its temperature was recorded on %(k)s of its %(num)d leg, by %(who)s.",
                "Its temperature was recorded on %(k)s of its %(num)d legs, by %(who)s.",
                len(life.legs),
                k=watched,
                who=", ".join(record.name for record, _status in life.records),
            )
            if life.legs
            else _(
                "Its temperature was recorded by %(who)s.",
                who=", ".join(record.name for record, _status in life.records),
            )
        )
    for leg in life.unmonitored_legs:
        said.append(_("No temperature logger %(leg)s.", leg=leg_name(leg)))
    for start, end in life.gaps:
        said.append(_("No readings for %(d)s from %(t)s", d=duration(end - start), t=moment(start)))
    if life.state == "ok":
        said.append(_("It stayed within %(band)s on every leg.", band=life.band))
    return said


def ingredient_path(path: tuple[str, ...]) -> str:
    """("Dressing", "Olive oil") → "Olive oil in the Dressing", as the language says it."""
    text = path[-1]
    for outer in reversed(path[:-1]):
        text = _("%(inner)s in the %(outer)s", inner=text, outer=outer)
    return text


def inherited_sentence(item: Any) -> str:
    """One thing a lot inherits from an ingredient (`lot_view.Inherited`), with the path:
    "The Kale in this product was too warm for 3 h."."""
    from provenance.web.i18n import duration  # i18n imports this module

    what = ingredient_path(item.path)
    if item.state == "recalled":
        return _(
            "The %(what)s in this product was recalled: %(r)s", what=what, r=" ".join(item.reasons)
        )
    if item.state == "held":
        return _(
            "The %(what)s in this product is on hold: %(r)s", what=what, r=" ".join(item.reasons)
        )
    life = item.life
    if item.state == "excursion" and life is not None:
        return _(
            "The %(what)s in this product was %(dir)s for %(d)s.",
            what=what,
            dir=_direction(life.longest),
            d=duration(life.time_out_of_range_us),
        )
    if item.state == "unmonitored":
        return _("The temperature of the %(what)s in this product was not recorded.", what=what)
    return _(
        "The temperature of the %(what)s in this product was not recorded all the way.",
        what=what,
    )


GLOBALS.update(
    life_sentences=life_sentences,
    inherited_sentence=inherited_sentence,
    leg_name=leg_name,
)
