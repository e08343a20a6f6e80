"""The one row-level scope rule (design.md §3), used by every screen, API and export.

Admin, Manager and Compliance see every live row; a Sales user sees the rows they own
(the model's `__scope_owner_columns__`: assigned to or created by them); notifications
are always the caller's own. Rows outside scope are simply not found (404, not 403).

Related-field choices (the selects of add, edit and search forms, `_info` of /api/v1)
follow the same rule (`choice_clause`): a Sales user is offered their own customers and
only themself as a user; soft-deleted customers are never offered.
"""

import sqlalchemy as sa
from flask import g, has_request_context
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.security.sqla.models import Role, User

from models.customer import Customer
from models.notification import Notification
from models.product import Product

ADMIN, MANAGER, SALES, COMPLIANCE = "Admin", "Manager", "Sales", "Compliance"
SEES_ALL = frozenset({ADMIN, MANAGER, COMPLIANCE})
#: Roles whose holders own customers, meetings and tasks: the users offered as an owner.
OWNER_ROLES = (SALES, MANAGER)
#: What a related-field choice list is for: setting a record's relation, or filtering a list.
ASSIGN, FILTER = "assign", "filter"


def role_names(user):
    """Return the set of role names of `user` (empty for anonymous)."""
    if user is None or not getattr(user, "is_authenticated", True):
        return set()
    return {role.name for role in getattr(user, "roles", []) or []}


def sees_all(user):
    """True when `user` may see every row (Admin, Manager, Compliance)."""
    return bool(role_names(user) & SEES_ALL)


#: Tables whose rows are always the caller's own, whatever the role (notifications).
OWN_ONLY_TABLES = frozenset({Notification.__tablename__})


def cache_scope(user_id, roles, tables=(), own=False):
    """The visibility an answer over `tables` is computed for: "all", "u<id>" or "anon".

    The key of a cached answer (app/caching.py, app/fastpath.py) names it, so one caller's
    rows are never served to another: the same rule as `scope_kind`, from the user's id and
    direct role names alone (a token's claims carry both). `own`: the answer is the caller's
    own whatever the role (an inbox leaving out the caller's own requests).
    """
    if user_id is None:
        return "anon"
    if own or OWN_ONLY_TABLES & set(tables) or not (set(roles) & SEES_ALL):
        return f"u{user_id}"
    return "all"


def scope_kind(model, user):
    """"none" (anonymous), "own" (the caller's rows) or "all" (every live row) of `model` for `user`."""
    if getattr(user, "id", None) is None:
        return "none"
    if model is Notification or not sees_all(user):
        return "own"
    return "all"


def scope_clause(model, user, uid=None):
    """Return the SQL condition that limits `model` rows to what `user` may see.

    `uid` (default the user's id) may be a bind parameter: app/listquery.py builds one
    statement per kind of scope and binds the caller's id at execution.
    """
    kind = scope_kind(model, user)
    if kind == "none":
        return sa.false()
    uid = user.id if uid is None else uid
    if model is Notification:
        return Notification.user_id == uid
    if model is Product:
        # The product master is shared: every signed-in user reads all of it.
        return sa.true()
    conditions = []
    if model is Customer:
        conditions.append(Customer.deleted_at.is_(None))
    if kind == "own":
        owner_columns = getattr(model, "__scope_owner_columns__", None)
        if not owner_columns:
            return sa.false()
        conditions.append(sa.or_(*(getattr(model, col) == uid for col in owner_columns)))
    return sa.and_(sa.true(), *conditions)


def scoped(query, model, user):
    """Apply the scope rule to a legacy Query or a 2.0 Select over `model`."""
    return _where(query, scope_clause(model, user))


def _where(query, clause):
    return query.filter(clause) if hasattr(query, "filter") else query.where(clause)


def owner_choice_clause(user):
    """The users `user` may make the owner of a record (assignee, sales rep, task owner).

    A Sales user: only themself. Anyone else: themself and the active users holding Sales
    or Manager (an inactive user or a Compliance officer owns no customers or tasks).
    """
    uid = getattr(user, "id", None)
    if uid is None:
        return sa.false()
    if not sees_all(user):
        return User.id == uid
    return sa.or_(User.id == uid, sa.and_(User.active.is_(True), User.roles.any(Role.name.in_(OWNER_ROLES))))


def filter_user_choice_clause(user):
    """The users `user` may filter a list by: a Sales user themself; the others every user (history included)."""
    uid = getattr(user, "id", None)
    if uid is None:
        return sa.false()
    return sa.true() if sees_all(user) else User.id == uid


def choice_clause(model, user, purpose=ASSIGN):
    """What a related-field choice list over `model` may offer `user` (`purpose`: ASSIGN or FILTER).

    Users follow the owner rules above; every other model the row-level scope rule, which
    leaves out soft-deleted customers.
    """
    if model is User:
        return owner_choice_clause(user) if purpose == ASSIGN else filter_user_choice_clause(user)
    if model is Product and purpose == ASSIGN:
        # A request picks an active product only.
        return sa.and_(scope_clause(model, user), Product.active.is_(True))
    return scope_clause(model, user)


def in_scope(obj, user):
    """True when the loaded row `obj` is visible to `user` (same rule, evaluated in Python)."""
    uid = getattr(user, "id", None)
    if uid is None:
        return False
    model = type(obj)
    if model is Notification:
        return obj.user_id == uid
    if model is Customer and obj.deleted_at is not None:
        return False
    if sees_all(user) or model is Product:
        return True
    return any(getattr(obj, col) == uid for col in getattr(model, "__scope_owner_columns__", ()))


def request_user():
    """Return the user of the current request (FAB sets g.user for sessions and JWTs)."""
    return getattr(g, "user", None) if has_request_context() else None


class ScopeFilter(BaseFilter):
    """FAB base filter applying the scope rule to lists and to get/edit/delete by id."""

    name = "Row-level scope"
    arg_name = "scope"

    def apply(self, query, value):
        """Limit `query` to the rows the current user may see."""
        return scoped(query, self.model, request_user())


class ChoiceFilter(BaseFilter):
    """FAB filter for a related field's choices: `choice_clause` for the request's user at query time."""

    name = "Choices in scope"

    def apply(self, query, value):
        """Limit the related rows of `query` to what the current user may pick (`value`: ASSIGN or FILTER)."""
        return _where(query, choice_clause(self.model, request_user(), value))


# How views and APIs declare it: base_filters = SCOPE_FILTERS
SCOPE_FILTERS = [["id", ScopeFilter, lambda: None]]


def choice_filters(purpose):
    """The `*_query_rel_fields` entry of one relation: its choices through `choice_clause`."""
    return [["id", ChoiceFilter, purpose]]
