"""Migrations: upgrade from empty to head on PostgreSQL and no drift from the models."""

import uuid

import psycopg
import pytest
from flask_migrate import check, downgrade, upgrade

from tests.conftest import TEST_DATABASE_URL
from tests.services import create_database, drop_database


@pytest.fixture()
def empty_database():
    name = f"crm_mig_{uuid.uuid4().hex[:8]}"
    yield create_database(TEST_DATABASE_URL, name)
    drop_database(TEST_DATABASE_URL, name)


def test_upgrade_empty_to_head_then_no_drift_then_downgrade(empty_database, config_class):
    from app import create_app
    from config import normalise_db_url

    cfg = type("MigConfig", (config_class,), {"SQLALCHEMY_DATABASE_URI": normalise_db_url(empty_database)})
    application = create_app(cfg)
    with application.app_context():
        upgrade()
        # `alembic check`: autogenerate against the upgraded database finds nothing to do.
        check()
        downgrade(revision="base")
        upgrade()
    with psycopg.connect(empty_database) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"customers", "meetings", "tasks", "approval_requests", "approval_steps", "notifications",
            "audit_logs", "outbox_events", "processed_events", "ab_user", "ab_role"} <= tables


def test_init_command_is_idempotent(app):
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(args=["crm", "init"])
        assert result.exit_code == 0, result.output


def reloptions(db, *names):
    """{relation name: its storage options (pg_class.reloptions)} for the tables or indexes `names`."""
    import sqlalchemy as sa

    rows = db.session.execute(sa.text("SELECT relname, reloptions FROM pg_class WHERE relname = ANY(:names)"), {"names": list(names)})
    return dict(rows.all())


def test_list_tables_are_vacuumed_after_a_few_hundred_new_rows(db):
    """The list tables' autovacuum thresholds: 500 inserts, whatever the table's size (PostgreSQL's
    default waits for 20 % of it), so the newest rows every first page walks are all-visible."""
    rows = list(reloptions(db, "customers", "tasks", "meetings", "approval_requests").items())
    expected = {
        "autovacuum_vacuum_insert_threshold=500",
        "autovacuum_vacuum_insert_scale_factor=0",
        "autovacuum_vacuum_threshold=500",
        "autovacuum_vacuum_scale_factor=0.02",
    }
    assert len(rows) == 4 and all(set(options or ()) == expected for _name, options in rows), rows


def test_search_indexes_keep_no_pending_list(app, db, make):
    """Trigram GIN indexes without `fastupdate`: a new customer's entries are in the index at once,
    so no search reads a pending list (which grew with every insert until VACUUM)."""
    import sqlalchemy as sa

    options = reloptions(db, "ix_customers_name_trgm", "ix_customers_email_trgm", "ix_customers_search_trgm")
    assert len(options) == 3 and all(opts == ["fastupdate=off"] for opts in options.values()), options
    make.customer("sales", name="保留一覧なし商事")
    # 0 pages moved: the insert left nothing pending.
    for name in options:
        assert db.session.execute(sa.text("SELECT gin_clean_pending_list(CAST(:name AS regclass))"), {"name": name}).scalar_one() == 0
