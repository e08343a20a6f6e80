"""`crm backup` / `crm restore`: a consistent copy of the database with a manifest and checksums.

A backup is a directory holding
- the dump: `database.dump` (pg_dump's custom format) on PostgreSQL, `database.sqlite3`
  (a copy made with SQLite's online backup API) on the embedded default;
- `manifest.json`: format, database kind, schema revision (alembic_version), row counts
  per table, the outbox's state (pending events, newest event id), when, the app version,
  and the dump's SHA-256 and size;
- `SHA256SUMS`: the SHA-256 of the manifest and of the dump (`sha256sum -c` reads it).

On PostgreSQL the counts and the dump come from one snapshot: the counts are read in a
REPEATABLE READ transaction whose snapshot pg_dump is handed (`--snapshot`), so the
manifest describes exactly the rows in the dump while the application keeps writing.

Restore verifies both checksums, refuses a backup whose schema revision this code does
not know (a newer one), restores in one transaction (PostgreSQL: pg_restore's SQL through
`psql --single-transaction`; nothing half written when a statement fails), compares the
restored row counts with the manifest, and makes every cached answer and every token's
cached roles stale (the data they describe went back in time).
"""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from datetime import datetime, timezone

import sqlalchemy as sa
from flask import current_app

FORMAT = "crm-backup/1"
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
PG_DUMP_FILE = "database.dump"
SQLITE_FILE = "database.sqlite3"


class BackupError(Exception):
    """A backup that cannot be made, or a backup file that must not be restored (the message says why)."""


# ---------------------------------------------------------------- helpers


def sha256_of(path):
    """The hex SHA-256 of the file at `path`, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _url():
    return sa.engine.make_url(str(current_app.config["SQLALCHEMY_DATABASE_URI"]))


def _kind(url):
    if url.get_backend_name() == "postgresql":
        return "postgresql"
    if url.get_backend_name() == "sqlite":
        return "sqlite"
    raise BackupError(f"crm backup supports PostgreSQL and SQLite, not {url.get_backend_name()}")


def _libpq(url, database=None):
    """(libpq connection URL without the password, environment carrying it) for the PostgreSQL tools."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    if database is not None:
        plain = plain.set(database=database)
    return plain.render_as_string(hide_password=False), env


def _sqlite_path(url):
    path = url.database
    if not path or path == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return os.path.abspath(path)


def _tool(name):
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return found


def _run(args, env=None, stdin=None, what=None):
    """Run a command; BackupError with its stderr when it fails."""
    result = subprocess.run(args, env=env, stdin=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"{what or os.path.basename(args[0])} failed: {result.stderr.strip()[-2000:]}")
    return result


def check_pg_tools(connection):
    """Refuse pg_dump older than the server (it cannot dump a newer server's catalog)."""
    server = connection.execute(sa.text("SHOW server_version_num")).scalar_one()
    out = _run([_tool("pg_dump"), "--version"]).stdout
    client_major = int(out.split()[-1].split(".")[0]) if out else 0
    server_major = int(server) // 10000
    if client_major < server_major:
        raise BackupError(f"pg_dump {client_major} is older than the server ({server_major}): install postgresql-client-{server_major}")


# ---------------------------------------------------------------- what a database holds


def table_names(connection):
    """The application's tables (alembic_version left out), sorted."""
    return sorted(n for n in sa.inspect(connection).get_table_names() if n != "alembic_version")


def schema_revision(connection):
    """The database's alembic revision (None when it was never migrated)."""
    try:
        rows = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    except sa.exc.SQLAlchemyError:
        return None
    if len(rows) > 1:
        raise BackupError(f"the database has several alembic heads ({', '.join(rows)}): migrate it first")
    return rows[0] if rows else None


def row_counts(connection):
    """{table: rows} for every application table."""
    prep = connection.dialect.identifier_preparer
    return {n: connection.execute(sa.text(f"SELECT count(*) FROM {prep.quote(n)}")).scalar_one() for n in table_names(connection)}


def outbox_state(connection):
    """{"pending": unpublished events, "total": events, "newestEventId": id of the newest event or None}."""
    pending = connection.execute(sa.text("SELECT count(*) FROM outbox_events WHERE published_at IS NULL")).scalar_one()
    total = connection.execute(sa.text("SELECT count(*) FROM outbox_events")).scalar_one()
    newest = connection.execute(sa.text("SELECT id FROM outbox_events ORDER BY created_at DESC, id DESC LIMIT 1")).scalar_one_or_none()
    return {"pending": pending, "total": total, "newestEventId": newest}


def describe(connection):
    """The part of a manifest read from the database: revision, row counts, outbox state."""
    return {"schemaRevision": schema_revision(connection), "tables": row_counts(connection), "outbox": outbox_state(connection)}


def code_heads():
    """The alembic head revisions of this code's migrations."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(current_app.config["MIGRATIONS_DIR"]).get_heads()


def known_revision(revision):
    """True when this code's migrations contain `revision` (so it is not newer than the code)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory(current_app.config["MIGRATIONS_DIR"]).get_revision(revision) is not None
    except CommandError:
        return False


# ---------------------------------------------------------------- backup


def _name(now, revision):
    return f"crm-{now.strftime('%Y%m%dT%H%M%SZ')}-{revision or 'empty'}"


def backup(out_dir=None):
    """Write a backup directory under `out_dir` (default BACKUP_DIR); return (path, manifest)."""
    from app.extensions import db

    url = _url()
    kind = _kind(url)
    out_dir = os.path.abspath(out_dir or current_app.config["BACKUP_DIR"])
    os.makedirs(out_dir, exist_ok=True)
    now = datetime.now(timezone.utc)
    work = tempfile.mkdtemp(prefix=".crm-backup-", dir=out_dir)
    try:
        if kind == "postgresql":
            described, dump = _dump_postgresql(db.engine, url, work)
        else:
            described, dump = _dump_sqlite(url, work)
        manifest = {
            "format": FORMAT,
            "database": kind,
            "createdAt": now.isoformat(),
            "appVersion": current_app.config["APP_VERSION"],
            **described,
            "dump": {"file": os.path.basename(dump), "sha256": sha256_of(dump), "bytes": os.path.getsize(dump)},
        }
        manifest_path = os.path.join(work, MANIFEST)
        with open(manifest_path, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True, ensure_ascii=False)
            fh.write("\n")
        with open(os.path.join(work, SUMS), "w", encoding="utf-8") as fh:
            for path in (manifest_path, dump):
                fh.write(f"{sha256_of(path)}  {os.path.basename(path)}\n")
        final = os.path.join(out_dir, _name(now, manifest["schemaRevision"]))
        os.rename(work, final)  # a backup directory is complete or absent
        return final, manifest
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _dump_postgresql(engine, url, work):
    """pg_dump (custom format) of the snapshot the manifest's counts were read in."""
    dump = os.path.join(work, PG_DUMP_FILE)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with conn.begin():
            conn.execute(sa.text("SET TRANSACTION READ ONLY"))
            snapshot = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
            check_pg_tools(conn)
            described = describe(conn)
            target, env = _libpq(url)
            # The snapshot stays valid while this transaction is open: pg_dump sees the same rows.
            _run(
                [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}", f"--file={dump}", f"--dbname={target}"],
                env=env,
            )
    return described, dump


def _dump_sqlite(url, work):
    """A copy made with SQLite's online backup API, described from the copy itself."""
    source = _sqlite_path(url)
    if not os.path.exists(source):
        raise BackupError(f"the SQLite database {source} does not exist")
    dump = os.path.join(work, SQLITE_FILE)
    src = sqlite3.connect(source)
    dst = sqlite3.connect(dump)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    engine = sa.create_engine(f"sqlite:///{dump}")
    try:
        with engine.connect() as conn:
            described = describe(conn)
    finally:
        engine.dispose()
    return described, dump


# ---------------------------------------------------------------- verification


def read_manifest(path):
    """The manifest of the backup directory `path`, after checking both checksums; BackupError when anything is off."""
    path = os.path.abspath(path)
    manifest_path, sums_path = os.path.join(path, MANIFEST), os.path.join(path, SUMS)
    if not os.path.isdir(path) or not os.path.exists(manifest_path) or not os.path.exists(sums_path):
        raise BackupError(f"{path} is not a backup directory (needs {MANIFEST} and {SUMS})")
    sums = {}
    with open(sums_path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                digest, _, name = line.strip().partition("  ")
                sums[name] = digest
    if sums.get(MANIFEST) != sha256_of(manifest_path):
        raise BackupError(f"checksum mismatch: {MANIFEST} is not the file the backup wrote")
    with open(manifest_path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r} (expected {FORMAT})")
    dump_name = manifest["dump"]["file"]
    dump = os.path.join(path, dump_name)
    if os.path.basename(dump_name) != dump_name or not os.path.exists(dump):
        raise BackupError(f"the dump {dump_name} is missing")
    actual = sha256_of(dump)
    if actual != manifest["dump"]["sha256"] or sums.get(dump_name) != actual:
        raise BackupError(f"checksum mismatch: {dump_name} is damaged or not the file the backup wrote")
    return manifest


def check_restorable(manifest):
    """Refuse a manifest of another database kind or of a schema revision newer than this code's head."""
    kind = _kind(_url())
    if manifest["database"] != kind:
        raise BackupError(f"this is a {manifest['database']} backup; the configured database is {kind}")
    revision = manifest.get("schemaRevision")
    if revision is not None and not known_revision(revision):
        heads = ", ".join(code_heads())
        raise BackupError(f"the backup's schema revision {revision} is newer than this code's head ({heads}): restore it with the code it came from")


# ---------------------------------------------------------------- restore


def restore(path, force=False):
    """Restore the backup directory `path` into the configured database; return (manifest, restored counts).

    Refuses (BackupError) a bad checksum, a newer schema revision, or a database that
    already holds tables unless `force`.
    """
    from app.extensions import db

    manifest = read_manifest(path)
    check_restorable(manifest)
    url = _url()
    dump = os.path.join(os.path.abspath(path), manifest["dump"]["file"])
    db.session.remove()
    db.engine.dispose()  # no pooled connection holds the database while it is replaced
    if manifest["database"] == "postgresql":
        _restore_postgresql(url, dump, force)
    else:
        _restore_sqlite(url, dump, force)
    db.engine.dispose()
    with db.engine.connect() as conn:
        restored = describe(conn)
    if restored["tables"] != manifest["tables"] or restored["schemaRevision"] != manifest["schemaRevision"]:
        differ = sorted(t for t in set(restored["tables"]) | set(manifest["tables"]) if restored["tables"].get(t) != manifest["tables"].get(t))
        raise BackupError(f"restored row counts differ from the manifest: {', '.join(differ) or 'schema revision'}")
    forget_cached_state(restored["tables"])
    return manifest, restored


def _has_tables(connection):
    return bool(sa.inspect(connection).get_table_names())


def _restore_postgresql(url, dump, force):
    import psycopg
    import psycopg.sql

    maintenance, env = _libpq(url, database="postgres")
    target, _env = _libpq(url)
    name = url.database
    with psycopg.connect(maintenance, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            occupied = _has_tables(conn)
    finally:
        engine.dispose()
    if occupied and not force:
        raise BackupError(f"database {name} already holds tables: pass --force to replace them")
    _psql_restore(dump, target, env)


def _psql_restore(dump, target, env):
    """pg_restore's SQL, written out whole first, run by psql after emptying the public schema, in one transaction."""
    with tempfile.NamedTemporaryFile(suffix=".sql") as script:
        # To a file, not a pipe: a pg_restore failing halfway would hand psql a short script
        # that it would commit.
        _run([_tool("pg_restore"), "--no-owner", "--no-privileges", f"--file={script.name}", dump], env=env, what="pg_restore")
        # One transaction: the old schema dropped and the backup's created and filled, or nothing.
        psql = [_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                "-c", "DROP SCHEMA IF EXISTS public CASCADE", "-c", "CREATE SCHEMA public", "-f", script.name, f"--dbname={target}"]
        result = subprocess.run(psql, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"psql (restore) failed, nothing restored: {result.stderr.strip()[-2000:]}")


def _restore_sqlite(url, dump, force):
    target = _sqlite_path(url)
    if os.path.exists(target) and os.path.getsize(target) > 0 and not force:
        conn = sqlite3.connect(target)
        try:
            occupied = bool(conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1").fetchone())
        finally:
            conn.close()
        if occupied:
            raise BackupError(f"{target} already holds tables: pass --force to replace them")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    src = sqlite3.connect(dump)
    dst = sqlite3.connect(target)
    try:
        # The backup API replaces the target's pages in one step, under SQLite's own lock.
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def forget_cached_state(tables):
    """After a restore: every cached answer and every token's cached roles describe data that went back in time."""
    from app import caching, tokens

    caching.invalidate(*tables)
    tokens.bump(everyone=True)
