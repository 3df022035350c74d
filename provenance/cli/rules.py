"""`provenance rules …`: the rules engine from the command line (docs/rules.md).

- `rules init`: make the rules key (`keys/rules.pem`) and enrol it, signed by
  the registrar, as the ledger's rules identity;
- `rules check --config FILE`: validate a rule file;
- `rules run --config FILE [--once] [--interval S] [--timer S] [--broker URL]`:
  follow the ledger, evaluate the rules, append holds and flags signed with the
  rules key, publish alert notices;
- `rules list [--json]`: holds in force and the newest flags;
- `rules release URI… --reason TEXT [--hold EVENT_ID] [--as REGULATOR]`: end
  holds, signed with the rules key or a regulator's.

Listed in `provenance.cli.main.SERVICE_COMMANDS` (imported when first run). Exit status: 0 done,
1 refused or failed (the reason is printed), 2 usage error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from provenance.cli.context import Context, pass_context, registrar_sign, signing_key
from provenance.cli.errors import friendly
from provenance.cli.inputs import MAX_CONFIG_INPUT, check_cursor_file, check_tls_ca, read_input
from provenance.cli.keys import KEY_OPTION
from provenance.cli.mqtt_options import (
    client_id_option,
    credential_options,
    parse_broker,
    retained_publisher,
)
from provenance.cli.options import json_object_option
from provenance.cli.service_options import cursor_option, interval_option, stop_on_signals
from provenance.core.errors import ProvenanceError, ValidationError
from provenance.core.kinds import RULES
from provenance.core.signing import did_of
from provenance.domain.rules import RuleSet, parse_rules
from provenance.ledger.decisions import active_holds, recent_flags
from provenance.services.rules import (
    POLL_INTERVAL_S,
    TIMER_INTERVAL_S,
    RulesService,
    accounts_scans,
    default_cursor_path,
    release,
)
from provenance.services.serial_scans import accounts_sightings

RULES_KEY = "rules"  # keys/rules.pem, beside log.pem and registrar.pem
DEFAULT_NAME = "rules"


def load_rule_file(path: str) -> RuleSet:
    """A validated rule set from FILE, or a ClickException saying what is wrong."""
    text = read_input(path, what="rule file", limit=MAX_CONFIG_INPUT, text=False)
    try:
        return parse_rules(text, source=path)
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None


def _config_option(function: Any) -> Any:
    return click.option(
        "--config",
        "config",
        required=True,
        metavar="FILE",
        help="The rule file (TOML; rules.example.toml shows every condition).",
    )(function)


@click.group("rules")
def group() -> None:
    """Rules: holds and flags decided by configuration, signed by the rules key."""


@group.command("init")
@click.option(
    "--name",
    default=DEFAULT_NAME,
    show_default=True,
    help="The rules identity's name in the registry.",
)
@pass_context
@friendly
def init(ctx: Context, name: str) -> None:
    """Make the rules key (KEYS/rules.pem) and enrol it as the rules identity,
    signed by the registrar; prints its did:key. Idempotent.

    Example: provenance rules init
    """
    key = ctx.root_keys.load_or_create(RULES_KEY)
    did = did_of(key)
    store = ctx.store()
    identity = store.identity_by_did(did)
    if identity is not None:
        if identity.type != RULES:
            raise click.ClickException(f"{did} is enrolled as a {identity.type}, not as rules")
        click.echo(did)
        return
    registrar_sign(ctx, "enrol", {"subject": did, "type": RULES, "name": name})
    click.echo(did)


@group.command("check")
@_config_option
def check(config: str) -> None:
    """Validate a rule file: every condition, parameter and action. Prints one
    line per rule; exit status 1 with the reason when it is wrong.

    Example: provenance rules check --config rules.example.toml
    """
    rules = load_rule_file(config)
    click.echo(f"{config}: {len(rules)} rules OK")
    for rule in rules:
        click.echo(f"  {rule.name}: {rule.condition.describe()} -> {', '.join(rule.actions)}")


@group.command("run")
@_config_option
@click.option(
    "--once", is_flag=True, help="Evaluate what is due once (timer rules too), then exit."
)
@interval_option(POLL_INTERVAL_S, "Seconds between looks at the ledger for new events.")
@click.option(
    "--timer",
    "timer_interval",
    type=click.FloatRange(min=1),
    default=TIMER_INTERVAL_S,
    show_default=True,
    help="Seconds between rounds of the time-based rules (silent loggers, serial scans).",
)
@click.option(
    "--accounts",
    "accounts_dir",
    envvar="PROVENANCE_ACCOUNTS",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Accounts folder with the serial scans (env PROVENANCE_ACCOUNTS; default: accounts/ "
    "beside the ledger).",
)
@cursor_option("DB.rules-cursor")
@click.option(
    "--broker",
    "broker_url",
    metavar="mqtt://HOST:PORT",
    help="Publish retained alert notices here (mqtts:// for TLS); none without it.",
)
@credential_options
@client_id_option
@pass_context
@friendly
def run(
    ctx: Context,
    config: str,
    once: bool,
    interval: float,
    timer_interval: float,
    accounts_dir: str | None,
    cursor_path: str | None,
    broker_url: str | None,
    username: str | None,
    password: str | None,
    tls_ca: str | None,
    client_id: str | None,
) -> None:
    """Follow the ledger and apply the rules of FILE: each new accepted event is
    evaluated, and every --timer seconds the time-based rules; holds and flags
    are appended signed with the rules key (KEYS/rules.pem, see `rules init`).
    With --broker, the current alert notice of every lot a notifying rule or a
    release reached is published retained (QoS 1) on
    provenance/v1/alerts/{gtin}/{lot}. Runs until SIGTERM or Ctrl-C.

    Example: provenance rules run --config rules.toml --broker mqtt://127.0.0.1:1883
    """
    from provenance.services.notifier import Cursor
    from provenance.store.accounts.db import default_directory

    rules = load_rule_file(config)
    if tls_ca is not None and (broker_url is None or not broker_url.startswith("mqtts://")):
        raise click.BadParameter("--tls-ca needs an mqtts:// broker URL", param_hint="--tls-ca")
    check_tls_ca(tls_ca)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not ctx.root_keys.exists(RULES_KEY):
        raise click.ClickException(
            f"no rules key in {ctx.keys_dir}: run `provenance rules init` first"
        )
    rules_key = ctx.root_keys.load(RULES_KEY)
    cursor_file = Path(cursor_path) if cursor_path else default_cursor_path(ctx.db_path)
    scan_cursor = cursor_file.with_name(cursor_file.name + ".scans")
    check_cursor_file(cursor_file)
    check_cursor_file(scan_cursor)
    ledger = ctx.ledger()  # opened (or refused) before anything connects
    publisher = _publisher(broker_url, username, password, tls_ca, client_id)
    try:
        service = RulesService(
            ledger,
            rules_key,
            rules,
            Cursor(cursor_file),
            scan_cursor=Cursor(scan_cursor),
            scans=accounts_scans(accounts_dir or default_directory(ctx.db_path)),
            sightings=accounts_sightings(accounts_dir or default_directory(ctx.db_path)),
            publish=publisher,
        )
        if once:
            results = service.run_once()
            if not results[-1].acknowledged:
                raise click.ClickException("the broker did not acknowledge the alert notices")
            refused = sum(len(r.refused) for r in results)
            click.echo(
                f"evaluated {sum(r.evaluated for r in results)} lots; appended "
                f"{service.appended} actions ({refused} refused); published {service.published} "
                f"notices; cursor {Cursor(cursor_file).load()}"
            )
            return
        with stop_on_signals() as stop:
            service.run(stop, interval, timer_interval)
        click.echo(
            f"stopped; appended {service.appended} actions, published {service.published} notices",
            err=True,
        )
    finally:
        if publisher is not None:
            publisher.stop()


def _publisher(
    broker_url: str | None,
    username: str | None,
    password: str | None,
    tls_ca: str | None,
    client_id: str | None,
) -> Any:
    if broker_url is None:
        return None
    return retained_publisher(
        "rules",
        parse_broker(broker_url, tls_ca),
        client_id=client_id,
        username=username,
        password=password,
        tls_ca=tls_ca,
    )


@group.command("list")
@click.option(
    "--flags",
    "flag_limit",
    type=click.IntRange(0, 10_000),
    default=20,
    show_default=True,
    help="How many of the newest flags to show.",
)
@json_object_option
@pass_context
@friendly
def list_(ctx: Context, flag_limit: int, as_json: bool) -> None:
    """Holds in force (every lot) and the newest flags.

    Example: provenance rules list --json
    """
    store = ctx.reader()
    holds = active_holds(store)
    flags = recent_flags(store, flag_limit) if flag_limit else []
    if as_json:
        click.echo(
            json.dumps(
                {"holds": [h.to_json() for h in holds], "flags": [f.to_json() for f in flags]},
                ensure_ascii=False,
                indent=1,
            )
        )
        return
    click.echo(f"holds in force: {len(holds)}")
    for hold in holds:
        click.echo(f"  {hold.lot} · rule {hold.rule} · {hold.time} · {hold.event_id}")
        click.echo(f"    {hold.reason}")
    click.echo(f"newest flags: {len(flags)}")
    for flag in flags:
        click.echo(f"  {flag.lot} · {flag.signal} · rule {flag.rule} · {flag.time}")
        click.echo(f"    {flag.reason}")


@group.command("release")
@click.argument("uris", nargs=-1, required=True, metavar="URI...")
@click.option("--reason", required=True, metavar="TEXT", help="Why (kept in the signed event).")
@click.option("--hold", "hold_id", metavar="EVENT_ID", help="Release only this hold.")
@click.option(
    "--as",
    "as_",
    metavar="REGULATOR",
    help="Sign as this regulator (default: the rules key).",
)
@KEY_OPTION
@pass_context
@friendly
def release_command(
    ctx: Context,
    uris: tuple[str, ...],
    reason: str,
    hold_id: str | None,
    as_: str | None,
    key_file: str | None,
) -> None:
    """Release lots URI... from their holds (every hold in force, or --hold),
    signed with the rules key or, with --as, a regulator's key.

    Example: provenance rules release https://id.gs1.org/01/09506000134352/10/VAX1
    --reason "manufacturer confirmed stability" --as "Medicines Agency"
    """
    if as_ is not None or key_file is not None:
        key = signing_key(ctx, as_, key_file)
    elif ctx.root_keys.exists(RULES_KEY):
        key = ctx.root_keys.load(RULES_KEY)
    else:
        raise click.ClickException(
            "no rules key: pass --as REGULATOR or run `provenance rules init`"
        )
    try:
        result = release(ctx.ledger(), key, list(uris), reason, hold=hold_id)
    except ProvenanceError as exc:
        raise click.ClickException(str(exc)) from None
    from provenance.cli.accounts import trail_ledger_action

    trail_ledger_action(ctx.db_path, "release", list(uris), result)
    if not result.ok:
        raise click.ClickException(f"{result.reason}: {result.message}")
    click.echo(f"released {len(uris)} lots; event {result.event_id} at log index {result.index}")


__all__ = ["RULES_KEY", "group", "load_rule_file"]
