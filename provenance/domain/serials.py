"""Serial numbers for a lot's packs (GS1 AI 21): how new ones are drawn.

Serials are drawn at random from :data:`ALPHABET` (digits and capitals without 0, O, 1
and I, which people misread), :data:`LENGTH` characters: 32**10 ≈ 1.1e15 possible, so a
counterfeiter who copies one label cannot guess another issued serial (for a lot of a
million packs the chance is about 1e-9 a guess; the EU Falsified Medicines rules ask for
under 1e-4). Sequential numbers would be guessable, which is why there is no range rule.
Pure: the random source is passed in (``secrets.SystemRandom()`` in use, a seeded
``random.Random`` in tests).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection

from provenance.core.errors import ValidationError
from provenance.core.kinds import MAX_SERIALS_PER_EVENT

__all__ = ["ALPHABET", "LENGTH", "draw_serials"]

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
LENGTH = 10
_MAX_TRIES = 1000  # draws that hit an issued serial before giving up (never, in practice)


def draw_serials(
    count: int, issued: Callable[[list[str]], Collection[str]], rng: random.Random
) -> list[str]:
    """*count* new distinct serials, none of which *issued* (the ones already issued
    for the lot, asked in one batch) returns."""
    if not 1 <= count <= MAX_SERIALS_PER_EVENT:
        raise ValidationError(
            "count", f"must be 1-{MAX_SERIALS_PER_EVENT} serials per issue, got {count}"
        )
    chosen: dict[str, None] = {}
    tries = 0
    while len(chosen) < count:
        tries += 1
        if tries > _MAX_TRIES:  # pragma: no cover - 32**10 serials
            raise ValidationError("count", "could not draw enough serials not yet issued")
        want = count - len(chosen)
        drawn = {"".join(rng.choice(ALPHABET) for _ in range(LENGTH)) for _ in range(want)}
        taken = set(issued(sorted(drawn)))
        chosen.update(dict.fromkeys(sorted(drawn - taken - chosen.keys())))
    return list(chosen)
