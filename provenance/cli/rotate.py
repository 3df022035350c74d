"""Key rotation on the command line (docs/protocol.md, "Key rotation";
docs/cli.md): `party rotate` and `device rotate` move a party or device to a
new key, signed by the old key, or by the registrar with a regulator's
approval when the old key is lost; `party rotate-approve` is what the
regulator runs on its own machine to make that approval. It needs no ledger:
it signs the rotation's terms and writes them to a file the operator uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from provenance.cli.context import REGISTRAR_KEY, append_signed, pass_context
from provenance.cli.errors import friendly
from provenance.cli.inputs import read_input
from provenance.cli.keys import KEY_OPTION
from provenance.core.errors import ValidationError
from provenance.core.kinds import CUSTODIAL_FIELD, validate_data
from provenance.core.rotation import APPROVAL_FIELD, approval, check_approval, statement
from provenance.core.signing import did_of
from provenance.core.timefmt import format_time, now_micros, parse_time
from provenance.infra.keystore import load_private_key, read_public_key

if TYPE_CHECKING:
    from provenance.cli.context import Context

MAX_APPROVAL_BYTES = 16_384
APPROVAL_FORMAT = "provenance-rotation-approval/v1"

NEW_KEY_OPTION = click.option(
    "--new-public-key",
    "new_public_key",
    metavar="FILE_OR_DID",
    help="The new key's public half: a did:key, or a PEM or did:key file (`provenance key new` "
    "on the party's or device's own machine makes one).",
)
REASON_OPTION = click.option("--reason", help="Why, e.g. 'laptop stolen' (kept in the log).")
APPROVAL_OPTION = click.option(
    "--approval",
    "approval_file",
    metavar="FILE",
    help="When the old key is lost: a regulator's approval of this rotation (`provenance "
    "party rotate-approve … --out FILE` on the regulator's machine). The registrar then "
    "signs the rotation, with the approval inside.",
)


def _new_key(value: str | None, approval_terms: dict[str, Any] | None) -> str:
    if approval_terms is not None:
        if value is not None and read_public_key(value) != approval_terms["key"]:
            raise click.ClickException(
                f"--new-public-key is not the key the regulator approved ({approval_terms['key']})"
            )
        return approval_terms["key"]
    if value is None:
        raise click.ClickException(
            "give the new key: --new-public-key FILE_OR_DID (make one with `provenance key new "
            "--out FILE` on the machine that will keep it)"
        )
    return read_public_key(value)


def read_approval(path: str) -> dict[str, Any]:
    """An approval file as `rotate-approve` writes it, checked: its signature
    over its own terms. Every failure is `Error: …` naming the file."""
    text = read_input(path, what="approval", limit=MAX_APPROVAL_BYTES)
    try:
        terms = json.loads(text)
    except ValueError as exc:
        raise click.ClickException(
            f"{path}: not JSON ({exc}): give the file rotate-approve wrote"
        ) from None
    if not isinstance(terms, dict) or terms.get("format") != APPROVAL_FORMAT:
        raise click.ClickException(
            f"{path}: not a rotation approval (format {APPROVAL_FORMAT!r}): give the file "
            "`provenance party rotate-approve --out FILE` wrote"
        )
    data = {name: terms[name] for name in ("subject", "key", "reason") if name in terms}
    data[APPROVAL_FIELD] = terms.get(APPROVAL_FIELD)
    try:
        parse_time(terms.get("time"), f"{path}: time")
        validate_data("rotate", data, None)
        check_approval(data, terms["time"])
    except (ValidationError, KeyError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    return {"time": terms["time"], **data}


def rotate(
    ctx: Context,
    type_: str,
    name: str,
    new_public_key: str | None,
    key_file: str | None,
    approval_file: str | None,
    reason: str | None,
) -> None:
    """Sign and append the rotation of *name*'s key; prints the new did:key."""
    from provenance.cli.context import signing_key

    identity = ctx.store().identity_by_name(type_, name)
    if identity is None:
        raise click.ClickException(f"no {type_} named {name!r} (see `provenance {type_} list`)")
    terms = read_approval(approval_file) if approval_file else None
    if terms is not None and key_file is not None:
        raise click.ClickException(
            "--key (the old key signs) and --approval (the registrar signs, the old key being "
            "lost) are two ways to rotate: give one"
        )
    new = _new_key(new_public_key, terms)
    data: dict[str, Any] = {"subject": identity.did, "key": new}
    if type_ == "party":
        data[CUSTODIAL_FIELD] = False  # the new key came by its public half
    if terms is not None:
        if terms["subject"] != identity.did:
            raise click.ClickException(
                f"{approval_file} approves a rotation of {terms['subject']}, not of {name} "
                f"({identity.did})"
            )
        if reason is not None and reason != terms.get("reason"):
            raise click.ClickException(
                "--reason differs from the reason the regulator approved: leave it out"
            )
        if "reason" in terms:
            data["reason"] = terms["reason"]
        data[APPROVAL_FIELD] = terms[APPROVAL_FIELD]
        registrar = ctx.root_keys.load(REGISTRAR_KEY)
        append_signed(ctx.ledger(), registrar, "rotate", None, data, time=terms["time"])
    else:
        if reason is not None:
            data["reason"] = reason
        append_signed(ctx.ledger(), signing_key(ctx, name, key_file), "rotate", None, data)
    click.echo(new)


@click.command("rotate")
@click.argument("name")
@NEW_KEY_OPTION
@KEY_OPTION
@APPROVAL_OPTION
@REASON_OPTION
@pass_context
@friendly
def party_rotate(
    ctx: Context,
    name: str,
    new_public_key: str | None,
    key_file: str | None,
    approval_file: str | None,
    reason: str | None,
) -> None:
    """Move party NAME to a new key: signed by its old key (--key FILE, or the key
    the operator holds for a custodial party); or, when the old key is lost or the
    party was revoked, by the registrar with a regulator's --approval FILE. Custody,
    open shipments, GS1 prefixes and devices carry over; the old key is refused
    from now on. Prints the new did:key.

    Example: provenance party rotate "Green Valley Farm" --new-public-key new.pub
    --key old.pem
    """
    rotate(ctx, "party", name, new_public_key, key_file, approval_file, reason)


@click.command("rotate")
@click.argument("device_id")
@NEW_KEY_OPTION
@KEY_OPTION
@APPROVAL_OPTION
@REASON_OPTION
@pass_context
@friendly
def device_rotate(
    ctx: Context,
    device_id: str,
    new_public_key: str | None,
    key_file: str | None,
    approval_file: str | None,
    reason: str | None,
) -> None:
    """Move a device to a new key, as `party rotate` does; its attachments to
    lots carry over.

    Example: provenance device rotate truck7-probe1 --new-public-key probe-new.pub
    """
    rotate(ctx, "device", device_id, new_public_key, key_file, approval_file, reason)


@click.command("rotate-approve")
@click.option(
    "--subject",
    required=True,
    metavar="DID",
    help="The did:key being rotated away from (`provenance party list` or the scan page shows it).",
)
@NEW_KEY_OPTION
@click.option(
    "--key",
    "key_file",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="The regulator's own private key file (it never leaves the regulator's machine).",
)
@REASON_OPTION
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the approval (JSON) for the operator. Never overwritten.",
)
@friendly
def party_rotate_approve(
    subject: str, new_public_key: str | None, key_file: str, reason: str | None, out: Path
) -> None:
    """As a regulator, on your own machine: approve moving SUBJECT's identity to
    a new key (when its old key is lost, or it was revoked). Signs the subject,
    the new key, the time (now) and the reason; the operator then runs `party
    rotate NAME --approval FILE`. Needs no ledger.

    Example: provenance party rotate-approve --subject did:key:z6Mk… --new-public-key
    farm-new.pub --key regulator.pem --reason "laptop stolen" --out approval.json
    """
    key = load_private_key(key_file)
    new = _new_key(new_public_key, None)
    data: dict[str, Any] = {"subject": subject, "key": new}
    if reason is not None:
        data["reason"] = reason
    try:
        validate_data("rotate", data, None)
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    time = format_time(now_micros())
    signature = key.sign(statement(subject, new, time, reason))
    terms = {"format": APPROVAL_FORMAT, "time": time, **data}
    terms[APPROVAL_FIELD] = approval(did_of(key), signature)
    try:
        with out.open("x", encoding="utf-8") as handle:
            handle.write(json.dumps(terms, indent=2, ensure_ascii=False) + "\n")
    except FileExistsError:
        raise click.ClickException(f"{out} already exists; choose another --out") from None
    click.echo(f"approved the rotation of {subject} to {new} at {time}; send {out} to the operator")
