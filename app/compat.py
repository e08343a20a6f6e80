"""Every use of a library's private internals, in one module; tests/test_compat.py pins each one.

Each stays only because no public API does the same; requirements.txt pins the exact
versions, and tests/test_compat.py fails when an upgrade renames, removes or re-signs one
of them. Beside the functions below, some subclasses override or call a private method of their
base class, FAB's customisation points without a public name, pinned by
tests/test_compat.py too: views/base.py's `_init_forms`, `_init_properties`,
`_init_model_schemas`, `_get_field_info`, `_description_columns_json` and
`_sanitize_page_args` of FAB's ModelRestApi; views/relations.py's
`CrmSchemaConverter._column2relation` (FAB's schema converter has no hook per relation
field) and marshmallow's `Field._deserialize` (marshmallow's documented way to write a
field); app/tokens.py's `SignatureMemoJWTManager._decode_jwt_from_config` (flask-jwt-extended
has no hook for the decode itself); app/security.py's `CrmSecurityManager.roles_may`, which calls the manager's own
`_has_view_access` (FAB's permission check for a user object, which `has_access` offers
only for the request's user).
"""


# ---------------------------------------------------------------- SQLAlchemy (app/rawsql.py, app/pagination.py)


def statement_cache_key(stmt):
    """SQLAlchemy's own cache key of a statement (structure plus bound values, no SQL compiled), or None."""
    return stmt._generate_cache_key()


def bind_processors(compiled):
    """{parameter key: bind processor} of a compiled statement, as SQLAlchemy applies them at execution."""
    return dict(compiled._bind_processors)


def result_columns(compiled):
    """The compiled statement's result columns (each with `keyname` and `type`), in cursor order."""
    return compiled._result_columns


def result_processor(type_, dialect):
    """The type's result processor for `dialect` as SQLAlchemy caches it (None when rows need none)."""
    return type_._cached_result_processor(dialect, None)


def has_cursor_events(connection):
    """True when `connection` or its engine has event listeners (before/after_cursor_execute among them)."""
    return connection._has_events or connection.engine._has_events


# ---------------------------------------------------------------- Flask (app/jsonio.py)


def response_object(provider, args, kwargs):
    """The object `jsonify(*args, **kwargs)` serialises, as Flask's JSON provider builds it."""
    return provider._prepare_response_obj(args, kwargs)


def provider_app(provider):
    """The app a Flask JSON provider belongs to."""
    return provider._app


# ---------------------------------------------------------------- Flask-AppBuilder (views/datamodels.py)


def filtered_query(interface, query, filters, select_columns):
    """FAB's SQLA interface applying `filters` (and its joins) to `query`, as its own query_count does."""
    return interface._apply_inner_all(query, filters, select_columns=select_columns, aliases_mapping={})
