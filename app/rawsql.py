"""Shaped list statements executed on the DBAPI cursor, without SQLAlchemy's per-execution work.

A list page's statement is built once per shape (app/listquery.py), yet each execution
through SQLAlchemy still built an execution context, looked the compiled form up in the
statement cache, read the cursor's description (psycopg builds it anew on every access)
and wrapped every row, the same work again for a statement that never changes. Here a shared
statement is compiled once per dialect and then executed with the request's values on
the connection's DBAPI cursor; what SQLAlchemy would do per execution is kept:

- parameters: `construct_params` (every parameter the statement needs, an error if one is
  missing) and the types' bind processors;
- rows: the types' result processors (enums, UTC datetimes), in named tuples whose fields
  are the statement's column keys;
- events: `before_cursor_execute` / `after_cursor_execute` listeners still see every
  statement (tests, tracing).

Integer parameters marked `literal_execute` (a page's LIMIT and OFFSET) are written into
the SQL text at execution, as SQLAlchemy writes them: PostgreSQL plans a LIMIT it cannot
see for a tenth of the table and so plans such a statement anew on every execution (a
custom plan each time); with the numbers in the text the prepared statement keeps one plan.

Statements this does not cover (positional dialects, IN lists expanded at execution,
literal-rendered parameters of other types) return None and the caller executes them
through SQLAlchemy, as it does when the DBAPI raises (SQLAlchemy then reports, and
invalidates a broken connection, as usual).
"""

import operator
from collections import namedtuple

import sqlalchemy as sa

from app import compat
from app.memo import remember

RAW_MAX = 1024
_raw = {}


class _Unsupported(Exception):
    pass


class RawStatement:
    """One statement compiled for one dialect: SQL text, parameter and row processing."""

    def __init__(self, stmt, dialect):
        compiled = stmt.compile(dialect=dialect)
        literal = compiled.literal_execute_params
        if compiled.positional or compiled.post_compile_params or any(not isinstance(p.type, sa.Integer) for p in literal):
            raise _Unsupported
        self.compiled = compiled
        self.sql = compiled.string
        # SQLAlchemy's placeholder for a literal_execute parameter, replaced by its value.
        self.literals = [(p.key, f"__[POSTCOMPILE_{p.key}]") for p in literal]
        self.bind_processors = compat.bind_processors(compiled)
        columns = compat.result_columns(compiled)
        self.result_processors = [(i, p) for i, p in enumerate(compat.result_processor(c.type, dialect) for c in columns) if p]
        self.row = namedtuple("RawRow", [c.keyname for c in columns], rename=True)

    def parameters(self, params):
        """The DBAPI parameters for `params` (required ones checked, bind processors applied)."""
        values = self.compiled.construct_params(params)
        for key, process in self.bind_processors.items():
            if key in values:
                values[key] = process(values[key])
        return values

    def rows(self, connection, params):
        """Execute on `connection` (a SQLAlchemy Connection); return the processed rows."""
        values = self.parameters(params)
        sql = self.sql
        for key, placeholder in self.literals:
            # operator.index: an integer or an error, so nothing but digits reaches the text.
            sql = sql.replace(placeholder, str(operator.index(values.pop(key))))
        cursor = connection.connection.driver_connection.cursor()
        try:
            listeners = compat.has_cursor_events(connection)
            if listeners:
                for fn in connection.dispatch.before_cursor_execute:
                    sql, values = fn(connection, cursor, sql, values, None, False)
            cursor.execute(sql, values)
            if listeners:
                for fn in connection.dispatch.after_cursor_execute:
                    fn(connection, cursor, sql, values, None, False)
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        make, processors = self.row._make, self.result_processors
        if not processors:
            return [make(row) for row in fetched]
        out = []
        for row in fetched:
            row = list(row)
            for i, process in processors:
                row[i] = process(row[i])
            out.append(make(row))
        return out


def compiled_for(stmt, dialect):
    """The `RawStatement` of the shared statement `stmt` for `dialect` (made once), or None if unsupported."""
    key = (id(stmt), dialect)
    found = _raw.get(key)
    if found is None or found[0] is not stmt:
        try:
            raw = RawStatement(stmt, dialect)
        except _Unsupported:
            raw = None
        # The entry holds `stmt`, so its id names no other statement meanwhile.
        found = remember(_raw, key, (stmt, raw), RAW_MAX)
    return found[1]


def rows(connection, stmt, params):
    """The rows of the shared statement `stmt` with `params` on `connection`, or None: execute it through SQLAlchemy instead."""
    raw = compiled_for(stmt, connection.dialect)
    if raw is None:
        return None
    try:
        return raw.rows(connection, params)
    except connection.dialect.loaded_dbapi.Error:
        return None
