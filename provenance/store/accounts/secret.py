"""The server secret and what is derived from it: the session-signing key and
the key that encrypts party keys never coincide (HKDF-SHA256, one purpose each).
The secret is not in the accounts database: it is ``PROVENANCE_SECRET_KEY`` or
``{accounts dir}/secret.key`` (docs/portal.md has the threat model)."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from provenance.core.errors import ValidationError

SECRET_ENV = "PROVENANCE_SECRET_KEY"
SECRET_FILE = "secret.key"


def server_secret(
    directory: str | os.PathLike[str], environ: dict[str, str] | None = None
) -> bytes:
    """The server secret: ``PROVENANCE_SECRET_KEY`` when set (at least 32
    characters), else ``{directory}/secret.key``, made (32 random bytes as hex,
    mode 0600) when absent. Losing it invalidates sessions and makes the stored
    party keys undecryptable (import them again)."""
    env = os.environ if environ is None else environ
    given = env.get(SECRET_ENV)
    if given:
        if len(given) < 32:
            raise ValidationError(SECRET_ENV, "must be at least 32 characters of random text")
        return given.encode("utf-8")
    folder = Path(directory)
    path = folder / SECRET_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
    text = path.read_text(encoding="ascii").strip()
    if len(text) < 32:
        raise ValidationError(
            str(path), "the server secret is too short: delete it to make a new one"
        )
    return text.encode("ascii")


def derive(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose (HKDF-SHA256), so that the session-signing
    key and the key-encryption key never coincide."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"provenance/v1/{purpose}".encode()
    ).derive(secret)


def token_hash(secret: str) -> str:
    """What is stored of a bearer secret (a session id or an API token): its SHA-256."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
