"""Where things are: the checkout, and conformance vectors, which come from
../shared/conformance when it sits beside the checkout, else from the copies
vendored in tests/vectors/."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "conformance"
VENDORED = ROOT / "tests" / "vectors"


def conformance(relative: str) -> Path:
    """Path of a conformance file or folder; skips the test when neither the
    shared copy nor a vendored one exists."""
    for base in (SHARED, VENDORED):
        candidate = base / relative
        if candidate.exists():
            return candidate
    pytest.skip(
        f"conformance data {relative!r} is in neither ../shared/conformance nor tests/vectors"
    )
