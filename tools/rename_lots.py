"""Rename "batch" to "lot" where the code means a lot (issue #10, step 6, "Names").

"Batch" meant three things in the tree:

1. a lot (GS1's "batch/lot"): renamed here to *lot* (``Envelope.batches`` ->
   ``Envelope.lots``, ``MAX_BATCHES`` -> ``MAX_LOTS``, ``provenance batch register`` ->
   ``provenance lot register`` …);
2. a group commit of messages in the ingest and a group of envelopes handed to one
   ``Ledger.append`` (``batch_max``, ``batch_bytes``, ``BatchResult``, ``commit_batch``,
   ``BATCH_BUCKETS``, ``MAX_BATCH``): the right word, left alone;
3. the ledger's append transaction ``provenance.ledger.kinds.base.Batch``: renamed
   ``Transaction`` (its instances ``txn``).

What stays, because it is an interface: the wire key ``"batches"`` of protocol v1 and
the ``"batch"`` key of a transform's inputs and outputs (every string literal is left
alone), the events table's ``batches`` column, HTTP routes, form fields and JSON
fields, the ``--batch`` options, the device SDK's documented ``reading(…, batches=)``,
GS1's ``AI_BATCH_LOT`` and the chain domain ``provenance/v1/batch``.

How: Python files are tokenized (stdlib ``tokenize``); only NAME tokens (and names
inside f-string replacement fields) are renamed, from an explicit table, so strings,
dict keys and SQL never change. Comments, docstrings and docs get a short list of
explicit phrase rewrites. Lines that mention the hidden alias (the word "alias") are
never rewritten, so the alias keeps its old name.

Idempotent: no new name matches an old one, so a second run changes nothing.

    /work/main/.venv/bin/python tools/rename_lots.py [--check] [ROOT]

``--check`` changes nothing and exits 1 if a run would change something. After
renaming, ruff (beside the interpreter, else on PATH) sorts the imports and wraps the
lines of the Python files it changed. It prints "review FILE: old -> new" where a new
name is already used in a file: check those by hand (tools/rename_lots.py's
EXTRA/KEEP/TEXT tables take the fix).
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

FOLDERS = ("provenance", "gateway", "devices", "simulator", "tests", "bench", "docs")
EXTRA_FILES = ("README.md",)
SKIP = ("tests/vectors/",)  # third-party test vectors: GS1's and the EPCIS hash's words

# --- identifiers (NAME tokens), everywhere unless a file says otherwise

NAMES: dict[str, str] = {
    # (3) the append transaction
    "Batch": "Transaction",
    # (1) lots
    "batches": "lots",  # the envelope's lots, and every parameter / local holding them
    "batch_ids": "lot_ids",
    "_batches": "_lots",
    "batch_tuple": "lot_tuple",
    "MAX_BATCHES": "MAX_LOTS",
    "BATCHES_OPTIONAL": "LOTS_OPTIONAL",
    "NO_BATCHES": "NO_LOTS",
    "_parse_batches": "_parse_lots",
    "batch_register": "lot_register",
    # tests named after the command or the keyword
    "test_batch_register_refuses_a_bad_check_digit": (
        "test_lot_register_refuses_a_bad_check_digit"
    ),
    "test_batch_register_produced_and_time": "test_lot_register_produced_and_time",
    "test_sign_does_not_keep_the_callers_batches_list": (
        "test_sign_does_not_keep_the_callers_lots_list"
    ),
}

# Per file (path relative to the root, or a folder prefix ending in "/"): extra renames,
# and names of NAMES not to rename there.
EXTRA: dict[str, dict[str, str]] = {
    # `batch` is the append transaction in the ledger's append and the kinds' steps
    "provenance/ledger/append.py": {"batch": "txn"},
    "provenance/ledger/kinds/": {"batch": "txn", "_b": "_txn"},
    # a form field's lot URI
    "provenance/web/portal/producer.py": {"batch": "input_uri"},
    # the events table's `batches` column (the ids of the lots the envelope names) beside
    # its `lots` column (the chains the event is filed under)
    "provenance/store/state.py": {"batches": "named"},
    "provenance/store/backfills.py": {"batches": "named"},
    "provenance/store/db.py": {"batches": "named"},
    "provenance/ledger/audit.py": {"batches": "named"},
}
KEEP: dict[str, set[str]] = {
    # `batches` there counts group commits (IngestStats.batches, in the stats JSON)
    "provenance/ingest/service.py": {"batches"},
    # the device SDK's documented keyword `reading(…, batches=)` (docs/devices.md)
    "devices/sdk.py": {"batches"},
}

# --- text rewrites before tokenizing: (path or prefix, pattern, replacement)

TEXT: list[tuple[str, str, str]] = [
    # the SDK keeps its keyword and passes it on as the core's `lots`
    ("devices/sdk.py", r"\bbatches=batches\b", "lots=batches"),
    # the simulator's readings waiting per gateway are not lots
    ("simulator/fleet.py", r"\bbatches(?=: dict\[int|\.setdefault\(|\.get\(id)", "waiting"),
    # the envelope's field names as strings: __slots__ and the fields read by name
    ("provenance/core/envelope.py", r'(?<=\n        )"batches",(?=\n)', '"lots",'),
    ("provenance/core/envelope.py", r'(?<="time", )"batches"(?=, "data_json")', '"lots"'),
    # _prefix's local `lots` (the serialized member) would shadow its parameter
    ("provenance/core/envelope.py", r'\blots(?= = "" if batches is None)', "member"),
    ("provenance/core/envelope.py", r"\{\{\{lots\}\"data\"", '{{{member}"data"'),
    # parse_unsigned's result is Envelope's keyword arguments
    (
        "provenance/core/envelope.py",
        r'"batches": batches,(?=\n        "data": data,)',
        '"lots": batches,',
    ),
    # tests: parameter names given to parametrize as strings
    ("tests/", r'(parametrize\(\s*\((?:"\w+",\s*)*)"batches"', r'\1"lots"'),
    # tests that build sign()'s keyword arguments as dicts
    (
        "tests/test_envelope.py",
        r'"batches": (batches|lots),(?=\n    \}\n    fields\.update)',
        r'"lots": \1,',
    ),
    (
        "tests/test_envelope.py",
        r'(return \{"kind": "\w+", "data": [^\n]*?)"batches": ',
        r'\1"lots": ',
    ),
    (  # wire-shaped cases (the error names the wire field) given to sign() as keywords
        "tests/test_envelope.py",
        r'"time": TIME, \*\*fields\}',
        '"time": TIME, **{("lots" if k == "batches" else k): v for k, v in fields.items()}}',
    ),
    # Envelope's keyword arguments built by hand
    (
        "tests/test_ingest_hostile.py",
        r'"batches": (envelope\.batches|envelope\.lots),',
        r'"lots": \1,',
    ),
    # the CLI's old spelling, where tests, the demo or the benchmarks run it
    *(
        (folder, r'"batch",(\s*)"register"', r'"lot",\1"register"')
        for folder in ("tests/", "provenance/", "bench/", "simulator/")
    ),
]

# --- text rewrites after renaming names: where a renamed name must keep its old
# spelling (the token pass cannot tell whose keyword an argument is)

AFTER: list[tuple[str, str, str]] = [
    # the device SDK's documented keyword `reading(…, batches=)`
    ("tests/test_devices.py", r"(logger\.reading\([^()]*?)\blots=", r"\1batches="),
]

# --- phrases in comments, docstrings, messages and docs (every file)

PHRASES: list[tuple[str, str]] = [
    (r"\bbatch register\b", "lot register"),
    (r"Lots \(batches\) of a product", "Lots of a product"),
    (r"one append transaction \(`Batch`\)", "one append transaction (`Transaction`)"),
    (r"(?<=apply\(ledger, envelope, signer, index, )batch\)", "txn)"),
    (r"index, the batch\)", "index, the transaction)"),
    (r"gtin/lot must name the batch;", "gtin/lot must name the lot;"),
]

ALIAS_LINE = re.compile(r"\balias\b")  # lines about the hidden alias keep "batch register"


def _applies(key: str, rel: str) -> bool:
    return rel == key or (key.endswith("/") and rel.startswith(key))


def names_for(rel: str) -> dict[str, str]:
    table = dict(NAMES)
    for key, extra in EXTRA.items():
        if _applies(key, rel):
            table.update(extra)
    for key, kept in KEEP.items():
        if _applies(key, rel):
            for name in kept:
                table.pop(name, None)
    return table


def _per_line(text: str, pattern: str, replacement: str) -> str:
    regex = re.compile(pattern)
    return "".join(
        line if ALIAS_LINE.search(line) else regex.sub(replacement, line)
        for line in text.splitlines(keepends=True)
    )


_FSTRING = re.compile(r"^[rRbBuU]*[fF][rRbBuU]*['\"]")
_FIELD = re.compile(r"(?<!\{)\{(?!\{)([^{}]*)\}")


def _rename_in_fstring(token: str, table: dict[str, str]) -> str:
    """Names inside an f-string's replacement fields (Python 3.11 tokenizes an
    f-string as one STRING)."""
    word = re.compile(r"(?<![\w.\"'])\b(" + "|".join(map(re.escape, table)) + r")\b(?![\"'])")

    def field(match: re.Match[str]) -> str:
        return "{" + word.sub(lambda m: table[m.group(1)], match.group(1)) + "}"

    return _FIELD.sub(field, token)


def clashes(text: str, table: dict[str, str]) -> list[str]:
    """Renames whose new name the file already uses: to review by hand (the first run
    on a tree; later runs report only files that keep an old name on purpose)."""
    seen = {t.string for t in tokenize.generate_tokens(io.StringIO(text).readline)}
    seen = {t for t in seen if t.isidentifier()}
    return sorted(f"{old} -> {new}" for old, new in table.items() if old in seen and new in seen)


def rename_python(text: str, table: dict[str, str]) -> str:
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []  # (row, col, end col, new)
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.NAME and tok.string in table:
            edits.append((tok.start[0], tok.start[1], tok.end[1], table[tok.string]))
        elif tok.type == tokenize.STRING and _FSTRING.match(tok.string) and table:
            new = _rename_in_fstring(tok.string, table)
            if new != tok.string and tok.start[0] == tok.end[0]:
                edits.append((tok.start[0], tok.start[1], tok.end[1], new))
    for row, col, end, new in sorted(edits, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + new + line[end:]
    return "".join(lines)


def rewrite(rel: str, text: str) -> str:
    for key, pattern, replacement in TEXT:
        if _applies(key, rel):
            text = re.sub(pattern, replacement, text)
    for pattern, replacement in PHRASES:
        text = _per_line(text, pattern, replacement)
    if rel.endswith(".py"):
        table = names_for(rel)
        for clash in clashes(text, table):
            print(f"review {rel}: {clash} (the new name is already used there)", file=sys.stderr)
        text = rename_python(text, table)
    for key, pattern, replacement in AFTER:
        if _applies(key, rel):
            text = re.sub(pattern, replacement, text)
    return text


def files(root: Path) -> list[Path]:
    found = [root / name for name in EXTRA_FILES if (root / name).is_file()]
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and path.suffix in {".py", ".md"} and not rel.startswith(SKIP):
                found.append(path)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--check", action="store_true", help="exit 1 if a run would change files")
    args = parser.parse_args(argv)
    root = Path(args.root)
    changed = []
    for path in files(root):
        rel = path.relative_to(root).as_posix()
        old = path.read_text(encoding="utf-8")
        new = rewrite(rel, old)
        if new != old:
            changed.append(rel)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for rel in changed:
        print(("would change " if args.check else "changed ") + rel)
    python = [rel for rel in changed if rel.endswith(".py")]
    if python and not args.check:
        tidy(root, python)
    return 1 if args.check and changed else 0


def tidy(root: Path, paths: list[str]) -> None:
    """Longer names make lines longer and move imports: let ruff sort and wrap the
    files it changed (the project's ruff, else one on PATH)."""
    ruff = Path(sys.executable).with_name("ruff")
    command = str(ruff) if ruff.is_file() else shutil.which("ruff")
    if command is None:
        print("ruff not found: run `ruff check --fix` and `ruff format` yourself", file=sys.stderr)
        return
    subprocess.run([command, "format", "--quiet", *paths], cwd=root, check=True)
    subprocess.run([command, "check", "--fix", "--quiet", *paths], cwd=root, check=False)
    subprocess.run([command, "format", "--quiet", *paths], cwd=root, check=True)


if __name__ == "__main__":
    sys.exit(main())
