"""Key files: Ed25519 private keys as PKCS#8 PEM, mode 0600, one file per name.

This is an adapter (it touches the filesystem); the core only ever sees key
objects. A key file is never overwritten.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from provenance.core.errors import KeyFileError, ValidationError
from provenance.core.identity import did_from_public_key, public_key_from_did

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
MAX_KEY_FILE = 64 * 1024
"""A key file holds one PEM key or did:key (a few hundred bytes); bigger ones are refused."""


def _read_key_file(path: str | os.PathLike[str]) -> bytes:
    """At most MAX_KEY_FILE bytes of *path*; FileNotFoundError passes through."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise KeyFileError(f"{path} is a folder, not a key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key ({exc.strerror or exc})") from None
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(
            f"{path} is larger than {MAX_KEY_FILE // 1024} KiB, the limit for a key file: "
            "give the file holding just the key"
        )
    return data


class KeyStore:
    """A folder of private keys: ``{dir}/{name}.pem``."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)

    def path(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise ValidationError("name", f"{name!r}: use letters, digits and . _ : - (max 100)")
        return self.directory / f"{name}.pem"

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def create(self, name: str) -> Ed25519PrivateKey:
        """Make a new key and write it with mode 0600; refuse to overwrite."""
        path = self.path(name)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        return key

    def load_or_create(self, name: str) -> Ed25519PrivateKey:
        """The key called *name*, made (mode 0600) if there is none yet."""
        return self.load(name) if self.exists(name) else self.create(name)

    def load(self, name: str) -> Ed25519PrivateKey:
        path = self.path(name)
        try:
            return load_private_key(path)
        except FileNotFoundError:
            raise KeyFileError(
                f"no key for {name!r} at {path}: check --keys (PROVENANCE_KEYS) or create it"
            ) from None


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    data = _read_key_file(path)
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PKCS#8 PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key


def public_key_text_to_did(text: str) -> str:
    """A did:key from either a did:key string or PEM SubjectPublicKeyInfo text."""
    text = text.strip()
    if text.startswith("did:key:"):
        public_key_from_did(text, "public key")
        return text
    try:
        key = load_pem_public_key(text.encode())
    except ValueError as exc:
        raise ValidationError(
            "public key", f"neither a did:key nor a PEM SubjectPublicKeyInfo ({exc})"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValidationError("public key", "must be an Ed25519 key")
    return did_from_public_key(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def read_public_key(file_or_did: str) -> str:
    """`--public-key` values: a did:key, or a path to a PEM or did:key file."""
    if file_or_did.startswith("did:key:"):
        return public_key_text_to_did(file_or_did)
    path = Path(file_or_did)
    if not path.exists():
        raise KeyFileError(f"{file_or_did}: no such file (give a PEM public key file or a did:key)")
    try:
        text = _read_key_file(path).decode("ascii")
    except FileNotFoundError:
        raise KeyFileError(f"{file_or_did}: no such file") from None
    except UnicodeDecodeError:
        raise ValidationError(
            "public key",
            f"{file_or_did} is binary, not PEM (DER? convert it: openssl pkey -pubin -inform DER "
            "-in FILE -out FILE.pem)",
        ) from None
    return public_key_text_to_did(text)
