"""Tile logs for tests: synthetic leaves (event-id-like entries with envelope bytes)
and a signed checkpoint for them, written through the real writer."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.checkpoint import Checkpoint, format_verifier_key, sign_checkpoint
from provenance.core.merkle import hash_leaf, root_from_leaf_hashes
from support.go import ARTIFACTS, X_MOD, go_env

ORIGIN = "tiles.test/log"
ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 300


def synthetic_leaf(i: int) -> tuple[bytes, bytes]:
    """(entry, envelope bytes) of leaf i: the entry is the SHA-256 of the bytes,
    as an event id is of its canonical envelope."""
    envelope = b'{"kind":"reading","seq":%d,"data":{"temperature_c":4.5}}' % i
    return hashlib.sha256(envelope).digest(), envelope


def synthetic_leaves(begin: int, end: int) -> list[tuple[bytes, bytes]]:
    return [synthetic_leaf(i) for i in range(begin, end)]


class SyntheticLog:
    """Signed checkpoints of a log of synthetic leaves, at any size."""

    def __init__(self, origin: str = ORIGIN):
        self.origin = origin
        self.key = Ed25519PrivateKey.generate()
        public = self.key.public_key().public_bytes_raw()
        self.verifier_key = format_verifier_key(origin, public)
        self._leaf_hashes: list[bytes] = []

    def root(self, size: int) -> bytes:
        while len(self._leaf_hashes) < size:
            self._leaf_hashes.append(hash_leaf(synthetic_leaf(len(self._leaf_hashes))[0]))
        return root_from_leaf_hashes(self._leaf_hashes[:size])

    def note(self, size: int) -> str:
        return sign_checkpoint(
            Checkpoint(self.origin, size, self.root(size)), self.origin, self.key
        )


def build_go(name: str) -> Path | str:
    """Build tests/go/<name>; its path, or why it cannot (str) when `go` is missing."""
    go = shutil.which("go")
    if go is None:
        return "`go` is not installed: apt-get install golang-go golang-golang-x-mod-dev"
    if not (X_MOD / "sumdb" / "tlog" / "tile.go").is_file():
        raise AssertionError(
            f"golang.org/x/mod is not at {X_MOD}: apt-get install golang-golang-x-mod-dev"
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    binary = ARTIFACTS / name
    fresh = ARTIFACTS / f"{name}.{os.getpid()}"
    built = subprocess.run(
        [go, "build", "-trimpath", "-o", str(fresh), "."],
        cwd=ROOT / "tests" / "go" / name,
        env=go_env(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if built.returncode:
        raise AssertionError(f"go build of tests/go/{name} failed:\n{built.stderr}")
    fresh.replace(binary)
    return binary
