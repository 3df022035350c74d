"""What every `provenance` command works with: the ledger, the key folder and signing.

:class:`Context` holds the --db and --keys of the main group and opens, once per command,
the ledger to write (migrated; created only by `init`), the ledger read-only, and the key
folders (the log and registrar keys, parties', devices'); :data:`pass_context` hands it to a
command. :func:`append_signed` signs one event with a key's next seq and appends it,
:func:`registrar_sign` does that with the registrar key, and :func:`signing_key` finds the
key of a named party or device (or a key file); :func:`key_name` is a name's key file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import click

from provenance.core.identity import public_key_from_did
from provenance.core.signing import did_of
from provenance.infra.keystore import KeyStore, load_private_key
from provenance.ledger.append import Appended, Ledger
from provenance.ledger.signer import Signer, Unsigned
from provenance.store.db import Store
from provenance.store.location import database_location, is_database_url, local_path, redacted

LOG_KEY = "log"
REGISTRAR_KEY = "registrar"


class Context:
    """The main group's --db and --keys, and what a command opens from them (once each)."""

    def __init__(self, db: str, keys: str):
        # The ledger: a SQLite file (a Path) or a postgresql:// URL (text).
        self.db_location = database_location(db)
        # Where files kept beside the ledger go (accounts/, cursors, the fleet's state).
        self.db_path = local_path(self.db_location)
        self.db_shown = redacted(db) if is_database_url(db) else db
        self.keys_dir = Path(keys)
        self._store: Store | None = None
        self._reader: Store | None = None
        self._ledger: Ledger | None = None

    @property
    def root_keys(self) -> KeyStore:
        return KeyStore(self.keys_dir)

    @property
    def party_keys(self) -> KeyStore:
        return KeyStore(self.keys_dir / "parties")

    @property
    def device_keys(self) -> KeyStore:
        return KeyStore(self.keys_dir / "devices")

    def store(self, create: bool = False) -> Store:
        """The ledger to write to: migrated to this version; a missing one is
        made only with ``create`` (`provenance init`); a SQLite file that is
        not a ledger is refused."""
        if self._store is None:
            self._store = Store(self.db_location, create=create)
        return self._store

    def reader(self) -> Store:
        """The ledger, read-only: never created, migrated or written (the
        write store if this command already opened it)."""
        if self._store is not None:
            return self._store
        if self._reader is None:
            self._reader = Store(self.db_location, create=False, readonly=True)
        return self._reader

    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self.store(), self.root_keys.load(LOG_KEY))
        return self._ledger

    def close(self) -> None:
        """Close what this command opened (the main group calls it when the
        command ends): a process exits anyway, but the CLI also runs in-process
        (tests, the demo), where an unclosed ledger keeps its files open."""
        ledger, store, reader = self._ledger, self._store, self._reader
        self._ledger = self._store = self._reader = None
        if ledger is not None:
            ledger.close()
        for opened in (store, reader):
            if opened is not None:
                opened.close()

    def log_public_key(self) -> bytes:
        """The log key we trust: our own key file, not what the database says."""
        if self.root_keys.exists(LOG_KEY):
            return public_key_from_did(did_of(self.root_keys.load(LOG_KEY)))
        did = self.reader().get_meta("log_key")
        if did is None:
            raise click.ClickException("no log key: pass --log-key or run `provenance init`")
        click.echo(
            f"warning: no {self.keys_dir}/log.pem; trusting the log key the database names",
            err=True,
        )
        return public_key_from_did(did)


pass_context = click.make_pass_decorator(Context)


def registrar_sign(ctx: Context, kind: str, data: dict[str, Any]) -> Appended:
    ledger = ctx.ledger()
    return append_signed(ledger, ctx.root_keys.load(REGISTRAR_KEY), kind, None, data)


def append_signed(
    ledger: Ledger,
    key: Any,
    kind: str,
    lots: list[str] | None,
    data: dict[str, Any],
    *,
    time: str | None = None,
    source: str | None = None,
    private: tuple[str, ...] = (),
) -> Appended:
    """Sign one event as *key* with its next seq, dated *time* or now, and append
    it, keeping the fields *private* private (docs/protocol.md §14); a refusal
    is `Error: reason: message`."""
    event = Unsigned(kind, data, lots, time, tuple(private))
    result = Signer(ledger, key).sign_and_append([event], atomic=True, source=source)[0]
    from provenance.cli.accounts import trail_ledger_action  # late: it imports the CLI's context

    trail_ledger_action(ledger.store.path, kind, lots, result)
    if not result.ok:
        raise click.ClickException(f"{result.reason}: {result.message}")
    return result


def key_name(name: str) -> str:
    """A file-system-safe key name for a party or device name."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:60]
    return safe + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]


def signing_key(ctx: Context, name: str | None, key_file: str | None = None) -> Any:
    """The key to sign as party or device *name*: --key FILE when given (and
    then it must be *name*'s enrolled key), else the key the operator holds."""
    if key_file is not None:
        key = load_private_key(key_file)
        if name is not None:
            store = ctx.store()
            identity = store.identity_by_name("party", name) or store.identity_by_name(
                "device", name
            )
            if identity is not None and identity.did != did_of(key):
                raise click.ClickException(
                    f"{key_file} is not the key of {name} (enrolled as {identity.did}, the "
                    f"file holds {did_of(key)})"
                )
        return key
    if name is None:
        raise click.ClickException("name who signs: --as NAME, or --key FILE")
    for type_, keys in (("party", ctx.party_keys), ("device", ctx.device_keys)):
        if ctx.store().identity_by_name(type_, name) is not None:
            if not keys.exists(key_name(name)):
                raise click.ClickException(
                    f"no key for {name} here ({keys.path(key_name(name))}): a party that holds "
                    f"its own key signs with --key FILE (its file from `provenance key new`)"
                )
            return keys.load(key_name(name))
    path = Path(name)
    if path.exists():
        return load_private_key(path)
    raise click.ClickException(f"no party or device named {name!r} (nor a key file by that path)")
