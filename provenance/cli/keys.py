"""Who holds which key, on the command line: `provenance key new` (a party makes
its own key on its own machine), enrolling a party by its public key or with a
key the operator makes and holds for it (custodial), and `--key FILE` for the
commands that sign. docs/protocol.md §3, "Keys", has the rules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from provenance.core.kinds import CUSTODIAL_FIELD
from provenance.core.signing import did_of
from provenance.infra.keystore import load_private_key, read_public_key

if TYPE_CHECKING:
    from provenance.cli.main import Context

REGULATOR_MAKES_ITS_KEY = (
    "a regulator's key is never made on, or held by, the operator's machines: the regulator "
    "runs `provenance key new --out regulator.pem` on its own machine, keeps that file, and "
    "sends you the did:key it prints; then enrol it with `provenance party add NAME --role "
    "regulator --public-key did:key:…`"
)

KEY_OPTION = click.option(
    "--key",
    "key_file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Sign with this private key file (PKCS#8 PEM, e.g. from `provenance key new`): "
    "the party's own key, for parties that hold their key themselves.",
)


def write_new_key(path: Path) -> Ed25519PrivateKey:
    """Make an Ed25519 key and write it to *path* (PKCS#8 PEM, mode 0600);
    never overwrites a file."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(
            f"{path} already exists; refusing to overwrite a key (choose another --out)"
        ) from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


@click.group("key")
def key_group() -> None:
    """Keys a party makes and keeps on its own machine."""


@key_group.command("new")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the private key (PKCS#8 PEM, mode 0600). Never overwritten.",
)
def key_new(out: Path) -> None:
    """Make a party's Ed25519 key on this machine; prints its did:key, which the
    registrar enrols with `party add … --public-key DID`. The key never leaves
    this file: keep it (and a backup) as carefully as a company seal.

    Example: provenance key new --out food-agency.pem
    """
    key = write_new_key(out)
    click.echo(did_of(key))


def enrol_party_data(
    ctx: Context, name: str, role: str, public_key: str | None
) -> tuple[dict[str, Any], str]:
    """The enrolment's subject and custody for `party add`: the party's own
    public key (not custodial), or a key made here and held for it
    (custodial; refused for a regulator)."""
    from provenance.cli.main import key_name

    if public_key:
        return {CUSTODIAL_FIELD: False}, read_public_key(public_key)
    if role == "regulator":
        raise click.ClickException(REGULATOR_MAKES_ITS_KEY)
    key = ctx.party_keys.load_or_create(key_name(name))
    return {CUSTODIAL_FIELD: True}, did_of(key)


def signing_key(ctx: Context, name: str | None, key_file: str | None) -> Any:
    """The key to sign as party or device *name*: --key FILE when given (and
    then it must be *name*'s enrolled key), else the key the operator holds."""
    from provenance.cli.main import key_name

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
