"""`provenance serve`: the resolver, scan page and transparency log over HTTP,
with waitress (a production WSGI server in pure Python; it runs the same on
every platform and needs no build step).

Listed in `provenance.cli.main.SERVICE_COMMANDS` (imported when first run).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click

from provenance.cli.context import LOG_KEY, REGISTRAR_KEY, Context
from provenance.core.identity import public_key_from_did
from provenance.core.signing import did_of
from provenance.services.anchorer import DEFAULT_EVERY_S, MAX_EVERY_S, MIN_EVERY_S, Anchorer
from provenance.store.db import Store, StoreError

if TYPE_CHECKING:
    from provenance.ledger.tiles import TileFollower

log = logging.getLogger(__name__)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="TCP port."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=8,
    show_default=True,
    help="Threads serving requests (pages are cached, so a few go far).",
)
@click.option(
    "--base-url",
    envvar="PROVENANCE_BASE_URL",
    metavar="URL",
    help="Public origin of this resolver, for the links it gives out (env PROVENANCE_BASE_URL).",
)
@click.option(
    "--accounts",
    envvar="PROVENANCE_ACCOUNTS",
    type=click.Path(file_okay=False),
    help="The portal's accounts folder (env PROVENANCE_ACCOUNTS; default: accounts/ beside --db).",
)
@click.option(
    "--trusted-proxies",
    type=click.IntRange(0, 10),
    default=0,
    show_default=True,
    help="Reverse proxies in front whose X-Forwarded-For to trust (for rate limits).",
)
@click.option(
    "--anchor-every",
    type=float,
    default=DEFAULT_EVERY_S,
    show_default=True,
    metavar="SECONDS",
    callback=lambda _ctx, _param, value: _cadence(value),
    help="Anchor the portal's audit trail in the log this often (signed by the registrar "
    "key in --keys); 0: never.",
)
@click.option(
    "--default-tz",
    envvar="PROVENANCE_DEFAULT_TZ",
    default="UTC",
    show_default=True,
    metavar="ZONE",
    callback=lambda _ctx, _param, value: _zone(value),
    help="Time zone of pages for readers whose browser has not said its own (no JavaScript, "
    "or before it runs), an IANA name such as Asia/Shanghai (env PROVENANCE_DEFAULT_TZ).",
)
@click.option(
    "--tiles",
    "tiles",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Also write the log as C2SP tlog-tiles into DIR (kept caught up) and serve "
    "them under /log/tiles/.",
)
@click.pass_context
def command(
    click_ctx: click.Context,
    host: str,
    port: int,
    workers: int,
    base_url: str | None,
    accounts: str | None,
    trusted_proxies: int,
    anchor_every: float,
    default_tz: str,
    tiles: str | None,
) -> None:
    """Serve the consumer scan pages, the Digital Link resolver, the log API,
    and the producer/regulator portals with their JSON API (docs/portal.md).

    Scanning a label opens /01/{GTIN}/10/{lot} here. Pages read the ledger
    read-only; portal actions write through the ledger with the log key in
    --keys, beside `provenance ingest` and the CLI.

    With --tiles DIR, the log is also written as C2SP tlog-tiles into DIR and
    served under /log/tiles/ (docs/protocol.md, "Tiles").

    Example: provenance serve --host 0.0.0.0 --port 8080 --base-url https://id.example.com
    --default-tz Asia/Shanghai
    """
    import waitress

    from provenance.web import create_app

    ctx = click_ctx.find_object(Context)
    try:
        Store(ctx.db_location, create=False, readonly=True).close()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    app = create_app(
        {
            "DATABASE": str(ctx.db_location),
            "BASE_URL": base_url.rstrip("/") if base_url else None,
            "LOG_PUBLIC_KEY": _trusted_log_key(ctx),
            "KEYS": str(ctx.keys_dir),
            "ACCOUNTS_DIR": accounts,
            "TRUSTED_PROXIES": trusted_proxies,
            "DEFAULT_TZ": default_tz,
            "TILES_DIR": tiles,
        }
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(f"serving {ctx.db_shown} on http://{host}:{port}/ ({workers} threads)", err=True)
    anchorer = _start_anchorer(ctx, accounts, anchor_every)
    follower = _start_tiles(ctx, tiles)
    try:
        waitress.serve(app, host=host, port=port, threads=workers, ident="provenance")
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        if follower is not None:
            follower.stop()
        if anchorer is not None:
            anchorer.stop()
        app.extensions["provenance.portal"].jobs.close()  # background jobs and their files


def _zone(value: str) -> str:
    """--default-tz: an IANA time zone this machine knows."""
    from provenance.web.wording import check_zone

    try:
        return check_zone(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _start_tiles(ctx: Context, folder: str | None) -> TileFollower | None:
    """The thread that keeps --tiles DIR caught up with the ledger, if asked."""
    if folder is None:
        return None
    from provenance.infra.tile_files import TileDirectory, TileError
    from provenance.ledger.tiles import TileFollower

    try:
        return TileFollower(ctx.db_path, TileDirectory(folder)).start()
    except TileError as exc:
        raise click.ClickException(str(exc)) from None


def _cadence(value: float) -> float:
    """--anchor-every: 0 (never), or MIN_EVERY_S to MAX_EVERY_S seconds."""
    if value != 0 and not MIN_EVERY_S <= value <= MAX_EVERY_S:
        raise click.BadParameter(
            f"must be 0 (never) or from {MIN_EVERY_S} to {MAX_EVERY_S:.0f} seconds"
        )
    return value


def _start_anchorer(ctx: Context, accounts: str | None, every: float) -> Anchorer | None:
    """The audit trail's anchorer (docs/portal.md), when this machine holds the
    registrar and log keys; else a warning and none."""
    if every == 0:
        return None
    if not (ctx.root_keys.exists(REGISTRAR_KEY) and ctx.root_keys.exists(LOG_KEY)):
        log.warning(
            "no %s/registrar.pem or log.pem: the audit trail is not anchored in the log",
            ctx.keys_dir,
        )
        return None
    from provenance.ledger.append import Ledger
    from provenance.store.accounts.audit_trail import TRAIL, AuditTrail
    from provenance.store.accounts.db import default_directory

    trail = AuditTrail(accounts or default_directory(ctx.db_path))
    log_key = ctx.root_keys.load(LOG_KEY)
    return Anchorer(
        lambda: Ledger(Store(ctx.db_location), log_key),
        ctx.root_keys.load(REGISTRAR_KEY),
        TRAIL,
        trail.audit_head,
        every,
    ).start()


def _trusted_log_key(ctx: Context) -> bytes | None:
    """The operator's own log key when this machine has it; else None (the app
    then trusts the key the ledger names, and says so in its log)."""
    if ctx.root_keys.exists(LOG_KEY):
        return public_key_from_did(did_of(ctx.root_keys.load(LOG_KEY)))
    log.warning("no %s/log.pem: trusting the log key the ledger names", ctx.keys_dir)
    return None
