"""Shared fixtures. Conformance vectors come from ../shared/conformance when it
sits beside the checkout, else from the copies vendored in tests/vectors/."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "conformance"
VENDORED = Path(__file__).resolve().parent / "vectors"


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


def pytest_runtest_setup(item):
    """Tests marked `shared` need ../shared/conformance itself (e.g. the EPCIS
    examples, which GS1 grants no open licence for, so tests/vectors does not hold them;
    the schema itself ships with the package, see provenance/schemas/epcis/NOTICE.md):
    skip without it."""
    if item.get_closest_marker("shared") and not SHARED.exists():
        pytest.skip(f"needs {SHARED} beside the checkout (not vendored)")


@pytest.fixture
def world():
    """An in-memory ledger with every kind of party, a probe and lot LOT42."""
    from world import World

    return World.create()


@pytest.fixture
def file_world(tmp_path):
    """The same world in a SQLite file (for multi-process verification, tampering)."""
    from world import World

    return World.create(tmp_path)


@pytest.fixture
def two_lot_cli(tmp_path):
    """`provenance` as a user runs it, on a fresh ledger where Farm registered
    LOT42 (Kale) and B7 (Spinach). Call it with arguments (and `command=` to
    invoke one subcommand directly) and the exit status expected; it returns
    click's result."""
    from click.testing import CliRunner
    from world import GTIN

    from provenance.cli.context import Context
    from provenance.cli.main import main

    db, keys = str(tmp_path / "p.db"), str(tmp_path / "keys")
    runner = CliRunner()

    def run(*args: str, code: int = 0, command=None):
        if command is None:
            result = runner.invoke(main, ["--db", db, "--keys", keys, *args])
        else:
            result = runner.invoke(command, list(args), obj=Context(db, keys))
        assert result.exit_code == code, (args, result.output, result.exception)
        return result

    run("init")
    run("party", "add", "Farm", "--role", "producer", "--prefix", "9506000")
    for lot, product in (("LOT42", "Kale"), ("B7", "Spinach")):
        run("batch", "register", "--gtin", GTIN, "--lot", lot, "--product", product, "--as", "Farm")
    return run


def pytest_report_header(config):
    from broker import describe

    return describe()


@pytest.fixture
def broker(tmp_path):
    """A real broker (Mosquitto, else amqtt) on a free loopback port; stopped after the test."""
    from broker import Broker

    running = Broker(tmp_path / "broker").start()
    yield running
    running.kill()


# Test lanes. `./run tests` runs everything (what CI runs); `./run tests --fast`
# is the edit loop: it leaves out tests marked `slow` and those marked here as
# `external`, which start a broker, a browser, a Go build or processes of ours.
EXTERNAL_FIXTURES = {"broker"}  # any test that uses it, directly or through another fixture
EXTERNAL_MODULES = {
    "test_browser",
    "test_demo",
    "test_gateway_faults",
    "test_go_reference",
    "test_ingest_faults",
    "test_orphans",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        if EXTERNAL_FIXTURES & set(item.fixturenames) or module in EXTERNAL_MODULES:
            item.add_marker(pytest.mark.external)
