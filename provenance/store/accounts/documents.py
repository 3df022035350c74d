"""Records of uploaded documents and the lots they are attached to. The files
themselves are in ``{accounts dir}/documents/``, content-addressed by SHA-256
(provenance.web.portal.documents)."""

from __future__ import annotations

from provenance.store.accounts.db import AccountsDatabase
from provenance.store.accounts.models import Document


class DocumentRecords(AccountsDatabase):
    """Uploaded-document records in the accounts database."""

    def add_document(self, document: Document, lot_uris: list[str], event_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO documents (sha256, name, media_type, size, party_did, "
                "uploaded_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    document.sha256,
                    document.name,
                    document.media_type,
                    document.size,
                    document.party_did,
                    document.uploaded_at,
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO document_lots (sha256, lot, event_id) VALUES (?, ?, ?)",
                [(document.sha256, uri, event_id) for uri in lot_uris],
            )

    def document(self, sha256: str) -> Document | None:
        rows = self._read(
            "SELECT sha256, name, media_type, size, party_did, uploaded_at FROM documents "
            "WHERE sha256 = ?",
            (sha256,),
        )
        return Document(*rows[0]) if rows else None

    def document_lots(self, sha256: str) -> list[str]:
        return [
            row[0]
            for row in self._read("SELECT lot FROM document_lots WHERE sha256 = ?", (sha256,))
        ]

    def lot_documents(self, lot_uri: str) -> list[tuple[Document, str]]:
        """(document, inspect event id) attached to a lot through this portal."""
        rows = self._read(
            "SELECT d.sha256, d.name, d.media_type, d.size, d.party_did, d.uploaded_at, "
            "l.event_id FROM document_lots l JOIN documents d ON d.sha256 = l.sha256 "
            "WHERE l.lot = ? ORDER BY d.uploaded_at",
            (lot_uri,),
        )
        return [(Document(*row[:6]), row[6]) for row in rows]
