"""The demo's EPCIS step: a partner's system speaks the EPCIS 2.0 REST binding
to the ledger over HTTP — it asks a standard query, then captures one document
of its own, which the server signs as the (custodial) carrier (docs/epcis.md,
"Capture")."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from provenance.cli.demo_story import Demo

TIMEOUT_SECONDS = 30


def epcis_partner(demo: Demo, directory: Path, at: Callable[[float], str]) -> None:
    """Step 12: the carrier's transport system queries and captures over /epcis."""
    from provenance.cli.demo_story import CARRIER, FINE_URI
    from provenance.web import create_app
    from provenance.web.background import serving

    demo.say(
        "11f. EPCIS: the carrier's own system speaks EPCIS 2.0 to the ledger (the standard's REST "
        "binding): it asks where its kale was shipped, then sends one document of its own"
    )
    demo.run("portal", "key-import", CARRIER)  # the operator holds its key: the server signs
    token = demo.run("token", "create", CARRIER, "--label", "carrier TMS").strip()
    app = create_app(
        {"DATABASE": str(directory / "provenance.db"), "KEYS": str(directory / "keys")}
    )
    with serving(app, threads=2) as base:
        query = {"EQ_bizStep": "shipping,receiving", "MATCH_anyEPCClass": FINE_URI}
        status, _, answer = _call(base, "GET", "/epcis/events?" + urlencode(query), token)
        events = answer["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        print(f"  → {status}, an EPCISQueryDocument with {len(events)} events:")
        for event in events:
            print(f"    {event['eventTime']}  {event['bizStep']:<10} {event['eventID'][:40]}…")
        document = {
            "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": at(3.3),
            "epcisBody": {
                "eventList": [
                    {
                        "type": "ObjectEvent",
                        "eventTime": at(3.2),
                        "eventTimeZoneOffset": "+00:00",
                        "action": "OBSERVE",
                        "bizStep": "storing",
                        "disposition": "in_progress",
                        "quantityList": [{"epcClass": FINE_URI, "quantity": 180, "uom": "KGM"}],
                    }
                ]
            },
        }
        status, headers, job = _call(base, "POST", "/epcis/capture", token, document)
        stored = [e for e in job.get("events", []) if e.get("status") == "stored"]
        print(
            f"  → {status}, Location {headers.get('Location')}: success={job.get('success')}, "
            f"{len(stored)} event stored, signed by the server as {CARRIER} "
            f"(ledger event {str(stored[0]['ledgerEventId'])[:16]}…)"
            if stored
            else f"  → {status}: {json.dumps(job)[:300]}"
        )
        if not stored:
            raise SystemExit("demo step failed: the capture stored nothing")
        _, _, again = _call(base, "GET", "/epcis/events?EQ_bizStep=storing", token)
        found = again["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        print(f"  → and the query for bizStep storing now answers {len(found)} event")


def _call(
    base: str, method: str, path: str, token: str, body: Any = None
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode("utf-8")
    shown = f"{method} {path}"
    print(f"$ curl -X {method} -H 'Authorization: Bearer pvt_…' {base}{path}", end="")
    print(" -H 'Content-Type: application/ld+json' -d @document.jsonld" if data else "")
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/ld+json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300]
        raise SystemExit(f"demo step failed: {shown} answered {exc.code}: {detail!r}") from None
