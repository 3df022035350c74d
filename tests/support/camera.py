"""A phone camera for the browser tests: pictures of codes as a fake video
capture, and Debian's Chromium started to film them.

Chromium plays a YUV4MPEG2 file as the camera
(``--use-file-for-fake-video-capture``) and grants the permission without a
prompt (``--use-fake-ui-for-media-stream``). `write_y4m` puts a grayscale
picture (a label the project renders, a DataMatrix) in the middle of a grey
frame; `gs1_datamatrix` draws a real GS1 DataMatrix: FNC1 (codeword 232) first
and as the separator after a variable-length AI, ASCII encodation, placed and
error-corrected by ``ppf.datamatrix`` (pure Python, MIT; the project has no
DataMatrix encoder of its own).
"""

from __future__ import annotations

import codecs
import ctypes.util
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
PHONE = {"width": 390, "height": 844}
FRAME = (640, 480)
FRAMES = 10  # Chromium loops the file
GS = "\x1d"
FNC1_CODEWORD = 232
_CODEC = "datamatrix.gs1ascii"


def require_chromium():
    """Playwright's sync API, or a skip saying what is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (./run tests installs it as root)")
    if ctypes.util.find_library("atomic") is None:
        pytest.skip(
            "libatomic1, which Playwright's driver needs, is not installed (./run tests "
            "installs it as root)"
        )
    return pytest.importorskip("playwright.sync_api")


def launch_with_camera(playwright, video: Path):
    """Chromium whose only camera films `video` (a .y4m file)."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            "--no-sandbox",
            "--disable-background-networking",
            "--disable-gpu",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={video}",
        ],
        timeout=30_000,
    )


def write_y4m(path: Path, picture: Image.Image, *, frames: int = FRAMES) -> Path:
    """A still YUV4MPEG2 video (4:2:0, 640×480, 10 fps) of `picture`, scaled to fit
    with a margin on a light grey background, as a camera would see a held label."""
    width, height = FRAME
    gray = picture.convert("L")
    fit = min((width - 80) / gray.width, (height - 80) / gray.height, 1.0)
    if fit < 1.0:
        gray = gray.resize(
            (int(gray.width * fit), int(gray.height * fit)), Image.Resampling.LANCZOS
        )
    frame = Image.new("L", FRAME, 200)
    frame.paste(gray, ((width - gray.width) // 2, (height - gray.height) // 2))
    luma = frame.tobytes()
    chroma = bytes([128]) * (width // 2 * height // 2)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for _ in range(frames):
            out.write(b"FRAME\n" + luma + chroma + chroma)
    return path


def _gs1_ascii(text: str) -> tuple[bytes, int]:
    """DataMatrix ASCII encodation with GS as FNC1 (ISO/IEC 16022 §5.2.3): digit
    pairs as 130 + value, other ASCII as value + 1, FNC1 as 232."""
    out, index = [], 0
    while index < len(text):
        char = text[index]
        pair = text[index : index + 2]
        if char == GS:
            out.append(FNC1_CODEWORD)
            index += 1
        elif len(pair) == 2 and pair.isdigit():
            out.append(130 + int(pair))
            index += 2
        else:
            out.append(ord(char) + 1)
            index += 1
    return bytes(out), len(text)


def _search(name: str):
    if name != _CODEC:
        return None
    return codecs.CodecInfo(_gs1_ascii, lambda data: ("", 0), name=_CODEC)


codecs.register(_search)


def gs1_datamatrix(element_data: str, *, module: int = 10) -> Image.Image:
    """A GS1 DataMatrix of `element_data` written with GS for FNC1 and no leading
    FNC1 (``"0109506000134352" "10LOT42" GS "21X7"``): the symbol starts with FNC1."""
    datamatrix = pytest.importorskip("ppf.datamatrix")
    symbol = datamatrix.DataMatrix(GS + element_data)
    symbol.codecs = [_CODEC]  # only ours: FNC1 as 232, never a C40/text/X12 shortcut
    rows = symbol.matrix
    quiet = 2
    size = (len(rows[0]) + 2 * quiet, len(rows) + 2 * quiet)
    image = Image.new("L", size, 255)
    for y, row in enumerate(rows):
        for x, dark in enumerate(row):
            if dark:
                image.putpixel((x + quiet, y + quiet), 0)
    return image.resize((size[0] * module, size[1] * module), Image.Resampling.NEAREST)


def qr_image(text: str, *, module: int = 8) -> Image.Image:
    """A QR code of any text (for codes a label would never carry)."""
    from provenance.barcodes.labels import encode_qr

    symbol = encode_qr(text, "M")
    quiet = 4
    side = symbol.size + 2 * quiet
    image = Image.new("L", (side, side), 255)
    for y, row in enumerate(symbol.modules):
        for x, dark in enumerate(row):
            if dark:
                image.putpixel((x + quiet, y + quiet), 0)
    return image.resize((side * module, side * module), Image.Resampling.NEAREST)
