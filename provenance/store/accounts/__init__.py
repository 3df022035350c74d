"""The portal's accounts database: users, roles, passwords, sessions, API tokens,
server-held party keys, the audit trail, consumer-scan counts (by lot, and by
serial for the counterfeit rule) and uploaded-document records.

All of it lives in its own SQLite file (``{accounts dir}/accounts.db``, through
sqlite-utils), never in the ledger: the ledger holds only signed events. The
accounts directory also holds the server secret (``secret.key``, mode 0600,
unless ``PROVENANCE_SECRET_KEY`` is set) and the uploaded documents
(``documents/``, content-addressed by SHA-256).

One module per job; callers use the `accounts.Accounts` facade, which is all of
them over one connection:

- `models`: roles, scopes, the errors and the value types callers hold.
- `secret`: the server secret, the keys derived from it, the hash of a bearer secret.
- `db`: the connection, one writer at a time, the schema and its named migrations.
- `users`: users, argon2id passwords, sign-in throttling, sessions.
- `tokens`: API tokens. `vault`: party keys encrypted under the server secret.
- `audit_trail`: the append-only, hash-chained audit trail.
- `scans`: consumer-scan counts. `documents`: uploaded-document records.
"""
