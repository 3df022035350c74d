"""`provenance.cli.errors.error_message`: every error the OS or a ledger
engine raises past a command becomes one `Error: …` line, never a traceback
(a `TypeError` inside the mapping itself used to turn every such error —
a broken pipe, a full disk, a locked SQLite file, PostgreSQL gone — into one)."""

from __future__ import annotations

import sqlite3

import pytest

from provenance.cli.errors import error_message
from provenance.store.errors import DATABASE_ERRORS, DatabaseError


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (sqlite3.OperationalError("disk I/O error"), "the ledger database failed"),
        (DatabaseError("server closed the connection"), "the ledger database failed"),
        (BrokenPipeError(32, "Broken pipe"), "Broken pipe"),
        (IsADirectoryError(21, "Is a directory", "out"), "is a folder"),
        (PermissionError(13, "Permission denied", "/x"), "/x: Permission denied"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "not UTF-8"),
    ],
)
def test_os_and_database_errors_become_one_line(exc, words):
    assert isinstance(exc, (*DATABASE_ERRORS, OSError, UnicodeDecodeError))
    message = error_message(exc, None)
    assert message is not None and words in message, message


def test_a_bug_is_not_dressed_as_an_error():
    assert error_message(KeyError("x"), None) is None
