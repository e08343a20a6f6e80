"""The one module that builds and runs a list page's statement: scope, filters, order,
an offset or keyset page and its bounded total.

A view parses the query string into a `ListQuery` (its filters and their values) and the
page it asks for, calls `ListQuery.page(...)`, and shapes the rows it gets back; it builds
no SQL. `page` builds the statement for the list's shape, runs it on the read connection
(app/reads.py) and returns the rows, the total and the next keyset cursor.

Statements are built once per shape and executed with the request's values bound.
Building a list statement (scope, filters, order, page, the capped total) and computing
SQLAlchemy's cache key for it repeat the same work for every request of a shape: which
filters apply, and whether the caller sees every row or only their own, take few
combinations; the values (user id, search text, dates, page) take many. So a `ListQuery`
names its filters and keeps their values apart: the statement of a shape is built once
per process with bind parameters (`shaped`), its cache key is memoised on it by
SQLAlchemy, and each request executes it with its own values.

The rule that keeps this safe: everything a request varies goes through `where`'s
`value`; a filter builder gets the bind parameter and closes over nothing from the request
(`where_fixed` is for filters that never vary, such as "status is open"). The parameters
carry no values in the shared statement (SQLAlchemy requires each one at execution), so a
missing value is an error, never another request's value.

Pages:
- first page: `ORDER BY … LIMIT n` with the capped count of the list as a last column
  (`with_total`: an uncorrelated subquery PostgreSQL runs once), one round trip;
- offset pages (`offset_statement`): the skipped rows are walked by primary key in a
  MATERIALIZED CTE joined once, so only the page's own rows are read from the table and
  the walk runs once whatever the planner's statistics; past the exact-count limit
  (`counts_on_page`) the page skips the count;
- keyset pages (`keyset_statement`, `?after=`): `WHERE (sort…, id) < cursor`, so a deep
  page costs what page 1 costs (an index on the same columns and WHERE makes any page an
  index range scan); the cursor is opaque (`encode_cursor`).
Totals are exact up to COUNT_EXACT_LIMIT, the planner's estimate beyond (app/pagination.py).
"""

import base64
import json
from datetime import date, datetime
from decimal import Decimal
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import lazyload

from app import rawsql, reads
from app.memo import recall
from app.pagination import COUNT_EXACT_LIMIT, DEFAULT_LIMIT, Bound, bare, bounded_count, sql_constant, statement_of, total_beyond
from app.scope import scope_clause, scope_kind
from app.services.errors import ValidationFailed

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

    def page(self, shape, page=1, limit=DEFAULT_LIMIT, after=None, order_by=None, keyset=None, descending=True, columns=None):
        """Run the page the caller asked for; return a `Page` (rows, total, next cursor).

        `shape`: what names the list among others (the endpoint). `after`: None for offset
        pages (`page`, `limit`); a keyset cursor, or "" for the first keyset page, walks
        `keyset` (sort columns ending with a unique one, all `descending` or not) instead.
        Without `keyset` the order is `order_by`. With `columns` the rows are Core rows of
        those columns' values (plus a last one, the capped count), not model objects.
        The statement is built once per shape, list shape and kind of page; the page,
        cursor and filter values are bound at execution.
        """
        if after is not None and not keyset:
            raise ValidationFailed("after is not supported on this list; use page", field="after")
        offset = (page - 1) * limit
        params = Bound({**self.params, "crm_limit": limit, "crm_offset": offset}, self.estimate_as)
        if after:
            params.update((f"crm_after_{i}", value) for i, value in enumerate(decode_cursor(after, len(keyset))))
        kind = "after" if after else ("first" if page == 1 else ("deep" if counts_on_page(offset) else "far"))
        query, page_stmt = shaped(
            (shape, *self.key, kind, columns is not None),
            lambda: self._page_statements(kind, order_by, keyset, descending, columns),
        )
        far = (offset, limit) if kind == "far" else None
        if columns is None:  # model objects: the ORM Session loads them
            rows, total = rows_and_total(reads.session(), query, page_stmt, params=params, far=far)
        else:
            with reads.connection() as conn:
                rows, total = rows_and_total(conn, query, page_stmt, objects=False, params=params, far=far)
        next_cursor = None
        if after:
            rows, next_cursor = keyset_trim(rows, keyset, limit)
        elif after is not None and len(rows) == limit:
            next_cursor = encode_cursor([getattr(rows[-1], c.key) for c in keyset])
        return Page(rows, total, next_cursor)

    def _page_statements(self, kind, order_by, keyset, descending, columns):
        """(the list's statement, the statement of a page of `kind`) with bind parameters only."""
        # The answers carry columns only: skip the models' joined eager loads (users, customers).
        query = self.statement().options(lazyload("*"))
        order = [c.desc() if descending else c.asc() for c in keyset] if keyset else order_by
        # LIMIT and OFFSET are written into the SQL at execution (literal_execute): PostgreSQL
        # then keeps one plan per page size instead of planning every execution anew.
        limit_param = sa.bindparam("crm_limit", type_=sa.Integer, literal_execute=True)
        if kind == "after":
            cursor = [sa.bindparam(f"crm_after_{i}", type_=c.type) for i, c in enumerate(keyset)]
            page_stmt = keyset_statement(query, keyset, limit=limit_param, descending=descending, values=cursor)
        else:
            offset_param = sa.bindparam("crm_offset", type_=sa.Integer, literal_execute=True)
            page_stmt = offset_statement(query, order, offset_param, limit_param, deep=kind != "first")
        if columns is not None:
            page_stmt = page_stmt.with_only_columns(*columns)
        return query, (page_stmt if kind == "far" else with_total(query, page_stmt))


class Page(NamedTuple):
    """A list page: its rows, the list's bounded total, the next keyset cursor (None on the last page or offset pages)."""

    rows: list
    total: int
    next_cursor: object


def shaped(key, build):
    """The statement `build()` makes for `key`, built once per process."""
    return recall(_shapes, key, build, SHAPES_MAX)


def with_total(query, page_stmt, exact_limit=COUNT_EXACT_LIMIT):
    """`page_stmt` (a page of `query`) with the count of `query`, capped at exact_limit + 1, as its last column.

    The count is an uncorrelated scalar subquery, which PostgreSQL runs once per statement,
    so a page and its total cost one round trip instead of two.
    """
    capped = sa.select(sa.func.count()).select_from(bare(statement_of(query)).limit(sql_constant(exact_limit + 1)).subquery())
    return statement_of(page_stmt).add_columns(capped.scalar_subquery().label("crm_capped_total"))


def counts_on_page(offset, exact_limit=COUNT_EXACT_LIMIT):
    """Whether a page at `offset` needs the capped count (`with_total`) for its total.

    A row at `offset` >= `exact_limit` already puts the total beyond the exact limit, so
    such a page shows the planner's estimate (or its exact end) without counting
    `exact_limit` + 1 rows of the table first.
    """
    return offset < exact_limit


def rows_and_total(session, query, page_stmt, exact_limit=COUNT_EXACT_LIMIT, objects=True, params=None, far=None):
    """Run `page_stmt` (a `with_total` page of `query`) once; return (rows, bounded total of `query`).

    A page past the end has no row to carry the count and counts on its own. With
    `objects` the rows are the statement's one entity; else Core rows, the count as their
    last column. `params`: the values of the statements' bind parameters. `session`: a
    Session, or for column rows also an autocommit Connection (app/reads.py), on which the
    page runs on the DBAPI cursor (app/rawsql.py). `far`: (offset, limit) of a page for
    which not `counts_on_page(offset)`, whose `page_stmt` is a plain page without the count.
    """
    params = params or {}
    # Column rows need none of the ORM's loading: Core executes them on the session's connection.
    rows = None
    if isinstance(session, sa.engine.Connection):  # an autocommit read connection: no transaction to abort
        rows = rawsql.rows(session, page_stmt, params)
    if rows is None:
        executor = session.connection() if not objects and not isinstance(session, sa.engine.Connection) else session
        rows = executor.execute(page_stmt, params).all()
    if not rows:
        return [], bounded_count(session, query, exact_limit, params)
    if far is None:
        total = total_beyond(session, statement_of(query), rows[0][-1], exact_limit, key_source=page_stmt, params=params)
    else:
        offset, limit = far
        seen = offset + len(rows)
        # A short page is the last one: its end is the exact total. Else at least what is seen.
        total = seen if len(rows) < limit else max(seen, total_beyond(session, statement_of(query), exact_limit + 1, exact_limit, key_source=page_stmt, params=params))
    return ([row[0] for row in rows] if objects else rows), total



PAGE_CTE = "crm_page"


def offset_statement(query, order_by, offset, limit, deep=None):
    """The `limit` rows of `query` at `offset` in `order_by` order (deep pages read little).

    Past the first page (`deep`, by default a non-zero `offset`) the skipped rows are
    walked by a CTE selecting primary keys only (an index-only scan when an index
    holds the sort and the filters), and only the page's own rows are read from the table:
    a plain OFFSET fetches every skipped row from the table, however deep the page.
    `offset` and `limit` may be bind parameters.
    """
    deep = bool(offset) if deep is None else deep
    stmt = statement_of(query).order_by(None).order_by(*order_by)
    if not deep:
        return stmt.limit(limit)
    entity = stmt.column_descriptions[0].get("entity")
    primary_key = sa.inspect(entity).primary_key if entity is not None else ()
    if len(primary_key) != 1:
        return stmt.offset(offset).limit(limit)
    # A MATERIALIZED CTE joined once, not `id IN (subquery)`: on tables without fresh
    # statistics PostgreSQL may run an IN subquery again for every row in scope.
    keys = stmt.with_only_columns(primary_key[0]).offset(offset).limit(limit).cte(PAGE_CTE).prefix_with("MATERIALIZED")
    return stmt.join(keys, primary_key[0] == keys.c[primary_key[0].name])


# ---------------------------------------------------------------- keyset


def _encode_value(value):
    if isinstance(value, datetime):
        return {"t": "dt", "v": value.isoformat()}
    if isinstance(value, date):
        return {"t": "d", "v": value.isoformat()}
    if isinstance(value, Decimal):
        return {"t": "dec", "v": str(value)}
    return value


def _decode_value(value):
    if isinstance(value, dict):
        kind, raw = value.get("t"), value.get("v")
        if kind == "dt":
            return datetime.fromisoformat(raw)
        if kind == "d":
            return date.fromisoformat(raw)
        if kind == "dec":
            return Decimal(raw)
        raise ValueError("unknown cursor value")
    return value


def encode_cursor(values):
    """Return the opaque cursor for a row's sort values."""
    raw = json.dumps([_encode_value(v) for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor, width):
    """Return the sort values of `cursor`; 400 naming `after` when it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = [_decode_value(v) for v in json.loads(raw)]
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ValidationFailed("after is not a valid cursor", field="after") from None
    if not isinstance(values, list) or len(values) != width:
        raise ValidationFailed("after is not a valid cursor", field="after")
    return values


def keyset_statement(query, order, after=None, limit=DEFAULT_LIMIT, descending=True, values=None):
    """`query` from just after the cursor `after`, sorted by `order`, `limit` + 1 rows (the extra one says "more").

    `values` (bind parameters of the cursor's values) stand for `after` in a statement
    built once for every cursor; `limit` may be a bind parameter too.
    """
    stmt = statement_of(query)
    if after or values is not None:
        values = decode_cursor(after, len(order)) if values is None else values
        cmp = sa.tuple_(*order) < sa.tuple_(*values) if descending else sa.tuple_(*order) > sa.tuple_(*values)
        stmt = stmt.where(cmp)
    # A bind parameter's + 1 as a constant too, so the LIMIT stays one literal (app/rawsql.py).
    fetch = limit + 1 if isinstance(limit, int) else limit + sql_constant(1)
    return stmt.order_by(None).order_by(*[(c.desc() if descending else c.asc()) for c in order]).limit(fetch)


def keyset_trim(rows, order, limit):
    """(the first `limit` of `rows`, the cursor of the next page or None) for `keyset_statement`'s rows."""
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor([getattr(rows[-1], c.key) for c in order]) if more and rows else None
    return rows, next_cursor
