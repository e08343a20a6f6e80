"""Related records nested in /api answers, as the seed's old backend included them (design.md §6).

The seed's frontend reads `task.customer.name`, `meeting.sales.name`, `approval.requester`
and so on. `attach(model, records, user)` adds them to a page of answers (or to one) with
ONE statement per related table for the whole page: the page's foreign keys are collected,
then one SELECT per table reads them all. A list therefore costs the same number of
statements whatever its length, never one per row.

Each nested record is read under the caller's scope, like the record itself: a customer
the caller could not read by id (another rep's, or soft-deleted) is nested as null, while
the record's own `customerId` stays as it always was. Users are shown to every caller but
only as {id, name, email} (and `role`, the seed's code, where the frontend reads it).

The tables read here are part of each list's cache resources (`resources`), so a change to a
customer's name or a user's role reaches every cached answer that nests it.
"""

import sqlalchemy as sa
from flask_appbuilder.security.sqla.models import Role, User, assoc_user_role

from app import reads
from app.caching import model_resources
from app.listquery import SCOPE_UID, shaped
from app.roles import api_role
from app.scope import scope_clause, scope_kind
from models.approval import ApprovalRequest
from models.audit import AuditLog
from models.customer import Customer
from models.meeting import Meeting
from models.task import Task

CUSTOMER, USER = "customer", "user"
USER_FIELDS = ("id", "name", "email")
USER_WITH_ROLE = ("id", "name", "email", "role")

# Per model: (answer key, foreign key field of the answer, related table, fields shown).
NESTED = {
    Customer: (("assignedSales", "assignedSalesId", USER, USER_FIELDS),),
    Task: (
        ("customer", "customerId", CUSTOMER, ("id", "name")),
        ("user", "userId", USER, USER_WITH_ROLE),
    ),
    Meeting: (
        ("customer", "customerId", CUSTOMER, ("id", "name", "email")),
        ("sales", "salesId", USER, USER_FIELDS),
    ),
    ApprovalRequest: (
        ("customer", "customerId", CUSTOMER, ("id", "name", "email", "riskTolerance", "investmentProfile")),
        ("requester", "requesterId", USER, USER_FIELDS),
        ("approver", "approverId", USER, USER_FIELDS),
    ),
    AuditLog: (("user", "userId", USER, USER_WITH_ROLE),),
}

CUSTOMER_COLUMNS = {
    "id": Customer.id,
    "name": Customer.name,
    "email": Customer.email,
    "riskTolerance": Customer.risk_tolerance,
    "investmentProfile": Customer.investment_profile,
}
# Where a nested user shows its role, role changes (ab_user_role) and renames (ab_role) reach it.
ROLE_TABLES = ("ab_role", "ab_user_role")


def resources(model):
    """The tables a list of `model` answers from: `model_resources` plus the role tables its nested users show."""
    names = set(model_resources(model))
    if any("role" in fields for _key, _fk, target, fields in NESTED.get(model, ()) if target == USER):
        names.update(ROLE_TABLES)
    return tuple(sorted(names))


def user_name(first, last):
    """A FAB user's display name (FAB's form puts "-" in a last name left empty)."""
    return " ".join(p for p in (first, last) if p and p != "-")


def attach(model, records, user):
    """Add the nested related records of `model` to each answer dict of `records`, in place; return `records`."""
    specs = NESTED.get(model)
    if not specs or not records:
        return records
    wanted = {}
    for _key, fk, target, fields in specs:
        ids, shown = wanted.setdefault(target, (set(), set()))
        shown.update(fields)
        ids.update(r[fk] for r in records if r.get(fk) is not None)
    found = {}
    for target, (ids, shown) in wanted.items():
        found[target] = _FETCH[target](sorted(ids), tuple(sorted(shown)), user) if ids else {}
    for record in records:
        for key, fk, target, fields in specs:
            row = found[target].get(record.get(fk))
            record[key] = None if row is None else {f: row[f] for f in fields}
    return records


def _customers(ids, shown, user):
    """{id: fields} of the customers `ids` that `user` may read (one statement)."""
    kind = scope_kind(Customer, user)

    def build():
        columns = [CUSTOMER_COLUMNS[f] for f in shown]
        uid = sa.bindparam(SCOPE_UID, type_=sa.Integer)
        # Built once per fields and kind of scope: the user's id and the ids are bound at execution.
        return sa.select(*columns).where(Customer.id.in_(sa.bindparam("nested_ids", expanding=True)), scope_clause(Customer, user, uid=uid))

    stmt = shaped(("nested", CUSTOMER, shown, kind), build)
    out = {}
    with reads.connection() as conn:
        for row in conn.execute(stmt, {"nested_ids": ids, SCOPE_UID: getattr(user, "id", None)}):
            values = dict(zip(shown, row))
            if values.get("investmentProfile") is not None:
                values["investmentProfile"] = values["investmentProfile"].value
            out[values["id"]] = values
    return out


def _users(ids, shown, user):
    """{id text: fields} of the users `ids` (one statement, their roles joined when shown)."""
    with_role = "role" in shown

    def build():
        stmt = sa.select(User.id, User.first_name, User.last_name, User.email)
        if with_role:
            stmt = (
                stmt.add_columns(Role.name)
                .select_from(User)
                .outerjoin(assoc_user_role, assoc_user_role.c.user_id == User.id)
                .outerjoin(Role, Role.id == assoc_user_role.c.role_id)
            )
        return stmt.where(User.id.in_(sa.bindparam("nested_ids", expanding=True)))

    stmt = shaped(("nested", USER, with_role), build)
    numbers = [int(i) for i in ids if str(i).isdigit()]
    if not numbers:
        return {}
    out, roles = {}, {}
    with reads.connection() as conn:
        for row in conn.execute(stmt, {"nested_ids": numbers}):
            key = str(row[0])
            out[key] = {"id": key, "name": user_name(row[1], row[2]), "email": row[3]}
            if with_role and row[4] is not None:
                roles.setdefault(key, []).append(row[4])
    if with_role:
        for key, values in out.items():
            values["role"] = api_role(roles.get(key, ()))
    return out


_FETCH = {CUSTOMER: _customers, USER: _users}
