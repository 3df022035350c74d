"""Languages and reading preferences of the consumer page.

English and Simplified Chinese (Flask-Babel; catalogs in `translations/`,
the `.mo` files are compiled from the `.po` files and committed, and a test
checks they are current). The language comes from ``?lang=`` (remembered in a
cookie), then that cookie, then ``Accept-Language``. ``?text=large`` switches
on the large-text mode the same way. Both work without JavaScript.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, g, request
from flask_babel import Babel, get_locale
from flask_babel import gettext as _
from markupsafe import Markup

from provenance.core.timefmt import format_time
from provenance.domain.coldchain import MINUTE

from . import wording
from .links import url_with

LANGUAGES = {"en": "English", "zh": "中文"}
HTML_LANG = {"en": "en", "zh": "zh-CN"}
TEXT_SIZES = ("normal", "large")
COOKIE_AGE = 365 * 24 * 3600


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "en")
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(_translations()))
    Babel(app, locale_selector=select_language)
    app.jinja_env.globals.update(
        LANGUAGES=LANGUAGES,
        language=language,
        html_lang=lambda: HTML_LANG[language()],
        text_size=text_size,
        when=when,
        when_text=wording.time_element_text,
        iso=format_time,
        day=day,
        duration=duration,
        url_with=url_with,
        **wording.GLOBALS,
    )
    app.after_request(_remember)
    app.after_request(wording.remember_zone)


def _translations() -> Path:
    return Path(__file__).resolve().parent / "translations"


def select_language() -> str:
    asked = request.args.get("lang") or request.cookies.get("lang")
    if asked in LANGUAGES:
        return asked
    return request.accept_languages.best_match(list(LANGUAGES), default="en") or "en"


def language() -> str:
    return str(get_locale() or "en").split("_")[0]


def text_size() -> str:
    asked = request.args.get("text") or request.cookies.get("text")
    return asked if asked in TEXT_SIZES else "normal"


def _remember(response: Response) -> Response:
    """Keep ?lang= and ?text= choices for the next page."""
    for name, allowed in (("lang", LANGUAGES), ("text", TEXT_SIZES)):
        value = request.args.get(name)
        if value in allowed and request.cookies.get(name) != value:
            response.set_cookie(
                name, value, max_age=COOKIE_AGE, samesite="Lax", secure=request.is_secure
            )
    response.vary.add("Accept-Language")
    response.vary.add("Cookie")
    return response


def when(time_us: int | None) -> Markup | str:
    """A moment as the scan page shows it, in the reader's zone and language as
    the portal does (wording.moment): ``21 Sep 2026, 15:05`` in a ``<time>``
    element with the UTC time on hover, which the browser's script rewrites in
    its own zone (wording.time_element); the footer names the zone once."""
    return wording.time_element(time_us)


def day(time_us: int) -> str:
    return format_time(time_us)[:10]


def duration(us: int) -> str:
    """A span in the page's language: ``2 h 5 min`` / ``2 小时 5 分钟``."""
    minutes = max(0, round(us / MINUTE))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = []
    if days:
        parts.append(_("%(n)d d", n=days))
    if hours:
        parts.append(_("%(n)d h", n=hours))
    if minutes or not parts:
        parts.append(_("%(n)d min", n=minutes))
    return " ".join(parts)


def cached_key() -> tuple[str, str, str]:
    """What of the reader's preferences changes a rendered page."""
    if "prefs" not in g:
        g.prefs = (language(), text_size(), wording.zone_name())
    return g.prefs
