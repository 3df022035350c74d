"""The only SQL: the ledger's store (SQLite or PostgreSQL) and the portal's
accounts database.

`db.Store` opens the ledger and reads and writes the log, events and chains;
`postgres.PostgresStore` is the same store on PostgreSQL (`Store("postgresql://…")`),
its SQL rewritten in one place by `dialect`; `errors` names what either engine raises;
`rows` are what its reads hand back; `migrations` (with `backfills`) is the
schema, by name and in order; `derived` and `state` write and read the tables
derived from the events; `queries` and `replay` answer the portal and the audit.
No module outside this package speaks SQL (tests/test_layers.py checks it).
"""
