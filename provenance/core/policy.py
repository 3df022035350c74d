"""C2SP tlog-policy: which logs and witnesses a verifier trusts, and what quorum of
cosignatures it needs before it believes a checkpoint.

Pure: bytes or text in, values out or an exception. The format (c2sp.org/tlog-policy)::

    # comments and blank lines are ignored
    log <vkey> [<url>]                      a log (0x01 note key, name = origin)
    witness <name> <vkey> [<url>]           a witness (0x04 cosigner key)
    group <name> all|any|<k> <name>...      k of these witnesses/groups
    quorum <name>|none                      exactly one, naming something defined above

Items are separated by ASCII spaces and tabs only; a group or the quorum may only
name witnesses and groups defined on earlier lines; ``none`` is predefined and is
never a group member; each name is a group member at most once in the whole file;
two logs, or two witnesses, with the same public key are refused. Octets allowed:
tab, newline, 0x20-0x7E, 0x80-0xFF (opaque: names compare as octets).

:func:`parse_policy` refuses anything else with :class:`PolicySyntaxError`, naming
the line and the rule. :func:`evaluate` judges a checkpoint note: signed by a
listed log (whose key name is the origin), and cosigned per the quorum. Its
:class:`Verdict` names who cosigned, who is missing, and every signature line
that was wrong (malformed, or a known key's signature that does not verify) or
unknown (ignored, as signed-note requires, but reported). :func:`require_quorum`
raises :class:`PolicyError` unless the verdict is ``ok``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from provenance.core.checkpoint import (
    MAX_SIGNATURES,
    Checkpoint,
    key_id,
    parse_verifier_key,
)
from provenance.core.cosignature import (
    CosignatureError,
    cosigner_key_id,
    parse_cosignature_line,
    parse_cosigner_key,
    verify_cosignature,
)
from provenance.core.ed25519 import InvalidSignature, Verifier
from provenance.core.errors import ValidationError, VerificationError

__all__ = [
    "MAX_POLICY_SIZE",
    "Group",
    "Policy",
    "PolicyError",
    "PolicyLog",
    "PolicySyntaxError",
    "PolicyWitness",
    "SignatureLine",
    "Verdict",
    "evaluate",
    "parse_policy",
    "require_quorum",
]

MAX_POLICY_SIZE = 1024 * 1024
"""A policy file bigger than this is refused (the spec asks for 32 logs, witnesses, groups)."""
MAX_ENTRIES = 1000
"""At most this many logs, witnesses and groups each."""
NONE = "none"

# Key ids are a SHA-256 each; a verifier judging many notes computes each once.
_log_key_id = functools.lru_cache(maxsize=4096)(key_id)
_cosigner_key_id = functools.lru_cache(maxsize=4096)(cosigner_key_id)

_SEPARATORS = re.compile(rb"[ \t]+")
_BAD_OCTET = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
_THRESHOLD = re.compile(rb"[1-9][0-9]{0,5}")
_SIG_PREFIX = "— "


class PolicySyntaxError(ValidationError):
    """A policy file breaks a rule of the format; ``line`` is its 1-based number (0:
    the file as a whole)."""

    def __init__(self, line: int, rule: str):
        self.line = line
        super().__init__(f"policy line {line}" if line else "policy", rule)


class PolicyError(VerificationError):
    """A checkpoint does not satisfy the policy; ``verdict`` says why, name by name."""

    def __init__(self, message: str, verdict: Verdict | None = None):
        self.verdict = verdict
        super().__init__(message)


# --- the policy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyLog:
    """A trusted log: its note key (name = origin) and optional URL; ``line`` in the file."""

    name: str
    public_key: bytes
    url: str | None
    line: int


@dataclass(frozen=True)
class PolicyWitness:
    """A trusted witness: its policy-local ``name`` and its cosigner key."""

    name: str
    key_name: str
    public_key: bytes
    url: str | None
    line: int

    @property
    def key_id(self) -> bytes:
        return _cosigner_key_id(self.key_name, self.public_key)


@dataclass(frozen=True)
class Group:
    """Witnessed when at least ``threshold`` of ``members`` (witnesses or groups) are."""

    name: str
    threshold: int
    members: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class Policy:
    logs: tuple[PolicyLog, ...]
    witnesses: dict[str, PolicyWitness]
    groups: dict[str, Group]
    quorum: str

    def witnessed(self, name: str, cosigned: Iterable[str]) -> bool:
        """Whether witness or group ``name`` (or ``none``) is satisfied by ``cosigned``."""
        have = set(cosigned)

        def satisfied(item: str) -> bool:
            if item == NONE:
                return True
            if item in self.witnesses:
                return item in have
            group = self.groups[item]
            return sum(satisfied(m) for m in group.members) >= group.threshold

        return satisfied(name)

    def describe_quorum(self) -> str:
        """The quorum in words, e.g. ``2 of (regulator, consumers, industry)``."""

        def words(item: str) -> str:
            if item == NONE or item in self.witnesses:
                return item
            group = self.groups[item]
            inner = ", ".join(words(m) for m in group.members)
            if group.threshold == len(group.members) and len(group.members) > 1:
                return f"all of ({inner})"
            return f"{group.threshold} of ({inner})"

        return words(self.quorum)


def _decode(line: int, what: str, token: bytes) -> str:
    """Tokens as text. Names are opaque octets (surrogateescape keeps them exact);
    keys and URLs are what they are."""
    return token.decode("utf-8", "surrogateescape") if what == "name" else _utf8(line, what, token)


def _utf8(line: int, what: str, token: bytes) -> str:
    try:
        return token.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicySyntaxError(line, f"the {what} is not UTF-8") from None


def parse_policy(data: bytes | str) -> Policy:
    """Parse a C2SP tlog-policy file strictly; raises :class:`PolicySyntaxError`."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if not isinstance(data, bytes):
        raise PolicySyntaxError(0, "must be bytes or text")
    if len(data) > MAX_POLICY_SIZE:
        raise PolicySyntaxError(0, f"is larger than {MAX_POLICY_SIZE} bytes")
    logs: list[PolicyLog] = []
    witnesses: dict[str, PolicyWitness] = {}
    groups: dict[str, Group] = {}
    members_seen: dict[str, int] = {}
    log_keys: dict[bytes, int] = {}
    witness_keys: dict[bytes, int] = {}
    quorum: str | None = None
    quorum_line = 0
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline ends the last line
    for number, raw in enumerate(lines, start=1):
        bad = _BAD_OCTET.search(raw)
        if bad:
            raise PolicySyntaxError(
                number,
                f"control character 0x{bad.group()[0]:02x} at column {bad.start() + 1}: only "
                "tab and newline are allowed (a Windows line ending? save with \\n only)",
            )
        stripped = raw.strip(b" \t")
        if not stripped or stripped.startswith(b"#"):
            continue
        keyword, *args = _SEPARATORS.split(stripped)
        if keyword == b"log":
            if len(args) not in (1, 2):
                raise PolicySyntaxError(number, "a log line is `log <vkey> [<url>]`")
            vkey = _utf8(number, "log vkey", args[0])
            try:
                name, public_key = parse_verifier_key(vkey)
            except ValidationError as exc:
                raise PolicySyntaxError(
                    number, f"log vkey: {exc.rule} (a log key is type 0x01, Ed25519)"
                ) from None
            if public_key in log_keys:
                raise PolicySyntaxError(
                    number, f"duplicate log: same public key as line {log_keys[public_key]}"
                )
            log_keys[public_key] = number
            url = _utf8(number, "URL", args[1]) if len(args) == 2 else None
            logs.append(PolicyLog(name, public_key, url, number))
        elif keyword == b"witness":
            if len(args) not in (2, 3):
                raise PolicySyntaxError(number, "a witness line is `witness <name> <vkey> [<url>]`")
            name = _decode(number, "name", args[0])
            _check_new_name(number, name, witnesses, groups)
            vkey = _utf8(number, "witness vkey", args[1])
            try:
                key_name, public_key = parse_cosigner_key(vkey)
            except ValidationError as exc:
                raise PolicySyntaxError(number, f"witness vkey: {exc.rule}") from None
            if public_key in witness_keys:
                raise PolicySyntaxError(
                    number,
                    f"duplicate witness: same public key as line {witness_keys[public_key]}",
                )
            witness_keys[public_key] = number
            url = _utf8(number, "URL", args[2]) if len(args) == 3 else None
            witnesses[name] = PolicyWitness(name, key_name, public_key, url, number)
        elif keyword == b"group":
            if len(args) < 3:
                raise PolicySyntaxError(
                    number, "a group line is `group <name> all|any|<k> <member>...` (n >= 1)"
                )
            name = _decode(number, "name", args[0])
            _check_new_name(number, name, witnesses, groups)
            members = [_decode(number, "name", m) for m in args[2:]]
            for member in members:
                if member == NONE:
                    raise PolicySyntaxError(number, "`none` cannot be a group member")
                if member not in witnesses and member not in groups:
                    raise PolicySyntaxError(
                        number,
                        f"group member {member!r} is not a witness or group defined on an "
                        "earlier line",
                    )
                if member in members_seen:
                    where = members_seen[member]
                    raise PolicySyntaxError(
                        number,
                        f"{member!r} is already a group member (line {where}); each name may "
                        "be a member once",
                    )
                members_seen[member] = number
            threshold_text = args[1]
            if threshold_text == b"all":
                threshold = len(members)
            elif threshold_text == b"any":
                threshold = 1
            elif _THRESHOLD.fullmatch(threshold_text):
                threshold = int(threshold_text)
                if threshold > len(members):
                    raise PolicySyntaxError(
                        number,
                        f"threshold {threshold} is more than the {len(members)} member(s); "
                        "need 1 <= k <= n",
                    )
            else:
                raise PolicySyntaxError(
                    number,
                    f"threshold {_decode(number, 'name', threshold_text)!r} must be all, any or "
                    "a decimal k with 1 <= k <= n",
                )
            groups[name] = Group(name, threshold, tuple(members), number)
        elif keyword == b"quorum":
            if len(args) != 1:
                raise PolicySyntaxError(number, "a quorum line is `quorum <name>`")
            if quorum is not None:
                raise PolicySyntaxError(
                    number, f"a second quorum line (the first is line {quorum_line}); need one"
                )
            name = _decode(number, "name", args[0])
            if name != NONE and name not in witnesses and name not in groups:
                raise PolicySyntaxError(
                    number,
                    f"quorum {name!r} is not `none` or a witness or group defined on an earlier "
                    "line",
                )
            quorum, quorum_line = name, number
        else:
            word = _decode(number, "name", keyword)
            raise PolicySyntaxError(
                number,
                f"unknown keyword {word[:40]!r}: lines are log, witness, group, quorum or a "
                "# comment",
            )
        if max(len(logs), len(witnesses), len(groups)) > MAX_ENTRIES:
            raise PolicySyntaxError(number, f"more than {MAX_ENTRIES} logs, witnesses or groups")
    if quorum is None:
        raise PolicySyntaxError(0, "has no quorum line (`quorum none` to need no cosignatures)")
    return Policy(tuple(logs), witnesses, groups, quorum)


def _check_new_name(
    line: int, name: str, witnesses: dict[str, PolicyWitness], groups: dict[str, Group]
) -> None:
    if name == NONE:
        raise PolicySyntaxError(line, "`none` is predefined and cannot be a witness or group name")
    if name in witnesses or name in groups:
        earlier = witnesses[name].line if name in witnesses else groups[name].line
        raise PolicySyntaxError(
            line,
            f"name {name!r} is already defined on line {earlier} (witnesses and groups "
            "share one namespace)",
        )


# --- judging a checkpoint --------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureLine:
    """A signature line of the note that did not count: its 1-based number among the
    signature lines, the key name it claims, and why."""

    number: int
    key_name: str
    reason: str

    def __str__(self) -> str:
        return f"signature line {self.number} ({self.key_name or '?'}): {self.reason}"


@dataclass(frozen=True)
class Verdict:
    """How a checkpoint note fares against a policy.

    ``log`` is the key name of the listed log whose signature verified (None: no
    listed log signed it, see ``log_problem``). ``cosigned`` maps each witness
    (policy name) with a valid cosignature to its timestamp; ``missing`` lists the
    policy's witnesses without one; ``wrong`` the lines that are malformed or are a
    known key's signature that does not verify; ``unknown`` the lines by keys the
    policy does not list (ignored, as signed-note requires, never counted).
    """

    checkpoint: Checkpoint
    log: str | None
    log_problem: str | None
    cosigned: dict[str, int]
    missing: tuple[str, ...]
    wrong: tuple[SignatureLine, ...]
    unknown: tuple[SignatureLine, ...]
    quorum: str
    quorum_met: bool
    log_key: bytes | None = None
    """The public key of the log signature that verified."""

    @property
    def ok(self) -> bool:
        return self.log is not None and self.quorum_met and not self.wrong

    def problems(self) -> list[str]:
        """Each reason this checkpoint is refused, in words (empty when ``ok``)."""
        out = []
        if self.log is None:
            out.append(self.log_problem or "not signed by a log the policy lists")
        if not self.quorum_met:
            missing = ", ".join(self.missing) or "none"
            have = ", ".join(self.cosigned) or "none"
            out.append(
                f"quorum {self.quorum} not met: missing cosignatures from {missing} "
                f"(cosigned by: {have})"
            )
        out.extend(f"wrong {line}" for line in self.wrong)
        return out

    def summary(self) -> str:
        cp = self.checkpoint
        who = ", ".join(f"{name}" for name in self.cosigned) or "no witness"
        return f"checkpoint {cp.size} of {cp.origin} signed by {self.log}, cosigned by {who}"


def _split_note(note: str) -> tuple[str, list[str]]:
    if not isinstance(note, str):
        raise PolicyError("the checkpoint note is not text")
    bad = re.search(r"[\x00-\x09\x0b-\x1f]", note)
    if bad:
        raise PolicyError(
            f"malformed note: control character U+{ord(bad.group()):04X} at offset {bad.start()}"
        )
    split = note.rfind("\n\n")
    if split < 0:
        raise PolicyError("malformed note: no blank line between the checkpoint and signatures")
    body, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise PolicyError("malformed note: no signature lines, or no newline after the last")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise PolicyError(
            f"malformed note: {len(lines)} signature lines, more than {MAX_SIGNATURES}"
        )
    return body, lines


def _claimed_key(line: str) -> tuple[str, bytes]:
    """(key name, key id) a signature line claims; raises ValueError naming the fault."""
    if not line.startswith(_SIG_PREFIX):
        raise ValueError("does not start with an em dash (U+2014) and a space")
    name, sep, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise ValueError("key name is empty or holds a space or '+'")
    if not sep or not encoded:
        raise ValueError("has no base64 signature after the key name")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("signature is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != encoded:
        raise ValueError("signature is not canonical padded base64")
    if len(raw) <= 4:
        raise ValueError("signature is too short to hold a key id and a signature")
    return name, raw[:4]


def evaluate(
    note: str,
    policy: Policy,
    *,
    extra_logs: Sequence[tuple[str, bytes]] = (),
    now: int | None = None,
) -> Verdict:
    """Judge a checkpoint note against ``policy`` (see :class:`Verdict`).

    ``extra_logs`` are (name, public key) log keys trusted besides the policy's (a
    ``--log-key`` given with a bundle). With ``now`` (POSIX seconds), a
    cosignature dated later is wrong. Raises :class:`PolicyError` only when the
    note is not a signed checkpoint note at all.
    """
    body, lines = _split_note(note)
    try:
        checkpoint = Checkpoint.from_text(body)
    except ValidationError as exc:
        raise PolicyError(f"the note is not a checkpoint: {exc}") from None
    message = body.encode("utf-8")
    logs = {
        (log.name, _log_key_id(log.name, log.public_key)): log.public_key
        for log in policy.logs
        if log.name == checkpoint.origin
    }
    for name, public_key in extra_logs:
        if name == checkpoint.origin:
            logs[(name, _log_key_id(name, public_key))] = public_key
    witnesses = {(w.key_name, w.key_id): w for w in policy.witnesses.values()}
    known_names = {w.key_name: w.name for w in policy.witnesses.values()}

    log_verified: str | None = None
    log_key: bytes | None = None
    log_failed = False
    cosigned: dict[str, int] = {}
    wrong: list[SignatureLine] = []
    unknown: list[SignatureLine] = []
    for number, line in enumerate(lines, start=1):
        try:
            name, kid = _claimed_key(line)
        except ValueError as exc:
            wrong.append(SignatureLine(number, "", f"malformed: {exc}"))
            continue
        if (name, kid) in logs:
            raw = base64.b64decode(line.rpartition(" ")[2])
            try:
                if len(raw) - 4 != 64:
                    raise InvalidSignature("an Ed25519 signature is 64 bytes")
                Verifier(logs[(name, kid)]).verify(raw[4:], message)
            except InvalidSignature:
                log_failed = True
                wrong.append(SignatureLine(number, name, "the log's signature does not verify"))
                continue
            if log_verified is None:
                log_verified, log_key = name, logs[(name, kid)]
        elif (name, kid) in witnesses:
            witness = witnesses[(name, kid)]
            try:
                timestamp = verify_cosignature(
                    body, parse_cosignature_line(line), name, witness.public_key, now=now
                )
            except CosignatureError as exc:
                wrong.append(SignatureLine(number, name, f"witness {witness.name}: {exc}"))
                continue
            cosigned.setdefault(witness.name, timestamp)
        else:
            if name in known_names:
                reason = (
                    f"unknown key id {kid.hex()} under the name of witness {known_names[name]} "
                    f"(its key id is {_witness_kid(policy, known_names[name])})"
                )
            elif name == checkpoint.origin:
                reason = f"unknown log key id {kid.hex()} (not a log key the policy lists)"
            else:
                reason = f"key {name}+{kid.hex()} is not in the policy; ignored"
            unknown.append(SignatureLine(number, name, reason))
    # A witness counts only when none of its lines is wrong.
    for problem in wrong:
        for witness in policy.witnesses.values():
            if problem.key_name == witness.key_name:
                cosigned.pop(witness.name, None)
    if log_verified is None:
        if log_failed:
            problem = f"the signature of log {checkpoint.origin} does not verify"
        elif not logs:
            problem = (
                f"the policy lists no log with origin {checkpoint.origin!r}: this checkpoint is "
                "from a log you do not trust, or the policy is for another log"
            )
        else:
            problem = f"no signature by log {checkpoint.origin} with a key the policy lists"
    else:
        problem = None
        if log_failed:
            log_verified = None
            problem = f"a signature of log {checkpoint.origin} does not verify"
    missing = tuple(name for name in policy.witnesses if name not in cosigned)
    return Verdict(
        checkpoint=checkpoint,
        log=log_verified,
        log_problem=problem,
        cosigned=cosigned,
        missing=missing,
        wrong=tuple(wrong),
        unknown=tuple(unknown),
        quorum=policy.describe_quorum(),
        quorum_met=policy.witnessed(policy.quorum, cosigned),
        log_key=log_key if log_verified else None,
    )


FINGERPRINT_DIGITS = 16


def policy_fingerprint(policy_text: str | bytes) -> str:
    """A policy's short fingerprint, for people to compare (docs/scan.md, "Trust
    root"): the first 16 hex digits of SHA-256 of its bytes, in groups of four,
    e.g. ``3f9a c21b 77de 0a41``. The scan page shows it (static/verify.js computes
    the same); labels can print it (``provenance label --policy``)."""
    data = policy_text.encode("utf-8") if isinstance(policy_text, str) else policy_text
    digits = hashlib.sha256(data).hexdigest()[:FINGERPRINT_DIGITS]
    return " ".join(digits[i : i + 4] for i in range(0, FINGERPRINT_DIGITS, 4))


def _witness_kid(policy: Policy, name: str) -> str:
    return policy.witnesses[name].key_id.hex()


def require_quorum(
    note: str,
    policy: Policy,
    *,
    extra_logs: Sequence[tuple[str, bytes]] = (),
    now: int | None = None,
) -> Verdict:
    """:func:`evaluate`, and raise :class:`PolicyError` (listing every problem: the
    log, the missing witnesses, the wrong lines) unless the verdict is ``ok``."""
    verdict = evaluate(note, policy, extra_logs=extra_logs, now=now)
    if not verdict.ok:
        raise PolicyError("; ".join(verdict.problems()), verdict)
    return verdict
