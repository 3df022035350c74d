"""Signing SDK for loggers that hold their own Ed25519 key.

Only the public key is registered in the ledger (``provenance device add ID
--owner PARTY --public-key DID``); the private key never leaves the device.
A `DeviceLogger` signs each reading with `provenance.core.signing.sign`, gives it
the next sequence number from a `SeqCounter` and puts its canonical JSON into
an `Outbox`; an `Uplink` (the same publisher the gateway uses) delivers it.

Keygen from a shell::

    python -m devices.sdk keygen /etc/provenance/probe-7.pem --device-id probe-7 \
        --owner "Cold Express"
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices.filelock import exclusive_lock
from provenance.core.envelope import MAX_SEQ, Envelope
from provenance.core.errors import ProvenanceError, ValidationError
from provenance.core.signing import did_of, sign
from provenance.core.timefmt import format_time, now_micros
from provenance.core.topics import events_topic
from provenance.infra.keystore import KeyStore, load_private_key

from .outbox import Outbox
from .uplink import Uplink

log = logging.getLogger(__name__)

SEQ_BLOCK = 256  # sequence numbers reserved per fsync


class SeqStateError(ProvenanceError):
    """The sequence-number file is unreadable, corrupt or in use elsewhere."""


class SeqCounter:
    """Per-key sequence numbers that are never handed out twice, even across
    ``kill -9`` or a power cut.

    The file holds one integer: the *reserved mark*. Every number below it may
    already have been used. Before handing out numbers n…n+block-1 the counter
    writes n+block durably (temp file, fsync, rename, fsync of the folder);
    after a restart it continues from the mark, skipping whatever the dead
    process had reserved but not used (protocol v1 allows gaps: seq must be
    new, not contiguous). An exclusive lock on ``{path}.lock`` keeps a second
    process (or a second counter in this one) away from the same file.
    """

    def __init__(self, path: str | os.PathLike[str], *, block: int = SEQ_BLOCK):
        if not 1 <= block <= 1_000_000:
            raise ValidationError("block", "must be 1 to 1000000")
        self.path = Path(path)
        self.block = block
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._lock_fd = _exclusive_lock(self.path)
        try:
            self._next = self._read_mark()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._limit = self._next  # nothing reserved by this process yet

    def _read_mark(self) -> int:
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            raise SeqStateError(f"{self.path}: cannot read the sequence file ({exc})") from None
        value = text.strip()
        if not value.isdigit() or int(value) > MAX_SEQ:
            raise SeqStateError(
                f"{self.path} is corrupt ({text[:40]!r}): refusing to guess, because reusing a "
                "seq makes the ledger refuse events as replays. Write a number above the last "
                "seq the ledger accepted from this key into the file, then restart."
            )
        return int(value)

    @property
    def reserved_until(self) -> int:
        """The durable mark: every seq below it may have been used."""
        with self._lock:
            return self._limit

    def peek(self) -> int:
        """The seq the next `next()` returns (not reserved by peeking)."""
        with self._lock:
            return self._next

    def next(self) -> int:
        """A fresh sequence number, durable before it is returned."""
        return self.take(1).start

    def take(self, count: int) -> range:
        """*count* consecutive fresh sequence numbers."""
        if count < 1:
            raise ValidationError("count", "must be at least 1")
        with self._lock:
            if self._lock_fd < 0:
                raise SeqStateError(f"{self.path}: the counter is closed")
            first = self._next
            if first + count > self._limit:
                self._reserve(first + max(count, self.block))
            self._next = first + count
            return range(first, first + count)

    def _reserve(self, mark: int) -> None:
        if mark > MAX_SEQ + 1:
            raise SeqStateError(f"{self.path}: seq would pass {MAX_SEQ}; this key is used up")
        temp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{mark}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, self.path)
        _fsync_dir(self.path.parent)
        self._limit = mark

    def close(self) -> None:
        with self._lock:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def __enter__(self) -> SeqCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _exclusive_lock(path: Path) -> int:
    return exclusive_lock(
        path,
        lambda lock_path: SeqStateError(
            f"{path} is in use by another counter (lock {lock_path} is held): two writers "
            "would hand out the same seq"
        ),
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DeviceLogger:
    """A logger with its own key: signs readings and queues them for the uplink.

    *state_dir* holds the seq file (one per key) and, unless *outbox* is given,
    the outbox database. Readings go to ``provenance/v1/devices/{device_id}/events``.
    """

    def __init__(
        self,
        key: Ed25519PrivateKey,
        state_dir: str | os.PathLike[str],
        device_id: str,
        *,
        outbox: Outbox | None = None,
        clock: Callable[[], int] = now_micros,
    ):
        self.topic = events_topic("devices", device_id)  # validates the id
        self.device_id = device_id
        self._key = key
        self.did = did_of(key)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._clock = clock
        self._lock = threading.Lock()
        self.seq = SeqCounter(self.state_dir / f"seq-{self.did.removeprefix('did:key:')}")
        self._owns_outbox = outbox is None
        try:
            self.outbox = outbox if outbox is not None else Outbox(self.state_dir / "outbox.db")
        except BaseException:
            self.seq.close()
            raise

    def reading(
        self,
        data: dict[str, Any],
        *,
        time: str | None = None,
        batches: list[str] | tuple[str, ...] | None = None,
    ) -> Envelope:
        """Sign a `reading` (time defaults to now) and queue it; returns the envelope.

        Raises ValidationError naming the field for data the ledger would
        refuse (the seq it would have used is skipped, which is allowed).
        """
        with self._lock:  # outbox order = seq order
            seq = self.seq.next()
            envelope = sign(
                self._key,
                kind="reading",
                seq=seq,
                time=time if time is not None else format_time(self._clock()),
                data=data,
                lots=batches,
            )
            self.outbox.put(self.topic, envelope.canonical_bytes())
        return envelope

    def uplink(self, broker_url: str, *, start: bool = True, **kw: Any) -> Uplink:
        """An `Uplink` for this logger's outbox (client id ``device-{id}`` unless
        given; started unless ``start=False``). Keyword arguments go to `Uplink`."""
        kw.setdefault("client_id", f"device-{self.device_id}")
        kw.setdefault("events_topics", [self.topic])
        uplink = Uplink(self.outbox, broker_url, **kw)
        return uplink.start() if start else uplink

    def close(self) -> None:
        self.seq.close()
        if self._owns_outbox:
            self.outbox.close()

    def __enter__(self) -> DeviceLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def keygen(path: str | os.PathLike[str]) -> str:
    """Write a new Ed25519 key to *path* (PKCS#8 PEM, mode 0600, never
    overwriting; a ``.pem`` suffix is added if missing) and return its did:key,
    the public identity to enrol with ``provenance device add ID --owner PARTY
    --public-key DID``."""
    target = Path(path)
    name = target.stem if target.suffix == ".pem" else target.name
    store = KeyStore(target.parent)
    key = store.create(name)
    did = did_of(key)
    log.info("new device key %s: %s", store.path(name), did)
    return did


def load_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read a key written by `keygen` (or any unencrypted PKCS#8 Ed25519 PEM)."""
    return load_private_key(path)


@click.group()
def main() -> None:
    """Device SDK tools."""


@main.command("keygen")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--device-id", default="DEVICE_ID", help="the id to enrol the device under")
@click.option("--owner", default="PARTY", help="the party that owns the device")
def keygen_command(path: str, device_id: str, owner: str) -> None:
    """Make a device key and print its did:key and the enrolment command.

    Example: python -m devices.sdk keygen probe-7.pem --device-id probe-7 --owner "Cold Express"
    """
    try:
        did = keygen(path)
    except ProvenanceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(did)
    click.echo(
        f"enrol it with: provenance device add {shlex.quote(device_id)} "
        f"--owner {shlex.quote(owner)} --public-key {did}",
        err=True,
    )


if __name__ == "__main__":
    main()
