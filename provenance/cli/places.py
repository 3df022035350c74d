"""`provenance place add|list|show`: the places a party operates, registered once
by GLN (docs/protocol.md §15), and the address options `party add` shares.

`place add` signs a `place` event as the operating party (its held key, or its own
--key FILE); the kind's schema checks the GLN's check digit and the ledger that
no other party holds the GLN. Events may then cite the place as `{"gln": …}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from provenance.cli.context import Context, append_signed, pass_context, signing_key
from provenance.cli.errors import friendly
from provenance.cli.keys import KEY_OPTION
from provenance.core import gs1
from provenance.core.kinds import validate_data
from provenance.core.places import ADDRESS, PLACE_TYPES
from provenance.exchange.places import describe_address
from provenance.store import places
from provenance.store.places import RegisteredPlace

_ADDRESS_OPTIONS = (
    ("street", "--street", "Street and number, e.g. '1 Mill Lane'."),
    ("city", "--city", "City or town."),
    ("postal_code", "--postal-code", "Postal code."),
    ("region", "--region", "Region, state or county."),
    ("country", "--country", "ISO 3166-1 alpha-2 country code, e.g. KE."),
)


def address_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--street, --city, --postal-code, --region, --country (an `address`)."""
    for field, flag, text in reversed(_ADDRESS_OPTIONS):
        function = click.option(flag, field, help=text)(function)
    return function


def address_of(options: dict[str, Any]) -> dict[str, str] | None:
    """The address the options give (popped from *options*), or None."""
    address = {field: options.pop(field) for field, _, _ in _ADDRESS_OPTIONS}
    address = {field: value for field, value in address.items() if value is not None}
    if "country" in address:
        address["country"] = address["country"].upper()
    if address:
        ADDRESS(address, "address")  # before a key is made or opened
    return address or None


def checked_gln(value: str, option: str) -> str:
    """A GLN as typed (spaces and dashes allowed), checked for its check digit."""
    return gs1.validate_gln(value.replace(" ", "").replace("-", ""), option)


@click.group("place")
def group() -> None:
    """Places: farms, packhouses, warehouses, stores, clinics… registered by GLN by
    the party that operates them, so events may cite them by GLN alone."""


@group.command("add")
@click.argument("gln")
@click.option("--name", required=True, help="What the place is called.")
@click.option("--as", "as_", help="The operating party's name (or give its --key FILE).")
@address_options
@click.option("--lat", type=click.FloatRange(-90, 90), help="Latitude, WGS 84 degrees.")
@click.option("--lon", type=click.FloatRange(-180, 180), help="Longitude, WGS 84 degrees.")
@click.option("--type", "type_", type=click.Choice(PLACE_TYPES), help="What kind of place.")
@click.option("--time", "time_", help="Time of the event (RFC 3339 UTC); default now.")
@click.option("--json", "as_json", is_flag=True, help="Print the signed data as JSON.")
@KEY_OPTION
@pass_context
@friendly
def place_add(
    ctx: Context,
    gln: str,
    name: str,
    as_: str | None,
    lat: float | None,
    lon: float | None,
    type_: str | None,
    time_: str | None,
    as_json: bool,
    key_file: str | None,
    **address_parts: Any,
) -> None:
    """Register (or change) the place with GLN as one the party operates: a
    signed `place` event. Registered again by the same party, the newest one is
    in force; another party's GLN is refused.

    Example: provenance place add 9506000000008 --name "Riverside packhouse" --as Packer
    --street "1 Mill Lane" --city Nakuru --country KE --type packhouse
    """
    data: dict[str, Any] = {"gln": checked_gln(gln, "GLN"), "name": name}
    address = address_of(address_parts)
    if address:
        data["address"] = address
    if (lat is None) != (lon is None):
        raise click.UsageError("give both --lat and --lon, or neither")
    if lat is not None:
        data["lat"], data["lon"] = lat, lon
    if type_:
        data["type"] = type_
    validate_data("place", data, None)  # its own words before a key is opened
    key = signing_key(ctx, as_, key_file)
    result = append_signed(ctx.ledger(), key, "place", None, data, time=time_)
    if as_json:
        click.echo(json.dumps({"event": result.event_id, "data": data}, ensure_ascii=False))
    else:
        click.echo(f"{result.event_id}  place {data['gln']} ({name}) registered")


def _as_json(place: RegisteredPlace) -> dict[str, Any]:
    found: dict[str, Any] = {
        "gln": place.gln,
        "name": place.name,
        "party": {"did": place.party_did, "name": place.party_name},
    }
    for field in ("address", "lat", "lon", "type"):
        if getattr(place, field) is not None:
            found[field] = getattr(place, field)
    found["event_index"] = place.event
    return found


@group.command("list")
@click.option("--party", "party_name", help="Only the places of this party.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_context
@friendly
def place_list(ctx: Context, party_name: str | None, as_json: bool) -> None:
    """List the registered places: GLN, name, operating party and address.

    Example: provenance place list --party Packer
    """
    store = ctx.store()
    party = None
    if party_name is not None:
        identity = store.identity_by_name("party", party_name)
        if identity is None:
            raise click.ClickException(
                f"no party named {party_name!r}: `provenance party list` shows them"
            )
        party = identity.id
    for place in places.places(store, party):
        if as_json:
            click.echo(json.dumps(_as_json(place), ensure_ascii=False))
        else:
            where = describe_address(place.address)
            click.echo("\t".join((place.gln, place.name, place.party_name, where)))


@group.command("show")
@click.argument("gln")
@pass_context
@friendly
def place_show(ctx: Context, gln: str) -> None:
    """Print the registered place with GLN as JSON: name, operating party,
    address, coordinates, type and the log index of the registration in force.

    Example: provenance place show 9506000000008
    """
    found = places.place(ctx.store(), checked_gln(gln, "GLN"))
    if found is None:
        raise click.ClickException(
            f"no place with GLN {gln} is registered: its operator registers it with "
            "`provenance place add`"
        )
    click.echo(json.dumps(_as_json(found), ensure_ascii=False, indent=2))
