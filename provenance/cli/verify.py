"""`provenance verify`: check that nothing was edited, removed, reordered or rolled back.

The whole ledger (signatures, chains, log and checkpoints, on several processes), one
lot as its proof bundle would show it, or a proof bundle on its own with the log's key;
each against a checkpoint the user trusts, when given. Exit status 0 when intact, 1 when
anything is wrong (each broken event printed with the reason), 2 on a usage error.
"""

from __future__ import annotations

import sys

import click

from provenance.cli.context import Context, pass_context
from provenance.cli.inputs import (
    MAX_BUNDLE_INPUT,
    MAX_CHECKPOINT_INPUT,
    MAX_EVENTS_INPUT,
    read_input,
)
from provenance.cli.progress import bar
from provenance.core.errors import ProvenanceError, VerificationError
from provenance.core.identity import public_key_from_did
from provenance.core.jcs import parse_json
from provenance.infra.keystore import read_public_key
from provenance.store.db import StoreError


@click.command()
@click.option("--batch", "lot_uri", help="Verify one lot (as its proof bundle would).")
@click.option(
    "--checkpoint",
    metavar="FILE",
    help="A checkpoint you trust (kept earlier, or a witness's): the ledger must still hold "
    "its history; a bundle must be as of it, or prove that it extends it.",
)
@click.option("--bundle", metavar="FILE", help="Verify a proof bundle; needs no database.")
@click.option("--log-key", help="The log's public key (did:key, or a file) for --bundle.")
@click.option(
    "--disclosures",
    metavar="FILE",
    help="--bundle: also check these disclosures of private fields (from `disclosure export`) "
    "against the bundle's signed digests, and print the values.",
)
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
    help="A recall or alert notice received over MQTT; needs no database (docs/protocol.md §11).",
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
    disclosures: str | None,
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
    from provenance.core.bundle import OldBundleFormatError, verify_bundle
    from provenance.ledger.audit import verify_ledger
    from provenance.ledger.proofs import build_bundle

    if bundle is not None and log_key is None and policy is None:
        raise click.UsageError("--bundle needs --log-key (the log's did:key or key file)")
    if bundle is not None and lot_uri is not None:
        raise click.UsageError("give --bundle or --batch, not both")
    if disclosures is not None and bundle is None:
        raise click.UsageError("--disclosures is checked against a --bundle: give one")
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
        disclosed = (  # read first: an unreadable file is an Error before any verdict
            read_input(disclosures, what="disclosures", limit=MAX_EVENTS_INPUT)
            if disclosures is not None
            else None
        )
        text = read_input(bundle, what="proof bundle", limit=MAX_BUNDLE_INPUT)
        try:
            parsed = parse_json(text, max_depth=64)
            if policy is not None:
                from provenance.cli.witness import require_policy

                key = require_policy(policy, checkpoint=note, bundle=parsed, log_key=key)
            assert key is not None
            report = verify_bundle(parsed, key, checkpoint=note)
        except OldBundleFormatError as exc:  # not a failed proof: a file to export again
            raise click.ClickException(str(exc)) from None
        except ProvenanceError as exc:
            click.echo(f"FAILED: {exc}")
            sys.exit(1)
        click.echo(f"OK {report.summary()}")
        for warning in report.warnings:
            click.echo(f"warning: {warning}")
        if disclosed is not None:
            from provenance.cli.disclosures import check_disclosures

            check_disclosures(disclosed, report.events)
        if policy is None:
            _say_unchecked_signatures(parsed.get("checkpoint"))
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
        with bar("verifying") as progress:
            report = verify_ledger(
                store, key, external_checkpoint=note, workers=workers, progress=progress
            )
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


def _say_unchecked_signatures(note: object) -> None:
    """Without --policy, the checkpoint's other signature lines (witnesses'
    cosignatures, or anything posing as one) are not checked: say so, never
    let them pass for checked (docs/protocol.md §10)."""
    if not isinstance(note, str) or "\n\n" not in note:
        return
    lines = [line for line in note.split("\n\n", 1)[1].splitlines() if line.startswith("\u2014 ")]
    others = len(lines) - 1  # the log's own signature is checked
    if others > 0:
        click.echo(
            f"note: the checkpoint carries {others} more signature line(s), such as witnesses' "
            "cosignatures; they were not checked: give --policy FILE to require witnesses"
        )
