"""The registry of event kinds (provenance/ledger/kinds/): one entry per kind
the envelope knows, each under its own name; and each kind's effect on the
derived lot state written once, in the store's `EFFECTS` table, which the
ledger's kinds and the backfills both go through (docs/architecture.md,
"Adding an event kind")."""

from __future__ import annotations

import ast
from pathlib import Path

from provenance.core.kinds import KIND_CODES
from provenance.ledger.kinds import KINDS, SIGNER_KINDS
from provenance.store import derived
from provenance.store.db import Store
from provenance.store.derived import EFFECTS

ROOT = Path(__file__).resolve().parent.parent


def test_every_kind_has_exactly_one_entry_under_its_name():
    assert KINDS.keys() == KIND_CODES.keys()
    for name, kind in KINDS.items():
        assert kind.name == name
        assert callable(kind.apply)


def test_the_audit_rebuilds_who_may_sign_from_enrolments_revocations_and_rotations():
    assert set(SIGNER_KINDS) == {"enrol", "revoke", "rotate"}


def test_the_store_effects_name_known_kinds_only():
    assert EFFECTS.keys() <= KIND_CODES.keys()


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def test_a_kinds_store_effect_is_written_in_one_place():
    """The writers `EFFECTS` uses are called nowhere but in derived.py (not by
    the ledger's kinds, not by the backfills, not through `Store`), and the
    ledger's kinds reach the table once per kind in it, by name."""
    source = Path(derived.__file__).read_text(encoding="utf-8")
    functions = {
        node.name: node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)
    }
    writers = {
        name
        for effect in set(EFFECTS.values())
        for call in _calls(functions[effect.__name__])
        if (name := _called_name(call)) in functions
    }
    assert {"record_transform", "record_release", "record_recall"} <= writers
    for name in writers:
        assert not hasattr(Store, name), f"Store.{name} bypasses Store.derive"
    for path in sorted((ROOT / "provenance").rglob("*.py")):
        if path == Path(derived.__file__):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        called = {_called_name(call) for call in _calls(tree)} & writers
        assert not called, f"{path.relative_to(ROOT)} calls {called}: go through EFFECTS"

    derived_kinds: list[str] = []
    for path in sorted((ROOT / "provenance/ledger").rglob("*.py")):
        for call in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            if _called_name(call) == "derive":
                kind = call.args[0]
                assert isinstance(kind, ast.Constant), f"{path}: derive names its kind"
                derived_kinds.append(kind.value)
    assert sorted(derived_kinds) == sorted(EFFECTS), "each kind in EFFECTS, derived once"


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
