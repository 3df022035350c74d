"""`provenance user …`, `provenance token …` and `provenance portal …`: portal
accounts, API tokens, the server-held party keys and the audit trail, from the
command line (the first admin is made here).

The three groups are listed in ``provenance.cli.main.SERVICE_COMMANDS`` (imported
when first run). Each group takes
``--accounts DIR`` (env ``PROVENANCE_ACCOUNTS``; default ``accounts/`` beside
the ledger), the folder `provenance serve` uses too.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

import click

from provenance.cli.options import json_lines_option, password_stdin_option
from provenance.core.errors import KeyFileError, ProvenanceError, ValidationError
from provenance.infra.keystore import load_private_key
from provenance.store.accounts.accounts import Accounts
from provenance.store.accounts.db import default_directory
from provenance.store.accounts.models import ADMIN, ROLES, AccountError
from provenance.store.accounts.users import MAX_PASSWORD
from provenance.store.errors import DATABASE_ERRORS
from provenance.store.key_custody import is_custodial


def _context(click_ctx: click.Context) -> Any:
    from provenance.cli.context import Context

    ctx = click_ctx.find_object(Context)
    if ctx is None:
        raise click.UsageError("run this as a `provenance` subcommand")
    return ctx


def _accounts(click_ctx: click.Context) -> Accounts:
    folder = click_ctx.meta.get("provenance.store.accounts")
    if folder is None:
        folder = default_directory(_context(click_ctx).db_path)
    try:
        return Accounts(folder)
    except (ProvenanceError, OSError) as exc:
        raise click.ClickException(f"cannot open the accounts in {folder}: {exc}") from None


def _actor() -> str:
    try:
        return f"cli {getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def trail_ledger_action(db_path: Path | None, kind: str, lots: Any, result: Any) -> None:
    """Write one CLI ledger action (an `Appended` *result* of *kind*) to the
    portal's audit trail: see `trail_cli_action`."""
    params: dict[str, Any] = {"kind": kind, "event": result.event_id, "log_index": result.index}
    if lots:
        params["batches"] = list(lots)
    outcome = "ok" if result.ok else f"refused: {result.reason}: {result.message}"
    trail_cli_action(db_path, f"ledger-{kind}", params, outcome)


def trail_cli_action(
    db_path: Path | None, action: str, params: dict[str, Any], outcome: str = "ok"
) -> None:
    """Write a CLI ledger action (who ran it, what, how it ended) to the portal's
    audit trail, which is anchored in the log (docs/portal.md), when the
    portal's accounts exist (env PROVENANCE_ACCOUNTS, else beside the ledger);
    never made here. The action itself is in the log already: a failure to
    write the trail is a warning, never an error."""
    import os

    from provenance.store.accounts.audit_trail import AuditTrail
    from provenance.store.accounts.db import DATABASE_FILE

    if db_path is None:
        return
    folder = Path(os.environ.get("PROVENANCE_ACCOUNTS") or default_directory(db_path))
    if not (folder / DATABASE_FILE).is_file():
        return
    try:
        trail = AuditTrail(folder)
        try:
            trail.audit(_actor(), action, params, outcome=outcome)
        finally:
            trail.close()
    except (ProvenanceError, OSError, *DATABASE_ERRORS) as exc:
        click.echo(f"warning: the audit trail in {folder} was not written: {exc}", err=True)


def _accounts_option(function: Any) -> Any:
    def remember(click_ctx: click.Context, _param: Any, value: str | None) -> str | None:
        if value:
            click_ctx.meta["provenance.store.accounts"] = Path(value)
        return value

    return click.option(
        "--accounts",
        envvar="PROVENANCE_ACCOUNTS",
        expose_value=False,
        callback=remember,
        is_eager=True,
        metavar="DIR",
        help="Accounts folder (env PROVENANCE_ACCOUNTS; default: accounts/ beside the ledger).",
    )(function)


_PASSWORD_LINE = 4 * MAX_PASSWORD + 2  # UTF-8 bytes of the longest password and "\r\n"


def _password(password_stdin: bool, name: str) -> str:
    if password_stdin:
        with click.open_file("-", "rb") as stdin:  # bounded: stdin may never end a line
            line = stdin.readline(_PASSWORD_LINE + 1)
        if len(line) > _PASSWORD_LINE:
            raise click.ClickException(
                f"the password on standard input is longer than {MAX_PASSWORD} characters"
            )
        try:
            password = line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise click.ClickException("the password on standard input is not UTF-8 text") from None
        if len(password) > MAX_PASSWORD:
            raise click.ClickException(
                f"the password on standard input is longer than {MAX_PASSWORD} characters"
            )
        return password
    return click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True, err=True)


def _party(click_ctx: click.Context, name: str) -> Any:
    ctx = _context(click_ctx)
    try:
        identity = ctx.reader().identity_by_name("party", name)
    except ProvenanceError as exc:
        raise click.ClickException(str(exc)) from None
    if identity is None:
        raise click.ClickException(
            f"no party named {name!r} in {ctx.db_shown}: enrol it with `provenance party add`"
        )
    return identity


def _server_may_hold(click_ctx: click.Context, party: Any) -> bool:
    """Whether the server may hold (and sign with) *party*'s key: a custodial
    party that is not a regulator (docs/protocol.md §3, "Keys")."""
    store = _context(click_ctx).reader()
    return party.role != "regulator" and is_custodial(store, party)


def _import_key(click_ctx: click.Context, accounts: Accounts, party: Any, path: str | None) -> bool:
    """Store the party's key (from --key FILE, else the key folder) encrypted."""
    from provenance.cli.context import key_name

    ctx = _context(click_ctx)
    try:
        key = load_private_key(path) if path else ctx.party_keys.load(key_name(party.name))
    except (KeyFileError, FileNotFoundError) as exc:
        if path is None:
            return False
        raise click.ClickException(str(exc)) from None
    try:
        store = ctx.reader()
        accounts.store_party_key(
            party.did,
            party.name,
            key,
            role=party.role,
            custodial=is_custodial(store, party),
        )
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    accounts.audit(_actor(), "key-import", {"party": party.name}, party=party.name)
    return True


# --- users


@click.group()
@_accounts_option
def user() -> None:
    """Portal users: producers, processors, carriers, distributors, retailers,
    clinics, inspectors, regulators (each of one party) and admins."""


@user.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--party", help="The enrolled party the user acts for (not for admins).")
@password_stdin_option
@click.pass_context
def user_add(
    click_ctx: click.Context, name: str, role: str, party: str | None, password_stdin: bool
) -> None:
    """Add a user (asks for a password). A party user's role must be the
    party's; the party's key is imported from the key folder when the server
    holds none yet, so that the user can sign.

    Example: provenance user add alice --role producer --party "Green Valley Farm"
    """
    accounts = _accounts(click_ctx)
    identity = None
    if role == ADMIN:
        if party:
            raise click.UsageError("an admin belongs to no party: leave out --party")
    else:
        if not party:
            raise click.UsageError(f"a {role} acts for a party: give --party")
        identity = _party(click_ctx, party)
        if identity.role != role:
            raise click.ClickException(
                f"{party} is enrolled as a {identity.role}: its users have that role"
            )
    password = _password(password_stdin, name)
    try:
        accounts.add_user(
            name,
            role,
            password,
            party_did=identity.did if identity else None,
            party_name=identity.name if identity else None,
        )
    except (AccountError, ValidationError) as exc:
        raise click.ClickException(str(exc)) from None
    accounts.audit(_actor(), "user-add", {"user": name, "role": role, "party": party}, party=party)
    click.echo(f"user {name} added ({role}{', ' + party if party else ''})")
    if identity is not None and not _server_may_hold(click_ctx, identity):
        click.echo(
            f"note: {party} holds its own key, so the server never signs for it: its users "
            "sign in their browser (the portal's Key page; docs/portal.md)",
            err=True,
        )
    elif identity is not None and not accounts.has_party_key(identity.did):
        if _import_key(click_ctx, accounts, identity, None):
            click.echo(f"the server now holds the signing key of {party} (encrypted)")
        else:
            click.echo(
                f"note: no key file for {party} here; until `provenance portal key-import` "
                "the user can look but not sign",
                err=True,
            )


@user.command("list")
@json_lines_option
@click.pass_context
def user_list(click_ctx: click.Context, as_json: bool) -> None:
    """List users: name, role, party, state.

    Example: provenance user list --json
    """
    for found in _accounts(click_ctx).users():
        row = {
            "name": found.name,
            "role": found.role,
            "party": found.party_name,
            "disabled": found.disabled,
            "created_at": found.created_at,
        }
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            state = "disabled" if found.disabled else "active"
            click.echo(f"{found.name}\t{found.role}\t{found.party_name or ''}\t{state}")


@user.command("passwd")
@click.argument("name")
@password_stdin_option
@click.pass_context
def user_passwd(click_ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Set a user's password (ends the user's sessions).

    Example: provenance user passwd alice
    """
    accounts = _accounts(click_ctx)
    try:
        accounts.set_password(name, _password(password_stdin, name))
    except (AccountError, ValidationError) as exc:
        raise click.ClickException(str(exc)) from None
    accounts.audit(_actor(), "user-password", {"user": name})
    click.echo(f"password of {name} changed")


@user.command("disable")
@click.argument("name")
@click.pass_context
def user_disable(click_ctx: click.Context, name: str) -> None:
    """Disable a user: signs them out and refuses their sign-ins.

    Example: provenance user disable alice
    """
    _set_disabled(click_ctx, name, True)


@user.command("enable")
@click.argument("name")
@click.pass_context
def user_enable(click_ctx: click.Context, name: str) -> None:
    """Enable a disabled user again.

    Example: provenance user enable alice
    """
    _set_disabled(click_ctx, name, False)


def _set_disabled(click_ctx: click.Context, name: str, disabled: bool) -> None:
    accounts = _accounts(click_ctx)
    try:
        accounts.set_disabled(name, disabled)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    change = "disable" if disabled else "enable"
    accounts.audit(_actor(), f"user-{change}", {"user": name})
    click.echo(f"user {name} {change}d")


# --- API tokens


@click.group()
@_accounts_option
def token() -> None:
    """API tokens: each acts for one party, with its role; shown once, stored hashed."""


@token.command("create")
@click.argument("party")
@click.option("--label", default="", help="What the token is for, e.g. 'ERP export'.")
@click.option("--read-only", is_flag=True, help="The token may read but not sign.")
@click.pass_context
def token_create(click_ctx: click.Context, party: str, label: str, read_only: bool) -> None:
    """Make an API token for PARTY and print it (once: only its hash is kept).

    Example: provenance token create "Green Valley Farm" --label "ERP export"
    """
    accounts = _accounts(click_ctx)
    identity = _party(click_ctx, party)
    scope = "read" if read_only else "write"
    try:
        made, secret = accounts.create_token(
            identity.did,
            identity.name,
            identity.role,
            scope=scope,
            label=label,
            created_by=_actor(),
        )
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    accounts.audit(
        _actor(),
        "token-create",
        {"token": made.id, "scope": scope, "label": label},
        role=identity.role,
        party=identity.name,
    )
    click.echo(secret)
    click.echo(
        f"token {made.id} for {identity.name} ({identity.role}, {scope}); "
        "store it now: it is not shown again",
        err=True,
    )
    if scope == "write" and not _server_may_hold(click_ctx, identity):
        click.echo(
            f"note: {party} holds its own key: the token appends envelopes the client signs "
            "(POST /api/v1/events); actions the server would sign answer 503 no-key",
            err=True,
        )
    elif scope == "write" and not accounts.has_party_key(identity.did):
        click.echo(
            f"note: the server holds no key for {party}: the token can append envelopes the "
            "client signs, but portal-style actions need `provenance portal key-import`",
            err=True,
        )


@token.command("list")
@click.option("--party", help="Only this party's tokens.")
@json_lines_option
@click.pass_context
def token_list(click_ctx: click.Context, party: str | None, as_json: bool) -> None:
    """List API tokens (never their secrets).

    Example: provenance token list --party "Green Valley Farm"
    """
    accounts = _accounts(click_ctx)
    did = _party(click_ctx, party).did if party else None
    for found in accounts.tokens(did):
        row = {
            "id": found.id,
            "party": found.party_name,
            "role": found.role,
            "scope": found.scope,
            "label": found.label,
            "created_at": found.created_at,
            "created_by": found.created_by,
            "revoked_at": found.revoked_at,
            "last_used_at": found.last_used_at,
        }
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            state = f"revoked {found.revoked_at}" if found.revoked_at else "active"
            click.echo(f"{found.id}\t{found.party_name}\t{found.scope}\t{found.label}\t{state}")


@token.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def token_revoke(click_ctx: click.Context, token_id: int) -> None:
    """Revoke an API token by its number (see `provenance token list`).

    Example: provenance token revoke 3
    """
    accounts = _accounts(click_ctx)
    try:
        found = accounts.revoke_token(token_id)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    accounts.audit(_actor(), "token-revoke", {"token": token_id}, party=found.party_name)
    click.echo(f"token {token_id} revoked at {found.revoked_at}")


# --- keys and audit


@click.group("portal")
@_accounts_option
def portal() -> None:
    """The portal's server-held party keys and its audit trail."""


@portal.command("key-import")
@click.argument("party")
@click.option("--key", "key_file", help="PEM private key file (default: the party's key file).")
@click.pass_context
def key_import(click_ctx: click.Context, party: str, key_file: str | None) -> None:
    """Let the portal sign for PARTY: store its key encrypted under the server
    secret (docs/portal.md explains the risk).

    Example: provenance portal key-import "Green Valley Farm"
    """
    accounts = _accounts(click_ctx)
    identity = _party(click_ctx, party)
    if not _import_key(click_ctx, accounts, identity, key_file):
        from provenance.cli.context import key_name

        where = _context(click_ctx).party_keys.path(key_name(identity.name))
        raise click.ClickException(f"no key file for {party} at {where}: give --key FILE")
    click.echo(f"the server now holds the signing key of {identity.name} (encrypted)")


@portal.command("keys")
@click.pass_context
def keys_list(click_ctx: click.Context) -> None:
    """List the parties whose keys the server holds.

    Example: provenance portal keys
    """
    for name, did, stored_at in _accounts(click_ctx).party_keys():
        click.echo(f"{name}\t{did}\t{stored_at}")


@portal.command("key-remove")
@click.argument("party")
@click.pass_context
def key_remove(click_ctx: click.Context, party: str) -> None:
    """Stop the portal signing for PARTY: delete its stored key.

    Example: provenance portal key-remove "Green Valley Farm"
    """
    accounts = _accounts(click_ctx)
    identity = _party(click_ctx, party)
    if not accounts.remove_party_key(identity.did):
        raise click.ClickException(f"the server holds no key for {party}")
    accounts.audit(_actor(), "key-remove", {"party": party}, party=party)
    click.echo(f"the server no longer holds the signing key of {party}")


@portal.command("audit")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--action", help="Only entries of this action (e.g. recall, search, login).")
@json_lines_option
@click.option(
    "--verify",
    is_flag=True,
    help="Check the trail's hash chain against its anchors in the log; exit 1 at the first "
    "entry that does not match.",
)
@click.pass_context
def audit(
    click_ctx: click.Context, limit: int, action: str | None, as_json: bool, verify: bool
) -> None:
    """Show the audit trail, newest first (who, what, when, parameters, outcome).

    With --verify, recompute the trail's hash chain and hold it against every
    `anchor` event the log has for it (docs/portal.md, "The audit trail").

    Example: provenance portal audit --action recall --json
    """
    accounts = _accounts(click_ctx)
    if verify:
        _verify_trail(click_ctx, accounts)
        return
    for entry in accounts.audit_entries(limit=limit, action=action):
        row = {
            "id": entry.id,
            "at": entry.at,
            "actor": entry.actor,
            "role": entry.role,
            "party": entry.party,
            "action": entry.action,
            "params": entry.params,
            "outcome": entry.outcome,
        }
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo(
                f"{entry.id}\t{entry.at}\t{entry.actor}\t{entry.action}\t"
                f"{json.dumps(entry.params, ensure_ascii=False)}\t{entry.outcome}"
            )


def _verify_trail(click_ctx: click.Context, accounts: Accounts) -> None:
    from provenance.ledger.trail_anchors import verify_anchored
    from provenance.store.accounts.audit_trail import TRAIL

    try:
        store = _context(click_ctx).reader()
        report = verify_anchored(list(accounts.trail_entries()), store, TRAIL)
    except ProvenanceError as exc:
        raise click.ClickException(f"cannot read the anchors in the ledger: {exc}") from None
    if not report.ok:
        click.echo(f"BROKEN {report.problem}")
        sys.exit(1)
    click.echo(
        f"OK {report.checked} audit entries, hash chain intact; {report.anchors} anchor(s) in "
        f"the log match, covering the first {report.anchored}"
    )
    if report.unanchored:
        click.echo(
            f"warning: the newest {report.unanchored} entries are not anchored yet "
            "(`provenance serve` anchors every --anchor-every seconds; `provenance portal anchor` "
            "now)"
        )


@portal.command("anchor")
@click.pass_context
def anchor(click_ctx: click.Context) -> None:
    """Anchor the audit trail's head in the log now: an `anchor` event signed by
    the registrar key (KEYS/registrar.pem), if the trail grew since the last.

    Example: provenance portal anchor
    """
    from provenance.cli.context import REGISTRAR_KEY
    from provenance.ledger.trail_anchors import anchor_trail
    from provenance.store.accounts.audit_trail import TRAIL

    accounts = _accounts(click_ctx)
    ctx = _context(click_ctx)
    try:
        key = ctx.root_keys.load(REGISTRAR_KEY)
        done = anchor_trail(ctx.ledger(), key, TRAIL, accounts.audit_head)
    except (ProvenanceError, OSError) as exc:
        raise click.ClickException(f"cannot anchor the audit trail: {exc}") from None
    if done is None:
        click.echo("nothing to anchor: the trail has not grown since its last anchor")
        return
    count, _ = accounts.audit_head()
    click.echo(f"anchored the audit trail at {count} entries: event {done.event_id}")


__all__ = ["portal", "token", "user"]
