"""`provenance verify --notice FILE`: check a recall or alert notice received
over MQTT, offline, against the keys the subscriber trusts (docs/protocol.md §11).
`provenance.cli.verify.verify` hands the options here."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from provenance.core.errors import ProvenanceError
from provenance.core.identity import is_did_key
from provenance.core.notice import (
    ALERT_FORMAT,
    RECALL_FORMAT,
    parse_notice,
    verify_alert_notice,
    verify_recall_notice,
)

MAX_NOTICE_INPUT = 4 * 1024 * 1024


def _dids(values: Sequence[str], option: str) -> list[str]:
    for value in values:
        if not is_did_key(value):
            raise click.UsageError(f"{option} {value!r}: give an Ed25519 did:key (did:key:z6Mk…)")
    return list(values)


def check_notice(
    path: str,
    *,
    regulators: Sequence[str],
    registrar: str | None,
    rules: Sequence[str],
    log_key: bytes | None,
    previous: str | None,
) -> None:
    """Print `OK …` and return, or print `FAILED: …` and exit 1."""
    from provenance.cli.inputs import read_input

    regulators = _dids(regulators, "--regulator")
    rules = _dids(rules, "--rules")
    if registrar is not None:
        _dids([registrar], "--registrar")
    raw = read_input(path, what="notice", limit=MAX_NOTICE_INPUT)
    kept = None
    if previous is not None:
        kept = read_input(previous, what="previous notice", limit=MAX_NOTICE_INPUT)
    try:
        notice = parse_notice(raw)
        kind = notice.get("format")
        if kind == ALERT_FORMAT:
            if not rules:
                raise click.UsageError(
                    "an alert notice needs --rules DID (the rules key you trust)"
                )
            verify_alert_notice(notice, rules=rules)
            click.echo(
                f"OK alert notice for {notice.get('lot')}: held={notice.get('held')}, "
                f"signed by the rules key {notice['signature']['signer']}"
            )
            return
        if kind == RECALL_FORMAT and not regulators and registrar is None:
            raise click.UsageError(
                "a recall notice needs --regulator DID (pinned) or --registrar DID"
            )
        report = verify_recall_notice(
            notice, regulators=regulators, registrar=registrar, log_key=log_key, previous=kept
        )
    except ProvenanceError as exc:
        click.echo(f"FAILED: {exc}")
        sys.exit(1)
    click.echo(f"OK {report.summary()}")
    if report.indirect:
        click.echo(
            f"warning: {len(report.indirect)} recall(s) reach the lot through an ancestor; "
            "the notice does not prove the lineage (verify the lot's bundle for that)"
        )
    if not report.included:
        click.echo("warning: no --log-key: the envelopes' inclusion in the log was not checked")


__all__ = ["check_notice"]
