"""app/audit_chain.py: every audit row linked into one SHA-256 chain; `crm audit verify` names the
first row changed or removed; the append-only trigger on PostgreSQL; concurrent writers and
sealers keep one chain; the migration links rows that were there before it.

The run's database is shared by every test: each test tags its own rows and puts back what
it tampered with, so the chain is whole again for whoever verifies next.
"""

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from app import audit
from app.audit_chain import GENESIS, digest, document, seal, verify
from models import AuditLog
from models.audit import AuditAction
from tests.helpers import unique_tag

ROOT = Path(__file__).resolve().parent.parent


def _write(db, tag, n=3, **fields):
    """Commit `n` audit rows for resource `tag` (one bulk insert); return their ids, oldest first."""
    from datetime import timedelta

    from models.base import utcnow

    now = utcnow()
    rows = [{"action": AuditAction.UPDATE, "resource_type": "chain-test", "resource_id": f"{tag}-{i}",
             "changes": {"after": {"n": i, "名前": "監査"}}, "timestamp": now + timedelta(microseconds=i), **fields}
            for i in range(n)]
    audit.record_many(db.session, rows)
    db.session.commit()
    return [r.id for r in _rows(db, tag)]


def _rows(db, tag):
    db.session.expire_all()
    return (db.session.query(AuditLog).filter(AuditLog.resource_id.like(f"{tag}-%"))
            .order_by(AuditLog.timestamp, AuditLog.id).all())


def _verify(db):
    """`verify` as the CLI runs it: across the months already archived (AUDIT_ARCHIVE_DIR) by other tests."""
    from flask import current_app

    from app.audit_archive import ranges

    return verify(db.engine, ranges(current_app.config["AUDIT_ARCHIVE_DIR"]))


def _verify_cli(app):
    result = app.test_cli_runner().invoke(args=["crm", "audit", "verify"])
    return result.exit_code, result.output


@pytest.fixture()
def superuser(database_url):
    """A psycopg connection as the database's superuser, outside the app (what an intruder with the password has)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def _as_retention(conn, sql, params=()):
    """Run `sql` in its own transaction with the retention flag the trigger lets through."""
    with conn.transaction():
        conn.execute("SET LOCAL crm.audit_retention = 'on'")
        return conn.execute(sql, params).rowcount


def test_rows_are_linked_in_order_and_the_chain_verifies(app, db):
    tag = unique_tag("chain")
    ids = _write(db, tag, n=4)
    assert all(r.seq is None for r in _rows(db, tag))  # the writer pays nothing for the chain
    seal(db.engine)
    rows = _rows(db, tag)
    seqs = [r.seq for r in rows]
    assert [r.id for r in rows] == ids and seqs == list(range(seqs[0], seqs[0] + 4))
    for before, row in zip(rows, rows[1:]):
        assert row.prev_hash == before.row_hash
    for row in rows:
        values = {c.name: getattr(row, c.name) for c in AuditLog.__table__.columns}
        assert row.row_hash == digest(document(values)) and len(row.row_hash) == 64
    report = _verify(db)
    assert report.ok, report.problem
    assert report.checked >= 4 and report.head_seq >= seqs[-1]
    code, out = _verify_cli(app)
    assert code == 0 and "intact" in out


def test_a_direct_sql_update_is_named_by_verify(app, db, superuser):
    """The intruder switches the trigger's flag on and rewrites one row's changes: verify names that row, exit 1."""
    tag = unique_tag("edit")
    ids = _write(db, tag, n=3)
    seal(db.engine)
    victim = ids[1]
    original = superuser.execute("SELECT changes::text FROM audit_logs WHERE id = %s", (victim,)).fetchone()[0]
    assert _as_retention(superuser, "UPDATE audit_logs SET changes = %s::json WHERE id = %s",
                         ('{"after": {"n": 99}}', victim)) == 1
    try:
        report = _verify(db)
        assert not report.ok and report.problem_row == victim, report.problem
        assert "changed" in report.problem
        code, out = _verify_cli(app)
        assert code == 1 and victim in out and "changed" in out
    finally:
        _as_retention(superuser, "UPDATE audit_logs SET changes = %s::json WHERE id = %s", (original, victim))
    assert _verify(db).ok


@pytest.mark.parametrize("which", ["middle", "last"])
def test_a_deleted_row_is_named_as_a_gap(app, db, superuser, which):
    """A row deleted by the superuser: verify names its position (and the row after it, or the head)."""
    tag = unique_tag("gone")
    ids = _write(db, tag, n=3)
    seal(db.engine)
    rows = _rows(db, tag)
    victim = rows[1] if which == "middle" else None
    if victim is None:
        # The chain's current last row, whoever wrote it.
        victim = db.session.query(AuditLog).filter(AuditLog.seq.is_not(None)).order_by(AuditLog.seq.desc()).first()
    saved = superuser.execute("SELECT * FROM audit_logs WHERE id = %s", (victim.id,))
    columns = [d.name for d in saved.description]
    values = saved.fetchone()
    assert _as_retention(superuser, "DELETE FROM audit_logs WHERE id = %s", (victim.id,)) == 1
    try:
        report = _verify(db)
        assert not report.ok and report.problem_seq == victim.seq, report.problem
        assert f"position {victim.seq} missing" in report.problem
        if which == "middle":
            assert report.problem_row == ids[2]  # the row after the gap
        else:
            assert "head" in report.problem
        code, out = _verify_cli(app)
        assert code == 1 and f"position {victim.seq} missing" in out
    finally:
        # Put the row back exactly (INSERT is what the trigger always allows).
        marks = ", ".join(["%s"] * len(columns))
        with superuser.transaction():
            superuser.execute(f"INSERT INTO audit_logs ({', '.join(columns)}) VALUES ({marks})",
                              [psycopg.types.json.Json(v) if c == "changes" and v is not None else v
                               for c, v in zip(columns, values)])
    assert _verify(db).ok


def test_the_app_connection_cannot_update_delete_or_truncate_audit_rows(db):
    tag = unique_tag("ro")
    (first, second) = _write(db, tag, n=2)
    seal(db.engine)
    for sql in ("UPDATE audit_logs SET ip_address = '198.51.100.9' WHERE id = :id",
                "DELETE FROM audit_logs WHERE id = :id",
                "TRUNCATE audit_logs"):
        # TRUNCATE waits for every other reader's lock first: never for long here.
        db.session.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            db.session.execute(sa.text(sql), {"id": first})
        db.session.rollback()
    # The ORM path too: a changed row object is refused at commit.
    row = db.session.get(AuditLog, first)
    row.resource_id = "rewritten"
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        db.session.commit()
    db.session.rollback()
    # Re-linking a sealed row, or linking while changing content, is refused as well.
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        db.session.execute(sa.text("UPDATE audit_logs SET seq = seq + 100000, row_hash = :h WHERE id = :id"),
                           {"id": first, "h": "f" * 64})
    db.session.rollback()
    assert db.session.get(AuditLog, first).resource_id == f"{tag}-0"


def test_the_link_of_an_unsealed_row_may_be_set_once_and_content_never(db):
    tag = unique_tag("link")
    (rid,) = _write(db, tag, n=1)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        db.session.execute(sa.text("UPDATE audit_logs SET seq = 999999999, prev_hash = :h, row_hash = :h, "
                                   "ip_address = 'forged' WHERE id = :id"), {"id": rid, "h": "a" * 64})
    db.session.rollback()
    seal(db.engine)
    assert _verify(db).ok


def test_the_retention_path_may_update_and_delete(db):
    """Inside a transaction that set the retention flag, the trigger lets UPDATE and DELETE through."""
    tag = unique_tag("ret")
    (rid,) = _write(db, tag, n=1)
    db.session.execute(sa.text("SET LOCAL crm.audit_retention = 'on'"))
    assert db.session.execute(sa.text("UPDATE audit_logs SET ip_address = '192.0.2.1' WHERE id = :id"), {"id": rid}).rowcount == 1
    assert db.session.execute(sa.text("DELETE FROM audit_logs WHERE id = :id"), {"id": rid}).rowcount == 1
    db.session.rollback()  # the flag ends with the transaction
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        db.session.execute(sa.text("DELETE FROM audit_logs WHERE id = :id"), {"id": rid})
    db.session.rollback()
    seal(db.engine)
    assert _verify(db).ok


def test_every_writer_joins_the_chain_flush_listener_and_raw_sql(app, db, make, superuser):
    """Rows from the flush listener and from raw SQL (no app code at all) are sealed alike."""
    customer = make.customer("sales")
    rid = "raw-" + unique_tag("sql")
    with superuser.transaction():
        superuser.execute("INSERT INTO audit_logs (id, action, resource_type, resource_id, timestamp) "
                          "VALUES (%s, 'UPDATE', 'system', %s, now())", (str(uuid.uuid4()), rid))
    seal(db.engine)
    db.session.expire_all()
    for resource_id in (customer.id, rid):
        rows = db.session.query(AuditLog).filter(AuditLog.resource_id == str(resource_id)).all()
        assert rows and all(r.seq is not None for r in rows)
    assert _verify(db).ok


WRITER = """
import sys
from app import audit, create_app
from app.audit_chain import seal
from config import TestConfig
app = create_app(TestConfig)
tag, n = sys.argv[1], int(sys.argv[2])
with app.app_context():
    from app.extensions import db
    for i in range(n):
        audit.record(db.session, "UPDATE", "chain-test", f"{tag}-{i}", {"after": {"i": i}}, user_id=None)
        db.session.commit()
        seal(db.engine, wait=i % 2 == 0)
print("done")
"""


def test_concurrent_writers_and_sealers_keep_one_chain(app, db, database_url, redis_url):
    """Threads and two other processes write rows and seal at once: every row gets one position, no fork."""
    tag = unique_tag("conc")
    per_writer = 15
    env = dict(os.environ, CRM_ENV="test", TEST_DATABASE_URL=database_url, REDIS_URL=redis_url,
               FAB_UPDATE_PERMS="0", LOG_LEVEL="ERROR")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, f"{tag}p{n}", str(per_writer)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(2)]
    errors = []

    def writer(n):
        try:
            with app.app_context():
                from app.extensions import db as tdb

                for i in range(per_writer):
                    audit.record(tdb.session, AuditAction.UPDATE, "chain-test", f"{tag}t{n}-{i}", {"i": i}, user_id=None)
                    tdb.session.commit()
                    seal(tdb.engine, wait=i % 2 == 1)
                tdb.session.remove()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "done" in out, err[-2000:]
    assert errors == []
    seal(db.engine)
    db.session.expire_all()
    mine = db.session.query(AuditLog).filter(AuditLog.resource_id.like(f"{tag}%")).all()
    assert len(mine) == 6 * per_writer
    assert all(r.seq is not None for r in mine) and len({r.seq for r in mine}) == len(mine)
    report = _verify(db)
    assert report.ok, report.problem


def test_the_chain_on_sqlite(sqlite_app):
    """The embedded default: the same sealer and verify (no trigger there; the chain still names an edit)."""
    from app.extensions import db

    with sqlite_app.app_context():
        tag = unique_tag("lite")
        _write(db, tag, n=3)
        assert seal(db.engine) >= 3
        assert _verify(db).ok
        victim = _rows(db, tag)[1]
        db.session.execute(sa.text("UPDATE audit_logs SET resource_type = 'forged' WHERE id = :id"), {"id": victim.id})
        db.session.commit()
        report = _verify(db)
        assert not report.ok and report.problem_row == victim.id
        code, out = _verify_cli(sqlite_app)
        assert code == 1 and victim.id in out
        db.session.execute(sa.text("UPDATE audit_logs SET resource_type = 'chain-test' WHERE id = :id"), {"id": victim.id})
        db.session.commit()
        assert _verify(db).ok
        db.session.remove()


def _revision_before_the_chain():
    """The revision the chain's migration follows (whatever lands before it)."""
    import importlib.util

    (path,) = (ROOT / "migrations" / "versions").glob("3c1d5e7f9a2b_*.py")
    spec = importlib.util.spec_from_file_location("chain_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.down_revision


def test_the_migration_links_rows_written_before_it(config_class):
    """Rows of a database at the previous revision are linked oldest first by the upgrade, and verify."""
    from flask_migrate import upgrade

    from app import create_app
    from config import normalise_db_url
    from tests.conftest import TEST_DATABASE_URL
    from tests.services import create_database, drop_database

    name = f"crm_chain_{uuid.uuid4().hex[:8]}"
    url = create_database(TEST_DATABASE_URL, name)
    try:
        application = create_app(type("ChainMig", (config_class,), {"SQLALCHEMY_DATABASE_URI": normalise_db_url(url)}))
        with application.app_context():
            upgrade(revision=_revision_before_the_chain())
            with psycopg.connect(url) as conn:
                for i in range(5):
                    conn.execute("INSERT INTO audit_logs (id, action, resource_type, resource_id, changes, timestamp) "
                                 "VALUES (%s, 'CREATE', 'customer', %s, %s::json, now() - %s * interval '1 day')",
                                 (str(uuid.uuid4()), f"old-{i}", '{"after": {"name": "旧"}}', 5 - i))
            upgrade()
            from app.extensions import db

            report = verify(db.engine)  # a database of its own, nothing archived
            assert report.ok and report.checked == 5 and report.head_seq == 5, report.problem
            rows = db.session.query(AuditLog).order_by(AuditLog.seq).all()
            assert [r.resource_id for r in rows] == [f"old-{i}" for i in range(5)]
            assert rows[0].seq == 1 and rows[0].prev_hash == GENESIS  # the chain starts from 64 zeros
            db.session.remove()
            db.engine.dispose()
    finally:
        drop_database(TEST_DATABASE_URL, name)


def test_the_embedded_default_seals_from_a_thread_of_the_web_process(sqlite_app, monkeypatch):
    """Without a worker (AUDIT_JOBS_IN_PROCESS), the web process's own thread links new rows (and runs retention)."""
    import time

    from app.audit_archive import start_in_process
    from app.extensions import db

    assert start_in_process(sqlite_app) is None  # off in tests unless asked for
    monkeypatch.setitem(sqlite_app.config, "AUDIT_JOBS_IN_PROCESS", True)
    monkeypatch.setitem(sqlite_app.config, "AUDIT_SEAL_SECONDS", 1)
    with sqlite_app.app_context():
        tag = unique_tag("thread")
        thread = start_in_process(sqlite_app)
        try:
            _write(db, tag, n=2)
            deadline = time.monotonic() + 30
            while any(r.seq is None for r in _rows(db, tag)) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert all(r.seq is not None for r in _rows(db, tag))
        finally:
            thread.stop()
        assert not thread.is_alive() and _verify(db).ok
        db.session.remove()


def test_api_audit_rows_show_their_link(client, auth, db):
    tag = unique_tag("api")
    (rid,) = _write(db, tag, n=1)
    seal(db.engine)
    row = db.session.get(AuditLog, rid)
    data = client.get(f"/api/audit/{rid}", headers=auth("compliance")).json["data"]
    assert (data["seq"], data["prevHash"], data["rowHash"]) == (row.seq, row.prev_hash, row.row_hash)
