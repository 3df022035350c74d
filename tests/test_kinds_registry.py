"""The registry of event kinds (provenance/ledger/kinds/): one entry per kind
the envelope knows, each under its own name, and the backfills' table names
only kinds that exist (docs/architecture.md, "Adding an event kind")."""

from __future__ import annotations

import ast
from pathlib import Path

from provenance.core.kinds import KIND_CODES
from provenance.ledger.kinds import KINDS, SIGNER_KINDS
from provenance.store.backfills import REPLAYS

ROOT = Path(__file__).resolve().parent.parent


def test_every_kind_has_exactly_one_entry_under_its_name():
    assert KINDS.keys() == KIND_CODES.keys()
    for name, kind in KINDS.items():
        assert kind.name == name
        assert callable(kind.apply)


def test_the_audit_rebuilds_who_may_sign_from_enrolments_revocations_and_rotations():
    assert set(SIGNER_KINDS) == {"enrol", "revoke", "rotate"}


def test_the_backfills_replay_known_kinds_only():
    assert REPLAYS.keys() <= KIND_CODES.keys()


def test_the_ledger_finds_no_rule_by_method_name():
    """Dispatch goes through the table: no getattr on the ledger's modules."""
    for path in [
        ROOT / "provenance/ledger/append.py",
        *(ROOT / "provenance/ledger/kinds").glob("*.py"),
    ]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr"
        ]
        assert not calls, path
