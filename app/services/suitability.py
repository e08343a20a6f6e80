"""Suitability changes by Sales (design.md §4): they bring the Compliance step back for a while.

Product risk above the customer's risk tolerance routes a request to Compliance; a rep
could otherwise raise `risk_tolerance` (or set `investment_profile` to aggressive) and
resubmit, and the request would need the Manager only. So whenever a Sales user (or a
writer acting for nobody: a script, an import without a user) changes one of the
suitability fields of an existing customer, `customers.suitability_changed_at` is set, at
flush time, whatever the entry point: screens, both APIs, workers, imports. For
APPROVAL_SUITABILITY_CHANGE_DAYS after it every request for that customer needs
Compliance, with the reason SUITABILITY_CHANGED_RECENTLY shown to approvers. The change
itself is in the audit log (the customer's UPDATE row, with before and after values; the
stamp, derived from them, is not: `Customer.__audit_derived__`).
Managers and Admins changing these fields do not set it: they are not the requesters.
"""

from datetime import timedelta

import sqlalchemy as sa

from app.context import current_user_obj
from app.scope import SALES, role_names, sees_all
from models.base import utcnow
from models.customer import Customer

#: The customer fields of the suitability check (適合性の原則: risk, profile, experience).
SUITABILITY_FIELDS = ("risk_tolerance", "investment_profile", "investment_experience")
REASON = "SUITABILITY_CHANGED_RECENTLY"


def changed_fields(customer):
    """The suitability fields of `customer` whose value changes at this flush."""
    state = sa.inspect(customer)
    changed = []
    for key in SUITABILITY_FIELDS:
        history = state.attrs[key].history
        # Without the old value (set while expired) it counts as a change.
        if history.added and (not history.deleted or history.added[0] != history.deleted[0]):
            changed.append(key)
    return changed


def _counts(user):
    """True when a change by `user` brings Compliance back: a Sales user, or nobody known."""
    if user is None:
        return True
    names = role_names(user)
    return (SALES in names and not sees_all(user)) or not names


def _before_update(mapper, connection, target):
    """Stamp `suitability_changed_at` when a Sales user changes a suitability field."""
    if changed_fields(target) and _counts(current_user_obj()):
        target.suitability_changed_at = utcnow()


def changed_recently(customer, days, now=None):
    """True when a suitability change by Sales lies less than `days` days back."""
    stamp = customer.suitability_changed_at
    if stamp is None or not days:
        return False
    return (now or utcnow()) - stamp < timedelta(days=days)


def install():
    """Attach the flush-time stamp (idempotent)."""
    if not sa.event.contains(Customer, "before_update", _before_update):
        sa.event.listen(Customer, "before_update", _before_update)


install()
