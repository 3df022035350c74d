"""Reasons in the reader's language: on a Chinese page no reason is English,
except text a person typed, which is marked with its language (docs/scan.md,
"Reasons")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.rules import VAX, service, vaccine_world
from support.world import LOT

from provenance.core import gs1
from provenance.web import create_app, reasons
from provenance.web.i18n import LANGUAGES

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("status", "integrity")
ALLOWED_LATIN = {"C"}  # °C


def app_for(world):
    return create_app(
        {
            "DATABASE": str(world.store.path),
            "CLOCK": lambda: world.now,
            "LOG_PUBLIC_KEY": world.log_public_key,
            "TESTING": True,
        }
    )


def english_in(page: str) -> list[str]:
    """Latin words in the page's status and record-check sections once text
    marked as typed in English (lang="en") is taken out."""
    found = []
    for section in SECTIONS:
        match = re.search(rf'<section id="{section}".*?</section>', page, flags=re.S)
        if match is None:
            continue
        html = re.sub(r'<span lang="en">[^<]*</span>', " ", match.group())
        html = re.sub(r"<a [^>]*>[^<]*</a>", " ", html)  # links: lot codes, file names
        html = re.sub(r"<pre>.*?</pre>", " ", html, flags=re.S)  # a command to type
        text = re.sub(r"<[^>]+>", " ", html)
        text = re.sub(r"\S*[./]\S*", " ", text)  # names of logs and files (test.local/log)
        text = re.sub(r"\{[a-z]+\}", " ", text)  # verify.js's placeholders ({n}, {name})
        text = re.sub(r"\b(Ed25519|WebCrypto)\b", " ", text)  # names of techniques, not words
        found += [w for w in re.findall(r"[A-Za-z]+", text) if w not in ALLOWED_LATIN]
    return found


def test_a_hold_by_the_rules_engine_is_worded_in_chinese(tmp_path):
    world = vaccine_world(tmp_path / "ledger")
    service(world, tmp_path).run_once()
    client = app_for(world).test_client()
    path = VAX.removeprefix(gs1.DEFAULT_BASE)
    zh = client.get(f"{path}?lang=zh").get_data(as_text=True)
    assert "暂停使用" in zh
    assert "温度记录仪" in zh and "最长的一次偏离持续了 3 小时 15 分钟" in zh, zh
    assert english_in(zh) == []
    assert '<span lang="en">probe</span>' in zh  # the logger's name, as typed, marked
    en = client.get(f"{path}?lang=en").get_data(as_text=True)
    assert "The longest excursion lasted 3 h 15 min (tolerated: 1 h)." in en


def test_a_record_that_does_not_verify_says_why_in_chinese(file_world):
    world = file_world
    world.ledger.append([world.reading(1 + k / 4, 3.0) for k in range(8)])
    row = world.store.conn.execute("SELECT idx, sig FROM events WHERE kind = 4 LIMIT 1").fetchone()
    forged = bytes([row[1][0] ^ 1]) + row[1][1:]
    world.store.conn.execute("UPDATE events SET sig = ? WHERE idx = ?", (forged, row[0]))
    page = app_for(world).test_client().get(LOT.removeprefix(gs1.DEFAULT_BASE) + "?lang=zh")
    zh = page.get_data(as_text=True)
    assert "1 个签名无法验证。" in zh
    assert english_in(zh) == [], english_in(zh)


def test_every_reason_code_the_ledger_gives_has_words(file_world):
    """Closes the class: each Reason code written anywhere in provenance/ is
    worded by the page, in every language it offers (not as the English)."""
    codes = set()
    for source in (ROOT / "provenance").rglob("*.py"):
        codes |= set(re.findall(r'Reason\(\s*"([a-z-]+)"', source.read_text()))
    assert {"bad-signatures", "history-differs", "expired"} <= codes
    app = app_for(file_world)
    for language in LANGUAGES:
        with app.test_request_context(f"/?lang={language}"):
            for code in sorted(codes):
                words = reasons._coded(code, {"count": 2, "date": "2026-01-01", "detail": "x"})
                assert words, f"no words for reason code {code!r}"
                if language == "zh":
                    assert not re.search(r"[A-Za-z]{2,}", str(words)), (code, words)


@pytest.mark.parametrize(
    ("text", "lang"),
    [("Baby spinach", "en"), ("菠菜", "zh-CN"), ("12345", None), ("Farm 农场", "zh-CN")],
)
def test_typed_text_is_marked_with_its_language(text, lang):
    assert reasons.text_lang(text) == lang
