"""The only SQL: the ledger's SQLite store and the portal's accounts database.

`db.Store` opens the ledger and reads and writes the log, events and chains;
`rows` are what its reads hand back; `migrations` (with `backfills`) is the
schema, by name and in order; `derived` and `state` write and read the tables
derived from the events; `queries` and `replay` answer the portal and the audit.
No module outside this package speaks SQL (tests/test_layers.py checks it).
"""
