"""The fixtures every area uses (a pytest plugin, registered in tests/conftest.py):
a World in memory or in a file, the CLI on a two-lot ledger, and a real broker."""

from __future__ import annotations

import pytest

from support.broker import Broker, describe
from support.world import GTIN, World


def pytest_report_header(config):
    return describe()


# The ledger's suite runs on both stores: every test that takes `world` (or
# `engine_store`) runs once on SQLite and once on PostgreSQL (`external`: it
# starts a server, support/postgres.py).
ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.external)]


@pytest.fixture(params=ENGINES)
def engine(request):
    """ "sqlite" or "postgres": the store engine this run of the test uses."""
    return request.param


@pytest.fixture
def engine_store(request, engine):
    """A fresh, empty store: in memory (SQLite) or a new schema on PostgreSQL."""
    from provenance.store.db import Store

    store = Store(request.getfixturevalue("postgres_url")) if engine == "postgres" else None
    store = store or Store.memory()
    yield store
    store.close()


@pytest.fixture
def world(engine_store):
    """A ledger with every kind of party, a probe and lot LOT42, in memory or on
    PostgreSQL (`engine`)."""
    return World.create(store=engine_store)


@pytest.fixture
def shared_world(request, engine, tmp_path):
    """A world other connections and processes can open too (its store's
    `path`): a SQLite file, or a fresh schema on PostgreSQL (`engine`)."""
    if engine == "postgres":
        from provenance.store.db import Store

        made = World.create(store=Store(request.getfixturevalue("postgres_url")))
    else:
        made = World.create(tmp_path)
    yield made
    made.store.close()


@pytest.fixture
def file_world(tmp_path):
    """The same world in a SQLite file (for multi-process verification, tampering)."""
    return World.create(tmp_path)


@pytest.fixture
def two_lot_cli(tmp_path):
    """`provenance` as a user runs it, on a fresh ledger where Farm registered
    LOT42 (Kale) and B7 (Spinach). Call it with arguments (and `command=` to
    invoke one subcommand directly) and the exit status expected; it returns
    click's result."""
    from click.testing import CliRunner

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
        run("lot", "register", "--gtin", GTIN, "--lot", lot, "--product", product, "--as", "Farm")
    return run


@pytest.fixture
def broker(tmp_path):
    """A real broker (Mosquitto, else amqtt) on a free loopback port; stopped after the test."""
    running = Broker(tmp_path / "broker").start()
    yield running
    running.kill()
