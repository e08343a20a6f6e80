"""`crm backup` / `crm restore` (app/backup.py): the restore drill on PostgreSQL, refusals, SQLite round trip.

The drill and the SQLite round trip work on databases of their own (`fresh_app`); the refusals share one
(`scratch_app`) and check that they leave it as it was.
"""

import json
import os
import re

import pytest
import sqlalchemy as sa

from app import backup
from tests.conftest import TEST_DATABASE_URL
from tests.services import drop_database

SAMPLE = 5


def _seed(application):
    result = application.test_cli_runner().invoke(args=["crm", "seed-demo", "--customers", "6"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    from app.extensions import db

    with application.app_context():
        # Events still waiting for the relay: the outbox state the manifest must carry over.
        db.session.execute(sa.text(
            "UPDATE outbox_events SET published_at = NULL WHERE id IN (SELECT id FROM outbox_events ORDER BY created_at DESC LIMIT 3)"
        ))
        db.session.commit()


def _state(application):
    """What the drill compares: row counts, a sample of customers, the outbox, the triggers."""
    from app.extensions import db

    with application.app_context():
        conn = db.session.connection()
        customers = conn.execute(sa.text("SELECT * FROM customers ORDER BY id LIMIT :n"), {"n": SAMPLE}).mappings().all()
        outbox = conn.execute(sa.text("SELECT id, type, sequence, published_at FROM outbox_events ORDER BY id")).all()
        triggers = []
        if conn.dialect.name == "postgresql":
            triggers = conn.execute(sa.text(
                "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2"
            )).all()
        state = {
            "tables": backup.row_counts(conn),
            "revision": backup.schema_revision(conn),
            "customers": [dict(r) for r in customers],
            "outbox": [tuple(r) for r in outbox],
            "pending": backup.outbox_state(conn)["pending"],
            "triggers": [tuple(r) for r in triggers],
        }
        db.session.remove()
        return state


def _backup(application, out):
    result = application.test_cli_runner().invoke(args=["crm", "backup", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return re.search(r"Backup written: (\S+)", result.output).group(1)


def _restore(application, path, *extra):
    return application.test_cli_runner().invoke(args=["crm", "restore", *extra, str(path)])


def _rewrite_manifest(path, change):
    """Edit a backup's manifest and write SHA256SUMS to match, as someone forging a backup would."""
    manifest_path = os.path.join(path, backup.MANIFEST)
    with open(manifest_path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    change(manifest)
    with open(manifest_path, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh)
    dump = os.path.join(path, manifest["dump"]["file"])
    with open(os.path.join(path, backup.SUMS), "w", encoding="utf-8") as fh:
        fh.write(f"{backup.sha256_of(manifest_path)}  {backup.MANIFEST}\n{backup.sha256_of(dump)}  {manifest['dump']['file']}\n")


def test_restore_drill_postgresql(fresh_app, tmp_path):
    drill = fresh_app()
    _seed(drill)
    sealed = drill.test_cli_runner().invoke(args=["crm", "audit", "seal"])  # the audit rows join the hash chain
    assert sealed.exit_code == 0, sealed.output
    before = _state(drill)
    assert before["pending"] >= 3 and before["tables"]["customers"] >= 6 and before["triggers"]
    path = _backup(drill, tmp_path)

    with drill.app_context():
        manifest = backup.read_manifest(path)
    assert manifest["tables"] == before["tables"]
    assert manifest["schemaRevision"] == before["revision"] and manifest["database"] == "postgresql"
    assert manifest["outbox"]["pending"] == before["pending"]
    assert manifest["outbox"]["newestEventId"] in {row[0] for row in before["outbox"]}
    assert manifest["dump"]["sha256"] == backup.sha256_of(os.path.join(path, backup.PG_DUMP_FILE))

    # A database that holds tables is not replaced without --force.
    refused = _restore(drill, path)
    assert refused.exit_code != 0 and "--force" in refused.output

    from app import tokens
    from app.extensions import redis_client

    with drill.app_context():
        tokens.current_epoch(1)  # the everyone-epoch counter exists
        everyone = redis_client().mget(tokens.epoch_keys(1))[0]

    drop_database(TEST_DATABASE_URL, drill.crm_database)
    result = _restore(drill, path)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "counts match the manifest" in result.output
    assert _state(drill) == before
    # The audit rows come back byte for byte: their hash chain still verifies.
    verified = drill.test_cli_runner().invoke(args=["crm", "audit", "verify", "--no-seal"])
    assert verified.exit_code == 0, verified.output
    # Cached answers and tokens' cached roles describe data that went back in time: made stale.
    with drill.app_context():
        assert redis_client().mget(tokens.epoch_keys(1))[0] != everyone

    # Writes after the backup are gone after a forced restore; the triggers are the backup's.
    from app.extensions import db

    with drill.app_context():
        db.session.execute(sa.text("DELETE FROM outbox_events WHERE id = :id"), {"id": before["outbox"][0][0]})
        db.session.commit()
        db.session.remove()
    assert _state(drill) != before
    forced = _restore(drill, path, "--force")
    assert forced.exit_code == 0, forced.output + repr(forced.exception)
    assert _state(drill) == before


def test_restore_refuses_a_newer_schema_revision(scratch_app, tmp_path):
    target = scratch_app
    before = _state(target)
    path = _backup(target, tmp_path)
    _rewrite_manifest(path, lambda m: m.update(schemaRevision="f00dfeedbeef"))
    result = _restore(target, path, "--force")
    assert result.exit_code != 0
    assert "f00dfeedbeef is newer than this code's head" in result.output
    assert _state(target) == before  # nothing touched


def test_restore_refuses_a_bad_checksum(scratch_app, tmp_path):
    target = scratch_app
    before = _state(target)
    path = _backup(target, tmp_path)
    with open(os.path.join(path, backup.PG_DUMP_FILE), "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    damaged = _restore(target, path, "--force")
    assert damaged.exit_code != 0 and "checksum mismatch: database.dump" in damaged.output

    # A manifest edited without fixing SHA256SUMS is refused too.
    other = _backup(target, tmp_path / "again")
    manifest_path = os.path.join(other, backup.MANIFEST)
    text = open(manifest_path, encoding="utf-8").read()
    with open(manifest_path, "w", encoding="utf-8") as fh:
        fh.write(text.replace('"pending": 0', '"pending": 7'))
    edited = _restore(target, other, "--force")
    assert edited.exit_code != 0 and "checksum mismatch: manifest.json" in edited.output
    assert _state(target) == before  # nothing touched


def test_restore_refuses_another_kind_of_database(scratch_app, tmp_path):
    target = scratch_app
    path = _backup(target, tmp_path)
    _rewrite_manifest(path, lambda m: m.update(database="sqlite"))
    result = _restore(target, path, "--force")
    assert result.exit_code != 0 and "this is a sqlite backup; the configured database is postgresql" in result.output


def test_sqlite_round_trip(fresh_app, tmp_path):
    embedded = fresh_app("sqlite", tmp_dir=str(tmp_path))
    _seed(embedded)
    before = _state(embedded)
    path = _backup(embedded, tmp_path / "backups")
    with embedded.app_context():
        manifest = backup.read_manifest(path)
    assert manifest["database"] == "sqlite" and manifest["tables"] == before["tables"]
    assert manifest["outbox"]["pending"] == before["pending"] >= 3

    from app.extensions import db

    with embedded.app_context():
        db.engine.dispose()
        os.remove(sa.engine.make_url(embedded.config["SQLALCHEMY_DATABASE_URI"]).database)
    result = _restore(embedded, path)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert _state(embedded) == before


@pytest.mark.parametrize("bad", ["not-a-backup", "missing-sums"])
def test_restore_refuses_what_is_not_a_backup(app, tmp_path, bad):
    folder = tmp_path / bad
    folder.mkdir()
    if bad == "missing-sums":
        (folder / backup.MANIFEST).write_text("{}")
    result = app.test_cli_runner().invoke(args=["crm", "restore", str(folder)])
    assert result.exit_code != 0 and "is not a backup directory" in result.output
