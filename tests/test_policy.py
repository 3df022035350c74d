"""C2SP tlog-policy: strict parsing (every rule, named by line) and judging
checkpoint notes against a quorum (who cosigned, who is missing, what was wrong)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.checkpoint import Checkpoint, format_verifier_key, sign_checkpoint
from provenance.core.cosignature import cosign, format_cosigner_key
from provenance.core.policy import (
    PolicyError,
    PolicySyntaxError,
    evaluate,
    parse_policy,
    require_quorum,
)

ORIGIN = "provenance.example/log"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
WITNESS_KEYS = {n: Ed25519PrivateKey.generate() for n in ("X1", "X2", "X3", "Y1", "Y2", "Y3")}


def log_vkey(name: str = ORIGIN, key: Ed25519PrivateKey = LOG_KEY) -> str:
    return format_verifier_key(name, key.public_key().public_bytes_raw())


def witness_vkey(name: str) -> str:
    return format_cosigner_key(
        f"w.example/{name}", WITNESS_KEYS[name].public_key().public_bytes_raw()
    )


SPEC_EXAMPLE = f"""log {log_vkey()}

witness X1 {witness_vkey("X1")}
witness X2 {witness_vkey("X2")}
witness X3 {witness_vkey("X3")}
group X-witnesses 2 X1 X2 X3

witness Y1 {witness_vkey("Y1")}
witness Y2 {witness_vkey("Y2")}
witness Y3 {witness_vkey("Y3")}
group Y-witnesses any Y1 Y2 Y3

group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
"""
CP = Checkpoint(ORIGIN, 10, bytes(range(32)), ("heads 3 AAAA",))
NOTE = sign_checkpoint(CP, ORIGIN, LOG_KEY)


def cosigned(*names: str, note: str = NOTE, cp: Checkpoint = CP, at: int = 1_700_000_000) -> str:
    return note + "".join(cosign(cp, f"w.example/{n}", WITNESS_KEYS[n], at) for n in names)


def test_the_specs_example_policy():
    policy = parse_policy(SPEC_EXAMPLE)
    assert [log.name for log in policy.logs] == [ORIGIN]
    assert list(policy.witnesses) == ["X1", "X2", "X3", "Y1", "Y2", "Y3"]
    assert policy.groups["X-witnesses"].threshold == 2
    assert policy.groups["Y-witnesses"].threshold == 1
    assert policy.groups["X-and-Y"].threshold == 2
    assert policy.quorum == "X-and-Y"
    assert policy.witnessed("X-and-Y", ["X1", "X3", "Y2"])
    assert not policy.witnessed("X-and-Y", ["X1", "Y2", "Y3"])
    assert not policy.witnessed("X-and-Y", ["X1", "X2", "X3"])


def test_a_quorum_of_cosignatures_verifies():
    policy = parse_policy(SPEC_EXAMPLE)
    verdict = require_quorum(cosigned("X1", "X3", "Y2"), policy)
    assert verdict.ok and verdict.log == ORIGIN
    assert set(verdict.cosigned) == {"X1", "X3", "Y2"}
    assert verdict.missing == ("X2", "Y1", "Y3")
    assert verdict.checkpoint == CP


def test_too_few_cosignatures_fail_naming_the_missing():
    policy = parse_policy(SPEC_EXAMPLE)
    with pytest.raises(PolicyError) as caught:
        require_quorum(cosigned("X1", "Y2"), policy)
    message = str(caught.value)
    assert "quorum" in message and "X2" in message and "X3" in message
    assert caught.value.verdict.cosigned.keys() == {"X1", "Y2"}


def test_a_forged_cosignature_never_counts_and_is_named():
    """A line with a listed witness's name and key id whose signature is garbage is
    wrong: it fails the note, even when the quorum is otherwise met."""
    policy = parse_policy(SPEC_EXAMPLE)
    good = cosigned("X1", "X3", "Y2")
    x2 = cosign(CP, "w.example/X2", WITNESS_KEYS["X2"], 5)
    raw = bytearray(base64.b64decode(x2.split(" ")[2]))
    raw[-1] ^= 1
    forged = f"— w.example/X2 {base64.b64encode(bytes(raw)).decode()}\n"
    verdict = evaluate(good + forged, policy)
    assert not verdict.ok and verdict.quorum_met
    [wrong] = verdict.wrong
    assert wrong.number == 5 and "X2" in str(wrong) and "does not verify" in str(wrong)
    with pytest.raises(PolicyError, match="X2"):
        require_quorum(good + forged, policy)
    # Without the real ones, the forged line does not make a quorum either.
    with pytest.raises(PolicyError, match="quorum"):
        require_quorum(cosigned("X1", "Y2") + forged, policy)


def test_a_cosignature_on_another_checkpoint_is_wrong():
    policy = parse_policy(SPEC_EXAMPLE)
    other = Checkpoint(ORIGIN, 11, bytes(32))
    stolen = cosign(other, "w.example/X2", WITNESS_KEYS["X2"], 5)
    verdict = evaluate(cosigned("X1", "Y1") + stolen, policy)
    assert [w.key_name for w in verdict.wrong] == ["w.example/X2"]
    assert "X2" not in verdict.cosigned and not verdict.ok


def test_unknown_and_malformed_lines_are_reported_never_counted():
    policy = parse_policy(SPEC_EXAMPLE)
    stranger = Ed25519PrivateKey.generate()
    unknown = cosign(CP, "w.example/stranger", stranger, 5)
    impostor = cosign(CP, "w.example/Y1", stranger, 5)  # Y1's name, another key
    verdict = evaluate(cosigned("X1", "X2") + unknown + impostor, policy)
    assert [u.key_name for u in verdict.unknown] == ["w.example/stranger", "w.example/Y1"]
    assert "name of witness Y1" in verdict.unknown[1].reason
    assert not verdict.quorum_met and "Y1" in verdict.missing
    for bad in ("— w.example/Y1 not-base64\n", "- dash AAAAAAAA\n", "— w.example/Y1 AAAA\n"):
        verdict = evaluate(cosigned("X1", "X2", "Y1") + bad, policy)
        assert verdict.quorum_met and not verdict.ok
        assert verdict.wrong and "malformed" in verdict.wrong[0].reason


def test_the_log_must_be_listed_and_its_signature_good():
    policy = parse_policy(SPEC_EXAMPLE)
    other_log = Ed25519PrivateKey.generate()
    note = sign_checkpoint(CP, ORIGIN, other_log)
    verdict = evaluate(cosigned("X1", "X2", "Y1", note=note), policy)
    assert verdict.log is None and "no signature by log" in verdict.log_problem
    assert verdict.unknown  # the other key's line is reported
    # A tampered body: the log's signature fails, and so do the cosignatures.
    tampered = cosigned("X1", "X2", "Y1").replace("\n10\n", "\n11\n", 1)
    verdict = evaluate(tampered, policy)
    assert verdict.log is None and not verdict.cosigned
    with pytest.raises(PolicyError, match="does not verify"):
        require_quorum(tampered, policy)
    # Another origin: not a log the policy lists.
    elsewhere = Checkpoint("elsewhere.example/log", 10, bytes(32))
    note = sign_checkpoint(elsewhere, "elsewhere.example/log", LOG_KEY)
    with pytest.raises(PolicyError, match="lists no log"):
        require_quorum(note, policy)
    # Given from elsewhere (a bundle's --log-key), it is trusted.
    assert evaluate(
        note,
        parse_policy("quorum none\n"),
        extra_logs=[("elsewhere.example/log", LOG_KEY.public_key().public_bytes_raw())],
    ).ok


def test_quorum_none_needs_only_the_log():
    policy = parse_policy(f"log {log_vkey()}\nquorum none\n")
    assert require_quorum(NOTE, policy).cosigned == {}


def test_future_cosignatures_are_wrong_when_the_time_is_given():
    policy = parse_policy(SPEC_EXAMPLE)
    note = cosigned("X1", "X2", "Y1", at=2_000_000_000)
    assert evaluate(note, policy).ok
    verdict = evaluate(note, policy, now=1_900_000_000)
    assert not verdict.ok and len(verdict.wrong) == 3


@pytest.mark.parametrize(
    "note",
    ["", "no blank line\n", CP.to_text() + "\n", "x\n\n— a AAAAAAAA\n", NOTE.replace("\n", "\r\n")],
)
def test_notes_that_are_not_signed_checkpoints_raise(note):
    with pytest.raises(PolicyError):
        evaluate(note, parse_policy("quorum none\n"))


W1 = witness_vkey("X1")
W2 = witness_vkey("X2")
X1_AS_OTHER = format_cosigner_key("other", WITNESS_KEYS["X1"].public_key().public_bytes_raw())

BAD_POLICIES = {
    "no quorum": (f"witness a {W1}\n", 0, "no quorum"),
    "two quorums": (f"witness a {W1}\nquorum a\nquorum a\n", 3, "second quorum"),
    "quorum before its witness": (f"quorum a\nwitness a {W1}\n", 1, "earlier line"),
    "group before its member": (f"group g any a\nwitness a {W1}\nquorum g\n", 1, "earlier"),
    "unknown keyword": ("logs x\nquorum none\n", 1, "unknown keyword"),
    "log without key": ("log\nquorum none\n", 1, "log <vkey>"),
    "log with three args": (f"log {log_vkey()} url extra\nquorum none\n", 1, "log <vkey>"),
    "log with a witness key": (f"log {W1}\nquorum none\n", 1, "0x01"),
    "witness with a log key": (f"witness a {log_vkey()}\nquorum a\n", 1, "0x01"),
    "witness key id wrong": (
        f"witness a {W1.split('+')[0]}+00000000+{W1.split('+', 2)[2]}\nquorum a\n",
        1,
        "key id",
    ),
    "duplicate log": (
        f"log {log_vkey()}\nlog {log_vkey('another.example/log')}\nquorum none\n",
        2,
        "duplicate",
    ),
    "duplicate witness key": (
        f"witness a {W1}\nwitness b {X1_AS_OTHER}\nquorum a\n",
        2,
        "duplicate witness",
    ),
    "duplicate name": (f"witness a {W1}\nwitness a {W2}\nquorum a\n", 2, "already defined"),
    "group named like a witness": (f"witness a {W1}\ngroup a any a\nquorum a\n", 2, "already"),
    "witness named none": (f"witness none {W1}\nquorum none\n", 1, "predefined"),
    "none as a member": (f"witness a {W1}\ngroup g any a none\nquorum g\n", 2, "none"),
    "member twice in a group": (f"witness a {W1}\ngroup g any a a\nquorum g\n", 2, "once"),
    "member of two groups": (
        f"witness a {W1}\ngroup g any a\ngroup h any a\nquorum g\n",
        3,
        "once",
    ),
    "group without members": (f"witness a {W1}\ngroup g any\nquorum none\n", 2, "n >= 1"),
    "threshold zero": (f"witness a {W1}\ngroup g 0 a\nquorum g\n", 2, "threshold"),
    "threshold above n": (f"witness a {W1}\ngroup g 2 a\nquorum g\n", 2, "1 <= k <= n"),
    "threshold not decimal": (f"witness a {W1}\ngroup g two a\nquorum g\n", 2, "threshold"),
    "threshold with sign": (f"witness a {W1}\ngroup g +1 a\nquorum g\n", 2, "threshold"),
    "carriage return": ("quorum none\r\n", 1, "0x0d"),
    "NUL byte": ("# a\x00\nquorum none\n", 1, "0x00"),
    "DEL byte": ("quorum none\x7f\n", 1, "0x7f"),
    "vertical tab as a separator": (f"witness\x0ba {W1}\nquorum a\n", 1, "0x0b"),
    "quorum with two names": (f"witness a {W1}\nquorum a a\n", 2, "quorum <name>"),
}


@pytest.mark.parametrize("desc", list(BAD_POLICIES))
def test_malformed_policies_name_line_and_rule(desc):
    text, line, rule = BAD_POLICIES[desc]
    with pytest.raises(PolicySyntaxError) as caught:
        parse_policy(text)
    assert caught.value.line == line, str(caught.value)
    assert rule in str(caught.value)
    if line:
        assert str(caught.value).startswith(f"policy line {line}: ")


def test_what_the_format_allows():
    text = (
        "# our policy\n"
        "   \t\n"
        f"  log\t{log_vkey()}   https://log.example/  \n"
        f"witness  caf\xc3\xa9 {W1} https://w.example/\n"
        f"witness K {W2}\n"
        "group both all caf\xc3\xa9 K\n"
        "quorum both"  # no final newline
    ).encode("latin-1")
    policy = parse_policy(text)
    assert policy.logs[0].url == "https://log.example/"
    assert policy.quorum == "both"
    assert len(policy.witnesses) == 2
    # Names are opaque octets: a non-UTF-8 name is fine and distinct.
    policy = parse_policy(f"witness \xff {W1}\nquorum \xff\n".encode("latin-1"))
    assert len(policy.witnesses) == 1


def test_the_group_threshold_any_all_and_k():
    text = (
        f"witness a {W1}\nwitness b {W2}\nwitness c {witness_vkey('X3')}\n"
        "group g 2 a b c\nquorum g\n"
    )
    policy = parse_policy(text)
    assert policy.witnessed("g", ["a", "c"]) and not policy.witnessed("g", ["b"])
    assert policy.describe_quorum() == "2 of (a, b, c)"
