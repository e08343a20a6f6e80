"""app/compat.py: each private internal the app relies on still exists, is called the same way and does the same thing.

An upgrade of a pinned library that renames, removes or re-signs one of them fails here,
before the code using it breaks at run time.
"""

import inspect

import sqlalchemy as sa
from flask_appbuilder.api.convert import Model2SchemaConverter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.manager import BaseSecurityManager
from flask_jwt_extended import JWTManager, create_access_token, decode_token

from app import compat


def _params(fn):
    return list(inspect.signature(fn).parameters)


def test_every_private_internal_in_one_module():
    """Outside app/compat.py the app reads or writes no library's private attribute (subclass overrides aside)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    allowed = {
        "compat.py": None,  # the module itself
        # Subclasses overriding FAB's and marshmallow's hooks without a public name (pinned below).
        "base.py": {"_init_forms", "_get_field_info", "_sanitize_page_args"},
        "relations.py": {"_column2relation", "_deserialize"},
        "security.py": {"_has_view_access"},  # FAB's check, from inside the manager
        "tokens.py": {"_decode_jwt_from_config"},  # the JWT manager subclass's override
    }
    names = {
        "_decode_jwt_from_config", "_check_request_limit", "_meta_limits", "_blueprint_limits", "_bind_processors",
        "_result_columns", "_cached_result_processor", "_has_events", "_prepare_response_obj", "_apply_inner_all",
        "_column2relation", "_has_view_access", "_jwt_extended", "_generate_cache_key", "_sanitize_page_args",
        "_init_forms", "_get_field_info", "_deserialize", "_backend", "_crm_budget_script", "_crm_epoch_script",
    }
    found = []
    for package in ("app", "views", "workers"):
        for path in (root / package).rglob("*.py"):
            exempt = allowed.get(path.name, set())
            if exempt is None:
                continue
            for name in re.findall(r"\.(_[a-z][a-z0-9_]*)", path.read_text(encoding="utf-8")):
                if any(name.startswith(n) for n in names) and name not in exempt:
                    found.append(f"{path.relative_to(root)}: {name}")
    assert found == [], found


def test_jwt_decode_override_goes_through_flask_jwt_extendeds_own(app):
    """FAB's JWT manager is the subclass, every decode passes its override, and the base method keeps its signature."""
    from app.tokens import SignatureMemoJWTManager

    assert _params(JWTManager._decode_jwt_from_config) == ["self", "encoded_token", "csrf_value", "allow_expired"]
    jwt_manager = app.appbuilder.sm.jwt_manager
    assert type(jwt_manager) is SignatureMemoJWTManager
    with app.test_request_context():
        token = create_access_token(identity="7", additional_claims={"roles": []})
        assert token not in jwt_manager.verified_signatures
        assert decode_token(token)["sub"] == "7"
        assert jwt_manager.verified_signatures[token]["sub"] == "7"


def test_sqlalchemy_compiled_internals():
    from sqlalchemy.dialects import postgresql

    table = sa.table("t", sa.column("id", sa.Integer), sa.column("at", sa.DateTime(timezone=True)))
    stmt = sa.select(table.c.id, table.c.at).where(table.c.id == sa.bindparam("x", type_=sa.Integer))
    dialect = postgresql.dialect()
    compiled = stmt.compile(dialect=dialect)
    assert isinstance(compat.bind_processors(compiled), dict)
    columns = compat.result_columns(compiled)
    assert [c.keyname for c in columns] == ["id", "at"] and all(isinstance(c.type, sa.types.TypeEngine) for c in columns)
    assert _params(sa.types.TypeEngine._cached_result_processor) == ["self", "dialect", "coltype"]
    compat.result_processor(columns[1].type, dialect)  # None or a callable, without raising
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn:
        assert isinstance(compat.has_cursor_events(conn), bool)  # True already when a test listens on every Engine
    sa.event.listen(engine, "before_cursor_execute", lambda *a: None)
    with engine.connect() as conn:
        assert compat.has_cursor_events(conn) is True


def test_flask_json_provider_internals(app):
    with app.test_request_context():
        provider = app.json
        assert compat.response_object(provider, (), {"a": 1}) == {"a": 1}
        assert compat.response_object(provider, ([1, 2],), {}) == [1, 2]
        assert compat.provider_app(provider).name == app.name


def test_fab_and_marshmallow_hooks_overridden_by_subclasses():
    from flask_appbuilder.api import ModelRestApi
    from flask_appbuilder.views import ModelView
    from marshmallow import fields

    assert _params(ModelView._init_forms) == ["self"]
    assert _params(ModelRestApi._get_field_info)[:3] == ["self", "field", "filter_rel_field"]
    assert _params(ModelRestApi._sanitize_page_args) == ["self", "page", "page_size"]
    assert _params(fields.Field._deserialize)[:4] == ["self", "value", "attr", "data"]


def test_statement_cache_key():
    table = sa.table("t", sa.column("id", sa.Integer))
    a = compat.statement_cache_key(sa.select(table).where(table.c.id == 1))
    b = compat.statement_cache_key(sa.select(table).where(table.c.id == 2))
    assert a.key == b.key and [p.effective_value for p in b.bindparams] == [2]


def test_fab_internals():
    assert _params(SQLAInterface._apply_inner_all)[:2] == ["self", "query"]
    assert {"filters", "select_columns", "aliases_mapping"} <= set(_params(SQLAInterface._apply_inner_all))
    assert _params(Model2SchemaConverter._column2relation) == ["self", "datamodel", "column", "nested", "parent_schema_name"]
    assert _params(BaseSecurityManager._has_view_access) == ["self", "user", "permission_name", "view_name"]
