"""The layers hold: each package imports only the ones below it, and gateways and
devices only the core and the plumbing (docs/architecture.md, "The layers"). The
contracts are in pyproject.toml; import-linter checks them."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_are_kept():
    linter = Path(sys.executable).with_name("lint-imports")
    assert linter.exists(), "import-linter is a dev dependency: ./run tests installs it"
    done = subprocess.run(
        [str(linter), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


# SQL lives in provenance/store/ only (docs/architecture.md, "The layers"). Outside
# it, a module may catch sqlite3 errors but neither speak SQL nor reach into a
# store's connection. What truly cannot move, with why:
SQL_ALLOWED = {
    "devices/outbox.py": "the gateway's own store-and-forward file, not the ledger; "
    "devices/ may import only the core and the plumbing",
    "provenance/cli/demo_story.py": "the tamper step plays an attacker who edits the ledger file "
    "behind the store's back (its UPDATE is the point)",
    "provenance/witness/state.py": "the witness's own small database (its last cosigned "
    "checkpoint per log), not the ledger; the witness may import only the core and infra",
    "bench/ingest.py": "_TimedConnection wraps the store's connection to time its SQL; "
    "it issues none of its own",
}
SQL_SCANNED = ("provenance", "gateway", "devices", "simulator", "bench")
_SQL_STATEMENT = re.compile(
    r"\b(SELECT\b[\s\S]*\bFROM|INSERT\s+(OR\s+[A-Z]+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM"
    r"|(CREATE|DROP)\s+(UNIQUE\s+)?(TABLE|INDEX|VIEW|TRIGGER)|ALTER\s+TABLE|PRAGMA\s+\w+"
    r"|WITH\s+RECURSIVE|BEGIN\s+(IMMEDIATE|EXCLUSIVE)|ROLLBACK|COMMIT)\b"
)
_CONNECTION = re.compile(r"^_?(conn|connection|db|cursor)$")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def sql_in(source: str) -> list[str]:
    """What in *source* speaks SQL: statements in string literals (docstrings
    aside), `.execute(…)`-style calls on a connection, `.conn` of anything, and
    `sqlite3.connect`."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if _SQL_STATEMENT.search(node.value):
                found.append(f"line {node.lineno}: SQL {node.value[:60]!r}")
        elif isinstance(node, ast.JoinedStr):  # an f-string: its text, "x" for each field
            text = "".join(
                part.value if isinstance(part, ast.Constant) else "x" for part in node.values
            )
            if _SQL_STATEMENT.search(text):
                found.append(f"line {node.lineno}: SQL {text[:60]!r}")
        elif isinstance(node, ast.Attribute):
            receiver = node.value
            name = (
                receiver.attr
                if isinstance(receiver, ast.Attribute)
                else receiver.id
                if isinstance(receiver, ast.Name)
                else ""
            )
            if (
                (
                    node.attr in ("execute", "executemany", "executescript")
                    and _CONNECTION.match(name)
                )
                or node.attr == "conn"
                or (name == "sqlite3" and node.attr == "connect")
            ):
                found.append(f"line {node.lineno}: {name}.{node.attr}")
    return found


def test_sql_is_spoken_only_in_the_store():
    offenders = {}
    for top in SQL_SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name.startswith("provenance/store/") or name in SQL_ALLOWED:
                continue
            found = sql_in(path.read_text(encoding="utf-8"))
            if found:
                offenders[name] = found[:3]
    assert not offenders, (
        "SQL outside provenance/store/: ask the store (a Store method, or a function in "
        f"provenance/store/queries.py) instead: {offenders}"
    )


def test_the_sql_allow_list_is_still_needed():
    for name in SQL_ALLOWED:
        assert sql_in((ROOT / name).read_text(encoding="utf-8")), f"{name} speaks no SQL now"


@pytest.mark.parametrize(
    "source",
    [
        'rows = store.conn.execute("SELECT 1").fetchall()',
        'q = "SELECT lot FROM recalls WHERE event = ?"',
        'q = f"UPDATE {table} SET x = 1"',
        'sql = "INSERT OR IGNORE INTO custodians (lot, party) VALUES (?, ?)"',
        "conn.executemany(statement, rows)",
        'db = sqlite3.connect("ledger.db")',
        "store.conn.backup(target)",
        'x = "PRAGMA wal_checkpoint(TRUNCATE)"',
    ],
)
def test_the_sql_check_sees(source):
    assert sql_in(source)


@pytest.mark.parametrize(
    "source",
    [
        'def f():\n    """Reads `PRAGMA data_version` first, then SELECT x FROM y."""',
        'session.execute("ship", "LOT42")',
        'print("select the lots from the list")',
        "except sqlite3.Error:\n    pass",
    ],
)
def test_the_sql_check_lets_pass(source):
    if source.startswith("except"):
        source = "try:\n    pass\n" + source
    assert not sql_in(source)


MAX_MODULE_LINES = 600  # docs/architecture.md: small modules with one job each


def test_no_module_is_over_600_lines():
    """The layout's rule, kept: a module that grows past it is split by job
    (the GS1 dictionary, a data table, is the one exception)."""
    exempt = {"provenance/barcodes/dictionary.py"}
    long = {
        str(path.relative_to(ROOT)): lines
        for folder in ("provenance", "gateway", "devices")
        for path in (ROOT / folder).rglob("*.py")
        if str(path.relative_to(ROOT)) not in exempt
        and (lines := path.read_text(encoding="utf-8").count("\n")) > MAX_MODULE_LINES
    }
    assert not long, f"split these by job: {long}"
