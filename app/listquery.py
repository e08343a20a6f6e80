"""List statements built once per shape and executed with the request's values bound.

Building a list page's statement (scope, filters, order, page, the bounded total) and
computing SQLAlchemy's cache key for it cost a fifth of an uncached /api list request.
Which filters apply, and whether the caller sees every row or only their own, take few
combinations; the values (user id, search text, dates, page) take many. So a `ListQuery`
names its filters and keeps their values apart: the statement of a shape is built once
per process with bind parameters (`shaped`), its cache key is memoised on it by
SQLAlchemy, and each request executes it with its own values.

The rule that keeps this safe: everything a request varies goes through `where`'s
`value`; a filter builder gets the bind parameter and closes over nothing from the request
(`where_fixed` is for filters that never vary, such as "status is open"). The parameters
carry no values in the shared statement (SQLAlchemy requires each one at execution), so a
missing value is an error, never another request's value.
"""

import sqlalchemy as sa

from app.memo import recall
from app.scope import scope_clause, scope_kind

SCOPE_UID = "crm_scope_uid"
SHAPES_MAX = 1024
_shapes = {}


class ListQuery:
    """A scoped list over `model`: a shape (scope kind, which filters) plus the values to bind."""

    def __init__(self, model, user, scoped=True):
        self.model, self.user, self.scoped = model, user, scoped
        self.key = [model.__name__, scope_kind(model, user) if scoped else "unscoped"]
        self.params = {SCOPE_UID: getattr(user, "id", None)}
        self.estimate_as = {}
        self.filters = []

    def where(self, name, clause, value, estimate_as=None):
        """Add the filter `clause(bindparam)` named `name`, its parameter bound to `value`.

        `estimate_as`: what `value` counts as when the planner's estimate of the total is
        remembered (app/pagination.Bound), e.g. the clock to the minute.
        """
        if value is None:  # would be baked into the shared statement as IS NULL
            raise ValueError(f"filter {name!r} has no value; leave it out instead")
        param = "f_" + name
        self._add(name, lambda: clause(sa.bindparam(param)))
        self.params[param] = value
        if estimate_as is not None:
            self.estimate_as[param] = estimate_as
        return self

    def where_fixed(self, name, clause):
        """Add the filter `clause()` named `name`, the same for every request (a constant of the shape)."""
        return self._add(name, clause)

    def _add(self, name, build):
        if name in self.key:
            raise ValueError(f"filter {name!r} given twice")  # one parameter per name
        self.key.append(name)
        self.filters.append(build)
        return self

    def statement(self):
        """The 2.0 select of this shape: bind parameters only, no values of this request."""
        # The user decides only the scope kind (in the key); their id is the parameter.
        stmt = sa.select(self.model)
        if self.scoped:
            stmt = stmt.where(scope_clause(self.model, self.user, uid=sa.bindparam(SCOPE_UID, type_=sa.Integer)))
        for build in self.filters:
            stmt = stmt.where(build())
        return stmt


def shaped(key, build):
    """The statement `build()` makes for `key`, built once per process."""
    return recall(_shapes, key, build, SHAPES_MAX)
