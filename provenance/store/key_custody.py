"""Who holds a party's key: the party itself, or the operator on its behalf
("custodial"), as its enrolment says (docs/protocol.md §3, "Keys")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenance.core.kinds import custodial
from provenance.store.rows import Identity

if TYPE_CHECKING:
    from provenance.store.db import Store


def is_custodial(store: Store, identity: Identity) -> bool:
    """True when *identity* is a party whose key the operator holds; devices,
    the registrar and the rules key are not parties and say False."""
    if identity.type != "party":
        return False
    enrolment = store.event_at(identity.enrol_event)
    return enrolment is None or custodial(enrolment.envelope.data)
