"""Per-subject hash chains (DESIGN §4), pure.

Every lot and every identity has a chain: ``link_0 = H(domain ‖ subject)``,
``link_i = H(link_{i-1} ‖ event_id_i)`` over raw 32-byte digests. A chain's
head commits to the subject's whole history; the heads of all chains are the
leaves of the *heads tree* whose root every checkpoint carries, which is what
lets a proof bundle show that none of a lot's events was left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from provenance.core.merkle import hash_leaf

LOT_DOMAIN = b"provenance/v1/batch"
IDENTITY_DOMAIN = b"provenance/v1/identity"


def genesis_link(subject: str) -> bytes:
    """link_0 for a lot URI or an identity's did."""
    domain = IDENTITY_DOMAIN if subject.startswith("did:") else LOT_DOMAIN
    return hashlib.sha256(domain + subject.encode("utf-8")).digest()


def next_link(previous: bytes, event_id: bytes) -> bytes:
    return hashlib.sha256(previous + event_id).digest()


def head_of(subject: str, event_ids: Iterable[bytes]) -> tuple[bytes, int]:
    """(head link, length) of the chain made by these event ids in order."""
    link = genesis_link(subject)
    length = 0
    for event_id in event_ids:
        link = next_link(link, event_id)
        length += 1
    return link, length


def head_entry(subject: str, length: int, head: bytes) -> bytes:
    """The heads-tree leaf data for one chain."""
    return f"{subject}\n{length}\n{head.hex()}".encode()


def head_leaf(subject: str, length: int, head: bytes) -> bytes:
    return hash_leaf(head_entry(subject, length, head))
