"""The accounts follow a party's key rotation (docs/protocol.md, "Key
rotation"; docs/portal.md): its users, API tokens and document records move
from the old did to the new one, so the party keeps its accounts, tokens and
documents and acts with its new key. The ledger decides the rotation (a
logged, checked `rotate` event); this only follows it. The key vault is not
touched: a key held for the old did is not the new key, and the ledger
refuses the old one from the rotation on. The audit trail keeps what it said.
"""

from __future__ import annotations

from provenance.store.accounts.db import AccountsDatabase


class KeyRotations(AccountsDatabase):
    def follow_rotation(self, old_did: str, new_did: str) -> None:
        """Move the accounts of the party whose key *old_did* was rotated to *new_did*."""
        with self._write() as conn:
            for table in ("users", "tokens", "documents"):
                conn.execute(
                    f"UPDATE {table} SET party_did = ? WHERE party_did = ?",
                    (new_did, old_did),
                )
