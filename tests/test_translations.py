"""The Chinese catalog covers every message of the web app, and the compiled
catalog Flask-Babel loads is the one built from the committed .po file."""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

WEB = Path(__file__).resolve().parent.parent / "provenance" / "web"
CATALOG = WEB / "translations" / "zh" / "LC_MESSAGES"
METHODS = [("templates/**.html", "jinja2"), ("**.py", "python")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2)}


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


def test_compiled_catalog_is_current():
    with open(CATALOG / "messages.po", "rb") as f:
        catalog = read_po(f)
    built = io.BytesIO()
    write_mo(built, catalog)
    assert (CATALOG / "messages.mo").read_bytes() == built.getvalue(), (
        "messages.mo is stale: run `.venv/bin/pybabel compile -d provenance/web/translations`"
    )
