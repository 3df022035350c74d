"""A real PostgreSQL for the tests (a pytest plugin, registered in tests/conftest.py).

`postgres` (session): a server from Debian's packages, `initdb` into a temporary
folder and `pg_ctl start` on a free loopback port (TCP on 127.0.0.1 only, its
socket in that folder), stopped at the end of the session. PostgreSQL refuses
to run as root, so under root it runs as the `postgres` user (Debian's package
makes it) through runuser. Skipped, with the reason, only when the binaries
are not installed (Debian: `apt-get install postgresql`).

`postgres_url` (per test): a URL to a fresh schema of its own on that server,
so every test starts from an empty database without the cost of a new one.

The server trades durability for speed (fsync off): the tests stop it cleanly
or kill the clients, never the machine.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 60  # pg_ctl -w -t: wait at most this long for the server to accept connections
STOP_TIMEOUT_S = 30
USER = "provenance"  # the superuser initdb makes
SERVER_USER = "postgres"  # who runs the server when the tests run as root


def binaries() -> Path | None:
    """The folder with initdb and pg_ctl (PATH first, then Debian's versioned folders)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running PostgreSQL: start, stop (and start again), a URL per schema."""

    bin: Path
    folder: Path
    port: int
    as_user: list[str]
    _schemas = itertools.count(1)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def _run(self, *args: str, timeout: float) -> None:
        done = subprocess.run(
            [*self.as_user, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            log = (self.folder / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}\n{log}")

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            "--auth=trust",
            "--locale=C",
            "--encoding=UTF8",
            "-N",
            timeout=START_TIMEOUT_S,
        )

    def start(self, *, durable: bool = False) -> None:
        """Start (again); *durable*: fsync on, as a deployment runs (the benchmarks)."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
        options += "-c max_connections=200"
        if not durable:
            options += " -c fsync=off -c full_page_writes=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "start",
            timeout=START_TIMEOUT_S + 10,
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-m",
            mode,
            "-w",
            "-t",
            str(STOP_TIMEOUT_S),
            "stop",
            timeout=STOP_TIMEOUT_S + 10,
        )

    def url(self, schema: str | None = None) -> str:
        url = f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"
        return url if schema is None else f"{url}?options=-csearch_path%3D{schema}"

    def fresh_schema(self) -> str:
        """A URL to a new, empty schema."""
        import psycopg

        schema = f"t{os.getpid()}_{next(self._schemas)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return self.url(schema)


@contextmanager
def running_server(*, durable: bool = False) -> Iterator[Server]:
    """A fresh server in a temporary folder, stopped and removed at the end
    (the benchmarks use it too). Needs the binaries (see `binaries`)."""
    folder_bin = binaries()
    if folder_bin is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="provenance-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, SERVER_USER, SERVER_USER)
        as_user = ["runuser", "-u", SERVER_USER, "--"]
    server = Server(folder_bin, folder, free_port(), as_user)
    try:
        server.init()
        server.start(durable=durable)
        try:
            yield server
        finally:
            with suppress(RuntimeError):  # a test may have stopped it already
                server.stop("immediate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of the tests' own (see the module doc)."""
    if binaries() is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install psycopg)")
    with running_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres, tmp_path, monkeypatch) -> str:
    """A fresh, empty schema on the tests' PostgreSQL, as a --db URL. The
    portal's accounts folder, which for a PostgreSQL ledger defaults to the
    working directory, goes in the test's own folder."""
    monkeypatch.setenv("PROVENANCE_ACCOUNTS", str(tmp_path / "accounts"))
    return postgres.fresh_schema()
