"""The `provenance` command line. Each command parses its input, calls one
library function and turns our errors into a message and an exit code."""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from provenance.core import gs1
from provenance.core.envelope import Envelope
from provenance.core.errors import ProvenanceError, ValidationError, VerificationError
from provenance.core.identity import COMMISSIONING_ROLES, PARTY_ROLES, public_key_from_did
from provenance.core.jcs import parse_json, split_items
from provenance.core.kinds import PREFIXES_FIELD, company_prefixes
from provenance.core.signing import did_of
from provenance.core.terminal import escape_standard_streams
from provenance.core.timefmt import format_time, now_micros, parse_date_or_time, parse_time
from provenance.infra.keystore import KeyStore, load_private_key, read_public_key
from provenance.ledger.append import Appended, Ledger
from provenance.ledger.signer import Signer, Unsigned
from provenance.store.db import Store, StoreError

LOG_KEY = "log"
REGISTRAR_KEY = "registrar"

KiB, MiB = 1024, 1024 * 1024
# Every file a command reads has a cap (docs/cli.md, "Input limits"); a bigger
# input is refused, naming the cap, before it is parsed.
MAX_EVENTS_INPUT = 16 * MiB  # event append
MAX_CHECKPOINT_INPUT = 64 * KiB  # verify --checkpoint, export proof --since
MAX_BUNDLE_INPUT = 128 * MiB  # verify --bundle: ~100,000 events of one lot
MAX_EPCIS_INPUT = 64 * MiB  # import epcis
MAX_SCHEMA_INPUT = 4 * MiB  # import epcis --schema
MAX_CONFIG_INPUT = 1 * MiB  # rules check/run --config
MAX_CA_INPUT = 1 * MiB  # --tls-ca: a PEM bundle of CA certificates
MAX_CURSOR_INPUT = 64  # a service's --cursor file: one log index


def _size(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit >= MiB else f"{limit // KiB} KiB"


def read_input(name: str, *, what: str, limit: int, text: bool = True) -> Any:
    """The contents of file *name* ('-': standard input), at most *limit* bytes,
    as UTF-8 text (or bytes). Every failure is a ClickException naming the file
    and saying what to do: missing, a folder, unreadable, too big, not UTF-8."""
    label = "standard input" if name == "-" else name
    try:
        if name == "-":
            with click.open_file("-", "rb") as stream:
                data = stream.read(limit + 1)
        else:
            with open(name, "rb") as stream:
                data = stream.read(limit + 1)
    except FileNotFoundError:
        raise click.ClickException(f"cannot read {label}: no such file (the {what})") from None
    except IsADirectoryError:
        raise click.ClickException(f"{label} is a folder: give the {what} file") from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {label} ({what}): {exc.strerror or exc}") from None
    if len(data) > limit:
        raise click.ClickException(
            f"{label} is larger than {_size(limit)}, the limit for the {what} "
            "(docs/cli.md, Input limits)"
        )
    if not text:
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{label} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            f"save the {what} as UTF-8"
        ) from None


class Context:
    def __init__(self, db: str, keys: str):
        self.db_path = Path(db)
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
            self._store = Store(self.db_path, create=create)
        return self._store

    def reader(self) -> Store:
        """The ledger, read-only: never created, migrated or written (the
        write store if this command already opened it)."""
        if self._store is not None:
            return self._store
        if self._reader is None:
            self._reader = Store(self.db_path, create=False, readonly=True)
        return self._reader

    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self.store(), self.root_keys.load(LOG_KEY))
        return self._ledger

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


def friendly(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our exceptions into `Error: …` and exit status 1."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ProvenanceError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def check_cursor_file(path: Path) -> None:
    """A service's cursor file, when there is one, must be a small file holding a
    log index (the service reads and replaces it)."""
    if not path.exists() and not path.is_symlink():
        return
    text = read_input(str(path), what="cursor file", limit=MAX_CURSOR_INPUT).strip()
    if text and not (text.isascii() and text.isdigit()):
        raise click.ClickException(
            f"{path} holds {text[:40]!r}, not a log index: fix it (the next log index to look "
            "at) or give another --cursor"
        )


def check_tls_ca(path: str | None) -> None:
    """--tls-ca must be a readable PEM certificate file under the cap, checked before
    anything connects (the TLS library would read any file it is given)."""
    if path is None:
        return
    text = read_input(path, what="CA certificate", limit=MAX_CA_INPUT)
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise click.ClickException(
            f"--tls-ca {path} is not a PEM certificate file (no BEGIN CERTIFICATE line)"
        )


def error_message(exc: BaseException, ctx: Context | None) -> str | None:
    """`Error: …` text for an exception a command let through, or None for a bug.
    The one place that maps our errors and the OS's to a message."""
    db = ctx.db_path if ctx is not None else "the ledger"
    if isinstance(exc, ProvenanceError):
        return str(exc)
    if isinstance(exc, sqlite3.DatabaseError):
        return f"{db}: the ledger database failed ({exc}): check --db, or run `provenance verify`"
    if isinstance(exc, UnicodeDecodeError):
        return f"input is not UTF-8 text ({exc.reason} at offset {exc.start}): save it as UTF-8"
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename} is a folder, where a file was expected"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return None


class LazyGroup(click.Group):
    """A group whose commands in `lazy` ("name" -> "module:attribute") are
    imported when first asked for. Service commands live beside their service
    and import this module, so importing them here at load time would be a
    cycle; it also keeps `provenance --help` from loading Flask and paho."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


# Commands that live beside their service, by name.
SERVICE_COMMANDS = {
    "gateway": "gateway.cli:command",
    "import": "provenance.cli.exchange:import_group",
    "ingest": "provenance.cli.ingest:command",
    "label": "provenance.cli.label:command",
    "notify": "provenance.cli.notify:command",
    "portal": "provenance.cli.accounts:portal",
    "recall": "provenance.cli.recall:command",
    "rules": "provenance.cli.rules:group",
    "serve": "provenance.cli.serve:command",
    "simulate": "provenance.cli.simulate:command",
    "token": "provenance.cli.accounts:token",
    "trace": "provenance.cli.trace:command",
    "user": "provenance.cli.accounts:user",
    "witness": "provenance.cli.witness:group",
}
EXPORT_COMMANDS = {
    "epcis": "provenance.cli.exchange:export_epcis",
    "fsma204": "provenance.cli.exchange:export_fsma204",
}


class ErrorFirstUsage(click.UsageError):
    """A usage error shown as `Error: …` first, then the usage line and the hint
    (exit status 2), like every other error of the command line."""

    def __init__(self, error: click.UsageError):
        super().__init__(error.format_message(), error.ctx)

    def show(self, file: Any = None) -> None:
        lines = [f"Error: {self.format_message()}"]
        if self.ctx is not None:
            lines.append(self.ctx.get_usage())
            lines.append(f"Try '{self.ctx.command_path} {self.ctx.help_option_names[0]}' for help.")
        click.echo("\n".join(lines), file=file, err=file is None)


class MainGroup(LazyGroup):
    """The `provenance` group: a command's uncaught ProvenanceError, OSError,
    UnicodeDecodeError or sqlite3.DatabaseError becomes `Error: …`, exit 1,
    never a traceback; usage errors say `Error: …` first too (exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except ErrorFirstUsage:
            raise
        except click.UsageError as exc:
            raise ErrorFirstUsage(exc) from exc
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (ProvenanceError, OSError, UnicodeDecodeError, sqlite3.DatabaseError) as exc:
            obj = ctx.obj if isinstance(ctx.obj, Context) else None
            raise click.ClickException(error_message(exc, obj) or str(exc)) from exc


@click.group(cls=MainGroup, lazy=SERVICE_COMMANDS)
@click.option(
    "--db",
    envvar="PROVENANCE_DB",
    default="provenance.db",
    show_default=True,
    help="The ledger database (env PROVENANCE_DB).",
)
@click.option(
    "--keys",
    envvar="PROVENANCE_KEYS",
    default="keys",
    show_default=True,
    help="Folder of private keys (env PROVENANCE_KEYS).",
)
@click.version_option(package_name="provenance")
@click.pass_context
def main(ctx: click.Context, db: str, keys: str) -> None:
    """Signed, chained, checkable supply-chain records for food and vaccines."""
    escape_standard_streams()  # ledger text is shown, never obeyed, by the terminal
    ctx.obj = Context(db, keys)


@main.command()
@click.option(
    "--origin", help="The log's name in checkpoints (default: provenance.local/<key id>)."
)
@pass_context
@friendly
def init(ctx: Context, origin: str | None) -> None:
    """Create the database, the log key and the registrar key. Idempotent:
    never overwrites a key.

    Example: provenance init
    """
    store = ctx.store(create=True)  # first: a --db that is not a ledger is refused before keys
    keys = ctx.root_keys
    log_key = keys.load_or_create(LOG_KEY)
    registrar = keys.load_or_create(REGISTRAR_KEY)
    if origin is None:
        origin = store.get_meta("origin") or (
            "provenance.local/" + hashlib.sha256(did_of(log_key).encode()).hexdigest()[:12]
        )
    Ledger.initialise(store, log_key, registrar, origin)
    click.echo(f"ledger {ctx.db_path} ready; log {store.get_meta('origin')}")
    click.echo(f"log key {did_of(log_key)}")


@main.command()
@pass_context
@friendly
def migrate(ctx: Context) -> None:
    """Bring the ledger's schema up to this version (read-only commands never
    do; any command that writes does it too). Never creates a ledger.

    Example: provenance migrate
    """
    applied = ctx.store().applied_migrations()
    click.echo(f"ledger {ctx.db_path}: schema up to date (last migration {applied[-1]})")


def registrar_sign(ctx: Context, kind: str, data: dict[str, Any]) -> Appended:
    ledger = ctx.ledger()
    return append_signed(ledger, ctx.root_keys.load(REGISTRAR_KEY), kind, None, data)


def append_signed(
    ledger: Ledger,
    key: Any,
    kind: str,
    batches: list[str] | None,
    data: dict[str, Any],
    *,
    time: str | None = None,
    source: str | None = None,
) -> Appended:
    """Sign one event as *key* with its next seq, dated *time* or now, and append
    it; a refusal is `Error: reason: message`."""
    event = Unsigned(kind, data, batches, time)
    result = Signer(ledger, key).sign_and_append([event], atomic=True, source=source)[0]
    from provenance.cli.accounts import trail_ledger_action  # late: it imports this module

    trail_ledger_action(ledger.store.path, kind, batches, result)
    if not result.ok:
        raise click.ClickException(f"{result.reason}: {result.message}")
    return result


@main.group()
def party() -> None:
    """Parties: producers, processors, carriers, distributors, retailers, clinics, inspectors,
    regulators; and the GS1 company prefixes producers and processors commission under."""


PREFIX_OPTION = click.option(
    "--prefix",
    "prefixes",
    multiple=True,
    metavar="DIGITS",
    help="A GS1 company prefix the party may commission lots under: 6-12 digits as GS1 "
    "issued it, matched after the GTIN-14's indicator digit (9506000 for GTIN "
    "09506000134352). Repeatable.",
)


def _prefix_list(prefixes: tuple[str, ...]) -> list[str]:
    """The --prefix values, checked as the ledger will check them."""
    found = list(dict.fromkeys(p.strip() for p in prefixes))
    company_prefixes(found, "--prefix")
    return found


@party.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(PARTY_ROLES))
@PREFIX_OPTION
@pass_context
@friendly
def party_add(ctx: Context, name: str, role: str, prefixes: tuple[str, ...]) -> None:
    """Make a key for NAME and enrol it; prints its did:key. Producers and
    processors commission lots only under the GS1 company prefixes they are
    enrolled (--prefix) or granted (`party grant`) with.

    Example: provenance party add "Green Valley Farm" --role producer --prefix 9506000
    """
    keys = ctx.party_keys
    if ctx.store().identity_by_name("party", name) is not None:
        raise click.ClickException(f"a party named {name!r} is already enrolled")
    data: dict[str, Any] = {"subject": "", "type": "party", "name": name, "role": role}
    if prefixes:
        if role not in COMMISSIONING_ROLES:
            raise click.ClickException(
                f"a {role} commissions no lots, so it holds no GS1 company prefix: drop --prefix "
                f"(only {' and '.join(COMMISSIONING_ROLES)}s take one)"
            )
        data[PREFIXES_FIELD] = _prefix_list(prefixes)
    key = keys.load_or_create(key_name(name))
    did = did_of(key)
    data["subject"] = did
    registrar_sign(ctx, "enrol", data)
    click.echo(did)


@party.command("grant")
@click.argument("name")
@PREFIX_OPTION
@click.option("--reason", help="Why, e.g. the GS1 licence number.")
@click.option(
    "--by",
    "by",
    metavar="REGULATOR",
    help="Sign the grant as this regulator party (its key in --keys) instead of the registrar.",
)
@pass_context
@friendly
def party_grant(
    ctx: Context, name: str, prefixes: tuple[str, ...], reason: str | None, by: str | None
) -> None:
    """Let party NAME commission lots under more GS1 company prefixes: a
    signed `grant` event, signed by the registrar (or a regulator with --by).

    Example: provenance party grant "Green Valley Farm" --prefix 9520123 --reason "GS1 licence 42"
    """
    if not prefixes:
        raise click.ClickException("name the prefixes to grant: --prefix DIGITS (repeatable)")
    identity = ctx.store().identity_by_name("party", name)
    if identity is None:
        raise click.ClickException(f"no party named {name!r}: add it with `provenance party add`")
    data: dict[str, Any] = {"subject": identity.did, PREFIXES_FIELD: _prefix_list(prefixes)}
    if reason:
        data["reason"] = reason
    if by is None:
        registrar_sign(ctx, "grant", data)
    else:
        regulator = ctx.store().identity_by_name("party", by)
        if regulator is None or regulator.role != "regulator":
            raise click.ClickException(f"no regulator party named {by!r}")
        ledger = ctx.ledger()
        append_signed(ledger, ctx.party_keys.load(key_name(by)), "grant", None, data)
    held = ctx.store().prefixes(identity.id)
    click.echo(f"{name} may commission under {', '.join(held)}")


@party.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@pass_context
@friendly
def party_list(ctx: Context, as_json: bool) -> None:
    """List enrolled parties: name, role, did:key, revoked from.

    Example: provenance party list --json
    """
    _list_identities(ctx, "party", as_json)


def _list_identities(ctx: Context, type_: str, as_json: bool) -> None:
    store = ctx.reader()
    for identity in store.identities():
        if identity.type != type_:
            continue
        row: dict[str, Any] = {
            "name": identity.name,
            "role": identity.role,
            "did": identity.did,
            "revoked_from": identity.revoked_from,
        }
        if identity.role in COMMISSIONING_ROLES:
            row[PREFIXES_FIELD] = ctx.store().prefixes(identity.id)
        if type_ == "device":
            owner = store.identity_by_id(identity.owner) if identity.owner else None
            row = {
                "name": identity.name,
                "owner": owner.name if owner else None,
                "did": identity.did,
                "revoked_from": identity.revoked_from,
            }
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo("\t".join("" if value is None else str(value) for value in row.values()))


@party.command("revoke")
@click.argument("name")
@click.option(
    "--from", "from_", help="RFC 3339 UTC time the key is distrusted from (default: now)."
)
@click.option("--reason")
@pass_context
@friendly
def party_revoke(ctx: Context, name: str, from_: str | None, reason: str | None) -> None:
    """Revoke a party's key from a point in time on.

    Example: provenance party revoke "Cold Express" --from 2026-11-22T08:00:00Z
    """
    identity = ctx.store().identity_by_name("party", name)
    if identity is None:
        raise click.ClickException(f"no party named {name!r}")
    _revoke(ctx, identity.did, from_, reason)


def _revoke(ctx: Context, did: str, from_: str | None, reason: str | None) -> None:
    when = from_ or format_time(now_micros())
    parse_time(when, "--from")
    data: dict[str, Any] = {"subject": did, "from": when}
    if reason:
        data["reason"] = reason
    registrar_sign(ctx, "revoke", data)
    click.echo(f"revoked {did} from {when}")


def key_name(name: str) -> str:
    """A file-system-safe key name for a party or device name."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:60]
    return safe + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]


@main.group()
def device() -> None:
    """Devices: sensors, loggers and gateways."""


@device.command("add")
@click.argument("device_id")
@click.option("--owner", required=True, help="Name of the owning party.")
@click.option(
    "--public-key",
    "public_key",
    help="PEM SubjectPublicKeyInfo file or did:key of a "
    "key made on the device; no private key is made here.",
)
@pass_context
@friendly
def device_add(ctx: Context, device_id: str, owner: str, public_key: str | None) -> None:
    """Enrol a device; prints its did:key.

    Example: provenance device add truck7-probe1 --owner "Cold Express"
    """
    owner_identity = ctx.store().identity_by_name("party", owner)
    if owner_identity is None:
        raise click.ClickException(f"no party named {owner!r}: add it with `provenance party add`")
    if public_key:
        did = read_public_key(public_key)
    else:
        keys = ctx.device_keys
        name = key_name(device_id)
        key = keys.load_or_create(name)
        did = did_of(key)
    registrar_sign(
        ctx,
        "enrol",
        {"subject": did, "type": "device", "name": device_id, "owner": owner_identity.did},
    )
    click.echo(did)


@device.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@pass_context
@friendly
def device_list(ctx: Context, as_json: bool) -> None:
    """List enrolled devices: id, owner, did:key, revoked from.

    Example: provenance device list
    """
    _list_identities(ctx, "device", as_json)


@device.command("revoke")
@click.argument("device_id")
@click.option(
    "--from", "from_", help="RFC 3339 UTC time the key is distrusted from (default: now)."
)
@click.option("--reason")
@pass_context
@friendly
def device_revoke(ctx: Context, device_id: str, from_: str | None, reason: str | None) -> None:
    """Revoke a device's key: readings it signs from that time on are refused.

    Example: provenance device revoke truck7-probe1 --from 2026-11-22T08:00:00Z
    """
    identity = ctx.store().identity_by_name("device", device_id)
    if identity is None:
        raise click.ClickException(f"no device {device_id!r}")
    _revoke(ctx, identity.did, from_, reason)


def _signing_key(ctx: Context, name: str) -> Any:
    for type_, keys in (("party", ctx.party_keys), ("device", ctx.device_keys)):
        if ctx.store().identity_by_name(type_, name) is not None:
            return keys.load(key_name(name))
    path = Path(name)
    if path.exists():
        return load_private_key(path)
    raise click.ClickException(f"no party or device named {name!r} (nor a key file by that path)")


@main.group()
def batch() -> None:
    """Lots (batches) of a product."""


@batch.command("register")
@click.option("--gtin", required=True)
@click.option("--lot", required=True)
@click.option("--product", required=True)
@click.option("--as", "as_", required=True, help="The producing party's name.")
@click.option("--category", type=click.Choice(["food", "vaccine"]))
@click.option("--expiry", help="YYYY-MM-DD")
@click.option("--profile", help="Cold-chain profile, e.g. chilled, frozen, vaccine.")
@click.option(
    "--produced",
    help="When the lot was produced (harvest, packing): YYYY-MM-DD or RFC 3339 UTC. "
    "Recorded in the lot and, unless --time is given, the time of its commissioning "
    "(a date: 00:00Z that day). Nothing about the lot can be dated before it.",
)
@click.option(
    "--time",
    "time_",
    help="Time of the commissioning event (RFC 3339 UTC); default: --produced, else now.",
)
@pass_context
@friendly
def batch_register(
    ctx: Context,
    gtin: str,
    lot: str,
    product: str,
    as_: str,
    category: str | None,
    expiry: str | None,
    profile: str | None,
    produced: str | None,
    time_: str | None,
) -> None:
    """Commission a lot; prints its canonical GS1 Digital Link URI.

    The commissioning is dated now unless --produced or --time says otherwise.
    A lot's events (loggers, readings, shipments) cannot be dated before its
    commissioning, so register a lot after harvest with --produced.

    Example: provenance batch register --gtin 09506000134352 --lot LOT42 --product "Kale" --as Farm

    After harvest: provenance batch register … --as Farm --produced 2026-11-21T06:30:00Z
    """
    gtin14 = gs1.normalize_gtin(gtin)
    uri = gs1.lot_uri(gtin14, gs1.validate_lot(lot))
    data: dict[str, Any] = {"gtin": gtin14, "lot": lot, "product": product}
    for name, value in (
        ("category", category),
        ("expiry", expiry),
        ("profile", profile),
        ("produced", produced),
    ):
        if value:
            data[name] = value
    when = None
    if time_ is not None:
        parse_time(time_, "--time")
        when = time_
    elif produced is not None:
        when = format_time(parse_date_or_time(produced, "--produced"))
    key = _signing_key(ctx, as_)
    append_signed(ctx.ledger(), key, "commission", [uri], data, time=when)
    click.echo(uri)


def _read_items(text: str) -> list[Any]:
    return [parse_json(item) if isinstance(item, str) else item for item in split_items(text)]


@main.group()
def event() -> None:
    """Events of any kind."""


@event.command("append")
@click.argument("source", metavar="[FILE|-]", default="-")
@click.option("--as", "as_", help="Sign unsigned items as this party or device.")
@pass_context
@friendly
def event_append(ctx: Context, source: str, as_: str | None) -> None:
    """Append envelopes from FILE (or stdin): a JSON object, an array or JSON lines.

    Signed envelopes are appended as they are. Unsigned items (kind, batches,
    data, optional time) are signed as --as with its next seq. All or nothing:
    if any item is refused, none is stored. Prints one event id per line.

    Example: provenance event append readings.jsonl --as truck7-probe
    """
    items = _read_items(read_input(source, what="events", limit=MAX_EVENTS_INPUT))
    signer: Signer | None = None
    prepared: list[Any] = []
    for position, item in enumerate(items):
        if isinstance(item, dict) and "sig" not in item:
            if as_ is None:
                raise click.ClickException(
                    f"item {position} is unsigned: pass --as NAME to sign it"
                )
            key = _signing_key(ctx, as_) if signer is None else signer.key
            unknown = set(item) - {"kind", "batches", "data", "time"}
            if unknown:
                raise click.ClickException(
                    f"item {position}: unsigned items carry only kind, batches, data and time "
                    f"(found {', '.join(sorted(unknown))})"
                )
            signer = signer or Signer(ctx.ledger(), key)
            try:
                prepared.append(
                    signer.sign(
                        item.get("kind"),
                        item.get("data"),
                        batches=item.get("batches"),
                        time=item.get("time"),
                    )
                )
            except ValidationError as exc:
                raise click.ClickException(f"item {position}: {exc}") from None
        else:
            prepared.append(item)
    if signer is None:
        results = ctx.ledger().append(prepared, atomic=True, source="cli")
    else:
        results = signer.append(prepared, atomic=True, source="cli")
    from provenance.cli.accounts import trail_ledger_action  # late: it imports this module

    for item, result in zip(prepared, results, strict=True):
        kind = item.kind if isinstance(item, Envelope) else str(item.get("kind"))
        batches = item.batches if isinstance(item, Envelope) else item.get("batches")
        trail_ledger_action(ctx.db_path, kind, batches, result)
    failed = False
    for position, result in enumerate(results):
        if result.status == "rejected":
            failed = True
            click.echo(f"item {position}: rejected: {result.reason}: {result.message}", err=True)
    if failed:
        raise click.exceptions.Exit(1)
    for result in results:
        click.echo(result.event_id)


@main.command()
@click.option("--batch", "lot_uri", help="Verify one lot (as its proof bundle would).")
@click.option(
    "--checkpoint",
    metavar="FILE",
    help="A checkpoint you trust (kept earlier, or a witness's): the ledger must still hold "
    "its history; a bundle must be as of it, or prove that it extends it.",
)
@click.option("--bundle", metavar="FILE", help="Verify a proof bundle; needs no database.")
@click.option("--log-key", help="The log's public key (did:key, or a file) for --bundle.")
@click.option("--workers", type=int, help="Processes for whole-ledger checks (default: all cores).")
@click.option(
    "--policy",
    metavar="FILE",
    help="A C2SP tlog-policy file: the checkpoint (--checkpoint, the bundle's) must be signed by "
    "a log it lists and cosigned by its quorum of witnesses.",
)
@click.option(
    "--notice",
    metavar="FILE",
    help="A recall or alert notice received over MQTT; needs no database (docs/protocol.md §9).",
)
@click.option(
    "--regulator", "regulators", multiple=True, metavar="DID", help="--notice: a trusted regulator."
)
@click.option("--registrar", metavar="DID", help="--notice: trust regulators it enrolled.")
@click.option("--rules", "rules_keys", multiple=True, metavar="DID", help="--notice: a rules key.")
@click.option("--previous", metavar="FILE", help="--notice: the notice kept before for the lot.")
@pass_context
def verify(
    ctx: Context,
    lot_uri: str | None,
    checkpoint: str | None,
    bundle: str | None,
    log_key: str | None,
    workers: int | None,
    policy: str | None,
    notice: str | None,
    regulators: tuple[str, ...],
    registrar: str | None,
    rules_keys: tuple[str, ...],
    previous: str | None,
) -> None:
    """Check that nothing was edited, removed, reordered or rolled back.

    Exit status 0 when intact, 1 when anything is wrong (each broken event is
    printed with the reason) or an input cannot be read, 2 on a usage error.
    With --bundle and --checkpoint, a bundle older than the checkpoint fails:
    it cannot show what happened to the lot since (a recall).

    With --policy, --checkpoint alone checks just that checkpoint (no database).

    With --notice, checks a recall notice's regulator-signed envelopes (and,
    with --log-key, their inclusion in the log) or an alert notice's rules
    signature.

    Example: provenance verify --checkpoint yesterday.checkpoint
    """
    from provenance.core.bundle import verify_bundle
    from provenance.ledger.audit import verify_ledger
    from provenance.ledger.proofs import build_bundle

    if bundle is not None and log_key is None and policy is None:
        raise click.UsageError("--bundle needs --log-key (the log's did:key or key file)")
    if bundle is not None and lot_uri is not None:
        raise click.UsageError("give --bundle or --batch, not both")
    note = (
        read_input(checkpoint, what="checkpoint", limit=MAX_CHECKPOINT_INPUT)
        if checkpoint is not None
        else None
    )
    try:
        key = public_key_from_did(read_public_key(log_key)) if log_key else None
    except ProvenanceError as exc:
        raise click.ClickException(f"--log-key: {exc}") from None
    if notice is not None:
        from provenance.cli.notices import check_notice

        check_notice(
            notice,
            regulators=regulators,
            registrar=registrar,
            rules=rules_keys,
            log_key=key,
            previous=previous,
        )
        return
    if policy is not None and bundle is None and lot_uri is None:
        from provenance.cli.witness import require_policy

        require_policy(policy, checkpoint=note, log_key=key)
        return
    if bundle is not None:
        text = read_input(bundle, what="proof bundle", limit=MAX_BUNDLE_INPUT)
        try:
            parsed = parse_json(text, max_depth=64)
            if policy is not None:
                from provenance.cli.witness import require_policy

                key = require_policy(policy, checkpoint=note, bundle=parsed, log_key=key)
            assert key is not None
            report = verify_bundle(parsed, key, checkpoint=note)
        except ProvenanceError as exc:
            click.echo(f"FAILED: {exc}")
            sys.exit(1)
        click.echo(f"OK {report.summary()}")
        for warning in report.warnings:
            click.echo(f"warning: {warning}")
        return
    key = key or ctx.log_public_key()
    store = ctx.reader()
    try:
        if lot_uri is not None:
            # One lot as an outsider would check it: its bundle, as of (or
            # proven to extend) the checkpoint given.
            try:
                lot_bundle = build_bundle(store, lot_uri, since=note)
            except StoreError as exc:
                raise VerificationError(f"{lot_uri}: its proofs cannot be built: {exc}") from exc
            if policy is not None:
                from provenance.cli.witness import require_policy

                require_policy(policy, checkpoint=note, bundle=lot_bundle, log_key=key)
            report_lot = verify_bundle(lot_bundle, key, checkpoint=note)
            click.echo(f"OK {report_lot.summary()}")
            return
        report = verify_ledger(store, key, external_checkpoint=note, workers=workers)
    except ProvenanceError as exc:
        click.echo(f"FAILED: {exc}")
        sys.exit(1)
    for warning in report.warnings:
        click.echo(f"warning: {warning}")
    if report.ok:
        click.echo(
            f"OK {report.log_size} events, {report.chains_checked} chains: signatures, "
            "chains, log and checkpoints all verify"
        )
        return
    for problem in report.problems:
        click.echo(f"BROKEN {problem}")
    click.echo(f"FAILED: {len(report.problems)} problem(s) in {report.log_size} events")
    sys.exit(1)


@main.group("log")
def log_group() -> None:
    """The transparency log: checkpoints and the log key."""


@log_group.command("checkpoint")
@pass_context
@friendly
def log_checkpoint(ctx: Context) -> None:
    """Print the latest signed checkpoint (C2SP tlog-checkpoint, signed note).

    Example: provenance log checkpoint > today.checkpoint
    """
    note = ctx.reader().latest_checkpoint()
    if note is None:
        raise click.ClickException("no checkpoint yet: run `provenance init`")
    click.echo(note, nl=False)


@log_group.command("key")
@click.option("--note-key", is_flag=True, help="Print the C2SP signed-note verifier key instead.")
@pass_context
@friendly
def log_key_command(ctx: Context, note_key: bool) -> None:
    """Print the log's public key as a did:key (give it to verifiers).

    Example: provenance log key > log.did
    """
    if note_key:
        from provenance.core.checkpoint import format_verifier_key

        name = ctx.reader().get_meta("origin") or ""
        click.echo(format_verifier_key(name, ctx.log_public_key()))
        return
    from provenance.core.identity import did_from_public_key

    click.echo(did_from_public_key(ctx.log_public_key()))


@main.group(cls=LazyGroup, lazy=EXPORT_COMMANDS)
def export() -> None:
    """Export proofs and records."""


@export.command("proof")
@click.argument("uri")
@click.option(
    "--since",
    metavar="FILE",
    help="A checkpoint the verifier holds: add a consistency proof from it, so that "
    "`verify --bundle … --checkpoint FILE` accepts the bundle.",
)
@pass_context
@friendly
def export_proof(ctx: Context, uri: str, since: str | None) -> None:
    """Print the offline proof bundle of lot URI (JSON), as of the latest checkpoint.

    Example: provenance export proof https://id.gs1.org/01/09506000134352/10/LOT42 > lot42.json
    """
    from provenance.ledger.proofs import build_bundle

    note = read_input(since, what="checkpoint", limit=MAX_CHECKPOINT_INPUT) if since else None
    bundle = build_bundle(ctx.reader(), uri, since=note)
    click.echo(json.dumps(bundle, indent=1, ensure_ascii=False))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@pass_context
@friendly
def stats(ctx: Context, as_json: bool) -> None:
    """Counts of events by kind, lots, parties, devices, rejects, log size.

    Example: provenance stats --json
    """
    numbers = ctx.reader().stats()
    if as_json:
        click.echo(json.dumps(numbers, sort_keys=True))
        return
    for name, value in numbers.items():
        click.echo(f"{name}: {value}")


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default="demo",
    show_default=True,
    help="Where the demo ledger and keys go (replaced each run).",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=2),
    default=20.0,
    show_default=True,
    help="How long the simulated fleet runs in the live part.",
)
@click.option(
    "--serve",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds to keep serving the scan pages at the end "
    "(default: until Ctrl-C on a terminal, else 0).",
)
def demo(directory: str, seconds: float, serve: float | None) -> None:
    """A narrated walkthrough: parties, a lot, its journey, a checkpoint,
    tampering caught by `verify`; then the running system: a local broker, the
    ingest service and a simulated fleet of gateways, with progress lines; and
    last the consumer's scan page, with the lot's URL and QR code.

    Example: provenance demo --dir /tmp/demo --seconds 10 --serve 0
    """
    from provenance.cli.demo import run

    sys.exit(run(Path(directory), seconds, serve))
