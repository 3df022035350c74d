"""The ingest service's exceptions (docs/ingest.md, "exit status")."""

from __future__ import annotations

from provenance.core.errors import ProvenanceError


class IngestError(ProvenanceError):
    """The service cannot run: bad configuration, or the broker will not have it."""


class CredentialsRefused(IngestError):
    """The broker refused our user name, password or client identity."""


class TransientError(IngestError):
    """The database refused the commit (locked, full, I/O): retry the group later."""


class WorkerDied(IngestError):
    """The commit worker process ended unexpectedly."""
