"""Our transparency-log formats against Go's reference implementation.

golang.org/x/mod/sumdb/note (C2SP signed notes) and sumdb/tlog (RFC 6962 tree
hashes and proofs) are what the Go ecosystem's logs, witnesses and go.sum
database run. tests/go/sumdbcheck is a small Go program of ours that hands our
artefacts to those packages and reports what they say. This file builds a real
ledger with our code, asks Go about it once (one build, one run per session),
and asserts agreement case by case:

- every signed checkpoint the ledger wrote opens with note.Open under the
  ledger's ``log_verifier_key``, and its first three lines parse with
  tlog.ParseTree to the same size and root;
- for every (index, size) with size <= 71, and a sample up to 1,271, Go's
  tlog.CheckRecord accepts our inclusion proof and tlog.ProveRecord, reading our
  stored subtree hashes, builds the same proof; the same for consistency proofs
  (tlog.CheckTree / tlog.ProveTree) between every pair of checkpoints; tlog.TreeHash
  over our stored hashes gives our root for every size, and our stored subtree
  hashes are the ones tlog.StoredHashes writes;
- the other way round: Go signs notes and checkpoints with a key we generate and
  provenance.core.checkpoint accepts them (byte-identical to what we sign), and a
  witness cosignature Go adds to our checkpoint leaves it valid;
- tampered proofs, roots, leaves and notes are refused by both.

Where we knowingly differ from Go, the case carries the reason (see
docs/protocol.md §6). Needs `go` and golang.org/x/mod (Debian golang-go and
golang-golang-x-mod-dev; ./run tests installs them); skipped only without `go`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.go import ARTIFACTS, X_MOD, go_env
from support.world import GTIN, World, at

from provenance.core.checkpoint import (
    Checkpoint,
    format_verifier_key,
    key_id,
    open_checkpoint,
    open_note,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
)
from provenance.core.envelope import Envelope
from provenance.core.errors import ProofError, ValidationError, VerificationError
from provenance.core.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    ReadOnce,
    consistency_proof,
    hash_leaf,
    inclusion_proof,
    range_hash,
    verify_consistency,
    verify_inclusion,
)
from provenance.core.tlog_proof import (
    TlogProof,
    TlogProofError,
    parse_tlog_proof,
    verify_tlog_proof,
)
from provenance.ledger.proofs import build_bundle

ROOT = Path(__file__).resolve().parent.parent
GO_SOURCE = ROOT / "tests" / "go" / "sumdbcheck"
BUILD_TIMEOUT = 300  # seconds; a cold build takes ~6 s on two cores, a warm one ~0.1 s
RUN_TIMEOUT = 120
GO_TREE_ORIGIN = "go.sum database tree"  # the only origin tlog.ParseTree accepts

SMALL_SIZES = 71  # every (index, size) and every consistency pair up to this size
TAMPER_SIZES = 16  # every tampering of every proof up to this size


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def flip(data: bytes, bit: int) -> bytes:
    """``data`` with one bit flipped (bit counted from the first byte's low bit)."""
    out = bytearray(data)
    out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def go_signer_key(name: str, key: Ed25519PrivateKey) -> str:
    """note.NewSigner's key text: PRIVATE+KEY+<name>+<key id>+base64(0x01 || seed)."""
    kid = key_id(name, key.public_key().public_bytes_raw()).hex()
    seed = b"\x01" + key.private_bytes_raw()
    return f"PRIVATE+KEY+{name}+{kid}+{b64(seed)}"


# --- building and running the Go program -----------------------------------------------------


@pytest.fixture(scope="session")
def sumdbcheck() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Build tests/go/sumdbcheck (go's cache makes a rebuild ~free) and return a
    function that sends it one request and returns its reply."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("`go` is not installed: apt-get install golang-go golang-golang-x-mod-dev")
    if not (X_MOD / "sumdb" / "note" / "note.go").is_file():
        pytest.fail(
            f"golang.org/x/mod is not at {X_MOD}: apt-get install golang-golang-x-mod-dev "
            "(tests/go/sumdbcheck/go.mod replaces the module with that directory)"
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    binary = ARTIFACTS / "sumdbcheck"
    fresh = ARTIFACTS / f"sumdbcheck.{os.getpid()}"
    built = subprocess.run(
        [go, "build", "-trimpath", "-o", str(fresh), "."],
        cwd=GO_SOURCE,
        env=go_env(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if built.returncode:
        pytest.fail(f"go build of {GO_SOURCE} failed:\n{built.stderr}")
    fresh.replace(binary)

    def run(request: dict[str, Any]) -> dict[str, Any]:
        done = subprocess.run(
            [str(binary)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, f"sumdbcheck failed: {done.stderr}"
        return json.loads(done.stdout)

    return run


# --- the ledger --------------------------------------------------------------------------------


@dataclass
class Log:
    world: World
    verifier_key: str  # the store's log_verifier_key meta
    notes: dict[int, str]  # size -> signed checkpoint
    checkpoints: dict[int, Checkpoint]  # size -> checkpoint, opened with our code
    size: int


@pytest.fixture(scope="module")
def log() -> Log:
    """A real ledger: one checkpoint per size 1..71 (every commit signs one), then
    four commits of 300 readings (sizes 371, 671, 971, 1271); 40 chains."""
    world = World.create()
    hours = 1.0
    while world.store.log_size() < SMALL_SIZES:
        hours += 0.01
        if world.store.log_size() % 2:
            lot = f"G{world.store.log_size()}"
            data = {"gtin": GTIN, "lot": lot, "product": "Kale", "category": "food"}
            uri = f"https://id.gs1.org/01/{GTIN}/10/{lot}"
            world.ok("farm", "commission", [uri], data, time=at(hours))
        else:
            world.ok("probe", "reading", [world.lot], {"temperature_c": 3.5}, time=at(hours))
    for _ in range(4):
        batch = []
        for _ in range(300):
            hours += 0.001
            batch.append(world.reading(hours, 3.0, lots=[world.lot]))
        results = world.ledger.append(batch)
        assert all(r.status == "accepted" for r in results), results[0]
    store = world.store
    verifier_key = store.get_meta("log_verifier_key")
    name, public_key = parse_verifier_key(verifier_key)
    notes = dict(store.checkpoints())
    checkpoints = {
        size: open_checkpoint(note, name, public_key, origin=name) for size, note in notes.items()
    }
    assert set(range(1, SMALL_SIZES + 1)) <= set(notes), sorted(notes)[:80]
    assert store.log_size() == 1271 and max(notes) == 1271
    return Log(world, verifier_key, notes, checkpoints, store.log_size())


def all_subtrees(reader: Any, size: int) -> list[dict[str, Any]]:
    """Every complete subtree (level, index) of a tree of ``size`` leaves, from ``reader``."""
    nodes = []
    level = 0
    while (1 << level) <= size:
        for index in range(size >> level):
            nodes.append(
                {"level": level, "index": index, "hash": b64(reader.subtree_hash(level, index))}
            )
        level += 1
    return nodes


# --- the log: tree hashes, stored hashes, inclusion and consistency proofs ---------------------


@dataclass
class ProofCase:
    kind: str  # "inclusion" or "consistency"
    desc: str
    request: dict[str, Any]
    ours: Callable[[], None]  # our verifier; raises on refusal
    valid: bool
    proof: list[bytes] | None = None  # our proof, compared with Go's when valid


def inclusion_case(
    desc: str, index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes, valid: bool
) -> ProofCase:
    request = {
        "index": index,
        "size": size,
        "leaf": b64(leaf),
        "proof": [b64(p) for p in proof],
        "root": b64(root),
        "prove": valid,
    }
    return ProofCase(
        "inclusion",
        desc,
        request,
        lambda: verify_inclusion(index, size, leaf, proof, root),
        valid,
        proof if valid else None,
    )


def consistency_case(
    desc: str, size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes, valid: bool
) -> ProofCase:
    request = {
        "size1": size1,
        "size2": size2,
        "proof": [b64(p) for p in proof],
        "root1": b64(root1),
        "root2": b64(root2),
        "prove": valid,
    }
    return ProofCase(
        "consistency",
        desc,
        request,
        lambda: verify_consistency(size1, size2, proof, root1, root2),
        valid,
        proof if valid else None,
    )


def tampered_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes):
    where = f"index {index} size {size}"
    for j, p in enumerate(proof):
        bad = [*proof[:j], flip(p, 37 * j + index), *proof[j + 1 :]]
        yield inclusion_case(
            f"{where}: proof[{j}] bit-flipped", index, size, leaf, bad, root, False
        )
    yield inclusion_case(
        f"{where}: leaf bit-flipped", index, size, flip(leaf, 9), proof, root, False
    )
    yield inclusion_case(
        f"{where}: root bit-flipped", index, size, leaf, proof, flip(root, 250), False
    )
    if proof:
        yield inclusion_case(
            f"{where}: last hash dropped", index, size, leaf, proof[:-1], root, False
        )
    if len(proof) > 1:
        yield inclusion_case(
            f"{where}: first two hashes swapped",
            index,
            size,
            leaf,
            [proof[1], proof[0], *proof[2:]],
            root,
            False,
        )
    yield inclusion_case(f"{where}: extra hash", index, size, leaf, [*proof, root], root, False)
    if index + 1 < size:
        yield inclusion_case(
            f"{where}: claimed at index + 1", index + 1, size, leaf, proof, root, False
        )


def tampered_consistency(size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes):
    where = f"{size1} -> {size2}"
    for j, p in enumerate(proof):
        bad = [*proof[:j], flip(p, 41 * j + size1), *proof[j + 1 :]]
        yield consistency_case(
            f"{where}: proof[{j}] bit-flipped", size1, size2, bad, root1, root2, False
        )
    yield consistency_case(
        f"{where}: root1 bit-flipped", size1, size2, proof, flip(root1, 3), root2, False
    )
    yield consistency_case(
        f"{where}: root2 bit-flipped", size1, size2, proof, root1, flip(root2, 5), False
    )
    if proof:
        yield consistency_case(
            f"{where}: last hash dropped", size1, size2, proof[:-1], root1, root2, False
        )
    yield consistency_case(
        f"{where}: extra hash", size1, size2, [*proof, root1], root1, root2, False
    )


@dataclass
class LogRequest:
    request: dict[str, Any]  # records (leaf data), leaves (our leaf hashes), ...
    tree_sizes: list[int]
    tree_roots: list[bytes]
    cases: list[ProofCase]


def log_request(log: Log) -> LogRequest:
    store = log.world.store
    reader = ReadOnce(store)  # our stored hashes: leaves, and log_nodes from level 4 up
    roots = {size: cp.root_hash for size, cp in log.checkpoints.items()}

    def root(size: int) -> bytes:
        return roots[size] if size in roots else range_hash(reader, 0, size)

    leaves = store.leaf_hashes(0, log.size)
    cases: list[ProofCase] = []
    big = sorted(s for s in roots if s > SMALL_SIZES)
    for size in range(1, SMALL_SIZES + 1):
        for index in range(size):
            proof = inclusion_proof(reader, index, size)
            args = (index, size, leaves[index], proof, root(size))
            cases.append(inclusion_case(f"index {index} size {size}", *args, True))
            if size <= TAMPER_SIZES:
                cases.extend(tampered_inclusion(*args))
    for size in big:
        edges = {size - 1, size - 2, 255, 256, 511, 512, 1023, 1024}
        for index in sorted(set(range(0, size, 13)) | {i for i in edges if i < size}):
            proof = inclusion_proof(reader, index, size)
            args = (index, size, leaves[index], proof, root(size))
            cases.append(inclusion_case(f"index {index} size {size}", *args, True))
    sizes = sorted(roots)
    for size2 in sizes:
        for size1 in (s for s in sizes if s <= size2):
            proof = consistency_proof(reader, size1, size2)
            args = (size1, size2, proof, root(size1), root(size2))
            cases.append(consistency_case(f"{size1} -> {size2}", *args, True))
            if size2 <= TAMPER_SIZES:
                cases.extend(tampered_consistency(*args))
    cases.extend(bundle_cases(log))
    tree_sizes = list(range(1, log.size + 1))
    request = {
        "records": [b64(event.envelope.id_bytes) for event in store.events()],
        "leaves": [b64(h) for h in leaves],
        "nodes": all_subtrees(reader, log.size),
        "tree_sizes": tree_sizes,
        "inclusion": [c.request for c in cases if c.kind == "inclusion"],
        "consistency": [c.request for c in cases if c.kind == "consistency"],
    }
    return LogRequest(request, tree_sizes, [root(n) for n in tree_sizes], cases)


def bundle_tlog_proofs(log: Log) -> list[tuple[str, bytes]]:
    """Every C2SP tlog-proof in the lot's proof bundle (what a consumer is handed),
    with the leaf hash of the envelope it proves."""
    bundle = build_bundle(log.world.store, log.world.lot)
    out = []
    for chain in bundle["chains"]:
        for event in chain["events"]:
            if "proof" in event:
                leaf = hash_leaf(Envelope.from_json(event["envelope"]).id_bytes)
                out.append((event["proof"], leaf))
    assert len(out) >= 4, len(out)  # the lot's newest event, and the signers' registry events
    return out


def bundle_cases(log: Log) -> list[ProofCase]:
    """The inclusion proof inside every tlog-proof of the bundle, against the
    bundle's checkpoint, through tlog.CheckRecord (and ProveRecord)."""
    cases = []
    for text, leaf in bundle_tlog_proofs(log):
        proof = parse_tlog_proof(text)
        cp = open_checkpoint(proof.checkpoint, *parse_verifier_key(log.verifier_key))
        desc = f"bundle: tlog-proof of log index {proof.index}"
        cases.append(
            inclusion_case(desc, proof.index, cp.size, leaf, list(proof.proof), cp.root_hash, True)
        )
    return cases


def heads_request(log: Log) -> LogRequest:
    """The sorted heads tree of the latest checkpoint: its root is the extension line's."""
    from provenance.core.heads import SORTED, SortedHeads

    rows = [(s, n, h) for _, s, h, n in log.world.store.chains()]
    tree = SortedHeads.of(rows)
    records = [tree.entry(i) for i in range(tree.size)]
    latest = log.checkpoints[log.size]
    label, count, root_text = latest.extensions[0].split(" ")
    assert (label, int(count)) == (SORTED, tree.size)
    root = unb64(root_text)
    leaves = [hash_leaf(r) for r in records]
    cases = []
    for index in range(tree.size):
        proof = tree.inclusion_proof(index)
        leaf = leaves[index]
        cases.append(inclusion_case(f"heads {index}", index, tree.size, leaf, proof, root, True))
        cases.extend(tampered_inclusion(index, tree.size, leaf, proof, root))
    mirror = MemoryTree(leaves)
    request = {
        "records": [b64(r) for r in records],
        "leaves": [b64(h) for h in leaves],
        "nodes": all_subtrees(mirror, tree.size),
        "tree_sizes": [tree.size],
        "inclusion": [c.request for c in cases],
        "consistency": [],
    }
    return LogRequest(request, [tree.size], [root], cases)


# --- signed notes, verifier keys, checkpoint bodies ---------------------------------------------


@dataclass
class NoteCase:
    """A signed note opened by note.Open and by open_note with one verifier key
    (the log's unless the case names another)."""

    desc: str
    note: str
    we_accept: bool
    go_accepts: bool | None = None  # None: same as we_accept
    why: str = ""  # why we differ, when we do
    verifier_key: str | None = None

    def __post_init__(self) -> None:
        if self.go_accepts is None:
            self.go_accepts = self.we_accept
        assert (self.go_accepts == self.we_accept) or self.why, self.desc


def with_signature_block(note: str, block: str) -> str:
    text, _, _ = note.rpartition("\n\n")
    return text + "\n\n" + block


def non_canonical(text: str) -> str:
    """The same bytes in base64 with the unused low bits of the last character set:
    Go's base64.StdEncoding accepts it, RFC 4648 §3.5 canonical decoders do not."""
    assert text.endswith("=") and not text.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-2])
    assert last & 3 == 0
    return text[:-2] + alphabet[last | 3] + "="


ED25519_L = 2**252 + 27742317777372353535851937790883648493  # the group order


def note_cases(log: Log) -> list[NoteCase]:
    name, log_public_key = parse_verifier_key(log.verifier_key)
    latest = log.notes[log.size]
    text, _, block = latest.rpartition("\n\n")
    text += "\n"
    sig_line = block.rstrip("\n")
    sig_b64 = sig_line.rsplit(" ", 1)[1]
    witness = Ed25519PrivateKey.generate()
    witness_line = sign_note(text, "witness.example/w1", witness).rstrip("\n").rsplit("\n", 1)[1]
    other_log = Ed25519PrivateKey.generate()
    other_line = sign_note(text, name, other_log).rstrip("\n").rsplit("\n", 1)[1]
    garbage_line = f"— {name} {b64(key_id(name, log_public_key) + bytes(64))}"

    cases = [NoteCase(f"checkpoint at size {size}", note, True) for size, note in log.notes.items()]
    for i in range(len(text.encode())):
        body = flip(text.encode(), 8 * i + i % 7)
        try:
            body_text = body.decode("utf-8")
        except UnicodeDecodeError:
            continue  # JSON carries only text; both refuse invalid UTF-8 anyway
        cases.append(NoteCase(f"text byte {i} bit-flipped", body_text + "\n" + block, False))
    raw_sig = unb64(sig_b64)
    for bit in range(32, 8 * len(raw_sig), 61):  # past the key id: the signature itself
        bad = sig_line.replace(sig_b64, b64(flip(raw_sig, bit)))
        cases.append(
            NoteCase(
                f"signature bit {bit} flipped", with_signature_block(latest, bad + "\n"), False
            )
        )
    kid, r, s = raw_sig[:4], raw_sig[4:36], int.from_bytes(raw_sig[36:], "little")
    malleated = b64(kid + r + (s + ED25519_L).to_bytes(32, "little"))
    identity = bytes([1]) + bytes(31)  # the neutral point: a key of small order
    identity_key = format_verifier_key(name, identity)
    forged = f"— {name} {b64(key_id(name, identity) + identity + bytes(32))}\n"
    cases += [
        NoteCase(
            "signature malleated to S + L",
            with_signature_block(latest, sig_line.replace(sig_b64, malleated) + "\n"),
            False,
        ),
        NoteCase(
            "log key of small order (the identity point), signature R = identity, S = 0",
            text + "\n" + forged,
            we_accept=False,
            go_accepts=True,
            why="Go's crypto/ed25519 accepts this signature on any message under that key; "
            "libsodium refuses small-order keys (docs/protocol.md §1). Only a log that "
            "publishes such a key is affected: its checkpoints prove nothing",
            verifier_key=identity_key,
        ),
        NoteCase("witness cosignature after ours", latest + witness_line + "\n", True),
        NoteCase(
            "witness cosignature before ours", text + "\n" + witness_line + "\n" + block, True
        ),
        NoteCase("only a witness signature", text + "\n" + witness_line + "\n", False),
        NoteCase("same name, another key (key id differs)", text + "\n" + other_line + "\n", False),
        NoteCase(
            "garbage signature by our key first, then the good one",
            text + "\n" + garbage_line + "\n" + block,
            False,
        ),
        NoteCase(
            "good signature by our key, then a garbage one by the same key",
            latest + garbage_line + "\n",
            we_accept=False,
            go_accepts=True,
            why="note.Open verifies only the first signature per (name, key id) and drops "
            "repeats unchecked; we require every signature by the log key to verify",
        ),
        NoteCase(
            "signature in non-canonical base64 (same bytes)",
            with_signature_block(latest, sig_line.replace(sig_b64, non_canonical(sig_b64)) + "\n"),
            we_accept=False,
            go_accepts=True,
            why="Go's base64.StdEncoding ignores the unused low bits of the last character; "
            "we decode strictly (RFC 4648 §3.5), so a note has one spelling",
        ),
        NoteCase("CRLF line endings", latest.replace("\n", "\r\n"), False),
        NoteCase("no final newline", latest.rstrip("\n"), False),
        NoteCase("no blank line before the signatures", text + block, False),
        NoteCase("no signature lines", text + "\n", False),
        NoteCase(
            "signature line with a hyphen for the em dash",
            text + "\n-" + sig_line[1:] + "\n",
            False,
        ),
        NoteCase(
            "signature line with two spaces",
            text + "\n" + sig_line.replace(" ", "  ", 1) + "\n",
            False,
        ),
        NoteCase("101 signature lines", latest + (witness_line + "\n") * 100, False),
        NoteCase("100 signature lines", latest + (witness_line + "\n") * 99, True),
        NoteCase("tab in the text", text.replace(" ", "\t", 1) + "\n" + block, False),
        NoteCase("empty signature", text + "\n— " + name + " \n", False),
        NoteCase(
            "4-byte signature (key id only)",
            text + "\n— " + name + " " + b64(raw_sig[:4]) + "\n",
            False,
        ),
    ]
    for char, desc in [
        ("\u00a0", "no-break space"),
        ("\u2028", "line separator"),
        ("\u3000", "ideographic space"),
        ("\u0085", "next line"),
    ]:
        bad_line = f"— w{char}1 {b64(raw_sig)}"
        cases.append(NoteCase(f"witness name with a {desc}", latest + bad_line + "\n", False))
    for char, desc in [("\u200b", "zero-width space"), ("\u180e", "Mongolian vowel separator")]:
        odd_line = f"— w{char}1 {b64(raw_sig)}"
        cases.append(
            NoteCase(f"witness name with a {desc} (not a space)", latest + odd_line + "\n", True)
        )
    return cases


def our_open(note: str, verifier_key: str) -> str | None:
    """Our note verification; None when it refuses."""
    name, public_key = parse_verifier_key(verifier_key)
    try:
        return open_note(note, name, public_key)
    except VerificationError:
        return None


@dataclass
class TreeCase:
    """A checkpoint body read by tlog.ParseTree and by Checkpoint.from_text."""

    desc: str
    text: str
    we_accept: bool
    go_accepts: bool | None = None
    why: str = ""

    def __post_init__(self) -> None:
        if self.go_accepts is None:
            self.go_accepts = self.we_accept
        assert (self.go_accepts == self.we_accept) or self.why, self.desc


def tree_cases(log: Log) -> list[TreeCase]:
    cases = []
    for size, cp in log.checkpoints.items():
        go_text = Checkpoint(GO_TREE_ORIGIN, cp.size, cp.root_hash, cp.extensions).to_text()
        cases.append(TreeCase(f"checkpoint {size}, go.sum origin, heads line kept", go_text, True))
    cp = log.checkpoints[log.size]
    cases.append(
        TreeCase(
            "our checkpoint as signed (origin test.local/log)",
            cp.to_text(),
            we_accept=True,
            go_accepts=False,
            why="tlog.ParseTree only reads go.sum database tree notes: its first line must be "
            "'go.sum database tree'; C2SP tlog-checkpoint generalised that line to the origin",
        )
    )
    root = b64(cp.root_hash)

    def body(size: str, root_text: str = root, rest: str = "") -> str:
        return f"{GO_TREE_ORIGIN}\n{size}\n{root_text}\n{rest}"

    uint64_why = (
        "tlog.ParseTree reads the size as int64; C2SP tree sizes are uint64 and we accept "
        "up to 2**64-1 (no real log gets there)"
    )
    cases += [
        TreeCase("three lines, no extension", body("5"), True),
        TreeCase("size 0", body("0"), True),
        TreeCase("size 2**63-1", body(str(2**63 - 1)), True),
        TreeCase("size 2**63", body(str(2**63)), True, False, uint64_why),
        TreeCase("size 2**64-1", body(str(2**64 - 1)), True, False, uint64_why),
        TreeCase("size 2**64", body(str(2**64)), False),
        TreeCase("size with a leading zero", body("05"), False),
        TreeCase("size with a plus sign", body("+5"), False),
        TreeCase("negative size", body("-5"), False),
        TreeCase("size with a space", body(" 5"), False),
        TreeCase("empty size", body(""), False),
        TreeCase("hex size", body("0x5"), False),
        TreeCase("root without padding", body("5", root.rstrip("=")), False),
        TreeCase(
            "root in URL-safe base64",
            body("5", base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode()),
            False,
        ),
        TreeCase("root of 31 bytes", body("5", b64(cp.root_hash[:31])), False),
        TreeCase("root of 33 bytes", body("5", b64(cp.root_hash + b"\0")), False),
        TreeCase(
            "root in non-canonical base64 (same bytes)",
            body("5", non_canonical(root)),
            we_accept=False,
            go_accepts=True,
            why="Go's base64.StdEncoding ignores the unused low bits; we decode strictly so "
            "a checkpoint has one spelling",
        ),
        TreeCase("no newline after the root", body("5").rstrip("\n"), False),
        TreeCase("two lines", f"{GO_TREE_ORIGIN}\n5\n", False),
        TreeCase("extension lines", body("5", rest="ext one\next two\n"), True),
        TreeCase(
            "empty extension line",
            body("5", rest="\nafter a blank\n"),
            we_accept=False,
            go_accepts=True,
            why="tlog.ParseTree ignores everything after line 3; C2SP extension lines are "
            "non-empty, and a blank line would end the note text",
        ),
        TreeCase(
            "control character in an extension line",
            body("5", rest="tab\there\n"),
            we_accept=False,
            go_accepts=True,
            why="tlog.ParseTree ignores everything after line 3 (note.Open refuses control "
            "characters anyway, so no signed note can carry one)",
        ),
        TreeCase("CRLF", body("5").replace("\n", "\r\n"), False),
    ]
    return cases


def verifier_key_cases(log: Log) -> list[tuple[str, str, bool]]:
    """(desc, verifier key text, accepted by both note.NewVerifier and parse_verifier_key)."""
    vkey = log.verifier_key
    name, kid, key = vkey.split("+", 2)
    raw = unb64(key)
    other_algorithm = b64(b"\x02" + raw[1:])
    return [
        ("the store's log_verifier_key", vkey, True),
        ("key id in upper case", f"{name}+{kid.upper()}+{key}", True),
        ("trailing newline (as read from a file)", vkey + "\n", True),
        ("key id off by one", f"{name}+{int(kid, 16) ^ 1:08x}+{key}", False),
        ("key id of 7 digits", f"{name}+{kid[1:]}+{key}", False),
        ("algorithm 0x02", f"{name}+{kid}+{other_algorithm}", False),
        ("31-byte key", f"{name}+{kid}+{b64(raw[:-1])}", False),
        ("no key", f"{name}+{kid}+", False),
        ("two parts", f"{name}+{kid}", False),
        ("space in the name", f"a b+{kid}+{key}", False),
        ("empty name", f"+{kid}+{key}", False),
    ]


def our_verifier_key(text: str) -> bool:
    try:
        parse_verifier_key(text)
    except ValidationError:
        return False
    return True


def our_parse(text: str) -> Checkpoint | None:
    try:
        return Checkpoint.from_text(text)
    except ValidationError:
        return None


# --- one request, one reply --------------------------------------------------------------------


@dataclass
class Exchange:
    log: Log
    logs: list[LogRequest]
    notes: list[NoteCase]
    trees: list[TreeCase]
    vkeys: list[tuple[str, str, bool]]
    signer: Ed25519PrivateKey
    signer_name: str
    sign_texts: list[str]
    reply: dict[str, Any]


@pytest.fixture(scope="module")
def exchange(log: Log, sumdbcheck) -> Exchange:
    logs = [log_request(log), heads_request(log)]
    notes = note_cases(log)
    trees = tree_cases(log)
    vkeys = verifier_key_cases(log)
    signer, signer_name = Ed25519PrivateKey.generate(), "witness.example/go"
    latest = log.checkpoints[log.size]
    sign_texts = [
        latest.to_text(),  # our checkpoint, heads line included, signed by Go
        Checkpoint("example.org/log", 0, EMPTY_ROOT).to_text(),
        "a note that is not a checkpoint\n\nwith a blank line inside\n",
    ]
    go_key = go_signer_key(signer_name, signer)
    request = {
        "verifier_keys": [{"text": text} for _, text, _ in vkeys],
        "public_keys": [
            {"name": signer_name, "key": b64(signer.public_key().public_bytes_raw())},
            {"name": parse_verifier_key(log.verifier_key)[0], "key": b64(log.world.log_public_key)},
        ],
        "notes": [
            {"note": c.note, "verifier_keys": [c.verifier_key or log.verifier_key]} for c in notes
        ],
        "trees": [{"text": c.text} for c in trees],
        "sign": [{"signer_key": go_key, "text": text} for text in sign_texts]
        + [
            {
                "signer_key": go_key,
                "note": log.notes[log.size],
                "verifier_keys": [log.verifier_key],
            }
        ],
        "logs": [lr.request for lr in logs],
    }
    for cases in (notes, trees):
        descs = [c.desc for c in cases]
        assert len(set(descs)) == len(descs), "case descriptions must be unique"
    reply = sumdbcheck(request)
    return Exchange(log, logs, notes, trees, vkeys, signer, signer_name, sign_texts, reply)


def test_go_verifies_every_checkpoint_we_signed(exchange):
    """note.Open accepts each checkpoint with the store's log_verifier_key and returns
    our body; tlog.ParseTree reads the same size and root from its first three lines."""
    name, kid, _ = exchange.log.verifier_key.split("+", 2)
    replies = dict(zip([c.desc for c in exchange.notes], exchange.reply["notes"], strict=True))
    for size, checkpoint in exchange.log.checkpoints.items():
        result = replies[f"checkpoint at size {size}"]
        assert result["error"] == "", (size, result["error"])
        assert result["text"] == checkpoint.to_text()
        assert result["verified"] == [f"{name}+{kid}"]
    for case, result in zip(exchange.trees, exchange.reply["trees"], strict=True):
        if case.desc.startswith("checkpoint "):
            cp = Checkpoint.from_text(case.text)
            assert result["error"] == "", (case.desc, result["error"])
            assert (result["size"], unb64(result["hash"])) == (cp.size, cp.root_hash), case.desc


def test_go_and_we_agree_on_every_note(exchange):
    """Genuine, tampered and odd notes: the same verdict from note.Open and open_note,
    except where the case documents why we are stricter."""
    assert len(exchange.reply["notes"]) == len(exchange.notes)
    for case, result in zip(exchange.notes, exchange.reply["notes"], strict=True):
        go_accepts = result["error"] == ""
        ours = our_open(case.note, case.verifier_key or exchange.log.verifier_key)
        assert go_accepts == case.go_accepts, (case.desc, result["error"])
        assert (ours is not None) == case.we_accept, case.desc
        if go_accepts and ours is not None:
            assert result["text"] == ours, case.desc


def test_a_bit_flip_in_a_checkpoint_is_refused_by_go(exchange):
    flipped = [c for c in exchange.notes if "flipped" in c.desc]
    assert len(flipped) > 100
    replies = dict(zip([c.desc for c in exchange.notes], exchange.reply["notes"], strict=True))
    for case in flipped:
        assert replies[case.desc]["error"] != "", f"Go accepted a tampered note: {case.desc}"


def test_go_and_we_agree_on_checkpoint_bodies(exchange):
    for case, result in zip(exchange.trees, exchange.reply["trees"], strict=True):
        go_accepts = result["error"] == ""
        ours = our_parse(case.text)
        assert go_accepts == case.go_accepts, (case.desc, result["error"])
        assert (ours is not None) == case.we_accept, case.desc
        if go_accepts and ours is not None:
            assert (result.get("size", 0), unb64(result["hash"])) == (ours.size, ours.root_hash)


def test_go_and_we_agree_on_verifier_keys(exchange):
    for (desc, text, accepted), result in zip(
        exchange.vkeys, exchange.reply["verifier_keys"], strict=True
    ):
        assert (result["error"] == "") == accepted, (desc, result["error"])
        assert our_verifier_key(text) == accepted, desc
    # Go formats the same verifier key text from a name and public key as we do.
    log_name = parse_verifier_key(exchange.log.verifier_key)[0]
    expected = [
        format_verifier_key(exchange.signer_name, exchange.signer.public_key().public_bytes_raw()),
        format_verifier_key(log_name, exchange.log.world.log_public_key),
    ]
    assert [r["text"] for r in exchange.reply["public_keys"]] == expected
    assert expected[1] == exchange.log.verifier_key


def test_we_accept_what_go_signs(exchange):
    """Go signs with a key we generated: we accept it, byte for byte what we sign."""
    public_key = exchange.signer.public_key().public_bytes_raw()
    results = exchange.reply["sign"]
    for text, result in zip(exchange.sign_texts, results, strict=False):
        assert result["error"] == "", result["error"]
        signed = result["text"]
        assert signed == sign_note(text, exchange.signer_name, exchange.signer)
        assert open_note(signed, exchange.signer_name, public_key) == text
        tampered = signed.replace("\n", "\n ", 1)
        with pytest.raises(VerificationError):
            open_note(tampered, exchange.signer_name, public_key)
    cp = exchange.log.checkpoints[exchange.log.size]
    go_signed = results[0]["text"]
    assert open_checkpoint(go_signed, exchange.signer_name, public_key) == cp
    assert go_signed == sign_checkpoint(cp, exchange.signer_name, exchange.signer)
    # Signed by another key, it does not pass for the log's checkpoint.
    with pytest.raises(VerificationError):
        open_checkpoint(go_signed, *parse_verifier_key(exchange.log.verifier_key))


def test_a_go_cosignature_leaves_our_checkpoint_valid(exchange):
    """A witness (Go) cosigns our checkpoint: our log key still opens it, and so
    does the witness key."""
    result = exchange.reply["sign"][-1]
    assert result["error"] == "", result["error"]
    cosigned = result["text"]
    ours = exchange.log.notes[exchange.log.size]
    assert cosigned.startswith(ours) and cosigned.count("\n— ") == 2
    name, log_key = parse_verifier_key(exchange.log.verifier_key)
    cp = open_checkpoint(cosigned, name, log_key, origin=name)
    assert cp == exchange.log.checkpoints[exchange.log.size]
    witness_key = exchange.signer.public_key().public_bytes_raw()
    assert open_note(cosigned, exchange.signer_name, witness_key) == cp.to_text()


def test_our_stored_hashes_are_tlogs(exchange):
    """Our leaf hashes are tlog.RecordHash of the leaf data; every complete subtree
    hash we store is the one tlog.StoredHashes writes for those leaves; and
    tlog.TreeHash over our hashes is our root at every size."""
    for lr, result in zip(exchange.logs, exchange.reply["logs"], strict=True):
        assert len(lr.request["records"]) == len(lr.request["leaves"]) > 0
        assert result["record_hashes"] == lr.request["leaves"]
        assert result["stored_hash_mismatches"] == []
        assert result["stored_hash_count"] == len(lr.request["nodes"])
        for size, root, got in zip(
            lr.tree_sizes, lr.tree_roots, result["tree_hashes"], strict=True
        ):
            assert got["error"] == "", (size, got["error"])
            assert unb64(got["hash"]) == root, f"tree hash at size {size}"


def test_go_and_we_agree_on_every_proof(exchange):
    """Inclusion and consistency proofs: valid ones pass tlog.CheckRecord/CheckTree
    and equal what tlog.ProveRecord/ProveTree build from our hashes; every tampered
    one is refused by Go and by us."""
    counts = {"valid": 0, "tampered": 0}
    for lr, result in zip(exchange.logs, exchange.reply["logs"], strict=True):
        answers = {
            "inclusion": iter(result["inclusion"]),
            "consistency": iter(result["consistency"]),
        }
        for case in lr.cases:
            got = next(answers[case.kind])
            if case.valid:
                counts["valid"] += 1
                assert got["error"] == "", (case.desc, got["error"])
                assert got.get("prove_error", "") == "", (case.desc, got["prove_error"])
                assert [unb64(h) for h in got.get("proof") or []] == case.proof, case.desc
                case.ours()
            else:
                counts["tampered"] += 1
                assert got["error"] != "", f"Go accepted a tampered {case.kind} proof: {case.desc}"
                with pytest.raises(ProofError):
                    case.ours()
        for kind, rest in answers.items():
            assert next(rest, None) is None, f"Go answered more {kind} cases than we sent"
    assert counts["valid"] > 5000 and counts["tampered"] > 2000, counts


def test_the_empty_tree_is_where_tlog_and_rfc_9162_differ(exchange, sumdbcheck):
    """tlog.TreeHash(0) is 32 zero bytes; RFC 9162 (and we) say SHA-256 of nothing.
    A ledger never signs size 0 (the registrar's enrolment is leaf 0), so no
    checkpoint of ours meets the difference."""
    reply = sumdbcheck({"logs": [{"leaves": [], "nodes": [], "tree_sizes": [0]}]})
    assert unb64(reply["logs"][0]["tree_hashes"][0]["hash"]) == bytes(32)
    assert MemoryTree().root() == EMPTY_ROOT != bytes(32)
    assert min(exchange.log.notes) == 1


def test_go_verifies_what_the_cli_prints(two_lot_cli, sumdbcheck):
    """What a verifier is handed, `provenance log key --note-key` and `provenance log
    checkpoint`, is what Go verifies with; the checkpoint body parses with tlog."""
    verifier_key = two_lot_cli("log", "key", "--note-key").output.strip()
    note = two_lot_cli("log", "checkpoint").output
    altered = note.replace("\n", "\n\n", 1)  # a blank line after the origin
    body = note.rpartition("\n\n")[0] + "\n"
    reply = sumdbcheck(
        {
            "notes": [{"note": n, "verifier_keys": [verifier_key]} for n in (note, altered)],
            "trees": [{"text": GO_TREE_ORIGIN + "\n" + body.split("\n", 1)[1]}],
        }
    )
    good, bad = reply["notes"]
    assert good["error"] == "" and bad["error"] != ""
    cp = open_checkpoint(note, *parse_verifier_key(verifier_key))
    assert good["text"] == cp.to_text()
    tree = reply["trees"][0]
    assert tree["error"] == ""
    assert (tree["size"], unb64(tree["hash"])) == (cp.size, cp.root_hash)


# --- C2SP tlog-proof ------------------------------------------------------------------------------


def tlog_proof_cases(log: Log) -> list[tuple[str, str, bytes]]:
    """(desc, tlog-proof text, leaf hash): the bundle's, and each tampered."""
    cases = []
    for text, leaf in bundle_tlog_proofs(log):
        proof = parse_tlog_proof(text)
        desc = f"index {proof.index}"
        cases.append((desc, text, leaf))
        cases.append((desc + ": another leaf", text, flip(leaf, 9)))
        other = proof.index + 1 if proof.index + 1 < log.size else proof.index - 1
        wrong = TlogProof(other, proof.proof, proof.checkpoint)
        cases.append((desc + ": another index", wrong.to_text(), leaf))
        for i in range(len(proof.proof)):
            hashes = list(proof.proof)
            hashes[i] = flip(hashes[i], 77)
            bad = TlogProof(proof.index, tuple(hashes), proof.checkpoint)
            cases.append((desc + f": hash {i} flipped", bad.to_text(), leaf))
        body, _, sigs = proof.checkpoint.rpartition("\n\n")
        forged = body.replace("\n", "\n1", 1) + "\n\n" + sigs  # another tree size, same signature
        cases.append((desc + ": checkpoint altered", text.replace(proof.checkpoint, forged), leaf))
        with_extra = TlogProof(proof.index, proof.proof, proof.checkpoint, extra=b"lot LOT42")
        cases.append((desc + ": with an extra line", with_extra.to_text(), leaf))
    return cases


def our_tlog_verdict(text: str, leaf: bytes, verifier_key: str) -> str:
    try:
        proof = parse_tlog_proof(text)
        cp = open_checkpoint(proof.checkpoint, *parse_verifier_key(verifier_key))
        verify_tlog_proof(proof, leaf, cp)
    except (TlogProofError, VerificationError) as exc:
        return str(exc) or "refused"
    return ""


def test_go_and_we_agree_on_the_bundles_tlog_proofs(log: Log, sumdbcheck):
    """Go reads each tlog-proof of a bundle as c2sp.org/tlog-proof words it, opens its
    checkpoint with note.Open and checks its inclusion proof with tlog.CheckRecord;
    it accepts the genuine ones and refuses every tampered one, as we do."""
    cases = tlog_proof_cases(log)
    reply = sumdbcheck(
        {
            "tlog_proofs": [
                {"proof": text, "leaf": b64(leaf), "verifier_keys": [log.verifier_key]}
                for _, text, leaf in cases
            ]
        }
    )
    accepted = 0
    for (desc, text, leaf), result in zip(cases, reply["tlog_proofs"], strict=True):
        ours = our_tlog_verdict(text, leaf, log.verifier_key)
        go_accepts = result["error"] == ""
        genuine = ":" not in desc or desc.endswith("with an extra line")
        assert go_accepts == (ours == "") == genuine, (desc, result["error"], ours)
        if genuine:
            accepted += 1
            cp = open_checkpoint(
                parse_tlog_proof(text).checkpoint, *parse_verifier_key(log.verifier_key)
            )
            assert (result["size"], unb64(result["hash"])) == (cp.size, cp.root_hash)
    assert accepted >= 8, accepted


# --- C2SP cosignatures (type 0x04) against a Go implementation of the spec -----------------


def test_go_and_we_agree_on_cosignatures(log: Log, sumdbcheck):
    """tests/go/sumdbcheck/cosignature.go implements tlog-cosignature/v1 from the spec
    with crypto/ed25519 (x/mod's note knows only type 0x01, but note.Open and note.Sign
    take any Verifier/Signer). Both ways: Go's cosignature on our checkpoint (heads
    extension line included) is byte for byte ours and verifies here; ours verifies
    in Go with the right timestamp; a flipped bit, another timestamp, or another
    checkpoint is refused by Go, and our vkey is Go's."""
    from provenance.core.cosignature import (
        cosign,
        format_cosigner_key,
        parse_cosignature_line,
        verify_cosignature,
    )

    seed = bytes(range(1, 33))
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes_raw()
    name, when = "witness.example/regulator", 1_790_000_000
    note = log.notes[log.size]
    cp = log.checkpoints[log.size]
    other_note = log.notes[log.size - 300]
    ours = note + cosign(cp, name, key, when)
    line = ours.rstrip("\n").rpartition("\n")[2]
    raw = unb64(line.rpartition(" ")[2])
    forged = [note + f"— {name} {b64(flip(raw, bit))}\n" for bit in (0, 33, 40, 95, 100, 300, 600)]
    # The same cosignature moved onto an older checkpoint of the same log.
    moved = other_note + line + "\n"
    vkey = format_cosigner_key(name, public)
    request = {
        "cosigner_keys": [{"name": name, "key": b64(public)}],
        "cosign": [
            {
                "name": name,
                "seed": b64(seed),
                "timestamp": when,
                "note": note,
                "verifier_keys": [log.verifier_key],
            }
        ],
        "cosigned": [
            {"note": n, "log_keys": [log.verifier_key], "cosigner_keys": [vkey]}
            for n in [ours, *forged, moved]
        ],
    }
    reply = sumdbcheck(request)
    assert reply["cosigner_keys"] == [{"error": "", "text": vkey}]
    [go_cosigned] = reply["cosign"]
    assert go_cosigned["error"] == "", go_cosigned["error"]
    assert go_cosigned["text"] == ours  # Ed25519 is deterministic: the same bytes
    go_line = go_cosigned["text"].rstrip("\n").rpartition("\n")[2]
    assert verify_cosignature(cp, go_line, name, public) == when
    good, *refused = reply["cosigned"]
    assert good["error"] == "", good["error"]
    assert good["text"] == cp.to_text()
    assert good["timestamps"] == {name: when}
    assert f"{name}+{vkey.split('+')[1]}" in good["verified"]
    for case, result in zip([*forged, moved], refused, strict=True):
        if case is forged[0]:
            # A flipped key id makes it another key's line: ignored (spec), not counted.
            assert result["error"] == "" and not result.get("timestamps"), result
            assert len(result["unverified"]) == 1
            continue
        assert result["error"] != "", f"Go accepted a forged cosignature: {case[-120:]!r}"
        with pytest.raises(VerificationError):
            forged_line = case.rstrip("\n").rpartition("\n")[2]
            body = case.rpartition("\n\n")[0] + "\n"
            verify_cosignature(body, parse_cosignature_line(forged_line), name, public)
    assert len(refused) == 8
