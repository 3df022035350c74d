"""The webhook and e-mail side of `provenance notify`: the subscriptions file
(`notify subscribe`, `notify subscriptions`) and the channels `notify run`
hands notices to (provenance/services/notice_delivery.py, docs/lineage.md,
"Webhooks and e-mail").

Exit status: 0 done, 1 an unusable file or an unknown party, 2 usage error.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from provenance.cli.context import Context, pass_context
from provenance.cli.errors import friendly
from provenance.cli.inputs import read_input
from provenance.infra.delivery_record import default_delivery_log
from provenance.services.notice_delivery import (
    Channels,
    DeliveryRecord,
    channels_for,
)
from provenance.services.subscriptions import (
    LANGUAGES,
    MAX_FILE_BYTES,
    SMTP,
    Subscriber,
    SubscriptionError,
    Subscriptions,
    check_email,
    default_subscriptions_path,
    load_subscriptions,
    parse_subscriptions,
    save_subscriptions,
    subscribe,
)

subscriptions_option = click.option(
    "--subscriptions",
    "subscriptions_path",
    type=click.Path(dir_okay=False),
    help="Who gets notices by webhook and e-mail (default: DB.notify-subscriptions.json).",
)


def subscriptions_file(ctx: Context, given: str | None) -> Path:
    return Path(given) if given else default_subscriptions_path(ctx.db_path)


def read_subscriptions(path: Path, *, required: bool = False) -> Subscriptions:
    """The subscriptions file; none when it does not exist (unless *required*)."""
    if not required and not path.exists() and not path.is_symlink():
        return Subscriptions()
    text = read_input(str(path), what="subscriptions file", limit=MAX_FILE_BYTES)
    try:
        return parse_subscriptions(text)
    except SubscriptionError as exc:
        raise click.ClickException(f"{path}: {exc}") from None


def channels(ctx: Context, subscriptions_path: str | None, deliveries_path: str | None) -> Channels:
    """The channels of `notify run`. The subscriptions file is checked now (a
    bad one stops the start with `Error:`) and read again whenever it changes,
    so `notify subscribe` takes effect without a restart (the SMTP host does
    not: restart for that)."""
    path = subscriptions_file(ctx, subscriptions_path)
    found = read_subscriptions(path)
    record = Path(deliveries_path) if deliveries_path else default_delivery_log(ctx.db_path)
    if record.is_dir():
        raise click.ClickException(f"{record} is a folder: give a file for --deliveries")
    made = channels_for(found.subscribers, found.smtp, DeliveryRecord(record))
    seen = [_stamp(path)]

    def reload() -> tuple[Subscriber, ...]:
        stamp = _stamp(path)
        if stamp == seen[0]:
            return made.subscribers
        subscribers = load_subscriptions(path).subscribers
        seen[0] = stamp
        return subscribers

    made.reload = reload
    return made


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size)


@click.command("subscribe")
@click.argument("party", metavar="PARTY")
@click.option("--webhook", metavar="URL", help="POST signed notices here (http or https).")
@click.option("--email", metavar="ADDRESS", help="Send notices here in plain words.")
@click.option("--language", type=click.Choice(LANGUAGES), default="en", show_default=True)
@click.option("--smtp-host", metavar="HOST", help="The SMTP host e-mail goes through.")
@click.option("--smtp-port", type=click.IntRange(1, 65535), default=25, show_default=True)
@click.option("--smtp-starttls", is_flag=True, help="Upgrade the SMTP connection with STARTTLS.")
@click.option("--smtp-username", metavar="USER", help="Log in as USER (password: env).")
@click.option("--mail-from", metavar="ADDRESS", default="recalls@localhost", show_default=True)
@subscriptions_option
@pass_context
@friendly
def subscribe_command(
    ctx: Context,
    party: str,
    webhook: str | None,
    email: str | None,
    language: str,
    smtp_host: str | None,
    smtp_port: int,
    smtp_starttls: bool,
    smtp_username: str | None,
    mail_from: str,
    subscriptions_path: str | None,
) -> None:
    """Send PARTY (an enrolled party's name) the recall notices of the lots it
    holds, held or is receiving: by webhook (a new secret is printed once: give
    it to the party), by e-mail, or both. Replaces its earlier subscription.

    Example: provenance notify subscribe "Corner Shop" --webhook https://shop.example/recalls
    --email manager@shop.example --language zh --smtp-host 127.0.0.1 --smtp-port 2525
    """
    if not webhook and not email and not smtp_host:
        raise click.UsageError("give --webhook URL, --email ADDRESS, or --smtp-host HOST")
    identity = ctx.store().identity_by_name("party", party)
    if identity is None:
        raise click.ClickException(f"no party named {party!r}: `provenance party list` names them")
    path = subscriptions_file(ctx, subscriptions_path)
    current = read_subscriptions(path)
    try:
        if smtp_host:
            check_email(mail_from)
            smtp = SMTP(smtp_host, smtp_port, smtp_starttls, smtp_username, mail_from)
            current = Subscriptions(current.subscribers, smtp)
        secret = None
        if webhook or email:
            current, secret = subscribe(
                current,
                identity.did,
                identity.name,
                webhook=webhook,
                email=email,
                language=language,
            )
    except SubscriptionError as exc:
        raise click.ClickException(str(exc)) from None
    save_subscriptions(path, current)
    click.echo(f"subscribed {identity.name} in {path}")
    if secret:
        click.echo(f"webhook secret (give it to {identity.name}; shown once): {secret}")


@click.command("subscriptions")
@subscriptions_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object (secrets left out).")
@pass_context
@friendly
def subscriptions_command(ctx: Context, subscriptions_path: str | None, as_json: bool) -> None:
    """List who gets recall notices by webhook and e-mail (secrets not shown).

    Example: provenance notify subscriptions
    """
    path = subscriptions_file(ctx, subscriptions_path)
    found = read_subscriptions(path)
    listed = [
        {key: value for key, value in s.to_json().items() if key != "secret"}
        for s in found.subscribers
    ]
    if as_json:
        out = {"file": str(path), "subscribers": listed}
        out["smtp"] = None if found.smtp is None else found.smtp.to_json()
        click.echo(json.dumps(out, ensure_ascii=False, indent=1))
        return
    if found.smtp is not None:
        tls = ", STARTTLS" if found.smtp.starttls else ""
        click.echo(f"smtp {found.smtp.host}:{found.smtp.port}{tls}, from {found.smtp.sender}")
    if not listed:
        click.echo(f"no subscribers in {path}")
    for item in listed:
        ways = [
            f"webhook {item['webhook']}" if "webhook" in item else "",
            f"e-mail {item['email']}" if "email" in item else "",
        ]
        click.echo(f"{item['name']} ({item['language']}): {', '.join(w for w in ways if w)}")
