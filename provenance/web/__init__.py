"""The web app: GS1 Digital Link resolver, consumer scan page, transparency log,
and the producer/regulator portals with their JSON API.

`create_app(config)` builds a Flask app (there is no module-level app). Settings,
each also read from the environment when not given:

- ``DATABASE`` (``PROVENANCE_DB``, default ``provenance.db``): the ledger file.
  Pages read it through read-only connections; only portal and API actions
  write, through `Ledger.append`, and only when the log key is at
  ``{KEYS}/log.pem`` (``KEYS``, env ``PROVENANCE_KEYS``, default ``keys``).
- ``LOG_PUBLIC_KEY``: the 32-byte Ed25519 key that checkpoints are checked with.
  Default: the key the ledger names (`provenance serve` passes the operator's
  own key file when it has one, so a swapped database cannot vouch for itself).
- ``BASE_URL`` (``PROVENANCE_BASE_URL``): the resolver's public origin, used in
  links it hands out; default: the origin of each request.
- ``POLICY`` (env ``PROVENANCE_POLICY``: a file to read it from): the C2SP
  tlog-policy the scan page checks checkpoints against, e.g. the regulator's
  published one; default: made from the log key and the configured witnesses
  (`transparency.trust_policy`, docs/scan.md "Checked on this phone").
- ``CLOCK``: a function returning now in µs (tests pin it).
- ``TILES_DIR``: a folder of the log's C2SP tlog-tiles to serve under
  ``/log/tiles/`` (`provenance serve --tiles DIR` keeps it caught up); None: none.
- The portal's settings (accounts folder, secret key, rate limits, trusted
  proxies, scan place header, upload size…): `portal.state.defaults` and
  docs/portal.md.

Routes are declared in the blueprints `resolver`, `transparency`, `camera`, `health`,
`epcis_api`, `portal.*` and `api`; errors are mapped to pages or JSON in `errors` (and, for the
portal's own refusals, `portal.guard`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from provenance.core.policy import parse_policy
from provenance.core.timefmt import now_micros
from provenance.ledger.lot_view import Scanner

from . import (
    camera,
    epcis_api,
    errors,
    health,
    i18n,
    pallet_page,
    params,
    places,
    portal,
    reasons,
    resolver,
    security,
    tiles,
    transparency,
    wording,
)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE.parents[1] / "static"


def _policy_file(path: str | None) -> str | None:
    return Path(path).read_text(encoding="utf-8") if path else None


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config.from_mapping(
        DATABASE=os.environ.get("PROVENANCE_DB", "provenance.db"),
        BASE_URL=os.environ.get("PROVENANCE_BASE_URL") or None,
        LOG_PUBLIC_KEY=None,
        POLICY=_policy_file(os.environ.get("PROVENANCE_POLICY")),
        CLOCK=None,
        TILES_DIR=None,
        SCAN_CACHE_LOTS=256,
        DEFAULT_TZ=os.environ.get("PROVENANCE_DEFAULT_TZ") or "UTC",
        MAX_CONTENT_LENGTH=64 * 1024,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
        JSON_SORT_KEYS=False,
    )
    if config:
        app.config.update(config)
    wording.check_zone(app.config["DEFAULT_TZ"])  # a misspelt zone fails at start, not per page
    if app.config["POLICY"]:
        parse_policy(app.config["POLICY"])  # a policy phones cannot read is refused at start
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.extensions["provenance.scanner"] = Scanner(
        log_public_key=app.config["LOG_PUBLIC_KEY"],
        clock=app.config["CLOCK"] or now_micros,
        capacity=app.config["SCAN_CACHE_LOTS"],
    )
    app.extensions["provenance.stores"] = threading.local()
    params.init_app(app)  # before any route is added
    i18n.init_app(app)
    app.jinja_env.globals.update(places.GLOBALS)  # place_words, party_gln (docs/protocol.md §15)
    reasons.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    app.register_blueprint(resolver.bp)
    app.register_blueprint(transparency.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(epcis_api.bp)
    app.register_blueprint(camera.bp)
    app.register_blueprint(pallet_page.bp)
    portal.init_app(app)
    tiles.init_app(app)  # /log/tiles/: files, in front of Flask
    return app
