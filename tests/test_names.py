"""Names mean one thing (docs/architecture.md, "Names").

- No two classes in the tree share a name, so a name read in a traceback, a
  review or the docs points at one class.
- Every ``from <our package> import name`` takes the name from the module that
  defines it, so no module keeps imports alive for others (the ingest service
  did that for its tests).
- A lot is a *lot*: no identifier in the code we ship says "batch" unless it is a
  group (of messages in one commit, of envelopes in one append), GS1's own name,
  or a documented interface. tools/rename_lots.py made it so.

Both read the source with `ast`; nothing is imported or run.
"""

from __future__ import annotations

import ast
import importlib.util
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("provenance", "gateway", "devices", "simulator")  # the code we ship
IMPORTERS = (*PACKAGES, "tests", "bench")  # where imports of it are checked

# Class names that deliberately name two classes: name -> why.
SHARED_CLASS_NAMES: dict[str, str] = {}

# Names that a module deliberately re-exports: (module, name) -> why.
RE_EXPORTS: dict[tuple[str, str], str] = {}


def _sources(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _where(path: Path, node: ast.stmt) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


def class_names(*folders: str) -> dict[str, list[str]]:
    """Every class (nested ones too) by name: where each is defined."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in _sources(*folders):
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.ClassDef):
                found[node.name].append(_where(path, node))
    return found


def duplicated(found: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: places for name, places in found.items() if len(places) > 1}


def test_no_two_classes_share_a_name():
    shared = {
        name: places
        for name, places in duplicated(class_names(*PACKAGES)).items()
        if name not in SHARED_CLASS_NAMES
    }
    assert not shared, "rename so each name means one thing: " + "; ".join(
        f"{name} at {', '.join(places)}" for name, places in sorted(shared.items())
    )


def test_the_shared_class_names_allowed_are_still_shared():
    found = duplicated(class_names(*PACKAGES))
    stale = sorted(set(SHARED_CLASS_NAMES) - set(found))
    assert not stale, f"no longer shared; drop them from SHARED_CLASS_NAMES: {stale}"


def test_the_class_scan_finds_a_shared_name(tmp_path, monkeypatch):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "m.py").write_text("class Outer:\n    class Party: ...\n")
    (tmp_path / "one" / "n.py").write_text("class Lot: ...\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert sorted(duplicated(class_names("one", "two"))) == ["Outer", "Party"]


# --- imports take each name from the module that defines it


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


IMPORT = "<import>"  # not an identifier, so never a name aliased
DEFINITION = "<definition>"


def _bound(body: list[ast.stmt]) -> Iterator[tuple[str, str]]:
    """The names a module body binds at module level, each with how: by an import, by a
    definition, or (for ``alias = name``) the name it aliases."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name, DEFINITION
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                yield (alias.asname or alias.name.split(".")[0]), IMPORT
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Name)
            and all(isinstance(target, ast.Name) for target in node.targets)
        ):
            for target in node.targets:
                yield target.id, node.value.id
        else:
            targets: list[ast.AST] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
                targets = [node.target]
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                targets = [item.optional_vars for item in node.items if item.optional_vars]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        yield name.id, DEFINITION
            for field in ("body", "orelse", "finalbody"):  # if / try / for / with / while
                yield from _bound(getattr(node, field, []))
            for handler in getattr(node, "handlers", []):
                yield from _bound(handler.body)


_bindings_cache: dict[str, tuple[set[str], set[str]] | None] = {}


def bindings(module: str) -> tuple[set[str], set[str]] | None:
    """The names a module of ours defines itself, and those it only imports (or aliases
    an import as: ``_Inbox = Inbox``); None: not a module of ours."""
    if module not in _bindings_cache:
        path = _module_file(module)
        if path is None:
            _bindings_cache[module] = None
        else:
            bound = list(_bound(_parse(path).body))
            imported = {name for name, how in bound if how == IMPORT}
            imported |= {name for name, how in bound if how in imported}
            defined = {name for name, how in bound if how != IMPORT} - imported
            _bindings_cache[module] = (defined, imported)
    return _bindings_cache[module]


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = path.relative_to(ROOT).parent.parts
    package = package[: len(package) - (node.level - 1)]
    return ".".join((*package, *([node.module] if node.module else [])))


def borrowed_imports(*folders: str) -> list[str]:
    """``from M import name`` where M is ours and does not define *name* itself."""
    found = []
    for path in _sources(*folders):
        for node in ast.walk(_parse(path)):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = _absolute(path, node)
            if module.split(".")[0] not in PACKAGES:
                continue
            known = bindings(module)
            if known is None:
                found.append(f"{_where(path, node)}: no module {module}")
                continue
            for alias in node.names:
                if (
                    alias.name in known[0]
                    or alias.name == "*"
                    or _module_file(f"{module}.{alias.name}") is not None
                    or (module, alias.name) in RE_EXPORTS
                ):
                    continue
                found.append(f"{_where(path, node)}: {alias.name} is not defined in {module}")
    return found


def test_imports_take_each_name_from_the_module_that_defines_it():
    _bindings_cache.clear()
    borrowed = borrowed_imports(*IMPORTERS)
    assert not borrowed, "import these from where they are defined:\n" + "\n".join(borrowed)


def test_the_re_exports_allowed_are_still_re_exports():
    _bindings_cache.clear()
    stale = [
        (module, name)
        for module, name in RE_EXPORTS
        if (known := bindings(module)) is None or name not in known[1]
    ]
    assert not stale, f"no longer re-exported; drop them from RE_EXPORTS: {stale}"


@pytest.mark.parametrize(
    ("source", "borrowed"),
    [
        ("from pkg.a import A\n", []),
        ("from pkg.b import A\n", ["x.py:1: A is not defined in pkg.b"]),
        ("from pkg.b import B, C, E\n", []),
        ("from pkg.b import D\n", ["x.py:1: D is not defined in pkg.b"]),
        ("from pkg import a\n", []),
        ("from pkg.nope import A\n", ["x.py:1: no module pkg.nope"]),
        ("from .a import A\n", []),
        ("from .b import A\n", ["x.py:1: A is not defined in pkg.b"]),
    ],
)
def test_the_import_scan_finds_a_borrowed_name(tmp_path, monkeypatch, source, borrowed):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("class A: ...\n")
    (package / "b.py").write_text(
        "from pkg.a import A\n"
        "if A:\n    B = 1\n"
        "try:\n    import json\nexcept ImportError:\n    json = None\n"
        "def C(): ...\n"
        "D = A\n"
        "E = C\n"
    )
    (package / "x.py").write_text(source)
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    monkeypatch.setattr(f"{__name__}.PACKAGES", ("pkg",))
    _bindings_cache.clear()
    try:
        assert [line.replace("pkg/", "") for line in borrowed_imports("pkg")] == borrowed
    finally:
        _bindings_cache.clear()


# --- "batch" means a group; a lot is a lot (tools/rename_lots.py)

# Identifiers with "batch" in them that may stay: name -> (why, where: paths or
# folder prefixes, "" for anywhere). Anything else that says "batch" should say "lot"
# (a lot, a lot URI) or "txn" (the ledger's append transaction).
BATCH_NAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "AI_BATCH_LOT": ("GS1's name for AI (10), 'BATCH/LOT'", ("",)),
    "batch_max": ("messages or entries in one uplink group", ("",)),
    "batch_bytes": ("bytes in one uplink group", ("",)),
    "_batchable": ("may go in an uplink group", ("devices/uplink.py",)),
    "BatchResult": ("what one group commit returns", ("provenance/ingest/",)),
    "commit_batch": ("one group commit", ("provenance/ingest/",)),
    "MAX_BATCH": ("envelopes in one group commit", ("provenance/ingest/",)),
    "max_batch": ("envelopes in one group commit", ("provenance/ingest/",)),
    "batch_size": ("the group-commit size histogram", ("provenance/ingest/",)),
    "BATCH_BUCKETS": ("its buckets", ("provenance/ingest/",)),
    "batch": (
        "a group of messages, envelopes, lines or labels handled together",
        (
            "provenance/ingest/",
            "provenance/ledger/signer.py",
            "provenance/ledger/audit_state.py",
            "provenance/barcodes/pdf.py",
            "gateway/sources.py",
            "devices/drivers.py",
        ),
    ),
    "batches": (
        "group commits counted (IngestStats); the device SDK's documented keyword"
        " reading(…, batches=) (docs/devices.md)",
        ("provenance/ingest/service.py", "devices/sdk.py"),
    ),
}


def _identifiers(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """Every name the code binds or reads (not strings: the wire key "batches" and a
    transform item's "batch" are the protocol's)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name, node.lineno
        elif isinstance(node, ast.Name):
            yield node.id, node.lineno
        elif isinstance(node, ast.arg):
            yield node.arg, node.lineno
        elif isinstance(node, ast.Attribute):
            yield node.attr, node.lineno
        elif isinstance(node, ast.keyword) and node.arg:
            yield node.arg, node.lineno
        elif isinstance(node, ast.alias):
            yield node.asname or node.name.split(".")[-1], node.lineno


def batch_names(*folders: str) -> list[str]:
    """Identifiers saying "batch" that BATCH_NAMES does not allow where they are."""
    found = set()
    for path in _sources(*folders):
        rel = path.relative_to(ROOT).as_posix()
        for name, line in _identifiers(_parse(path)):
            if "batch" not in name.lower():
                continue
            allowed = BATCH_NAMES.get(name, ("", ()))[1]
            if not any(rel.startswith(where) for where in allowed):
                found.add(f"{rel}:{line}: {name}")
    return sorted(found)


def test_a_lot_is_called_a_lot():
    found = batch_names(*PACKAGES)
    assert not found, (
        "a lot is a lot: say lot (or txn for the append transaction), or add the name to "
        "BATCH_NAMES with why it is a group:\n" + "\n".join(found)
    )


def test_the_batch_names_allowed_are_still_used():
    used = set()
    for path in _sources(*PACKAGES):
        used |= {name for name, _ in _identifiers(_parse(path)) if name in BATCH_NAMES}
    assert not set(BATCH_NAMES) - used, (
        f"no longer used; drop them from BATCH_NAMES: {sorted(set(BATCH_NAMES) - used)}"
    )


def test_the_batch_scan_finds_a_lot_called_batch(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "def ship(batches, n):\n"
        "    env = {'batches': batches}\n"  # the wire key: fine; the parameter: not
        "    batch_max = n\n"
        "    return env, batch_uri(batches[0]), gs1.AI_BATCH_LOT, batch_max\n"
    )
    (tmp_path / "pkg" / "ingest.py").write_text("def commit(batch):\n    return batch\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert batch_names("pkg") == [
        "pkg/ingest.py:1: batch",
        "pkg/ingest.py:2: batch",
        "pkg/m.py:1: batches",
        "pkg/m.py:2: batches",
        "pkg/m.py:4: batch_uri",
        "pkg/m.py:4: batches",
    ]


def test_the_rename_script_has_nothing_left_to_do():
    """A branch written before the renames, once merged, still uses the old names:
    re-run `python tools/rename_lots.py` (docs/architecture.md, "Names")."""
    spec = importlib.util.spec_from_file_location("rename_lots", ROOT / "tools" / "rename_lots.py")
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    pending = [
        path.relative_to(ROOT).as_posix()
        for path in script.files(ROOT)
        if script.rewrite(path.relative_to(ROOT).as_posix(), text := path.read_text()) != text
    ]
    assert not pending, f"run python tools/rename_lots.py; it would change {pending}"
