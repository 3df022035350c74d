"""The web app's health endpoints (provenance/web/health.py): liveness never
touches the ledger; readiness says whether it can be read, and why not."""

from __future__ import annotations

from support.world import World

from provenance.web import create_app


def test_healthz_answers_without_a_ledger_and_readyz_says_why_not(tmp_path):
    client = create_app({"DATABASE": str(tmp_path / "absent.db")}).test_client()
    live = client.get("/healthz")
    assert live.status_code == 200 and live.get_json() == {"status": "ok"}
    assert live.headers["Cache-Control"] == "no-store"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.get_json()
    assert body["status"] == "unavailable" and "provenance init" in body["reason"]


def test_readyz_gives_the_log_size_once_the_ledger_can_be_read(tmp_path):
    world = World.create(tmp_path)
    world.ledger.append([world.reading(h, 4.0) for h in range(1, 4)])
    client = create_app({"DATABASE": str(tmp_path / "ledger.db")}).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "log_size": world.store.log_size()}
    assert ready.headers["Cache-Control"] == "no-store"
