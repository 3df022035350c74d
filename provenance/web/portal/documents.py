"""Certificates and lab results, stored content-addressed on disk.

A file is kept at ``{dir}/{sha256[:2]}/{sha256}``; the signed `inspect` event
carries its SHA-256, name and media type, so anyone holding the file can check
it is the one that was signed for. Only a few media types are accepted, and
the bytes must look like the type claimed (a "PDF" must start with ``%PDF-``).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 64 * 1024
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# media type -> (file extensions, magic prefixes; None: UTF-8 text)
MEDIA_TYPES: dict[str, tuple[tuple[str, ...], tuple[bytes, ...] | None]] = {
    "application/pdf": ((".pdf",), (b"%PDF-",)),
    "image/png": ((".png",), (b"\x89PNG\r\n\x1a\n",)),
    "image/jpeg": ((".jpg", ".jpeg"), (b"\xff\xd8\xff",)),
    "text/plain": ((".txt",), None),
    "text/csv": ((".csv",), None),
    XLSX: ((".xlsx",), (b"PK\x03\x04",)),
}
GENERIC = {"", "application/octet-stream", "binary/octet-stream"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DocumentRefused(Exception):
    """An upload that is too large (413) or of a type we do not take (415)."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Stored:
    sha256: str
    size: int
    media_type: str
    name: str
    new: bool  # False: the same bytes were stored before


def clean_name(filename: str | None) -> str:
    """A file name fit to sign and to show: no folders, no control characters,
    at most 200 characters."""
    base = re.split(r"[\\/]", filename or "")[-1]
    kept = "".join(" " if unicodedata.category(c).startswith("C") else c for c in base)
    kept = " ".join(kept.split()).strip(". ")
    return kept[:200] or "document"


def media_type_of(filename: str, declared: str | None) -> str:
    declared = (declared or "").split(";")[0].strip().lower()
    if declared in MEDIA_TYPES:
        return declared
    suffix = Path(filename).suffix.lower()
    if declared in GENERIC:
        for media_type, (suffixes, _) in MEDIA_TYPES.items():
            if suffix in suffixes:
                return media_type
    allowed = ", ".join(sorted(MEDIA_TYPES))
    raise DocumentRefused(
        415, f"{declared or suffix or 'this file type'} is not accepted; send one of: {allowed}"
    )


def _looks_like(media_type: str, head: bytes, path: Path) -> bool:
    magic = MEDIA_TYPES[media_type][1]
    if magic is not None:
        return any(head.startswith(prefix) for prefix in magic)
    data = path.read_bytes()
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class DocumentStore:
    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int):
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.directory / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def put(self, stream: BinaryIO, filename: str | None, declared: str | None) -> Stored:
        """Store an upload (at most `max_bytes`), checking its type."""
        name = clean_name(filename)
        media_type = media_type_of(name, declared)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        digest = hashlib.sha256()
        size = 0
        head = b""
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".upload-")
        temp_path = Path(temp)
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise DocumentRefused(
                            413, f"the file is larger than {self.max_bytes // 1024} KiB"
                        )
                    if len(head) < 16:
                        head += chunk[: 16 - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise DocumentRefused(400, "the file is empty")
            if not _looks_like(media_type, head, temp_path):
                raise DocumentRefused(415, f"the file's content is not {media_type}")
            sha256 = digest.hexdigest()
            final = self.path(sha256)
            if final.exists():
                temp_path.unlink()
                return Stored(sha256, size, media_type, name, False)
            final.parent.mkdir(exist_ok=True, mode=0o700)
            os.chmod(temp_path, 0o640)
            os.replace(temp_path, final)
            return Stored(sha256, size, media_type, name, True)
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise

    def remove(self, sha256: str) -> None:
        """Drop a file that no signed event refers to (an upload whose event was refused)."""
        self.path(sha256).unlink(missing_ok=True)
