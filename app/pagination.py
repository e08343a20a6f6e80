"""Bounded totals: how many rows a list has, without COUNT(*) over a huge table on every page.

- `page_args(page, limit)`: validated page/limit (400 naming the field, limit clamped).
- `bounded_count(session, query)`: exact below COUNT_EXACT_LIMIT rows, the planner's
  estimate above it (counting stops at the limit, so the cost is bounded).
- `total_beyond(...)`: the total given a count capped at the limit (a list page carries
  that capped count in its own statement: app/listquery.py).
- `cached_count(session, query, resources)`: `bounded_count` cached per generation of
  `resources` (app/caching.py) and keyed by the query's SQL and parameters (screens).

The statements of list pages (scope, filters, order, offset or keyset, the capped count)
are built and run in app/listquery.py, which uses the pieces here for their totals.
"""

import json
import time

import sqlalchemy as sa

from app import caching, compat
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


def statement_of(query):
    """The Core select of a 2.0 select or a legacy Query."""
    return query.statement if hasattr(query, "statement") else query


def bare(stmt):
    """`stmt` selecting a constant instead of its columns: counting needs only which rows."""
    return stmt.order_by(None).with_only_columns(sa.literal_column("1"), maintain_column_froms=True)


def sql_constant(number):
    """`number` written into the SQL text (not a bind parameter)."""
    # Written into the SQL text: a LIMIT that is a parameter is planned for a tenth of the
    # table, so PostgreSQL would plan the statement anew on every execution (app/rawsql.py).
    return sa.literal_column(str(int(number)))


def _count_exact(session, stmt, cap, params=None):
    # Selecting no columns lets PostgreSQL answer from the index alone (index-only scan).
    sub = bare(stmt).limit(sql_constant(cap)).subquery() if cap else bare(stmt).subquery()
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
    explain = None if key_source is not None else sa.select(sa.literal_column("1")).select_from(bare(statement_of(query)).subquery())
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
# EXPLAIN plans the whole query again each time: each process remembers an estimate for
# a minute. Exact totals (up to COUNT_EXACT_LIMIT) are
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
    stmt = statement_of(query)
    return total_beyond(session, stmt, _count_exact(session, stmt, exact_limit + 1, params), exact_limit, params=params)


def total_beyond(session, stmt, counted, exact_limit, key_source=None, params=None):
    """The total of `stmt` given `counted` = its count capped at exact_limit + 1."""
    if counted <= exact_limit:
        return counted
    # The same statement just ran as a count, so its EXPLAIN cannot fail on its own.
    estimate = estimate_count(session, stmt, key_source, params)
    if estimate is None:
        return _count_exact(session, stmt, None, params)
    return max(estimate, exact_limit + 1)


def query_cache_key(session, query):
    """Return a key naming `query` exactly: its SQL text and bound parameters."""
    compiled = statement_of(query).compile(dialect=session.get_bind().dialect)
    return json.dumps([compiled.string, sorted(compiled.params.items())], default=str, ensure_ascii=False)


def cached_count(session, query, resources, exact_limit=COUNT_EXACT_LIMIT):
    """`bounded_count` cached per generation of `resources` (the scope is in the SQL parameters)."""
    if caching.answer_backend() is None:
        # Totals not cached: skip building the key (compiling the SQL costs more than counting).
        return bounded_count(session, query, exact_limit)
    key = "count:" + query_cache_key(session, query)
    return caching.cached_value(resources, "sql", key, lambda: bounded_count(session, query, exact_limit))


