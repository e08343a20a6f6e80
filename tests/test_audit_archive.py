"""app/audit_archive.py: months past AUDIT_RETENTION_MONTHS moved to a gzip JSONL archive with a
SHA-256 manifest, gone from the table, read back identically by `crm audit export`; a damaged
archive refused; the chain still verifying across archived months; PostgreSQL and SQLite.

Each test dates its rows in a month of its own, decades back, and archives with a `now`
whose retention boundary falls just after that month, so no other test's rows move.
"""

import csv
import gzip
import io
import json
import os
import re
import shutil
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from app import audit, audit_archive
from app.audit_archive import ArchiveError, boundary, retain
from app.audit_chain import document, seal, verify
from models import AuditLog
from models.audit import AuditAction
from tests.helpers import unique_tag


def _at(year, month, day=10):
    return datetime(year, month, day, 9, 30, tzinfo=timezone.utc)


def _after(year, month):
    """A `now` whose 84-month boundary is the first day of the month after (year, month)."""
    y, m = (year, month + 1) if month < 12 else (year + 1, 1)
    return datetime(y + 7, m, 15, tzinfo=timezone.utc)


def _write(db, tag, when, n=3):
    rows = [{"action": AuditAction.UPDATE, "resource_type": "archive-test", "resource_id": f"{tag}-{i}",
             "changes": {"before": {"phone": f"03-{i}"}, "after": {"phone": f"03-{i + 1}", "メモ": "旧"}},
             "timestamp": when + timedelta(seconds=i), "ip_address": "192.0.2.10", "user_id": None}
            for i in range(n)]
    audit.record_many(db.session, rows)
    db.session.commit()


def _rows(db, tag):
    db.session.expire_all()
    return db.session.query(AuditLog).filter(AuditLog.resource_id.like(f"{tag}-%")).order_by(AuditLog.seq).all()


def _lines(rows):
    """The JSONL lines the archive must give back for `rows` (as the chain hashed them)."""
    out = []
    for row in rows:
        doc = document({c.name: getattr(row, c.name) for c in AuditLog.__table__.columns})
        doc["rowHash"] = row.row_hash
        out.append(json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")))
    return out


def _directory(app):
    return app.config["AUDIT_ARCHIVE_DIR"]


def _verify(app, db):
    return verify(db.engine, audit_archive.ranges(_directory(app)))


def _cli(app, *args):
    result = app.test_cli_runner().invoke(args=["crm", "audit", *args])
    return result.exit_code, result.output


def test_the_boundary_is_the_start_of_the_month_wholly_past_retention():
    assert boundary(datetime(2026, 12, 1, 0, 0, tzinfo=timezone.utc), 84) == datetime(2019, 12, 1, tzinfo=timezone.utc)
    assert boundary(datetime(2026, 12, 31, 23, 59, tzinfo=timezone.utc), 84) == datetime(2019, 12, 1, tzinfo=timezone.utc)
    assert boundary(datetime(2026, 1, 15, tzinfo=timezone.utc), 84) == datetime(2019, 1, 1, tzinfo=timezone.utc)
    assert boundary(datetime(2026, 3, 15, tzinfo=timezone.utc), 3) == datetime(2025, 12, 1, tzinfo=timezone.utc)


def test_the_default_retention_is_84_months(app):
    from config import Config

    assert Config.AUDIT_RETENTION_MONTHS == 84 and app.config["AUDIT_RETENTION_MONTHS"] == 84


def test_old_months_are_archived_gone_from_the_table_and_exported_identically(app, db, tmp_path):
    tag, later = unique_tag("arch"), unique_tag("kept")
    _write(db, tag, _at(1989, 3), n=4)
    _write(db, later, _at(1989, 4, 2), n=1)  # the boundary's own month stays
    seal(db.engine)
    expected = _lines(_rows(db, tag))
    assert len(expected) == 4

    written = retain(db.engine, _directory(app), 84, now=_after(1989, 3))
    (manifest,) = [m for m in written if m["month"] == "1989-03"]
    path = os.path.join(_directory(app), manifest["file"])
    assert manifest["file"] == "audit-1989-03.jsonl.gz" and manifest["rows"] == 4
    assert manifest["sha256"] == audit_archive._sha256(path) and manifest["ranges"]
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        assert fh.read().splitlines() == expected
    assert _rows(db, tag) == [] and len(_rows(db, later)) == 1

    code, out = _cli(app, "export", "--month", "1989-03")
    assert code == 0 and out.splitlines() == expected
    target = tmp_path / "march.jsonl"
    assert _cli(app, "export", "--month", "1989-03", "--output", str(target))[0] == 0
    assert target.read_text(encoding="utf-8").splitlines() == expected
    code, out = _cli(app, "export", "--month", "1989-03", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out.lstrip("\ufeff"))))
    docs = [json.loads(line) for line in expected]
    assert [r["id"] for r in table] == [d["id"] for d in docs]
    assert [json.loads(r["changes"]) for r in table] == [d["changes"] for d in docs]
    assert [r["rowHash"] for r in table] == [d["rowHash"] for d in docs]

    # The chain is whole across the archived positions, with and without reading the archives.
    report = _verify(app, db)
    assert report.ok and report.archived >= 4, report.problem
    assert _cli(app, "verify")[0] == 0
    code, out = _cli(app, "verify", "--deep")
    assert code == 0, out


def test_a_corrupted_archive_is_refused(app, db, tmp_path):
    tag = unique_tag("bad")
    _write(db, tag, _at(1989, 5))
    seal(db.engine)
    expected = _lines(_rows(db, tag))
    (manifest,) = [m for m in retain(db.engine, _directory(app), 84, now=_after(1989, 5)) if m["month"] == "1989-05"]
    path = os.path.join(_directory(app), manifest["file"])
    good = open(path, "rb").read()
    try:
        damaged = bytearray(good)
        damaged[len(damaged) // 2] ^= 0xFF
        open(path, "wb").write(bytes(damaged))
        target = tmp_path / "out.jsonl"
        code, out = _cli(app, "export", "--month", "1989-05", "--output", str(target))
        assert code == 1 and "archive refused" in out and "SHA-256" in out
        assert not target.exists()
        code, out = _cli(app, "export", "--month", "1989-05")
        assert code == 1 and "archive refused" in out and '"id"' not in out  # nothing of it printed
        code, out = _cli(app, "verify", "--deep")
        assert code == 1 and manifest["file"] in out

        # A row rewritten and the file's checksum updated in the manifest: the row's hash refuses it.
        docs = [json.loads(line) for line in expected]
        docs[1]["ipAddress"] = "203.0.113.66"
        forged = tmp_path / "forged.jsonl.gz"
        with gzip.open(forged, "wt", encoding="utf-8") as fh:
            fh.writelines(json.dumps(d, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n" for d in docs)
        shutil.copy(forged, path)
        manifest_path = manifest["_path"]
        original_manifest = open(manifest_path, encoding="utf-8").read()
        doc = json.loads(original_manifest)
        doc["sha256"] = audit_archive._sha256(path)
        open(manifest_path, "w", encoding="utf-8").write(json.dumps(doc))
        try:
            code, out = _cli(app, "export", "--month", "1989-05", "--output", str(target))
            assert code == 1 and docs[1]["id"] in out and "hash" in out and not target.exists()
        finally:
            open(manifest_path, "w", encoding="utf-8").write(original_manifest)
    finally:
        open(path, "wb").write(good)
    code, out = _cli(app, "export", "--month", "1989-05")
    assert code == 0 and out.splitlines() == expected


def test_verify_needs_the_manifest_of_an_archived_month(app, db):
    """Without the manifest the archived positions are a gap like any removed rows: verify names it."""
    tag = unique_tag("gap")
    _write(db, tag, _at(1989, 7))
    seal(db.engine)
    first = _rows(db, tag)[0].seq
    (manifest,) = [m for m in retain(db.engine, _directory(app), 84, now=_after(1989, 7)) if m["month"] == "1989-07"]
    aside = manifest["_path"] + ".aside"
    os.replace(manifest["_path"], aside)
    try:
        report = _verify(app, db)
        assert not report.ok and report.problem_seq == first, report.problem
        assert re.search(rf"positions? {first}\b.* missing", report.problem), report.problem
        code, out = _cli(app, "verify")
        assert code == 1 and "missing" in out
    finally:
        os.replace(aside, manifest["_path"])
    assert _verify(app, db).ok


def test_a_month_that_fails_leaves_its_rows_and_no_files(app, db):
    """The delete failing (here: refused by a listener) rolls the month back and removes both files."""
    tag = unique_tag("fail")
    _write(db, tag, _at(1989, 9))
    seal(db.engine)
    before = [(r.id, r.seq, r.row_hash) for r in _rows(db, tag)]

    def refuse(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE FROM AUDIT_LOGS"):
            raise RuntimeError("disk on fire")

    sa.event.listen(db.engine, "before_cursor_execute", refuse)
    try:
        with pytest.raises(Exception, match="disk on fire"):
            retain(db.engine, _directory(app), 84, now=_after(1989, 9))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", refuse)
    assert [(r.id, r.seq, r.row_hash) for r in _rows(db, tag)] == before
    assert not [n for n in os.listdir(_directory(app)) if n.startswith("audit-1989-09")]
    written = retain(db.engine, _directory(app), 84, now=_after(1989, 9))
    assert [m["file"] for m in written if m["month"] == "1989-09"] == ["audit-1989-09.jsonl.gz"]
    assert _rows(db, tag) == [] and _verify(app, db).ok


def test_a_late_row_of_an_archived_month_goes_to_a_second_part(app, db):
    tag, late = unique_tag("part"), unique_tag("late")
    _write(db, tag, _at(1989, 11), n=2)
    seal(db.engine)
    first = retain(db.engine, _directory(app), 84, now=_after(1989, 11))
    assert [m["part"] for m in first if m["month"] == "1989-11"] == [1]
    _write(db, late, _at(1989, 11, 20), n=1)  # e.g. an import of old records, after the month was archived
    seal(db.engine)
    expected = _lines(_rows(db, late))
    second = retain(db.engine, _directory(app), 84, now=_after(1989, 11))
    assert [(m["part"], m["file"]) for m in second if m["month"] == "1989-11"] == [(2, "audit-1989-11.p2.jsonl.gz")]
    code, out = _cli(app, "export", "--month", "1989-11")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and lines[-1] == expected[0]
    assert {json.loads(x)["resourceId"] for x in lines} == {f"{tag}-0", f"{tag}-1", f"{late}-0"}
    assert _verify(app, db).ok


def test_export_names_a_bad_month_and_a_missing_archive(app):
    code, out = _cli(app, "export", "--month", "1989-13")
    assert code == 2 and "--month" in out
    code, out = _cli(app, "export", "--month", "March")
    assert code == 2 and "--month" in out
    code, out = _cli(app, "export", "--month", "1970-01")
    assert code == 1 and "no archive of 1970-01" in out
    code, out = _cli(app, "export", "--month", "1970-01", "--format", "xml")
    assert code == 2 and "--format" in out


def test_the_retain_command_archives_whatever_is_past_retention(app, db):
    tag = unique_tag("cmd")
    _write(db, tag, _at(1988, 1))
    code, out = _cli(app, "retain")  # the real clock: 1988 is far past 84 months
    assert code == 0 and "of 1988-01 to audit-1988-01.jsonl.gz" in out, out
    assert _rows(db, tag) == [] and _verify(app, db).ok
    code, out = _cli(app, "retain")
    assert code == 0 and "No audit rows older than 84 months" in out


def test_retention_on_sqlite(sqlite_app):
    """The embedded default: the same archive and export (no trigger to pass there)."""
    from app.extensions import db

    with sqlite_app.app_context():
        tag = unique_tag("lite")
        _write(db, tag, _at(1989, 3))
        seal(db.engine)
        expected = _lines(_rows(db, tag))
        written = retain(db.engine, _directory(sqlite_app), 84, now=_after(1989, 3))
        assert [m["rows"] for m in written if m["month"] == "1989-03"] == [3]
        assert _rows(db, tag) == []
        code, out = _cli(sqlite_app, "export", "--month", "1989-03")
        assert code == 0 and out.splitlines() == expected
        assert _verify(sqlite_app, db).ok
        db.session.remove()


def test_production_archives_nothing_until_the_archive_folder_is_named(app, db, monkeypatch):
    """ProductionConfig has no default AUDIT_ARCHIVE_DIR (a container's disk is ephemeral): rows stay until it is set."""
    import subprocess
    import sys

    from app.audit_archive import retain_app
    from config import BASE_DIR

    env = {k: v for k, v in os.environ.items() if k != "AUDIT_ARCHIVE_DIR"}
    code = "from config import ProductionConfig as P, DevelopmentConfig as D; print(repr(P.AUDIT_ARCHIVE_DIR), D.AUDIT_ARCHIVE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True).stdout.split()
    assert out == ["''", os.path.join(BASE_DIR, "instance", "audit-archive")]
    tag = unique_tag("noarch")
    _write(db, tag, _at(1987, 6))
    monkeypatch.setitem(app.config, "AUDIT_ARCHIVE_DIR", "")
    assert retain_app(app) == [] and len(_rows(db, tag)) == 3
    code, out = _cli(app, "retain")
    assert code == 1 and "AUDIT_ARCHIVE_DIR is not set" in out
    monkeypatch.undo()
    assert [m["month"] for m in retain_app(app)] == ["1987-06"] and _rows(db, tag) == []
