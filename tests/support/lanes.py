"""The test lanes (a pytest plugin, registered in tests/conftest.py; see tests/README.md).

`./run tests` runs everything (what CI runs); `./run tests --fast` is the edit
loop: `-m "not slow and not external"`. A test is `external` when it starts a
broker, a browser, a Go build or processes of ours: marked by hand, or here
for every test that uses an EXTERNAL_FIXTURES fixture or sits in an
EXTERNAL_MODULES module. The lane is enforced, not trusted: a test that starts
a broker without being `external` fails (`require_external`, called by
support.broker), so the fast lane cannot quietly start one again.

Tests marked `shared` need ../shared/conformance itself (e.g. the EPCIS
examples, which GS1 grants no open licence for, so tests/vectors does not hold
them; the schema itself ships with the package, see
provenance/schemas/epcis/NOTICE.md): they are skipped without it.
"""

from __future__ import annotations

import pytest

from support.paths import SHARED

# Any test that uses one of these, directly or through another fixture:
EXTERNAL_FIXTURES = {"broker", "postgres", "postgres_url"}
EXTERNAL_MODULES = {
    "test_browser",
    "test_demo",
    "test_gateway_faults",
    "test_go_reference",
    "test_ingest_faults",
    "test_orphans",
}

_running: list[pytest.Item] = []  # the test being set up, run or torn down


def require_external(what: str) -> None:
    """Fail the running test if it is not marked `external`: it does *what*."""
    if _running and _running[-1].get_closest_marker("external") is None:
        pytest.fail(
            f"{_running[-1].nodeid} {what} but is not marked external: mark it "
            "@pytest.mark.external (or use the broker fixture), so that "
            "`./run tests --fast` leaves it out",
            pytrace=False,
        )


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        if EXTERNAL_FIXTURES & set(item.fixturenames) or module in EXTERNAL_MODULES:
            item.add_marker(pytest.mark.external)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _running[:] = [item]
    if item.get_closest_marker("shared") and not SHARED.exists():
        pytest.skip(f"needs {SHARED} beside the checkout (not vendored)")


def pytest_runtest_logfinish(nodeid, location):
    _running.clear()
