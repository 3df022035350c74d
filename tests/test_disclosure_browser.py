"""verify.js on the scan page checks a lot whose events keep fields private
(wire protocol v2, docs/protocol.md §14): `_sd` is signed data like any other,
so a genuine v2 bundle verifies on the phone and a changed digest fails it, as
the Python verifier says too."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import browser as chromium
from support.world import LOT, at

from provenance.core import gs1
from provenance.core.bundle import verify_bundle
from provenance.core.errors import ProvenanceError
from provenance.core.signing import sign_private
from provenance.web import create_app
from provenance.web.background import serving

pytestmark = [pytest.mark.external, pytest.mark.slow]

WAIT_MS = 20_000
SECRET = "Naivasha pack-house 3"


class Tampering:
    """WSGI layer over the real app: `bundle` rewrites the bundle it answers."""

    def __init__(self, app: Any):
        self.app = app
        self.bundle: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("PATH_INFO", "").startswith("/bundle/") or self.bundle is None:
            return self.app(environ, start_response)
        environ = {**environ, "HTTP_ACCEPT_ENCODING": "identity"}
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = json.dumps(self.bundle(json.loads(b"".join(self.app(environ, capture))))).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def site(file_world):
    world = file_world
    seq = world.ledger.next_seq(world.did("farm"))
    made = sign_private(
        world.keys["farm"],
        kind="ship",
        seq=seq,
        time=at(2),
        data={"to": world.did("dc"), "location": {"name": SECRET}},
        lots=[LOT],
        private=["location"],
    )
    assert world.ledger.append([made])[0].status == "accepted"
    app = create_app(
        {
            "DATABASE": str(world.store.path),
            "CLOCK": lambda: world.now,
            "LOG_PUBLIC_KEY": world.log_public_key,
        }
    )
    tampering = Tampering(app.wsgi_app)
    app.wsgi_app = tampering  # type: ignore[method-assign]
    with serving(app) as base_url:
        yield base_url, tampering, world


def verdict(browser: Any, base_url: str) -> Any:
    page = browser.new_context(viewport=chromium.PHONE).new_page()
    page.goto(base_url + gs1.gtin_uri("09506000134352", lot="LOT42", base=""))
    done = ", ".join(f'#phone-check[data-state="{s}"]' for s in ("verified", "failed", "cannot"))
    page.wait_for_selector(done, state="attached", timeout=WAIT_MS)
    return page


def _v2_events(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["envelope"] for e in bundle["chains"][0]["events"] if e["envelope"]["v"] == 2]


def _other_digest(bundle: dict[str, Any]) -> dict[str, Any]:
    (envelope,) = _v2_events(bundle)
    envelope["data"]["_sd"] = ["A" * 43]
    return bundle


def _claims_v1(bundle: dict[str, Any]) -> dict[str, Any]:
    (envelope,) = _v2_events(bundle)
    envelope["v"] = 1
    return bundle


def test_a_lot_with_private_fields_verifies_on_the_phone(browser, site):
    base_url, _, _ = site
    page = verdict(browser, base_url)
    text = page.inner_text("#phone-check")
    assert page.get_attribute("#phone-check", "data-state") == "verified", text
    assert "1 detail kept private by the producer" in page.inner_text("#journey")
    assert SECRET not in page.content()
    page.context.close()


@pytest.mark.parametrize(("tamper", "step"), [(_other_digest, "SIGNATURE"), (_claims_v1, "FORMAT")])
def test_a_changed_digest_or_version_fails_on_the_phone_and_in_python(browser, site, tamper, step):
    base_url, tampering, world = site
    tampering.bundle = tamper
    page = verdict(browser, base_url)
    assert page.get_attribute("#phone-check", "data-state") == "failed"
    assert page.get_attribute("#phone-check", "data-step") == step
    page.context.close()
    import urllib.request

    with urllib.request.urlopen(base_url + "/bundle" + LOT.removeprefix(gs1.DEFAULT_BASE)) as r:
        changed = json.loads(r.read())  # loopback only
    with pytest.raises(ProvenanceError):
        verify_bundle(changed, world.log_public_key)
