"""Rules, smart-contract style: declarative conditions over the ledger whose
actions are themselves signed events (docs/rules.md).

A rule file (TOML) lists rules; each has a name, a condition of a known type
with its parameters, and actions::

    [[rules]]
    name = "vaccine-excursion"
    actions = ["hold", "notify"]
    [rules.condition]
    type = "coldchain-tolerance"
    category = "vaccine"
    max_excursion = "1h"

`parse_rules` validates a file and says exactly what is wrong (unknown
condition, bad parameter, unknown action). `evaluate` takes the rule set, what
is known about one lot (`LotFacts`: its loggers and their readings, serial
scans, the holds and flags already in force) and the moment, and returns the
`Action`s to sign: a `hold` or a `flag`, each maybe with an MQTT notice. It is
idempotent against the facts: a rule never holds a lot it already holds, never
raises the same flag (lot, rule, key) twice, and after a release looks only at
what happened after the release.

Pure: values in, values out, `ValidationError` for a bad rule file. No I/O, no
clock (pass ``now_us``). `provenance.services.rules` gathers the facts from the
store, signs the actions with the rules key and appends them. The conditions are
`provenance.domain.rule_conditions`, the facts `provenance.domain.rule_facts`, the holds,
flags and alert notices `provenance.domain.rule_decisions`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from provenance.core.errors import ValidationError
from provenance.core.fields import MAX_TEXT
from provenance.domain.rule_conditions import CONDITIONS as _COLDCHAIN_AND_FAR_APART
from provenance.domain.rule_conditions import Condition
from provenance.domain.rule_facts import LotFacts
from provenance.domain.rule_serials import SERIAL_CONDITIONS

CONDITIONS = {**_COLDCHAIN_AND_FAR_APART, **SERIAL_CONDITIONS}  # every condition type, by name

__all__ = [
    "ACTIONS",
    "FLAG",
    "HOLD",
    "NOTIFY",
    "Action",
    "Rule",
    "RuleSet",
    "evaluate",
    "merge",
    "parse_rules",
]

HOLD, FLAG, NOTIFY = "hold", "flag", "notify"
ACTIONS = (HOLD, FLAG, NOTIFY)
FORMAT_VERSION = 1


_RULE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


# --- rules and rule sets


@dataclass(frozen=True)
class Rule:
    name: str
    condition: Condition
    actions: tuple[str, ...]
    description: str = ""

    @property
    def notify(self) -> bool:
        return NOTIFY in self.actions


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]

    def __iter__(self) -> Any:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def rule(self, name: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.name == name), None)

    @property
    def event_kinds(self) -> frozenset[str]:
        """The event kinds some rule wakes on."""
        return frozenset().union(*(rule.condition.on_events for rule in self.rules))

    @property
    def has_timer(self) -> bool:
        return any(rule.condition.on_timer for rule in self.rules)

    def of_type(self, condition_type: str) -> list[Rule]:
        return [rule for rule in self.rules if rule.condition.type == condition_type]


def parse_rules(text: str | bytes, source: str = "rules") -> RuleSet:
    """A validated rule set from TOML text. Raises `ValidationError` whose field
    names the file, the rule and the parameter, e.g.
    ``rules.toml: rules[1] (cold-vaccine).condition.max_excursion: must be a duration…``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(source, f"is not UTF-8 text: {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(source, f"is not valid TOML: {exc}") from None
    for name in document:
        if name not in ("version", "rules"):
            raise ValidationError(
                f"{source}: {name}", "is not a known top-level key (allowed: version, rules)"
            )
    version = document.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ValidationError(
            f"{source}: version", f"must be {FORMAT_VERSION} (this version reads {FORMAT_VERSION})"
        )
    items = document.get("rules")
    if not isinstance(items, list) or not items:
        raise ValidationError(f"{source}: rules", "must list at least one rule ([[rules]] tables)")
    rules: list[Rule] = []
    for position, item in enumerate(items):
        rule = _parse_rule(item, f"{source}: rules[{position}]")
        if any(other.name == rule.name for other in rules):
            raise ValidationError(
                f"{source}: rules[{position}].name", f"{rule.name!r} is used by another rule"
            )
        rules.append(rule)
    return RuleSet(tuple(rules))


def _parse_rule(item: Any, where: str) -> Rule:
    if not isinstance(item, dict):
        raise ValidationError(where, "must be a table ([[rules]])")
    name = item.get("name")
    if not isinstance(name, str) or not _RULE_NAME.fullmatch(name):
        raise ValidationError(
            f"{where}.name",
            "is required: 1-64 lowercase letters, digits and . _ - (starting with a letter or "
            f"digit); got {name!r}",
        )
    where = f"{where} ({name})"
    for key in item:
        if key not in ("name", "description", "condition", "actions"):
            raise ValidationError(
                f"{where}.{key}",
                "is not a rule key (allowed: name, description, condition, actions)",
            )
    description = item.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_TEXT:
        raise ValidationError(
            f"{where}.description", f"must be text of at most {MAX_TEXT} characters"
        )
    params = item.get("condition")
    if not isinstance(params, dict):
        raise ValidationError(
            f"{where}.condition", "is required: a table with a type and its parameters"
        )
    kind = params.get("type")
    if kind not in CONDITIONS:
        raise ValidationError(
            f"{where}.condition.type",
            f"unknown condition {kind!r}; known: {', '.join(CONDITIONS)}",
        )
    condition = CONDITIONS[kind].parse(params, f"{where}.condition")
    actions = item.get("actions")
    if not isinstance(actions, list) or not actions:
        raise ValidationError(
            f"{where}.actions", f"is required: a list of actions from {', '.join(ACTIONS)}"
        )
    for position, action in enumerate(actions):
        if action not in ACTIONS:
            raise ValidationError(
                f"{where}.actions[{position}]",
                f"unknown action {action!r}; known: {', '.join(ACTIONS)}",
            )
    if len(set(actions)) != len(actions):
        raise ValidationError(f"{where}.actions", "lists an action twice")
    if HOLD not in actions and FLAG not in actions:
        raise ValidationError(
            f"{where}.actions",
            "must include hold or flag (notify only adds an MQTT notice to one of them)",
        )
    return Rule(name, condition, tuple(actions), description)


# --- evaluation


@dataclass(frozen=True)
class Action:
    """A signed event to append: a hold or a flag of one lot, by one rule."""

    kind: str  # hold | flag
    lot: str
    rule: str
    reason: str
    evidence: dict[str, Any]
    events: tuple[int, ...] = ()  # log indexes the evidence names (ids are filled in at signing)
    signal: str | None = None  # flag only
    key: str | None = None  # flag only
    notify: bool = False

    def data(self, event_ids: Mapping[int, str] | None = None) -> dict[str, Any]:
        """The signed event's `data`; *event_ids* maps log indexes to event ids."""
        evidence = dict(self.evidence)
        ids = [event_ids[i] for i in self.events if event_ids and i in event_ids]
        if ids:
            evidence["events"] = ids
        if self.kind == HOLD:
            return {"rule": self.rule, "reason": self.reason, "evidence": evidence}
        return {
            "signal": self.signal,
            "rule": self.rule,
            "reason": self.reason,
            "key": self.key,
            "evidence": evidence,
        }

    @property
    def identity(self) -> tuple[str, str, str, str | None]:
        """Two actions with one identity are the same decision (kept once)."""
        return (self.kind, self.lot, self.rule, self.key if self.kind == FLAG else None)


def evaluate(
    rules: RuleSet,
    facts: LotFacts,
    now_us: int,
    *,
    kinds: Collection[str] = (),
    timer: bool = False,
) -> list[Action]:
    """The actions the rules take on one lot, given *kinds* (the kinds of the new
    accepted events that concern it) and/or a *timer* round. Idempotent against
    *facts*: no second hold while one by the same rule is in force, no flag whose
    (rule, key) was raised before, and after a release of a rule's hold only what
    happened after the release counts for that rule."""
    actions: dict[tuple[str, str, str, str | None], Action] = {}
    woken = set(kinds)
    for rule in rules:
        condition = rule.condition
        if not (timer and condition.on_timer) and not (woken & condition.on_events):
            continue
        wants_hold = HOLD in rule.actions and rule.name not in facts.holding_rules
        if not wants_hold and FLAG not in rule.actions:
            continue  # held already; nothing else to do
        if not condition.applies(facts):
            continue
        found = condition.findings(facts, now_us, facts.released.get(rule.name))
        if not found:
            continue
        if wants_hold:
            first = found[0]
            evidence = dict(first.evidence)
            if len(found) > 1:
                evidence["more_findings"] = len(found) - 1
            action = Action(
                HOLD, facts.uri, rule.name, first.reason, evidence, first.events, notify=rule.notify
            )
            actions.setdefault(action.identity, action)
        if FLAG in rule.actions:
            for finding in found:
                if (rule.name, finding.key) in facts.flagged:
                    continue
                action = Action(
                    FLAG,
                    facts.uri,
                    rule.name,
                    finding.reason,
                    finding.evidence,
                    finding.events,
                    condition.signal,
                    finding.key[:200],
                    rule.notify,
                )
                actions.setdefault(action.identity, action)
    return list(actions.values())


def merge(actions: Iterable[Action]) -> list[Action]:
    """Actions of several evaluations of one round, each decision once."""
    kept: dict[tuple[str, str, str, str | None], Action] = {}
    for action in actions:
        kept.setdefault(action.identity, action)
    return list(kept.values())
