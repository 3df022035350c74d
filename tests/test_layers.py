"""The layers hold: each package imports only the ones below it, and gateways and
devices only the core and the plumbing (docs/architecture.md, "The layers"). The
contracts are in pyproject.toml; import-linter checks them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_are_kept():
    linter = Path(sys.executable).with_name("lint-imports")
    assert linter.exists(), "import-linter is a dev dependency: ./run tests installs it"
    done = subprocess.run(
        [str(linter), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
