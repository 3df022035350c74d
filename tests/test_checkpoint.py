"""provenance.core.checkpoint against C2SP tlog-checkpoint and signed-note.

Known answers come from the specs and from the golang.org/x/mod/sumdb/note
package documentation (a published Ed25519 key, note and signature), so a
checkpoint we sign is accepted by Go-ecosystem verifiers and witnesses.
"""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from provenance.core.checkpoint import (
    MAX_SIGNATURES,
    MAX_TREE_SIZE,
    Checkpoint,
    format_verifier_key,
    key_id,
    open_checkpoint,
    open_note,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
)
from provenance.core.errors import SignatureError, ValidationError, VerificationError
from provenance.core.merkle import EMPTY_ROOT

# golang.org/x/mod/sumdb/note, package documentation ("Example" section; BSD-3-Clause):
# signer key, verifier key, text and the signed note that note.Sign prints for them.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

# c2sp.org/tlog-checkpoint example body.
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

LOG = "provenance.example/log"
ROOT = hashlib.sha256(b"some root").digest()


def go_private_key() -> Ed25519PrivateKey:
    # PRIVATE+KEY+<name>+<hash>+base64(0x01 || 32-byte seed); the base64 may contain '+'.
    raw = base64.b64decode(GO_SIGNER_KEY.split("+", 4)[4])
    assert raw[0] == 0x01
    return Ed25519PrivateKey.from_private_bytes(raw[1:])


def raw_public(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes_raw()


@pytest.fixture(scope="module")
def log_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"log key seed").digest())


@pytest.fixture(scope="module")
def witness_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"witness key seed").digest())


def signature_line(body: str, name: str, private_key: Ed25519PrivateKey, kid=None) -> str:
    """A signature line built by hand from the spec (independent of sign_note)."""
    if kid is None:
        kid = hashlib.sha256(name.encode() + b"\n\x01" + raw_public(private_key)).digest()[:4]
    sig = private_key.sign(body.encode())
    return f"— {name} {base64.b64encode(kid + sig).decode()}\n"


# --- checkpoint body -------------------------------------------------------------------------


def test_spec_example_body_parses_and_round_trips():
    cp = Checkpoint.from_text(SPEC_BODY)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    assert cp.to_text() == SPEC_BODY


def test_to_text_exact_format():
    cp = Checkpoint(LOG, 0, EMPTY_ROOT, ("ext one", "ext two"))
    assert cp.to_text() == (
        "provenance.example/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        "ext one\next two\n"
    )
    assert Checkpoint.from_text(cp.to_text()) == cp


line_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\n", min_codepoint=0x20),
    min_size=1,
    max_size=40,
)


@given(
    line_text,
    st.integers(0, MAX_TREE_SIZE),
    st.binary(min_size=32, max_size=32),
    st.lists(line_text, max_size=3).map(tuple),
)
def test_round_trip(origin: str, size: int, root: bytes, extensions: tuple[str, ...]):
    cp = Checkpoint(origin, size, root, extensions)
    assert Checkpoint.from_text(cp.to_text()) == cp


B64_ROOT = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        pytest.param(f"{LOG}\n1\n{B64_ROOT}", "checkpoint", "end with a newline", id="no-final-nl"),
        pytest.param(f"{LOG}\n1\n", "checkpoint", "at least 3 lines", id="two-lines"),
        pytest.param("", "checkpoint", "end with a newline", id="empty"),
        pytest.param(f"\n1\n{B64_ROOT}\n", "origin", "must not be empty", id="empty-origin"),
        pytest.param(f"{LOG}\n01\n{B64_ROOT}\n", "size", "leading zeroes", id="size-01"),
        pytest.param(f"{LOG}\n00\n{B64_ROOT}\n", "size", "leading zeroes", id="size-00"),
        pytest.param(f"{LOG}\n+1\n{B64_ROOT}\n", "size", "ASCII decimal", id="size-plus"),
        pytest.param(f"{LOG}\n-1\n{B64_ROOT}\n", "size", "ASCII decimal", id="size-negative"),
        pytest.param(f"{LOG}\n 1\n{B64_ROOT}\n", "size", "ASCII decimal", id="size-space"),
        pytest.param(f"{LOG}\n1_000\n{B64_ROOT}\n", "size", "ASCII decimal", id="size-underscore"),
        pytest.param(f"{LOG}\n\u0661\n{B64_ROOT}\n", "size", "ASCII decimal", id="size-arabic"),
        pytest.param(f"{LOG}\n\n{B64_ROOT}\n", "size", "ASCII decimal", id="size-empty"),
        pytest.param(
            f"{LOG}\n{2**64}\n{B64_ROOT}\n", "size", "between 0 and 2**64-1", id="size-big"
        ),
        pytest.param(f"{LOG}\n{'9' * 5000}\n{B64_ROOT}\n", "size", "ASCII decimal", id="size-huge"),
        pytest.param(f"{LOG}\n1\n!!!!\n", "root_hash", "not standard padded base64", id="b64"),
        pytest.param(f"{LOG}\n1\n{B64_ROOT[:-1]}\n", "root_hash", "padded", id="b64-no-pad"),
        pytest.param(f"{LOG}\n1\n{B64_ROOT[:-2]}F=\n", "root_hash", "not canonical", id="b64-bits"),
        pytest.param(
            f"{LOG}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",
            "root_hash",
            "32 bytes, got 31",
            id="hash-31",
        ),
        pytest.param(
            f"{LOG}\n1\n{base64.b64encode(ROOT + b'x').decode()}\n",
            "root_hash",
            "32 bytes, got 33",
            id="hash-33",
        ),
        pytest.param(f"{LOG}\n1\n{B64_ROOT}\n\n", "extensions[0]", "not be empty", id="empty-ext"),
        pytest.param(f"{LOG}\n1\n{B64_ROOT}\na\n\nb\n", "extensions[1]", "empty", id="empty-ext2"),
        pytest.param(f"{LOG}\r\n1\r\n{B64_ROOT}\r\n", "checkpoint", "U+000D", id="crlf"),
        pytest.param(f"{LOG}\x00\n1\n{B64_ROOT}\n", "checkpoint", "U+0000", id="nul"),
        pytest.param(f"{LOG}\ud800\n1\n{B64_ROOT}\n", "checkpoint", "UTF-8", id="surrogate"),
    ],
)
def test_from_text_is_strict(body: str, field: str, message: str):
    with pytest.raises(ValidationError, match=re.escape(message)) as caught:
        Checkpoint.from_text(body)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"origin": ""}, "origin"),
        ({"origin": "a\nb"}, "origin"),
        ({"size": -1}, "size"),
        ({"size": 2**64}, "size"),
        ({"size": True}, "size"),
        ({"size": "1"}, "size"),
        ({"root_hash": ROOT[:31]}, "root_hash"),
        ({"root_hash": B64_ROOT}, "root_hash"),
        ({"extensions": ["x"]}, "extensions"),
        ({"extensions": ("",)}, "extensions[0]"),
        ({"extensions": ("a\nb",)}, "extensions[0]"),
    ],
)
def test_constructor_validates(kwargs: dict, field: str):
    args = {"origin": LOG, "size": 1, "root_hash": ROOT, **kwargs}
    with pytest.raises(ValidationError) as caught:
        Checkpoint(**args)
    assert caught.value.field == field


# --- keys ------------------------------------------------------------------------------------


def test_key_id_known_answers():
    public = raw_public(go_private_key())
    assert key_id("PeterNeumann", public).hex() == "c74f20a3"  # Go's published key
    for name, seed in [("a", b"1"), ("example.com/log42", b"2"), ("ünïcode", b"3")]:
        pk = raw_public(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))
        want = hashlib.sha256(name.encode("utf-8") + b"\x0a" + b"\x01" + pk).digest()[:4]
        assert key_id(name, pk) == want


def test_verifier_key_known_answer_and_round_trip(log_key):
    public = raw_public(go_private_key())
    assert format_verifier_key("PeterNeumann", public) == GO_VERIFIER_KEY
    assert parse_verifier_key(GO_VERIFIER_KEY) == ("PeterNeumann", public)
    assert parse_verifier_key(GO_VERIFIER_KEY + "\n") == ("PeterNeumann", public)
    text = format_verifier_key(LOG, raw_public(log_key))
    assert parse_verifier_key(text) == (LOG, raw_public(log_key))


def test_verifier_key_whose_base64_contains_plus():
    for seed in range(200):
        pk = raw_public(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"%d" % seed).digest()))
        text = format_verifier_key("k", pk)
        if "+" in text.split("+", 2)[2]:
            assert parse_verifier_key(text) == ("k", pk)
            return
    pytest.fail("no key with '+' in its base64 among 200 seeds")


def test_verifier_key_manglings_are_rejected():
    """Every proper substring and every single-character change must fail to parse."""
    text = GO_VERIFIER_KEY
    for i in range(len(text)):
        for j in range(i + 1, len(text) + 1):
            if (i, j) != (0, len(text)):
                with pytest.raises(ValidationError):
                    parse_verifier_key(text[i:j])
    for i in range(len(text)):
        mangled = text[:i] + chr(ord(text[i]) + 1) + text[i + 1 :]
        with pytest.raises(ValidationError):
            parse_verifier_key(mangled)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PeterNeumann+c74f20a3", "must look like"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "spaces"),
        ("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex digits"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumann+c74f20a3+BBpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "type 0x04"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10", "base64"),
    ],
)
def test_parse_verifier_key_errors(text: str, message: str):
    with pytest.raises(ValidationError, match=re.escape(message)):
        parse_verifier_key(text)


# --- signed notes ----------------------------------------------------------------------------


def test_go_known_answer_note():
    """Ed25519 is deterministic, so we must reproduce Go's note byte for byte."""
    assert sign_note(GO_TEXT, "PeterNeumann", go_private_key()) == GO_NOTE
    name, public = parse_verifier_key(GO_VERIFIER_KEY)
    assert open_note(GO_NOTE, name, public) == GO_TEXT
    with pytest.raises(SignatureError, match="does not verify"):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), name, public)


def test_sign_and_open(log_key):
    body = "line one\n\nline three after an empty line, é ✓\n"
    note = sign_note(body, LOG, log_key)
    assert note.startswith(body + "\n— " + LOG + " ")
    assert open_note(note, LOG, raw_public(log_key)) == body
    # The signature is over the UTF-8 bytes of the text, nothing else.
    sig = base64.b64decode(note.rsplit(" ", 1)[1])[4:]
    Ed25519PublicKey.from_public_bytes(raw_public(log_key)).verify(sig, body.encode("utf-8"))


def test_tampered_body_fails(log_key):
    note = sign_note(Checkpoint(LOG, 5, ROOT).to_text(), LOG, log_key)
    for old, new in [("\n5\n", "\n6\n"), (LOG, LOG + "x"), (B64_ROOT[:4], "AAAA")]:
        with pytest.raises(SignatureError, match="altered after signing"):
            open_note(note.replace(old, new, 1), LOG, raw_public(log_key))


def test_every_signature_byte_matters(log_key):
    body = Checkpoint(LOG, 5, ROOT).to_text()
    note = sign_note(body, LOG, log_key)
    blob = bytearray(base64.b64decode(note.rsplit(" ", 1)[1]))
    for i in range(4, len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 1 << (i % 8)
        tampered = f"{body}\n— {LOG} {base64.b64encode(bytes(bad)).decode()}\n"
        with pytest.raises(SignatureError):
            open_note(tampered, LOG, raw_public(log_key))


def test_wrong_key_or_name_fails_with_a_hint(log_key, witness_key):
    note = sign_note(Checkpoint(LOG, 5, ROOT).to_text(), LOG, log_key)
    wrong = raw_public(witness_key)
    with pytest.raises(SignatureError, match="right log key") as caught:
        open_note(note, LOG, wrong)
    assert key_id(LOG, wrong).hex() in str(caught.value)
    assert (
        f"it has signatures by {LOG} with key id {key_id(LOG, raw_public(log_key)).hex()}"
        in str(caught.value)
    )
    with pytest.raises(
        SignatureError, match=re.escape("no signature by other.example/log with key id")
    ):
        open_note(note, "other.example/log", raw_public(log_key))


def test_witness_cosignatures_and_unknown_keys_are_ignored(log_key, witness_key):
    body = Checkpoint(LOG, 5, ROOT).to_text()
    witness = "witness.example/w1"
    log_kid = key_id(LOG, raw_public(log_key))
    other_id = base64.b64encode(bytes.fromhex("ffffffff") + b"x" * 64).decode()
    other_name = base64.b64encode(log_kid + b"y" * 64).decode()
    longer = base64.b64encode(bytes.fromhex("01020304") + b"z" * 72).decode()
    note = (
        sign_note(body, LOG, log_key)
        + signature_line(body, witness, witness_key)
        # same name, other key id: an unknown key, so ignored even though it is garbage
        + f"— {LOG} {other_id}\n"
        # same key id, other name: also unknown
        + f"— someone.else {other_name}\n"
        # a timestamped cosignature (type 0x04) style line of another length
        + f"— {witness} {longer}\n"
    )
    assert open_note(note, LOG, raw_public(log_key)) == body
    assert open_note(note, witness, raw_public(witness_key)) == body
    # Order does not matter: the witness line may come first.
    reordered = body + "\n" + signature_line(body, witness, witness_key)
    reordered += signature_line(body, LOG, log_key)
    assert open_checkpoint(reordered, LOG, raw_public(log_key)) == Checkpoint(LOG, 5, ROOT)


def test_a_bad_signature_by_the_known_key_rejects_the_note(log_key):
    body = Checkpoint(LOG, 5, ROOT).to_text()
    good = sign_note(body, LOG, log_key)
    bad_line = signature_line("other text\n", LOG, log_key)
    with pytest.raises(SignatureError, match="does not verify"):
        open_note(good + bad_line, LOG, raw_public(log_key))
    kid = key_id(LOG, raw_public(log_key))
    short = f"— {LOG} {base64.b64encode(kid + b'x' * 63).decode()}\n"
    with pytest.raises(SignatureError, match="does not verify"):
        open_note(good + short, LOG, raw_public(log_key))


def test_signature_limits(log_key, witness_key):
    body = Checkpoint(LOG, 5, ROOT).to_text()
    mine = signature_line(body, LOG, log_key)
    other = signature_line(body, "w", witness_key)
    assert open_note(body + "\n" + other * 15 + mine, LOG, raw_public(log_key)) == body  # 16
    at_limit = body + "\n" + other * (MAX_SIGNATURES - 1) + mine
    assert open_note(at_limit, LOG, raw_public(log_key)) == body
    with pytest.raises(SignatureError, match="101 signature lines, more than the limit of 100"):
        open_note(body + "\n" + other * MAX_SIGNATURES + mine, LOG, raw_public(log_key))


def _malformed_notes(body: str, line: str) -> list:
    sig = line.split(" ", 2)[2]
    return [
        pytest.param(body + line, "no blank line", id="no-blank-line"),
        pytest.param(body.rstrip("\n") + line, "no blank line", id="no-newline-no-blank"),
        pytest.param(body + "\n", "no signature lines", id="no-signatures"),
        pytest.param(body + "\n" + line.rstrip("\n"), "end with a newline", id="no-final-nl"),
        pytest.param(body + "\n" + line.replace("—", "-", 1), "em dash", id="hyphen"),
        pytest.param(body + "\n" + line.replace("— ", "—", 1), "em dash", id="no-space"),
        pytest.param(body + "\n" + line + "trailing\n", "em dash", id="trailing-text"),
        pytest.param(body + "\n" + f"— {LOG} \n", "no base64 signature", id="empty-signature"),
        pytest.param(body + "\n" + f"— {LOG}\n", "no base64 signature", id="no-signature-field"),
        pytest.param(body + "\n" + f"—  {sig}", "key name", id="empty-name"),
        pytest.param(body + "\n" + f"— a+b {sig}", "key name", id="plus-in-name"),
        pytest.param(body + "\n" + f"— {LOG} {sig[:-2]}\n", "base64", id="truncated-b64"),
        pytest.param(body + "\n" + f"— {LOG} AAAAAA==\n", "4-byte key id", id="too-short"),
        pytest.param(body + "\n" + line.replace("\n", "\r\n"), "U+000D", id="crlf"),
        pytest.param(body.replace("\n", "\t", 1) + "\n" + line, "U+0009", id="tab"),
        pytest.param(body + "\n" + line + "\ud800", "UTF-8", id="surrogate"),
    ]


_BODY = Checkpoint(LOG, 5, ROOT).to_text()
_LINE = signature_line(
    _BODY, LOG, Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"log key seed").digest())
)


@pytest.mark.parametrize(("note", "message"), _malformed_notes(_BODY, _LINE))
def test_malformed_notes_are_rejected(note: str, message: str, log_key):
    """A malformed note fails verification (SignatureError), with the parse error as cause."""
    assert open_note(_BODY + "\n" + _LINE, LOG, raw_public(log_key)) == _BODY  # the control
    with pytest.raises(SignatureError, match="^malformed note: .*" + re.escape(message)) as caught:
        open_note(note, LOG, raw_public(log_key))
    assert isinstance(caught.value.__cause__, ValidationError)


def test_sign_note_rejects_bad_input(log_key):
    with pytest.raises(ValidationError, match="must end with a newline"):
        sign_note("no newline", LOG, log_key)
    with pytest.raises(ValidationError, match="must end with a newline"):
        sign_note("", LOG, log_key)
    with pytest.raises(ValidationError, match=re.escape("U+000D")):
        sign_note("crlf\r\n", LOG, log_key)
    with pytest.raises(ValidationError, match=re.escape("spaces or '+'")):
        sign_note("ok\n", "has space", log_key)
    with pytest.raises(ValidationError, match=re.escape("spaces or '+'")):
        sign_note("ok\n", "a+b", log_key)
    with pytest.raises(ValidationError, match="public_key: must be 32 bytes, got 31"):
        open_note(GO_NOTE, "PeterNeumann", b"x" * 31)


# --- signed checkpoints ----------------------------------------------------------------------


def test_sign_and_open_checkpoint(log_key):
    cp = Checkpoint(LOG, 123456, ROOT, ("extension",))
    note = sign_checkpoint(cp, LOG, log_key)
    assert note.startswith(cp.to_text() + "\n— ")
    assert open_checkpoint(note, LOG, raw_public(log_key)) == cp
    assert open_checkpoint(note, LOG, raw_public(log_key), origin=LOG) == cp
    with pytest.raises(VerificationError, match=re.escape("expected 'other.example/log'")):
        open_checkpoint(note, LOG, raw_public(log_key), origin="other.example/log")


def test_open_checkpoint_rejects_a_signed_non_checkpoint(log_key):
    note = sign_note("hello\n", LOG, log_key)
    with pytest.raises(VerificationError, match=r"not a valid checkpoint: .*at least 3 lines"):
        open_checkpoint(note, LOG, raw_public(log_key))


def test_open_failures_are_all_verification_errors(log_key, witness_key):
    """Callers write `except VerificationError` around open_checkpoint: whatever is wrong
    with the note must land there, never as another exception type."""
    good = sign_checkpoint(Checkpoint(LOG, 5, ROOT), LOG, log_key)
    bad_notes = [
        "",
        "garbage",
        good.replace("\n\n", "\n"),
        good + "x",
        good.replace("—", "-"),
        sign_note("not\na checkpoint\n", LOG, log_key),
        sign_checkpoint(Checkpoint(LOG, 5, ROOT), LOG, witness_key),
        good.replace("\n5\n", "\n6\n"),
    ]
    for note in bad_notes:
        with pytest.raises(VerificationError):
            open_checkpoint(note, LOG, raw_public(log_key))
    # The key name may come from the note itself (its origin line), so a name that no
    # signature line could carry is a verification failure too.
    for name in ("", "has space", "a+b"):
        with pytest.raises(SignatureError, match="no signature can be by"):
            open_checkpoint(good, name, raw_public(log_key))
