"""Progress on long work (docs/cli.md, "Progress"): the long functions report
``(done, total)`` through a callback and do no I/O themselves; the CLI draws
click's bar on standard error only when that is a terminal, so piped output is
exactly what it was."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest
from support.world import GTIN, LOT, World

from provenance.barcodes import labels, pdf
from provenance.core.progress import counted
from provenance.exchange.epcis import write_ledger_document
from provenance.exchange.epcis_import import import_events, prepare
from provenance.exchange.fsma204 import store_rows
from provenance.ledger import audit


class Calls(list):
    """A progress callback that keeps every call."""

    def __call__(self, done: int, total: int) -> None:
        self.append((done, total))


def assert_sequence(calls: Calls, total: int) -> None:
    """From (0, total) to (total, total), never backwards, never past the total."""
    assert calls, "progress was never reported"
    assert calls[0] == (0, total) and calls[-1] == (total, total), calls
    dones = [done for done, _ in calls]
    assert dones == sorted(dones) and all(t == total for _, t in calls), calls
    assert max(dones) <= total


def with_readings(world: World, count: int) -> World:
    readings = [world.reading(1 + i / 1000, 3.0 + (i % 5) / 10, lots=[LOT]) for i in range(count)]
    results = world.ledger.append(readings)
    assert all(r.status == "accepted" for r in results), results[:3]
    return world


def test_counted_reports_as_items_are_taken():
    calls = Calls()
    assert list(counted(range(10), 10, calls, every=4)) == list(range(10))
    assert calls == [(0, 10), (4, 10), (8, 10), (10, 10)]
    # by position: rows that skip some of the total (log indices 0, 3, 6, 9 of 12)
    calls = Calls()
    assert list(counted([0, 3, 6, 9], 12, calls, every=2, position=lambda i: i)) == [0, 3, 6, 9]
    assert calls == [(0, 12), (4, 12), (10, 12), (12, 12)]
    # without a callback, the items only
    assert list(counted(iter("ab"), 2, None)) == ["a", "b"]


@pytest.mark.parametrize("workers", [1, 2])
def test_verify_ledger_reports_each_block_of_events(shared_world, monkeypatch, workers):
    monkeypatch.setattr(audit, "MIN_CHUNK", 8)  # small blocks: several on a small ledger
    monkeypatch.setattr(audit, "CHUNK", 8)
    world = with_readings(shared_world, 40)
    calls = Calls()
    size = world.store.log_size()
    quiet = audit.verify_ledger(world.store, world.log_public_key, workers=workers)
    report = audit.verify_ledger(world.store, world.log_public_key, workers=workers, progress=calls)
    assert report.ok and str(report) == str(quiet)  # the same verdict, with or without
    assert_sequence(calls, size)
    assert len(calls) >= 1 + size // 8  # one per block of eight events, after the first


def test_exports_report_their_walk_of_the_log(world):
    with_readings(world, 600)
    world.ship_and_receive("farm", "carrier", [LOT], 3)
    size = world.store.log_size()
    calls, out = Calls(), _Text()
    count = write_ledger_document(world.store, out, progress=calls)
    assert count > 0 and json.loads(out.text)["type"] == "EPCISDocument"
    assert_sequence(calls, size)
    assert len(calls) >= 3  # not only the first and the last: every 256 events
    # one lot: its chain
    calls = Calls()
    write_ledger_document(world.store, _Text(), lot=LOT, progress=calls)
    assert_sequence(calls, world.store.chain_by_subject(LOT)[3])
    # FSMA 204 rows, lazily: reported as they are taken
    calls = Calls()
    rows = list(store_rows(world.store, progress=calls))
    assert rows and rows == list(store_rows(world.store))
    assert_sequence(calls, size)


def test_import_reports_each_event_signed(world):
    events = [
        {
            "type": "ObjectEvent",
            "eventTime": f"2026-09-21T10:{minute:02d}:00.000Z",
            "eventTimeZoneOffset": "+00:00",
            "action": "OBSERVE",
            "bizStep": "shipping",
            "epcList": [f"urn:epc:id:sgtin:9506000.013435.{minute}"],
        }
        for minute in range(50)
    ]
    document = {
        "@context": ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-09-01T00:00:00Z",
        "epcisBody": {"eventList": events},
    }
    calls = Calls()
    report = import_events(world.ledger, world.keys["farm"], prepare(document), progress=calls)
    assert report.ok and report.count("stored") == 50
    assert_sequence(calls, 50)


def test_label_sheet_reports_page_by_page():
    label = labels.Label.from_uri(f"https://id.gs1.org/01/{GTIN}/10/LOT42", product="Kale")
    per_page = pdf.sheet_capacity(label)
    calls = Calls()
    quiet = pdf.sheet_pdf([label] * (2 * per_page + 3))
    assert pdf.sheet_pdf([label] * (2 * per_page + 3), progress=calls) == quiet
    total = 2 * per_page + 3
    assert calls == [(0, total), (per_page, total), (2 * per_page, total), (total, total)]


# --- the CLI: nothing changes off a terminal


def test_off_a_terminal_the_output_is_what_it_was(two_lot_cli, tmp_path):
    verified = two_lot_cli("verify")
    assert verified.stderr == "" and verified.stdout.startswith("OK ")
    assert verified.stdout.count("\n") == 1
    exported = two_lot_cli("export", "epcis")
    assert json.loads(exported.stdout)["type"] == "EPCISDocument"
    assert exported.stderr == f"{exported.stderr.split()[0]} EPCIS events\n"
    rows = two_lot_cli("export", "fsma204")
    assert rows.stderr.endswith(" rows\n") and rows.stderr.count("\n") == 1
    sheet = two_lot_cli(
        "label", f"https://id.gs1.org/01/{GTIN}/10/LOT42", "--out", str(tmp_path / "s.pdf"),
        "--count", "100",
    )  # fmt: skip
    assert (
        sheet.stdout == f"wrote {tmp_path / 's.pdf'}: 100 labels for {sheet.stdout.split()[-1]}\n"
    )
    assert sheet.stderr == ""


@pytest.mark.external  # a process of ours on a pseudo-terminal
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux pty")
def test_on_a_terminal_verify_draws_a_bar_on_stderr_only(file_world):
    world = with_readings(file_world, 300)
    leader, follower = pty.openpty()
    env = {**os.environ, "PROVENANCE_DB": str(world.store.path), "COLUMNS": "100"}
    env["PROVENANCE_KEYS"] = str(world.store.path.parent / "keys")
    proc = subprocess.Popen(
        [sys.executable, "-m", "provenance", "verify", "--workers", "1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,  # standard error a terminal, standard output a pipe
        env=env,
    )
    os.close(follower)
    drawn = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            drawn += chunk
        elif proc.poll() is not None:
            break
    out, _ = proc.communicate(timeout=30)
    os.close(leader)
    assert proc.returncode == 0, (out, drawn)
    assert out.startswith(b"OK ") and out.count(b"\n") == 1  # stdout clean for pipes
    text = drawn.decode()
    assert "verifying" in text and "100%" in text, text
    assert "\r" in text and "\\u00" not in text, text  # redrawn in place, not escaped
    size = world.store.log_size()
    assert f"{size}/{size}" in text, text


class _Text:
    """A text stream that keeps what is written."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)
