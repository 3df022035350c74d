"""The font for a label's text: a file with a glyph for every character, found per text.

Order: the caller's file, then ``$PROVENANCE_LABEL_FONT``, then fontconfig's best
sans-serif for exactly these characters (``fc-match -s``, with ``:lang=zh-cn`` for Han),
then a few well-known files by name, then Pillow's built-in font (ASCII only). Coverage is
checked glyph by glyph against the ``.notdef`` glyph. docs/labels.md ("Fonts") gives the
reasons. Reads the environment and runs ``fc-match``; nothing else.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from PIL import ImageFont

from provenance.core.errors import ValidationError

FONT_ENV = "PROVENANCE_LABEL_FONT"
"""Environment variable naming a font file to try first for the label text."""

NOTDEF_PROBE = "\U0010fffd"  # a noncharacter no font maps: draws the .notdef glyph
WIDE = frozenset("WF")  # East Asian Width classes that take a full em
KNOWN_FONTS = ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "NotoSans-Regular.ttf")


# --- fonts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Font:
    """A font file (None: Pillow's built-in font) and the face inside it."""

    path: str | None
    index: int = 0

    def load(self, size: float) -> ImageFont.FreeTypeFont:
        return load_font(self.path, self.index, round(size, 2))

    @property
    def family(self) -> str:
        return str(self.load(20).getname()[0])

    def covers(self, text: str) -> bool:
        """True when the face has a glyph for every visible character of ``text``."""
        font = self.load(24)
        notdef = glyph(font, NOTDEF_PROBE)
        for char in set(text):
            if char.isspace() or unicodedata.category(char) in ("Mn", "Me", "Cf"):
                continue
            if glyph(font, char) == notdef:
                return False
        return True


@functools.lru_cache(maxsize=64)
def load_font(path: str | None, index: int, size: float) -> ImageFont.FreeTypeFont:
    if path is None:
        return ImageFont.load_default(size=size)  # type: ignore[return-value]
    return ImageFont.truetype(path, size=size, index=index)


def glyph(font: ImageFont.FreeTypeFont, char: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(char, mode="L")
    return mask.size, bytes(mask)


@functools.lru_cache(maxsize=256)
def search(text: str, preferred: str | None, from_env: str | None) -> Font | None:
    for field, path in (("font", preferred), (FONT_ENV, from_env)):
        if path:
            try:
                font = Font(path)
                font.load(12)
            except OSError as exc:
                raise ValidationError(field, f"cannot load font {path!r}: {exc}") from None
            if font.covers(text):
                return font
    for font in fontconfig_fonts(text):
        try:
            if font.covers(text):
                return font
        except OSError:
            continue
    for name in KNOWN_FONTS:  # no fontconfig: Pillow searches the usual font folders
        try:
            font = Font(name)
            if font.covers(text):
                return font
        except OSError:
            continue
    builtin = Font(None)
    return builtin if builtin.covers(text) else None


def find_font(text: str, preferred: str | None) -> Font | None:
    """A font with glyphs for all of ``text``: ``preferred``, then $PROVENANCE_LABEL_FONT,
    then fontconfig's choice for a sans-serif covering these characters, then a few
    well-known files, then Pillow's built-in font (ASCII only). None when nothing covers."""
    return search(text, preferred, os.environ.get(FONT_ENV) or None)


FONTCONFIG_CANDIDATES = 12


def fontconfig_fonts(text: str) -> list[Font]:
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return []
    chars = sorted({ord(char) for char in text if not char.isspace()})
    pattern = "sans-serif:charset=" + " ".join(f"{c:x}" for c in chars)
    if any("CJK" in unicodedata.name(chr(c), "") for c in chars):
        pattern += ":lang=zh-cn"  # Simplified Chinese glyph forms for Han characters
    try:
        done = subprocess.run(
            [fc_match, "-s", "--format=%{file}\t%{index}\n", pattern],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    fonts: list[Font] = []
    for line in done.stdout.splitlines():
        path, _, index = line.partition("\t")
        font = Font(path, int(index) if index.isdigit() else 0)
        if path.lower().endswith((".ttf", ".otf", ".ttc", ".otc")) and font not in fonts:
            fonts.append(font)
        if len(fonts) == FONTCONFIG_CANDIDATES:
            break
    return fonts


def measurer(font: Font | None, size: float) -> Callable[[str], float]:
    if font is not None:
        loaded = font.load(size)
        return lambda text: float(loaded.getlength(text))

    def estimate(text: str) -> float:  # for SVG without a local font: err on the wide side
        wide = sum(1 for char in text if unicodedata.east_asian_width(char) in WIDE)
        return (wide + 0.7 * (len(text) - wide)) * size

    return estimate
