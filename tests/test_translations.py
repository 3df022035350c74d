"""The Chinese catalog covers every message of the web app, and the compiled
catalog Flask-Babel loads is the one built from the committed .po file."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

WEB = Path(__file__).resolve().parent.parent / "provenance" / "web"
CATALOG = WEB / "translations" / "zh" / "LC_MESSAGES"
METHODS = [("templates/**.html", "jinja2"), ("**.py", "python")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None}


def messages_in_code() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(WEB), METHODS, keywords=KEYWORDS
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


def test_every_message_has_a_chinese_translation():
    with open(CATALOG / "messages.po", "rb") as f:
        catalog = read_po(f)
    translated = {
        (m.id[0] if isinstance(m.id, tuple) else m.id)
        for m in catalog
        if m.id and (m.string[0] if isinstance(m.string, tuple) else m.string)
    }
    wanted = messages_in_code()
    assert len(wanted) > 80  # the extraction itself works
    missing = sorted(wanted - translated)
    assert not missing, f"add to {CATALOG / 'messages.po'} (see docs/scan.md): {missing}"


def _messages(catalog) -> dict[object, object]:
    """id -> translation of every translated message, the header left out: the
    header carries the day and the Babel version of the compile, which say
    nothing about whether the page shows the right words."""

    def key(value: object) -> object:
        return tuple(value) if isinstance(value, list) else value

    return {key(m.id): key(m.string) for m in catalog if m.id and m.string}


def test_compiled_catalog_is_current():
    with open(CATALOG / "messages.po", "rb") as f:
        wanted = _messages(read_po(f))
    with open(CATALOG / "messages.mo", "rb") as f:
        compiled = _messages(read_mo(f))
    stale = sorted(str(k) for k in wanted.keys() ^ compiled.keys())
    stale += sorted(str(k) for k in wanted.keys() & compiled.keys() if wanted[k] != compiled[k])
    assert not stale, (
        "messages.mo is stale: run `.venv/bin/pybabel compile -d provenance/web/translations`; "
        f"differs in: {stale[:10]}"
    )


# Words a portal template may show untranslated: names of formats and standards.
PORTAL_UNTRANSLATED = {
    "PDF",
    "PNG",
    "CSV",
    "XLSX",
    "EPCIS",
    "JSON",
    "LD",
    "FSMA",
    "A4",
    "UTC",
    "Provenance",
}
_TEMPLATE_CODE = re.compile(r"{#.*?#}|{%.*?%}|{{.*?}}", re.S)
_SHOWN_ATTRIBUTE = re.compile(r'\b(?:placeholder|title|aria-label|alt)="([^"]*)"')
_TAG = re.compile(r"<(script|style|pre|code)\b.*?</\1>|<[^>]+>", re.S)


def english_left_in(template: str) -> list[str]:
    """Words a reader would see that are not wrapped for translation."""
    shown = _SHOWN_ATTRIBUTE.findall(_TEMPLATE_CODE.sub(" ", template))
    text = _TAG.sub(" ", _TEMPLATE_CODE.sub(" ", template))
    words = re.findall(r"[A-Za-z][A-Za-z0-9]+", " ".join([text, *shown]))
    return [w for w in words if w not in PORTAL_UNTRANSLATED]


def test_portal_templates_show_no_untranslated_text():
    left = {
        path.name: english_left_in(path.read_text(encoding="utf-8"))
        for path in sorted((WEB / "templates" / "portal").glob("*.html"))
    }
    left = {name: words for name, words in left.items() if words}
    assert not left, f"wrap these in _() and translate them (docs/scan.md): {left}"


def test_the_untranslated_text_check_finds_english():
    assert english_left_in("<p>Ship {{ _('Ship') }}</p>") == ["Ship"]
    assert english_left_in('<input placeholder="new password">') == ["new", "password"]
    assert english_left_in("<p>{{ _('Ship') }} · <code>provenance user add</code></p>") == []
