"""Keeps one pytest process under select()'s limit of 1,024 file descriptors.

A test's web app (Flask) and the read-only ledger connections it keeps per
thread form reference cycles, so they are freed only by Python's cyclic
garbage collector, which runs seldom in a process full of long-lived objects.
Each leaves a SQLite file, its WAL and its shared memory open until then:
about ten descriptors per test, and one worker of the full suite once passed
1,024 — after which waitress (select()-based) and paho fail in whatever test
comes next ("filedescriptor out of range in select()"). So: after a test,
when the process holds more than LIMIT descriptors, collect the cycles. A
production server builds its app once and never meets this.
"""

from __future__ import annotations

import gc
import os

import pytest

LIMIT = 256


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0  # no /proc: nothing to watch


@pytest.fixture(autouse=True)
def _freed_descriptors():
    yield
    if _open_descriptors() > LIMIT:
        gc.collect()
