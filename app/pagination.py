"""Pagination without COUNT(*) over huge tables on every page, and keyset cursors for deep pages.

- `page_args(page, limit)`: validated page/limit (400 naming the field, limit clamped).
- `bounded_count(session, query)`: exact below COUNT_EXACT_LIMIT rows, the planner's
  estimate above it (counting stops at the limit, so the cost is bounded).
- `cached_count(session, query, resources)`: the same, cached per generation of
  `resources` (app/caching.py) and keyed by the query's SQL and parameters, so the scope
  and the filters are part of the key and page 2..n reuse page 1's total.
- `with_total(query, page_stmt)` + `rows_and_total(...)`: a page and its bounded total in
  ONE statement (the count is an uncorrelated subquery PostgreSQL runs once); pages past
  the exact limit skip the count (`counts_on_page`).
- `offset_statement(query, order_by, offset, limit)`: OFFSET pages that walk the skipped
  rows by primary key only and read just the page's rows from the table.
- `keyset_statement(query, order, after, limit)` + `keyset_trim`: `WHERE (sort..., id) <
  cursor` instead of OFFSET, so page 10,000 costs what page 1 costs (an index on the same
  columns with the same WHERE makes any page an index range scan); the cursor is opaque.
"""

import base64
import json
import time
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa

from app import caching, compat, rawsql
from app.memo import remember
from app.services.errors import ValidationFailed

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Totals are exact up to this many rows; beyond it the planner's estimate is shown (counting
# stops here, so a page never scans more than this many rows to count).
COUNT_EXACT_LIMIT = 1_000


def page_args(page=None, limit=None, default_limit=DEFAULT_LIMIT, max_limit=MAX_LIMIT):
    """Return (page >= 1, 1 <= limit <= max_limit) from raw query values; 400 on junk."""
    try:
        page = int(page) if page not in (None, "") else 1
    except (TypeError, ValueError):
        raise ValidationFailed("page must be a positive integer", field="page") from None
    try:
        limit = int(limit) if limit not in (None, "") else default_limit
    except (TypeError, ValueError):
        raise ValidationFailed("limit must be a positive integer", field="limit") from None
    if page < 1:
        raise ValidationFailed("page must be a positive integer", field="page")
    if limit < 1:
        raise ValidationFailed("limit must be a positive integer", field="limit")
    return page, min(limit, max_limit)


def _statement(query):
    return query.statement if hasattr(query, "statement") else query


def _bare(stmt):
    """`stmt` selecting a constant instead of its columns: counting needs only which rows."""
    return stmt.order_by(None).with_only_columns(sa.literal_column("1"), maintain_column_froms=True)


def _constant(number):
    # Written into the SQL text: a LIMIT that is a parameter is planned for a tenth of the
    # table, so PostgreSQL would plan the statement anew on every execution (app/rawsql.py).
    return sa.literal_column(str(int(number)))


def _count_exact(session, stmt, cap, params=None):
    # Selecting no columns lets PostgreSQL answer from the index alone (index-only scan).
    sub = _bare(stmt).limit(_constant(cap)).subquery() if cap else _bare(stmt).subquery()
    return session.execute(sa.select(sa.func.count()).select_from(sub), params or {}).scalar_one()


def estimate_count(session, query, key_source=None, params=None):
    """Return the planner's row estimate for `query` (PostgreSQL), or None elsewhere.

    `key_source`: a statement just executed whose rows are those of `query` (a page of it);
    its cache key, which SQLAlchemy computed and kept while executing it, names the memo
    entry, so a remembered estimate costs no statement building at all. `params`: values
    of the statements' bind parameters given at execution (app/listquery.py).
    """
    bind = _engine_of(session)
    if bind.dialect.name != "postgresql":
        return None
    # The query runs as `EXPLAIN SELECT 1 FROM (query)` through the normal execution path
    # (see `_explain_hook`), so SQLAlchemy's compiled-statement cache and its parameter
    # handling apply; the planner pulls the subquery up, so the top node's rows are its rows.
    explain = None if key_source is not None else sa.select(sa.literal_column("1")).select_from(_bare(_statement(query)).subquery())
    key = _estimate_key(bind, key_source if key_source is not None else explain, params)
    found = _estimates.get(key)
    if found is not None and found[1] > time.monotonic():
        return found[0]
    if explain is None:
        estimate = estimate_count(session, query, params=params)  # built, run and remembered under its own key
    else:
        plan = session.execute(explain, params or {}, execution_options={EXPLAIN_OPTION: True}).scalar()
        estimate = int((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"])
    remember(_estimates, key, (estimate, time.monotonic() + ESTIMATE_SECONDS), ESTIMATE_MEMO_MAX)
    return estimate


# The planner's estimate moves only with ANALYZE (and the table's size on disk), while
# EXPLAIN plans the whole query again each time (~1 ms with this schema's indexes): each
# process remembers an estimate for a minute. Exact totals (up to COUNT_EXACT_LIMIT) are
# never remembered here.
ESTIMATE_SECONDS = 60
ESTIMATE_MEMO_MAX = 1024
_estimates = {}


def _engine_of(session):
    """The engine a Session or a Connection (app/reads.py) runs on."""
    return session.engine if isinstance(session, sa.engine.Connection) else session.get_bind()


def _estimate_key(bind, stmt, params=None):
    # SQLAlchemy's own statement cache key (its dogpile caching example keys on it too):
    # the statement's structure plus the values of its parameters, without compiling SQL;
    # a value given at execution overrides the one in the statement, so it names it here too.
    cache_key = compat.statement_cache_key(stmt)
    if cache_key is None:  # a statement SQLAlchemy cannot key: not remembered
        return object()
    params = {**params, **params.estimate_as} if isinstance(params, Bound) else params or {}
    values = tuple(repr(params[p.key] if p.key in params else p.effective_value) for p in cache_key.bindparams)
    return (bind, cache_key.key, values)


EXPLAIN_OPTION = "crm_explain"


def install(engine_class=sa.engine.Engine):
    """Attach the EXPLAIN prefixer (`estimate_count`) to the engines of `engine_class`."""
    if not sa.event.contains(engine_class, "before_cursor_execute", _explain_hook):
        sa.event.listen(engine_class, "before_cursor_execute", _explain_hook, retval=True)


def _explain_hook(conn, cursor, statement, parameters, context, executemany):
    """Prefix EXPLAIN to statements executed with the `crm_explain` option."""
    if context is not None and context.execution_options.get(EXPLAIN_OPTION):
        statement = "EXPLAIN (FORMAT JSON) " + statement
    return statement, parameters


class Bound(dict):
    """Values of bind parameters, with coarser stand-ins (`estimate_as`) naming remembered estimates.

    A list "due before now" binds a new `now` on every request: keyed by it, the estimate
    would be planned again every time, while the minute it falls in names it well enough.
    """

    def __init__(self, values, estimate_as=None):
        super().__init__(values)
        self.estimate_as = estimate_as or {}


def bounded_count(session, query, exact_limit=COUNT_EXACT_LIMIT, params=None):
    """Exact count up to `exact_limit` rows, the planner's estimate beyond (never below the limit)."""
    stmt = _statement(query)
    return _beyond(session, stmt, _count_exact(session, stmt, exact_limit + 1, params), exact_limit, params=params)


def _beyond(session, stmt, counted, exact_limit, key_source=None, params=None):
    """The total of `stmt` given `counted` = its count capped at exact_limit + 1."""
    if counted <= exact_limit:
        return counted
    # The same statement just ran as a count, so its EXPLAIN cannot fail on its own.
    estimate = estimate_count(session, stmt, key_source, params)
    if estimate is None:
        return _count_exact(session, stmt, None, params)
    return max(estimate, exact_limit + 1)


def with_total(query, page_stmt, exact_limit=COUNT_EXACT_LIMIT):
    """`page_stmt` (a page of `query`) with the count of `query`, capped at exact_limit + 1, as its last column.

    The count is an uncorrelated scalar subquery, which PostgreSQL runs once per statement,
    so a page and its total cost one round trip instead of two.
    """
    capped = sa.select(sa.func.count()).select_from(_bare(_statement(query)).limit(_constant(exact_limit + 1)).subquery())
    return _statement(page_stmt).add_columns(capped.scalar_subquery().label("crm_capped_total"))


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
        total = _beyond(session, _statement(query), rows[0][-1], exact_limit, key_source=page_stmt, params=params)
    else:
        offset, limit = far
        seen = offset + len(rows)
        # A short page is the last one: its end is the exact total. Else at least what is seen.
        total = seen if len(rows) < limit else max(seen, _beyond(session, _statement(query), exact_limit + 1, exact_limit, key_source=page_stmt, params=params))
    return ([row[0] for row in rows] if objects else rows), total


def query_cache_key(session, query):
    """Return a key naming `query` exactly: its SQL text and bound parameters."""
    compiled = _statement(query).compile(dialect=session.get_bind().dialect)
    return json.dumps([compiled.string, sorted(compiled.params.items())], default=str, ensure_ascii=False)


def cached_count(session, query, resources, exact_limit=COUNT_EXACT_LIMIT):
    """`bounded_count` cached per generation of `resources` (the scope is in the SQL parameters)."""
    if caching.answer_backend() is None:
        # Totals not cached: skip building the key (compiling the SQL costs more than counting).
        return bounded_count(session, query, exact_limit)
    key = "count:" + query_cache_key(session, query)
    return caching.cached_value(resources, "sql", key, lambda: bounded_count(session, query, exact_limit))


PAGE_CTE = "crm_page"


def offset_statement(query, order_by, offset, limit, deep=None):
    """The `limit` rows of `query` at `offset` in `order_by` order (deep pages read little).

    Past the first page (`deep`, by default a non-zero `offset`) the skipped rows are
    walked by a CTE selecting primary keys only (an index-only scan when an index
    holds the sort and the filters), and only the page's own rows are read from the table:
    a plain OFFSET fetches every skipped row from the table (3,980 of them for page 200).
    `offset` and `limit` may be bind parameters.
    """
    deep = bool(offset) if deep is None else deep
    stmt = _statement(query).order_by(None).order_by(*order_by)
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
    stmt = _statement(query)
    if after or values is not None:
        values = decode_cursor(after, len(order)) if values is None else values
        cmp = sa.tuple_(*order) < sa.tuple_(*values) if descending else sa.tuple_(*order) > sa.tuple_(*values)
        stmt = stmt.where(cmp)
    # A bind parameter's + 1 as a constant too, so the LIMIT stays one literal (app/rawsql.py).
    fetch = limit + 1 if isinstance(limit, int) else limit + _constant(1)
    return stmt.order_by(None).order_by(*[(c.desc() if descending else c.asc()) for c in order]).limit(fetch)


def keyset_trim(rows, order, limit):
    """(the first `limit` of `rows`, the cursor of the next page or None) for `keyset_statement`'s rows."""
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor([getattr(rows[-1], c.key) for c in order]) if more and rows else None
    return rows, next_cursor
