"""The scan page checks the record on the phone (static/verify.js, docs/scan.md
"Checked on this phone"), in Debian's Chromium: a good lot verifies; a server
that serves a tampered bundle, a checkpoint short of the witnesses' quorum or a
checkpoint of another log is shown as failed; a browser without Ed25519 says it
could not check; a changed policy is a loud warning. The server here is the real
app behind a WSGI layer that tampers with what it answers, not a mock of the JS.

The same bundles, genuine and tampered, are also given to the Python verifier
(`verify_bundle` + `require_quorum`, what `provenance verify --bundle --policy`
runs) and to verify.js in the page: they must agree on every one.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support import browser as chromium
from support.world import LOT

from provenance.core import gs1, kinds
from provenance.core.bundle import verify_bundle
from provenance.core.checkpoint import sign_note
from provenance.core.cosignature import Cosigner
from provenance.core.errors import ProvenanceError
from provenance.core.policy import parse_policy, policy_fingerprint, require_quorum
from provenance.store.cosignatures import WitnessRow, configure_witnesses, record_cosignature
from provenance.web import create_app
from provenance.web.background import serving

pytestmark = [pytest.mark.external, pytest.mark.slow]

WAIT_MS = 20_000


@pytest.fixture
def witnessed(file_world):
    """LOT42 with readings and a handoff; two witnesses both cosigned the shown checkpoint."""
    world = file_world
    world.ledger.append([world.reading(1 + k / 4, 3.0 + k % 3) for k in range(12)])
    world.ship_and_receive("farm", "carrier", [LOT], 5)
    cosigners = {
        "regulator": Cosigner("witness.regulator.example/1", Ed25519PrivateKey.generate()),
        "consumers": Cosigner("witness.consumers.example/1", Ed25519PrivateKey.generate()),
    }
    rows = [WitnessRow(n, "http://127.0.0.1:9/", c.verifier_key) for n, c in cosigners.items()]
    configure_witnesses(world.store, rows, 2)
    note = world.store.latest_checkpoint()
    size = int(note.split("\n")[1])
    body = note[: note.rfind("\n\n") + 1]
    stamp = int(time.time()) - 60
    for name, cosigner in cosigners.items():
        line = cosigner.cosign(body, stamp).rstrip("\n")
        record_cosignature(world.store, size, name, line, stamp)
    return world


class Tampering:
    """WSGI layer over the real app: `bundle` and `policy` rewrite those answers."""

    def __init__(self, app: Any):
        self.app = app
        self.bundle: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.policy: str | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        rewrite = None
        if path.startswith("/bundle/") and self.bundle is not None:
            change = self.bundle
            rewrite = lambda body: json.dumps(change(json.loads(body))).encode()  # noqa: E731
        elif path == "/log/v1/policy" and self.policy is not None:
            text = self.policy
            rewrite = lambda body: text.encode()  # noqa: E731
        if rewrite is None:
            return self.app(environ, start_response)
        environ = {**environ, "HTTP_ACCEPT_ENCODING": "identity"}
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = rewrite(b"".join(self.app(environ, capture)))
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def site(witnessed):
    app = create_app(
        {
            "DATABASE": str(witnessed.store.path),
            "CLOCK": lambda: witnessed.now,
            "LOG_PUBLIC_KEY": witnessed.log_public_key,
        }
    )
    tampering = Tampering(app.wsgi_app)
    app.wsgi_app = tampering  # type: ignore[method-assign]
    with serving(app) as base_url:
        yield base_url, tampering, app


def page_url(base_url: str) -> str:
    return base_url + gs1.gtin_uri("09506000134352", lot="LOT42", base="")


def phone_verdict(browser: Any, url: str, *, init: str | None = None, context: Any = None) -> Any:
    context = context or browser.new_context(viewport=chromium.PHONE)
    page = context.new_page()
    if init:
        page.add_init_script(init)
    page.goto(url)
    done = ", ".join(f'#phone-check[data-state="{s}"]' for s in ("verified", "failed", "cannot"))
    page.wait_for_selector(done, state="attached", timeout=WAIT_MS)  # a selector: no eval under CSP
    return page


ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts" / "screenshots"


def keep_screenshot(page: Any, tmp_path: Path, name: str) -> None:
    """The panel as a phone shows it, in the test's tmp dir and .artifacts/screenshots/."""
    shot = tmp_path / f"{name}.png"
    page.locator("#integrity").screenshot(path=str(shot))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)


def state_of(page: Any) -> str:
    return page.get_attribute("#phone-check", "data-state")


def fetched(base_url: str, path: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(base_url + path, timeout=10) as response:  # loopback only
        return response.read()


# --- the page --------------------------------------------------------------------------------


def test_a_good_lot_verifies_on_the_phone_naming_keys_and_witnesses(browser, site, tmp_path):
    base_url, _, _ = site
    page = phone_verdict(browser, page_url(base_url))
    assert state_of(page) == "verified", page.inner_text("#phone-check")
    text = page.inner_text("#phone-check")
    assert "checked the record itself" in text
    assert "signatures checked on this phone" in text
    origin = fetched(base_url, "/log/v1/checkpoint").decode().split("\n")[0]
    assert f"Log key: {origin}, key id" in text
    assert "witness regulator" in text and "witness consumers" in text
    policy = fetched(base_url, "/log/v1/policy").decode()
    assert policy_fingerprint(policy) in text  # what labels print (provenance label --policy)
    assert "First check on this phone" in text
    # The server's own verdict is still there, and labelled as the server's.
    assert "Our server's own check" in page.inner_text("#integrity")
    keep_screenshot(page, tmp_path, "phone-check-verified")
    page.context.close()


def test_without_javascript_the_page_is_whole_and_the_panel_hidden(browser, site):
    base_url, _, _ = site
    context = browser.new_context(viewport=chromium.PHONE, java_script_enabled=False)
    page = context.new_page()
    page.goto(page_url(base_url))
    assert page.is_hidden("#phone-check")
    assert "Chain of records intact" in page.inner_text("#integrity")
    context.close()


def _edit_reading(bundle: dict[str, Any]) -> dict[str, Any]:
    for event in bundle["chains"][0]["events"]:
        if event["envelope"]["kind"] == "reading":
            event["envelope"]["data"]["temperature_c"] = 4.5
            return bundle
    raise AssertionError("no reading")


def _drop_cosignature(bundle: dict[str, Any]) -> dict[str, Any]:
    lines = bundle["checkpoint"].split("\n")
    cut = next(i for i, line in enumerate(lines) if line.startswith("— witness.consumers"))
    bundle["checkpoint"] = "\n".join(lines[:cut] + lines[cut + 1 :])
    return bundle


OTHER_LOG = Ed25519PrivateKey.generate()


def _other_log(origin: str | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The bundle's checkpoint re-signed by another log's key (under another
    origin, or posing under this log's name)."""

    def change(bundle: dict[str, Any]) -> dict[str, Any]:
        note = bundle["checkpoint"]
        body = note[: note.rfind("\n\n") + 1]
        name = origin or body.split("\n", 1)[0]
        if origin:
            body = origin + "\n" + body.split("\n", 1)[1]
        bundle["checkpoint"] = sign_note(body, name, OTHER_LOG)
        return bundle

    return change


@pytest.mark.parametrize(
    ("tamper", "step", "words"),
    [
        (_edit_reading, "SIGNATURE", "signature does not verify"),
        (_drop_cosignature, "CHECKPOINT", "missing consumers"),
        (_other_log("other.example/log"), "CHECKPOINT", "which the policy does not list"),
        (_other_log(None), "CHECKPOINT", "not signed by the log key the policy lists"),
    ],
    ids=["tampered-event", "no-quorum", "other-log", "impostor-log-key"],
)
def test_a_server_that_tampers_is_shown_as_failed(browser, site, tamper, step, words, tmp_path):
    base_url, tampering, _ = site
    tampering.bundle = tamper
    page = phone_verdict(browser, page_url(base_url))
    text = page.inner_text("#phone-check")
    assert state_of(page) == "failed", text
    assert page.get_attribute("#phone-check", "data-step") == step
    assert "does NOT verify" in text and words in text
    if tamper is _edit_reading:
        keep_screenshot(page, tmp_path, "phone-check-failed")
    page.context.close()


def test_a_browser_without_ed25519_says_it_could_not_check(browser, site):
    base_url, _, _ = site
    no_ed25519 = """
      const importKey = SubtleCrypto.prototype.importKey;
      SubtleCrypto.prototype.importKey = function (format, key, algorithm, ...rest) {
        const name = typeof algorithm === 'string' ? algorithm : algorithm && algorithm.name;
        if (String(name).toLowerCase() === 'ed25519')
          return Promise.reject(new DOMException('Unrecognized name.', 'NotSupportedError'));
        return importKey.call(this, format, key, algorithm, ...rest);
      };
    """
    page = phone_verdict(browser, page_url(base_url), init=no_ed25519)
    text = page.inner_text("#phone-check")
    assert state_of(page) == "cannot", text
    assert "could not check" in text and "no Ed25519" in text
    assert page.get_attribute("#phone-check [data-offline] a", "href") == "#check-yourself"
    page.context.close()
    page = phone_verdict(
        browser, page_url(base_url), init="delete Crypto.prototype.subtle; delete window.crypto;"
    )
    assert state_of(page) == "cannot"
    page.context.close()


def test_a_bundle_that_cannot_be_fetched_is_could_not_check_not_verified(browser, site):
    base_url, _, _ = site
    offline = "window.fetch = () => Promise.reject(new TypeError('offline'))"
    page = phone_verdict(browser, page_url(base_url), init=offline)
    text = page.inner_text("#phone-check")
    assert state_of(page) == "cannot", text
    assert page.get_attribute("#phone-check", "data-step") == "FETCH"
    page.context.close()


def test_a_changed_policy_is_a_loud_warning_until_the_user_trusts_it(browser, site, witnessed):
    base_url, tampering, _ = site
    context = browser.new_context(viewport=chromium.PHONE)
    page = phone_verdict(browser, page_url(base_url), context=context)
    assert state_of(page) == "verified"
    page.close()
    # The site now hands out a policy that needs only one witness (an impostor's choice).
    genuine = fetched(base_url, "/log/v1/policy").decode()
    tampering.policy = genuine.replace("group witnesses 2", "group witnesses 1")
    page = phone_verdict(browser, page_url(base_url), context=context)
    text = page.inner_text("#phone-check")
    assert state_of(page) == "failed" and "WARNING: the keys this site uses changed" in text
    page.click("#phone-check button")
    page.wait_for_selector('#phone-check[data-state="verified"]', state="attached", timeout=WAIT_MS)
    context.close()


# --- the page form: a big lot's readings left out, a sample drawn on the phone -------------


@pytest.fixture
def paged(site, monkeypatch):
    """The site with the page form from 6 events on (LOT42 has 16): its 12 readings
    are left out, and the phone's sample (up to 64) draws all of them."""
    from provenance.ledger import page_bundle

    monkeypatch.setattr(page_bundle, "FULL_UP_TO", 5)
    return site


def test_a_page_form_lot_verifies_with_its_readings_sampled(browser, paged):
    base_url, _, _ = paged
    form = json.loads(fetched(base_url, _bundle_path() + "?form=page"))
    assert form["format"] == "provenance-page-bundle/v1"
    assert {e["envelope"]["kind"] for e in form["chains"][0]["events"]} >= {"ship", "receive"}
    page = phone_verdict(browser, page_url(base_url))
    text = page.inner_text("#phone-check")
    assert state_of(page) == "verified", text
    assert "12 of its 12 temperature readings" in text
    page.context.close()


def _hide_the_handoff(bundle: dict[str, Any]) -> dict[str, Any]:
    if "chains" in bundle:  # the page form: the ship event left out as if a reading
        lot = bundle["chains"][0]
        lot["events"] = [e for e in lot["events"] if e["envelope"]["kind"] != "ship"]
    return bundle


def _edit_sampled_reading(bundle: dict[str, Any]) -> dict[str, Any]:
    if "chains" not in bundle:  # a sample answer
        bundle["events"][0]["envelope"]["data"]["temperature_c"] = 4.5
    return bundle


def _resign_sampled_reading(bundle: dict[str, Any]) -> dict[str, Any]:
    if "chains" not in bundle:
        sig = bundle["events"][-1]["envelope"]["sig"]
        bundle["events"][-1]["envelope"]["sig"] = ("B" if sig[0] == "A" else "A") + sig[1:]
    return bundle


@pytest.mark.parametrize(
    ("tamper", "step", "words"),
    [
        (_hide_the_handoff, "CHAIN", "a ship event the page form left out as a reading"),
        (_edit_sampled_reading, "CHAIN", "not the event the chain holds there"),
        # The id covers the signature: a changed signature is another event.
        (_resign_sampled_reading, "CHAIN", "not the event the chain holds there"),
    ],
    ids=["hidden-handoff", "edited-reading", "changed-reading-signature"],
)
def test_a_page_form_server_that_lies_is_shown_as_failed(browser, paged, tamper, step, words):
    base_url, tampering, _ = paged
    tampering.bundle = tamper
    page = phone_verdict(browser, page_url(base_url))
    text = page.inner_text("#phone-check")
    assert state_of(page) == "failed", text
    assert page.get_attribute("#phone-check", "data-step") == step
    assert words in text
    page.context.close()


def test_a_sample_request_out_of_range_is_a_400(paged):
    import urllib.error

    base_url, _, _ = paged
    for bad in ("16", "x", ",".join(["1"] * 300), "-1"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            fetched(base_url, _bundle_path() + "?form=page&at=" + bad)
        caught.value.close()
        assert caught.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as caught:
        fetched(base_url, _bundle_path() + "?form=zip")
    caught.value.close()
    assert caught.value.code == 400


def _bundle_path() -> str:
    return gs1.gtin_uri("09506000134352", lot="LOT42", base="/bundle")


# --- the same bundles through Python and through verify.js ---------------------------------


def _python_verdict(bundle: dict[str, Any], policy_text: str, log_key: bytes) -> str | None:
    try:
        require_quorum(bundle["checkpoint"], parse_policy(policy_text), now=int(time.time()))
        verify_bundle(bundle, log_key)
    except (ProvenanceError, KeyError, TypeError) as exc:
        return str(exc) or type(exc).__name__
    return None


def _flip_b64(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _tampers() -> dict[str, Callable[[dict[str, Any]], None]]:
    def lot(b: dict[str, Any]) -> dict[str, Any]:
        return b["chains"][0]

    def newest_proof_hash(b: dict[str, Any]) -> None:
        event = lot(b)["events"][-1]
        head, _, rest = event["proof"].partition("\n\n")
        lines = head.split("\n")
        lines[2] = _flip_b64(lines[2])
        event["proof"] = "\n".join(lines) + "\n\n" + rest

    def signature(b: dict[str, Any]) -> None:
        env = lot(b)["events"][1]["envelope"]
        env["sig"] = ("B" if env["sig"][0] == "A" else "A") + env["sig"][1:]

    return {
        "genuine": lambda b: None,
        "edited-data": lambda b: _edit_reading(b) and None,
        "bad-signature": signature,
        "dropped-event": lambda b: lot(b)["events"].pop(2) and None,
        "swapped-events": lambda b: lot(b)["events"].insert(1, lot(b)["events"].pop(2)),
        "index-beyond": lambda b: lot(b)["events"][-1].update(index=10**6),
        "heads-proof": lambda b: lot(b)["heads"]["proof"].__setitem__(
            0, _flip_b64(lot(b)["heads"]["proof"][0])
        ),
        "no-left-neighbour": lambda b: (
            lot(b)["heads"].pop("left", None) or lot(b)["heads"].pop("right")
        ),
        "tlog-proof-hash": newest_proof_hash,
        "no-tlog-proof": lambda b: lot(b)["events"][-1].pop("proof"),
        "no-quorum": lambda b: _drop_cosignature(b) and None,
        "forged-cosignature": lambda b: b.update(
            checkpoint=b["checkpoint"].replace(
                b["checkpoint"].split("— witness.regulator.example/1 ")[1][:8],
                _flip_b64(b["checkpoint"].split("— witness.regulator.example/1 ")[1][:8]),
            )
        ),
        "other-log": lambda b: _other_log("other.example/log")(b) and None,
        "lot-chain-missing": lambda b: b["chains"].pop(0),
        "registrar-missing": lambda b: b.update(
            chains=[c for c in b["chains"] if not c["events"] or c["events"][0]["index"] != 0]
        ),
        "unknown-field": lambda b: b.update(extra=1),
        "consistency-not-an-object": lambda b: b.update(consistency=[1]),
    }


PAGE_CHECK = """async ([bundle, policy, events]) => {
  const V = window.ProvenanceVerify, ed = await V.ed25519();
  const sample = places => Promise.resolve(
    {events: places.map(at => Object.assign({at: at}, events[at]))});
  try { await V.verifyBundle(bundle, V.parsePolicy(policy), ed,
                             {nowSeconds: Math.floor(Date.now() / 1000), sample: sample});
        return null; }
  catch (e) { return (e.step || 'ERROR') + ': ' + e.message; } }"""


@pytest.mark.parametrize("form", ["v2", "page"])
def test_python_and_the_page_agree_on_every_bundle(browser, site, witnessed, form):
    """Each bundle, genuine or tampered, through the Python verifier and through
    verify.js: as it is (v2), and in the page form made from it (its 12 readings
    left out, all of them drawn as the sample)."""
    from provenance.ledger import page_bundle

    base_url, _, _ = site
    bundle_path = gs1.gtin_uri("09506000134352", lot="LOT42", base="/bundle")
    genuine = json.loads(fetched(base_url, bundle_path))
    policy = fetched(base_url, "/log/v1/policy").decode()
    page = phone_verdict(browser, page_url(base_url))
    verdicts = {}
    for name, tamper in _tampers().items():
        bundle = copy.deepcopy(genuine)
        tamper(bundle)
        python = _python_verdict(bundle, policy, witnessed.log_public_key)
        shown, events = bundle, []
        if form == "page" and bundle["chains"]:
            events = bundle["chains"][0]["events"]
            shown = page_bundle.page_bundle(bundle, full_up_to=5)
            if name == "genuine":
                assert shown["format"] == page_bundle.FORMAT
        verdicts[name] = (python, page.evaluate(PAGE_CHECK, [shown, policy, events]))
    assert verdicts.pop("genuine") == (None, None)
    disagree = {k: v for k, v in verdicts.items() if (v[0] is None) != (v[1] is None)}
    assert not disagree, disagree
    assert all(js for _, js in verdicts.values())
    page.context.close()


def test_the_scripts_signer_rules_are_the_ledgers(browser, site):
    base_url, _, _ = site
    page = phone_verdict(browser, page_url(base_url))
    roles = page.evaluate("window.ProvenanceVerify.SIGNER_ROLES")
    assert {k: set(v) for k, v in roles.items()} == {
        k: set(v) for k, v in kinds.SIGNER_ROLES.items()
    }
    page.context.close()


def test_sha256_jcs_and_inclusion_match_python(browser, site):
    from provenance.core.jcs import canonicalize
    from provenance.core.merkle import MemoryTree, hash_leaf

    base_url, _, _ = site
    page = phone_verdict(browser, page_url(base_url))
    texts = ["", "abc", "x" * 55, "x" * 56, "y" * 64, "é€😀" * 40]
    got = page.evaluate(
        "ts => ts.map(t => window.ProvenanceVerify.hex("
        "window.ProvenanceVerify.sha256(new TextEncoder().encode(t))))",
        texts,
    )
    assert got == [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    values = [{"b": 1, "a": [1.5, -0.0, 1e21, 3.0, "é\u2028\n"], "é": None, "Z": True}]
    got = page.evaluate("vs => vs.map(v => window.ProvenanceVerify.jcs(v))", values)
    assert got == [canonicalize(v).decode() for v in values]
    tree = MemoryTree()
    for n in range(37):
        tree.append(hash_leaf(b"leaf %d" % n))
    cases = [
        (i, s, [base64.b64encode(h).decode() for h in tree.inclusion_proof(i, s)])
        for s in (1, 2, 7, 8, 37)
        for i in range(s)
    ]
    roots = page.evaluate(
        """cases => cases.map(([i, s, proof]) => { const V = window.ProvenanceVerify;
             const leaf = V.hashLeaf(new TextEncoder().encode('leaf ' + i));
             const path = proof.map(p => V.b64decode(p, 'p'));
             return V.hex(V.rootFromInclusionProof(i, s, leaf, path)); })""",
        cases,
    )
    assert roots == [tree.root(s).hex() for _, s, _ in cases]
    page.context.close()


def test_the_policy_route_serves_a_policy_python_reads(site, witnessed):
    base_url, _, _ = site
    policy = parse_policy(fetched(base_url, "/log/v1/policy"))
    assert set(policy.witnesses) == {"regulator", "consumers"}
    assert policy.describe_quorum() == "all of (consumers, regulator)"
