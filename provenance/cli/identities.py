"""`provenance party …` and `provenance device …`: who may sign, enrolled by the registrar.

`party add` makes a key for a party and enrols it (producers and processors with the GS1
company prefixes they commission under), `party grant` adds prefixes, `device add` enrols a
sensor, logger or gateway under its owner; `list` shows them and `revoke` distrusts a key
from a point in time on. Each change is an `enrol`, `grant` or `revoke` event signed by the
registrar (or a regulator) and appended to the ledger.
"""

from __future__ import annotations

import json
from typing import Any

import click

from provenance.cli.context import (
    Context,
    append_signed,
    key_name,
    pass_context,
    registrar_sign,
    signing_key,
)
from provenance.cli.errors import friendly
from provenance.cli.groups import LazyGroup
from provenance.cli.keys import KEY_OPTION, enrol_party_data
from provenance.cli.options import json_lines_option, revoke_options
from provenance.cli.places import address_of, address_options, checked_gln
from provenance.core.identity import COMMISSIONING_ROLES, PARTY_ROLES
from provenance.core.kinds import CUSTODIAL_FIELD, PREFIXES_FIELD, company_prefixes
from provenance.core.signing import did_of
from provenance.core.timefmt import format_time, now_micros, parse_time
from provenance.infra.keystore import read_public_key
from provenance.store.key_custody import is_custodial

# Key rotation (provenance/cli/rotate.py), in the party and device groups.
PARTY_COMMANDS = {
    "rotate": "provenance.cli.rotate:party_rotate",
    "rotate-approve": "provenance.cli.rotate:party_rotate_approve",
}
DEVICE_COMMANDS = {"rotate": "provenance.cli.rotate:device_rotate"}


@click.group(cls=LazyGroup, lazy=PARTY_COMMANDS)
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
@click.option("--pgln", metavar="GLN", help="The party's GS1 Party GLN (13 digits).")
@address_options
@click.option(
    "--public-key",
    "public_key",
    metavar="FILE_OR_DID",
    help="The party's own public key (did:key, or a PEM or did:key file; `provenance key new` "
    "on its machine makes one): no private key is made or kept here. Without it the operator "
    "makes and holds the party's key, and the enrolment says so (custodial); a regulator "
    "always brings its own.",
)
@pass_context
@friendly
def party_add(
    ctx: Context,
    name: str,
    role: str,
    prefixes: tuple[str, ...],
    public_key: str | None,
    pgln: str | None,
    **address_parts: Any,
) -> None:
    """Enrol NAME by its own public key (--public-key), or make a key for it that
    the operator holds (custodial); prints its did:key. Producers and
    processors commission lots only under the GS1 company prefixes they are
    enrolled (--prefix) or granted (`party grant`) with.

    Example: provenance party add "Green Valley Farm" --role producer --prefix 9506000
    --public-key did:key:z6Mk… --pgln 9506000000015 --city Naivasha --country KE
    """
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
    if pgln is not None:
        data["pgln"] = checked_gln(pgln, "--pgln")
    address = address_of(address_parts)
    if address:
        data["address"] = address
    custody, did = enrol_party_data(ctx, name, role, public_key)
    data.update(custody, subject=did)
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
    help="Sign the grant as this regulator party (with its --key FILE) instead of the registrar.",
)
@KEY_OPTION
@pass_context
@friendly
def party_grant(
    ctx: Context,
    name: str,
    prefixes: tuple[str, ...],
    reason: str | None,
    by: str | None,
    key_file: str | None,
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
        append_signed(ledger, signing_key(ctx, by, key_file), "grant", None, data)
    held = ctx.store().prefixes(identity.id)
    click.echo(f"{name} may commission under {', '.join(held)}")


@party.command("list")
@json_lines_option
@pass_context
@friendly
def party_list(ctx: Context, as_json: bool) -> None:
    """List enrolled parties: name, role, did:key, revoked from, GS1 company
    prefixes (producers and processors), and whether the operator holds the
    party's key (custodial: True) or the party holds it itself (False).

    Example: provenance party list --json
    """
    _list_identities(ctx, "party", as_json)


def _list_identities(ctx: Context, type_: str, as_json: bool) -> None:
    store = ctx.reader()
    for identity in store.identities():
        if identity.type != type_ or store.rotated_to(identity.id) is not None:
            continue  # a key rotated away from is history: the log keeps it
        row: dict[str, Any] = {
            "name": identity.name,
            "role": identity.role,
            "did": identity.did,
            "revoked_from": identity.revoked_from,
        }
        if identity.role in COMMISSIONING_ROLES:
            row[PREFIXES_FIELD] = ctx.store().prefixes(identity.id)
        if type_ == "party":
            row[CUSTODIAL_FIELD] = is_custodial(store, identity)
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
@revoke_options
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


@click.group(cls=LazyGroup, lazy=DEVICE_COMMANDS)
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
@json_lines_option
@pass_context
@friendly
def device_list(ctx: Context, as_json: bool) -> None:
    """List enrolled devices: id, owner, did:key, revoked from.

    Example: provenance device list
    """
    _list_identities(ctx, "device", as_json)


@device.command("revoke")
@click.argument("device_id")
@revoke_options
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
