"""The main job (`./run demo`) runs end to end and shows verify catching tampering."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_and_catches_every_tamper(tmp_path):
    done = subprocess.run(
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
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert out.count("\nOK ") + out.count("  OK ") >= 3
    assert "content, signer or signature differs" in out
    assert "rolled back or truncated" in out
    assert "unauthorised: a carrier may not sign recall" in out
    assert "check digit" in out
    assert "Copycat Greens may not commission" in out  # GTIN squatting is refused
    assert (tmp_path / "demo" / "kale.bundle.json").exists()
    # Lineage and a recall that cascades from the kale to the salad made from it.
    cascade = out.split("== 11.")[1].split("== 12.")[0]
    assert "made from (1 lots upstream; origins: 09506000134352/KALE-2611)" in cascade
    assert "recalled (class I) 2 lots" in cascade  # the kale and, through it, the salad
    assert "rejected: recalled: https://id.gs1.org/01/09506000134352/10/SALAD-2611" in cascade
    assert (tmp_path / "demo" / "salad-label.png").stat().st_size > 1000
    # The live part: broker, ingest and the simulated fleet, then a clean verify.
    live = out.split("== 12.")[1].split("== 13.")[0]
    assert "broker: " in live and "done: readings" in live
    assert "queued 0" in live.split("done:")[1]
    assert "ingest stopped (exit 0)" in live
    verified = live.rstrip().splitlines()[-1]
    assert verified.strip().startswith("OK "), verified
    # The scan pages: the kale recalled, the salad recalled through it, a QR code.
    scan = out.split("== 13.")[1]
    kale, salad = scan.split("state: ")[1:3]
    assert kale.startswith("recalled") and "Listeria" in kale
    assert (
        salad.startswith("recalled")
        and "(made from https://id.gs1.org/01/09506000134352/10/KALE-2611)" in salad
    )
    # Two witnesses, each its own process with its own key, cosign what the log shows.
    assert "witness serve --dir" in live and "log witness --every 1" in live
    assert "cosigned by 2 witnesses: Consumers' Association, Health Authority" in scan
    assert "meets quorum" in scan  # the served checkpoint, offline, against the policy
    assert "record check: ✓ Log checkpoint" in scan and "Consumers' Association, Health" in scan
    assert "/01/09506000134352/10/SALAD-2611" in scan
    assert "▄▄▄▄▄" in scan  # the QR code, in block characters
