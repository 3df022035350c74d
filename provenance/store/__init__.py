"""The only SQL: the ledger's SQLite store (schema, named migrations, derived
tables, queries) and the portal's accounts database.
"""
