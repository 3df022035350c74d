"""The store on PostgreSQL (psycopg 3): `Store("postgresql://…")` opens one.

`PostgresStore` is the SQLite `Store` with a different connection under it:
every method, migration and query of the store runs unchanged, its SQL
rewritten once by provenance/store/dialect.py. What differs lives here:

- `PostgresConnection` speaks the part of `sqlite3.Connection` the store uses
  (`execute`, `executemany`, cursors with `fetchone`/`fetchall`/`rowcount`/
  `lastrowid`), in autocommit mode like the SQLite store's connection; it
  loads numbers and booleans as SQLite would give them (int, float), wraps
  every psycopg error in `DatabaseError`, and reconnects on the next
  statement after a lost connection (never inside a transaction: that one
  is gone, and says so with `DatabaseUnavailable`).
- Writers coordinate the way Trillian Tessera's SQL drivers do: every write
  transaction first locks the one coordination row (`SELECT … FOR UPDATE` on
  `_coordination`), so writers in several processes or machines take turns and
  the log stays one gapless append-only sequence (the ledger hands out log
  indexes from its frontier, under that lock). The row's `version` counts the
  write transactions; a writer that finds it moved since its own last commit
  knows another wrote, and `data_version()` changes — the same signal SQLite's
  `PRAGMA data_version` gives, on which the ledger reloads its caches (log
  size, chain heads, identities; provenance/ledger/append.py `_sync`).
- One connection per `Store`, as with SQLite (one per thread): the web keeps one
  per thread across requests, the ingest one per writer. There is no pool
  (psycopg_pool would hold idle connections and a maintenance thread per
  database without sparing a connect anywhere the store is opened).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg.adapt import Dumper, Loader
from psycopg.types.numeric import Int8Dumper

from provenance.store.db import Store, StoreError
from provenance.store.dialect import to_postgres
from provenance.store.errors import DatabaseError, DatabaseUnavailable
from provenance.store.location import redacted

COPY_MIN_ROWS = 8  # a multi-row INSERT of at least this many rows goes in as COPY
CONNECT_TIMEOUT_S = 10  # a server that does not answer a connect in this long is down
COORDINATION = "writes"  # the _coordination row every write transaction locks
MIGRATION_LOCK = 0x70726F76  # pg_advisory_lock key: one process migrates at a time ("prov")


class _BoolAsInteger(Dumper):
    """Python bools go in as 0/1, as SQLite stores them (the columns are BIGINT)."""

    oid = psycopg.postgres.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class _NumberLoader(Loader):
    """numeric (sum(), avg()) as int when whole, else float: what SQLite returns."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


class _BoolLoader(Loader):
    """A boolean expression's value as 1/0, as SQLite returns it."""

    def load(self, data: Any) -> int:
        return 1 if bytes(data) == b"t" else 0


def _connect(url: str) -> psycopg.Connection:
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {redacted(url)}: {str(exc).strip()}; check --db "
            "(or PROVENANCE_DB) and that the server runs"
        ) from None
    adapters = conn.adapters
    adapters.register_dumper(int, Int8Dumper)
    adapters.register_dumper(bool, _BoolAsInteger)
    adapters.register_loader("numeric", _NumberLoader)
    adapters.register_loader("bool", _BoolLoader)
    return conn


_PLAIN_INSERT = re.compile(
    r"\s*INSERT\s+INTO\s+(\w+)\s*\(([\w\s,]+)\)\s*VALUES\s*\(\s*\?(?:\s*,\s*\?)*\s*\)\s*",
    re.IGNORECASE,
)


@lru_cache(maxsize=256)
def _copy_statement(sql: str) -> str | None:
    """``COPY t (cols) FROM STDIN`` for a plain ``INSERT INTO t (cols) VALUES (?, …)``
    (no conflict clause, nothing returned: what COPY does the same), else None."""
    match = _PLAIN_INSERT.fullmatch(sql)
    if match is None:
        return None
    columns = [column.strip() for column in match.group(2).split(",")]
    if sql.count("?") != len(columns):
        return None
    return f"COPY {match.group(1)} ({', '.join(columns)}) FROM STDIN"


def _wrap(exc: psycopg.Error, sql: str) -> DatabaseError:
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseUnavailable(
            f"lost the PostgreSQL connection ({str(exc).strip()}): the transaction under way "
            "was not committed; it is retried once the server is back"
        )
    return DatabaseError(f"{str(exc).strip()} (in: {' '.join(sql.split())[:160]})")


class PostgresCursor:
    """The part of `sqlite3.Cursor` the store uses (all rows are fetched at once)."""

    def __init__(self, connection: PostgresConnection, cursor: psycopg.Cursor):
        self._connection = connection
        self._cursor = cursor

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cursor.fetchall() if self._cursor.description else []

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        """The id the last INSERT without one was given (its identity column)."""
        row = self._connection.execute("SELECT lastval()").fetchone()
        return None if row is None else row[0]


class PostgresConnection:
    """One autocommit connection to the ledger's database; see the module doc."""

    def __init__(self, url: str, *, readonly: bool = False):
        self.url = url
        self.readonly = readonly
        self._conn: psycopg.Connection | None = self._connect()
        self.in_transaction = False
        self.reconnected = False  # set when a lost connection was replaced

    def _connect(self) -> psycopg.Connection:
        conn = _connect(self.url)
        if self.readonly:  # the server refuses any write on it, not only our code
            conn.execute("SET default_transaction_read_only = on")
        return conn

    def _live(self) -> psycopg.Connection:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if self.in_transaction:
            raise DatabaseUnavailable(
                "lost the PostgreSQL connection: the transaction under way was not committed"
            )
        self._conn = None
        self._conn = self._connect()
        self.reconnected = True
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PostgresCursor:
        text = to_postgres(sql)
        for attempt in (1, 2):
            cursor = self._live().cursor()
            try:
                cursor.execute(text, tuple(params))
                return PostgresCursor(self, cursor)
            except psycopg.Error as exc:
                if attempt == 1 and self._lost_idle(exc, text):
                    continue  # the server went away while we were idle: once more, anew
                raise _wrap(exc, text) from exc
        raise AssertionError("unreachable")

    def _lost_idle(self, exc: psycopg.Error, text: str) -> bool:
        """Whether *text* failed only because an idle connection had been lost
        (a server restart): then it did nothing, and a read or a BEGIN may run
        again on a new connection. A write outside a transaction is not retried
        (it may have been done); inside one, the whole transaction is lost."""
        conn = self._conn
        return (
            isinstance(exc, psycopg.OperationalError)
            and not self.in_transaction
            and (conn is None or conn.closed or conn.broken)
            and text.lstrip()[:6].upper() in ("SELECT", "BEGIN ")
        )

    def executemany(self, sql: str, rows: Any) -> None:
        """Run *sql* once per row; a plain multi-row INSERT goes in as one COPY
        (a batch's events, links and log nodes: one round trip, not one each)."""
        rows = [tuple(row) for row in rows]
        if not rows:
            return
        copy = _copy_statement(sql) if len(rows) >= COPY_MIN_ROWS else None
        text = copy or to_postgres(sql)
        try:
            with self._live().cursor() as cursor:
                if copy is None:
                    cursor.executemany(text, rows)
                    return
                with cursor.copy(copy) as writer:
                    for row in rows:
                        writer.write_row(row)
        except psycopg.Error as exc:
            raise _wrap(exc, text) from exc

    def begin(self, isolation: str = "READ COMMITTED") -> None:
        self.execute(f"BEGIN ISOLATION LEVEL {isolation}")
        self.in_transaction = True

    def commit(self) -> None:
        try:
            self.execute("COMMIT")
        finally:
            self.in_transaction = False

    def rollback(self) -> None:
        """Roll back; a connection already lost has nothing left to roll back."""
        self.in_transaction = False
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return
        # A connection that goes with the transaction committed nothing either.
        with suppress(psycopg.OperationalError):
            conn.execute("ROLLBACK")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def __del__(self) -> None:
        # Like a sqlite3 connection, one dropped without close() closes itself
        # (a command's store lives as long as the command).
        conn = getattr(self, "_conn", None)
        if conn is not None and not conn.closed:
            conn.close()


class _Database:
    """What a migration is handed on PostgreSQL: `db.execute` and `db.conn`, as
    on sqlite-utils' `Database` (docs/architecture.md, "Adding a migration")."""

    def __init__(self, conn: PostgresConnection):
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PostgresCursor:
        return self.conn.execute(sql, params)

    def table_names(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
        )
        return [row[0] for row in rows]


class PostgresStore(Store):
    """`Store` on PostgreSQL; made by `Store(url)` for a postgresql:// URL."""

    def __init__(
        self, path: str | Path | None = None, *, create: bool = True, readonly: bool = False
    ):
        url = str(path)
        self.path = url  # type: ignore[assignment]
        self.where = redacted(url)
        self._subjects: dict[int, str] = {}
        self._version = -1  # the coordination row's version after our last look
        self._foreign = 0  # how often another writer was seen to have written
        try:
            conn = PostgresConnection(url, readonly=readonly)
        except DatabaseUnavailable as exc:
            raise StoreError(str(exc)) from None
        self.conn = conn  # type: ignore[assignment]
        self.db = _Database(conn)  # type: ignore[assignment]
        try:
            self._open_postgres(create=create, readonly=readonly)
        except BaseException:
            conn.close()
            raise

    def _open_postgres(self, *, create: bool, readonly: bool) -> None:
        tables = self.db.table_names()
        if "_migrations" not in tables:
            if tables:
                raise StoreError(
                    f"{self.where} holds other tables ({', '.join(tables[:5])}), not a "
                    "Provenance ledger: check --db (or PROVENANCE_DB); nothing was written to it"
                )
            if readonly or not create:
                raise StoreError(
                    f"{self.where} is an empty database, not a Provenance ledger yet: run "
                    "`provenance init` (or check --db)"
                )
            self._check_collation()
        else:
            self._check_version(pending_ok=not readonly)
            if "_coordination" in tables and not self.pending_migrations():
                return  # up to date: no lock, no DDL, no write on every open
        if not readonly:
            self.migrate()

    def _check_collation(self) -> None:
        """A new ledger needs text compared byte by byte, as SQLite does (the C
        collation): otherwise lists and ranges over names, times and URIs would
        come out in another order than on SQLite."""
        row = self.conn.execute(
            "SELECT datcollate, to_jsonb(d) ->> 'datlocprovider' FROM pg_database d "
            "WHERE datname = current_database()"
        ).fetchone()
        if row is None:
            return
        collation, provider = row
        if provider == "i" or collation not in ("C", "POSIX", "C.UTF-8", "C.utf8"):
            what = "an ICU collation" if provider == "i" else f"the collation {collation!r}"
            raise StoreError(
                f"{self.where} compares text by {what}; the ledger needs "
                "byte order: create the database with `createdb --locale=C --template=template0 "
                "…` (docs/deploy.md); nothing was written to it"
            )

    # --- schema

    def migrate(self) -> None:
        """The named migrations (the same list as SQLite's), one process at a time."""
        conn = self.conn
        conn.execute("SELECT pg_advisory_lock(?)", (MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _coordination "
                "(name TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            conn.execute(
                "INSERT OR IGNORE INTO _coordination (name, version) VALUES (?, 0)",
                (COORDINATION,),
            )
            super().migrate()
        finally:
            conn.execute("SELECT pg_advisory_unlock(?)", (MIGRATION_LOCK,))

    # --- transactions

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN; lock the coordination row; … COMMIT: one writer at a time across
        every process and machine, all or nothing."""
        conn = self.conn
        conn.begin()
        try:
            row = conn.execute(
                "SELECT version FROM _coordination WHERE name = ? FOR UPDATE", (COORDINATION,)
            ).fetchone()
            if row is None:
                raise StoreError(f"{self.where} has no coordination row: run `provenance migrate`")
            self._notice(row[0])
            conn.execute(
                "UPDATE _coordination SET version = version + 1 WHERE name = ?", (COORDINATION,)
            )
            yield
        except BaseException:
            conn.rollback()
            # A chain made in the rolled-back transaction does not exist; its id
            # may go to another subject (here, or in another writer).
            self._subjects.clear()
            raise
        conn.commit()
        self._version = row[0] + 1

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A consistent read view (REPEATABLE READ, rolled back at the end)."""
        self.conn.begin("REPEATABLE READ")
        try:
            yield
        finally:
            self.conn.rollback()

    def _notice(self, version: int) -> None:
        if version != self._version or self.conn.reconnected:
            self._foreign += 1
            self._version = version
            self.conn.reconnected = False

    def data_version(self) -> int:
        """Changes whenever another connection (any process, any machine) has
        committed a write transaction since this one last looked (inside a
        transaction: as of the lock it took)."""
        if self.conn.in_transaction:
            return self._foreign
        row = self.conn.execute(
            "SELECT version FROM _coordination WHERE name = ?", (COORDINATION,)
        ).fetchone()
        self._notice(-2 if row is None else row[0])
        return self._foreign

    def applied_migrations(self) -> list[str]:
        if "_migrations" not in self.db.table_names():
            return []
        return [row[0] for row in self.conn.execute("SELECT name FROM _migrations ORDER BY id")]

    # --- the database

    def checkpoint_wal(self) -> None:
        """Nothing to do: PostgreSQL checkpoints its WAL itself."""

    def bytes_in_use(self) -> int:
        """Bytes of this ledger's tables, indexes and TOAST included."""
        row = self.conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).fetchone()
        return int(row[0]) if row else 0

    def backup(self, target: str | Path) -> None:
        raise StoreError(
            f"{self.where} is a PostgreSQL database, not a SQLite file to copy: back it up "
            "with pg_dump or a base backup (docs/deploy.md, Backups)"
        )
