"""The main job (`./run demo`): it runs end to end, shows verify catching
tampering, and then *is* the running system — started without a terminal (as a
service or in the background) it keeps serving the URL it printed until
SIGTERM, then stops everything it started."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support.children import Family, assert_nothing_left

from provenance.cli import demo
from provenance.cli.demo_stack import Listener, Running, _lan_address
from provenance.cli.demo_story import FINE_URI

UP_S = 240  # the demo with a 4 s fleet is up in about 40 s on an idle 2-core machine
STOP_S = 60  # SIGTERM to exit: each child gets 30 s before SIGKILL; it takes about 3 s
SERVING = b"Serving until stopped"


def _read_until(
    proc: subprocess.Popen[bytes], marker: bytes, timeout: float, family: Family
) -> str:
    """What the demo printed up to and including the line holding *marker*."""
    out = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    while marker not in out:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"not up within {timeout}s:\n" + out.decode()[-3000:]
        family.look()  # children that come and go are checked at the end too
        ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, "the demo exited before serving:\n" + out.decode()[-3000:]
            out += chunk
    return out.decode()


def _get(url: str, accept: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:  # loopback only
        return response.status, response.read().decode()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="walks /proc for leftovers")
def test_demo_without_a_terminal_serves_until_sigterm(tmp_path):
    started = time.monotonic()
    errors = (tmp_path / "stderr.txt").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provenance",
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--seconds",
            "4",
        ],
        stdin=subprocess.DEVNULL,  # no terminal: it used to print a URL, then exit
        stdout=subprocess.PIPE,
        stderr=errors,
        cwd=tmp_path,
        start_new_session=True,  # a stray Ctrl-C in the test run does not reach it
    )
    family = Family(proc.pid)
    try:
        out = _read_until(proc, SERVING, UP_S, family)
        up_s = time.monotonic() - started
        print(f"demo up in {up_s:.1f} s")
        _check_story(out, tmp_path / "demo")

        # The URL it printed for the lot that is simply fine answers.
        fine = [line for line in out.splitlines() if "a lot that is simply fine:" in line]
        url = fine[0].split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/10/KALE-2612"), url
        status, page = _get(url, "text/html")
        assert status == 200 and "KALE-2612" in page
        status, body = _get(url, "application/json")
        lot = json.loads(body)
        assert lot["state"] == "ok", lot["reasons"]
        assert lot["recall"]["recalls"] == []
        # …and keeps answering: it is the running system, not a one-shot.
        assert proc.poll() is None
        commands = [p.command for p in family.look()]
        assert any("provenance serve" in c for c in commands), commands
        assert any("provenance ingest" in c for c in commands), commands
    finally:
        stop_started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = proc.communicate(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            raise
        stop_s = time.monotonic() - stop_started
        errors.close()
    print(f"demo stopped in {stop_s:.1f} s")
    tail = rest.decode()
    assert proc.returncode == 0, tail + (tmp_path / "stderr.txt").read_text()[-3000:]
    assert "ingest stopped (exit 0)" in tail
    assert "Stopped (SIGTERM)" in tail
    assert_nothing_left(family, timeout=10, ledger=tmp_path / "demo" / "provenance.db")


def _check_story(out: str, directory: Path) -> None:
    assert out.count("\nOK ") + out.count("  OK ") >= 3
    # A partner's system queries over the EPCIS REST binding and captures a document.
    assert "→ 200, an EPCISQueryDocument with 2 events" in out
    assert "→ 202, Location /epcis/capture/" in out and "1 event stored" in out
    assert "content, signer or signature differs" in out
    assert "rolled back or truncated" in out
    assert "unauthorised: a carrier may not sign recall" in out
    assert "check digit" in out
    assert "Copycat Greens may not commission" in out  # GTIN squatting is refused
    assert (directory / "kale.bundle.json").exists()
    # A lot that is simply fine, to compare with.
    assert "== 5b. Meanwhile a second lot, KALE-2612" in out
    # Quantities: a lot split across two shops, one received short (demo_quantities.py).
    split = out.split("== 10b.")[1].split("== 11.")[0]
    assert "rejected: quantity: cannot ship 400 KGM" in split and "at most 350 KGM" in split
    assert "Market Stall (retailer): holds 240 KGM" in split
    assert "damaged 5 KGM, short 5 KGM" in split
    # Lineage and a recall that cascades from the kale to the salad made from it.
    cascade = out.split("== 11.")[1].split("== 12.")[0]
    assert "made from (1 lots upstream; origins: 09506000134352/KALE-2611)" in cascade
    assert "recalled (class I) 2 lots" in cascade  # the kale and, through it, the salad
    assert "rejected: recalled: https://id.gs1.org/01/09506000134352/10/SALAD-2611" in cascade
    assert (directory / "salad-label.png").stat().st_size > 1000
    # A field kept private on the public page while the regulator's view verifies it.
    private = out.split("== 11b.")[1].split("== 12.")[0]
    assert "Produced by Green Valley Farm: 1 detail kept private by the producer" in private
    public, regulator = private.split("$ provenance disclosure show")[1:3]
    assert "kept private by the producer" in public and "plot 7" not in public
    assert '"name": "Green Valley, plot 7"' in regulator
    assert "verified against the signed digest" in regulator
    # The live part: broker, ingest and the simulated fleet, then a clean verify.
    live = out.split("== 12.")[1].split("== 13.")[0]
    assert "broker: " in live and "done: readings" in live
    assert "queued 0" in live.split("done:")[1]
    assert "the ingest service keeps listening on mqtt://" in live
    verified = live.rstrip().splitlines()[-1]
    assert verified.strip().startswith("OK "), verified
    # The scan pages: the kale recalled, the salad recalled through it, the fine lot ok.
    scan = out.split("== 13.")[1]
    kale, salad, fine = scan.split("state: ")[1:4]
    assert kale.startswith("recalled") and "Listeria" in kale
    assert (
        salad.startswith("recalled")
        and "(made from https://id.gs1.org/01/09506000134352/10/KALE-2611)" in salad
    )
    assert fine.startswith("ok")
    # Two witnesses, each its own process with its own key, cosign what the log shows.
    assert "witness serve --dir" in live and "log witness --every 1" in live
    assert "cosigned by 2 witnesses: Consumers' Association, Health Authority" in scan
    assert "meets quorum" in scan  # the served checkpoint, offline, against the policy
    # The salad's bundle carries that cosigned checkpoint: the policy verifies it offline.
    offline = scan.split("verify --bundle")[1]
    assert "the bundle's checkpoint" in offline and "meets quorum" in offline
    assert "OK https://id.gs1.org/01/09506000134352/10/SALAD-2611" in offline
    assert "record check: ✓ Log checkpoint" in scan and "Consumers' Association, Health" in scan
    summary = scan.split("== Done:")[1]
    assert "/01/09506000134352/10/SALAD-2611" in summary
    assert "/01/09506000134352/10/KALE-2611" in summary
    assert "--host 0.0.0.0" in summary  # how to reach it from a phone
    assert "▄▄▄▄▄" in summary  # the QR code, in block characters


# --- where it listens, and what it prints when it does not serve (no demo run)


def test_loopback_by_default_and_the_lan_address_when_listening_everywhere(monkeypatch):
    monkeypatch.delenv("PROVENANCE_BASE_URL", raising=False)
    here = Listener("127.0.0.1", None)
    assert here.base == here.local == f"http://127.0.0.1:{here.port}"
    assert not here.everywhere
    everywhere = Listener("0.0.0.0", None)
    assert everywhere.local == f"http://127.0.0.1:{everywhere.port}"  # its own checks
    assert "0.0.0.0" not in everywhere.base  # never a URL nobody can open
    assert everywhere.base == f"http://{_lan_address()}:{everywhere.port}"
    monkeypatch.setenv("PROVENANCE_BASE_URL", "https://scan.example")
    assert Listener("0.0.0.0", None).scan_url(FINE_URI) == (
        "https://scan.example/01/09506000134352/10/KALE-2612"
    )


def test_a_taken_port_is_a_clear_error():
    import socket

    import click

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(click.ClickException, match="choose another --port"):
            Listener("127.0.0.1", port)


def test_not_serving_prints_no_url(tmp_path, capsys):
    place = Listener("127.0.0.1", None)
    code = demo.serving(tmp_path, place, "mqtt://127.0.0.1:1", None, 0.0, Running())  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert code == 0
    assert "http://" not in out and "▄" not in out
    assert "Not serving (--serve 0)" in out
