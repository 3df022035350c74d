"""Test helpers for witnesses: a small log of our own (MemoryTree, Ed25519 key) that
signs checkpoints and proves consistency, and a real `provenance witness serve`
process on a loopback port."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.checkpoint import Checkpoint, format_verifier_key, sign_checkpoint
from provenance.core.merkle import MemoryTree, hash_leaf
from provenance.infra.localbroker import free_port

START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0


@dataclass
class FakeLog:  # a real log of ours, in memory
    """A log: origin, key, leaves. ``note(size)`` signs the checkpoint at ``size``."""

    origin: str = "log.example/food"
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    tree: MemoryTree = field(default_factory=MemoryTree)
    salt: bytes = b""

    @property
    def vkey(self) -> str:
        return format_verifier_key(self.origin, self.key.public_key().public_bytes_raw())

    def grow(self, size: int) -> FakeLog:
        while self.tree.size < size:
            self.tree.append(hash_leaf(self.salt + b"event %d" % self.tree.size))
        return self

    def checkpoint(self, size: int) -> Checkpoint:
        self.grow(size)
        return Checkpoint(self.origin, size, self.tree.root(size), (f"heads {size} x",))

    def note(self, size: int, key: Ed25519PrivateKey | None = None) -> str:
        return sign_checkpoint(self.checkpoint(size), self.origin, key or self.key)

    def proof(self, old: int, new: int) -> list[bytes]:
        self.grow(new)
        return self.tree.consistency_proof(old, new) if old else []

    def request(
        self, old: int, new: int, *, proof: list[bytes] | None = None, note: str | None = None
    ) -> bytes:
        """An add-checkpoint body from ``old`` to ``new`` (a real proof unless given)."""
        lines = [f"old {old}"]
        lines += [
            base64.b64encode(h).decode() for h in (self.proof(old, new) if proof is None else proof)
        ]
        return ("\n".join(lines) + "\n\n" + (note or self.note(new))).encode()


def origin_hash(origin: str) -> str:
    return hashlib.sha256(origin.encode()).hexdigest()


class WitnessServer:
    """`provenance witness serve --dir D` in a child process on a free loopback port."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WitnessServer:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "provenance",
                "witness",
                "serve",
                "--dir",
                str(self.directory),
                "--port",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()  # type: ignore[union-attr]
            try:
                self.get("/")
                return self
            except OSError:
                assert time.monotonic() < deadline, "the witness did not start listening"
                time.sleep(0.05)  # polling a port with a deadline, not waiting for an event

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, str, bytes]:
        return self.request("GET", path)

    def add(self, body: bytes) -> tuple[int, str, bytes]:
        return self.request("POST", "/add-checkpoint", body)
