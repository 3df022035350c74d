"""The benchmarks under bench/ still import: they reach into tests/support/ and
each other, and nothing else runs them in CI, so a moved helper would break them
unnoticed (bench/bundle.py did once). Importing runs no benchmark: each runs only
under `if __name__ == "__main__"`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.paths import ROOT

BENCHES = sorted(path.stem for path in (ROOT / "bench").glob("*.py"))


def test_there_are_benchmarks():
    assert {"ledger", "ingest", "bundle", "witness", "witnessing"} <= set(BENCHES)


@pytest.mark.external  # a fresh interpreter per benchmark
@pytest.mark.parametrize("name", BENCHES)
def test_a_benchmark_imports(name):
    # A fresh interpreter each: the benches put bench/ and tests/ on sys.path and
    # name modules `ledger` and `ingest`, which must not leak into this process.
    code = (
        f"import sys, runpy; sys.path.insert(0, {str(ROOT / 'bench')!r}); "
        f"runpy.run_path({str(ROOT / 'bench' / (name + '.py'))!r}, run_name='bench_import')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
