"""`flask --app wsgi crm ...`: initialise, create users, seed demo data."""

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade

from app.roles import ROLES, sync_roles
from app.services.users import create_user


@click.group("crm")
def crm_cli():
    """CRM administration commands."""


@crm_cli.command("init")
@with_appcontext
def init_command():
    """Migrate the database to head and sync roles and permissions (safe to re-run)."""
    upgrade()
    sync_roles(current_app.appbuilder)
    click.echo("Database migrated and roles synced.")


@crm_cli.command("create-user")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", required=True, type=click.Choice(list(ROLES)))
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@with_appcontext
def create_user_command(email, name, role, password):
    """Create a user with a role (password from --password or a prompt)."""
    if len(password) < 8:
        raise click.BadParameter("must be at least 8 characters", param_hint="--password")
    try:
        user = create_user(email, name, role, password)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {role} user {user.email} (id {user.id}).")


@crm_cli.command("seed-demo")
@click.option("--customers", default=50, show_default=True)
@click.option("--if-empty", is_flag=True, help="Do nothing when users already exist.")
@with_appcontext
def seed_demo_command(customers, if_empty):
    """Create one user per role plus realistic demo customers, meetings, tasks and requests."""
    from app.demo import seed_demo

    sm = current_app.appbuilder.sm
    if if_empty and sm.count_users() > 0:
        click.echo("Users exist; demo data not seeded.")
        return
    logins = seed_demo(customers=customers)
    click.echo("Demo data seeded. Logins:")
    for email, role in logins:
        click.echo(f"  {role:<10} {email} / {current_app.config['DEMO_PASSWORD']}")


@crm_cli.command("recount")
@with_appcontext
def recount_command():
    """Rebuild the dashboard counters from the tables in one transaction (after bulk loads)."""
    from app.extensions import db
    from app.services.dashboard import recount

    keys = recount()
    db.session.commit()
    if keys is None:
        click.echo("This database counts rows directly (no counters to rebuild).")
    else:
        click.echo(f"Dashboard counters rebuilt: {keys} keys.")


@crm_cli.command("reports-sweep")
@with_appcontext
def reports_sweep_command():
    """Delete report files past REPORT_RETENTION_DAYS (the worker repeats this every REPORT_SWEEP_SECONDS)."""
    from app.extensions import db
    from app.services.reports import sweep_expired

    click.echo(f"Expired reports removed: {sweep_expired(db.session)}")


@crm_cli.command("health")
@with_appcontext
def health_command():
    """Print the outbox backlog as JSON (exit 1 when events wait longer than a minute)."""
    import json

    from app.services.outbox import outbox_backlog

    backlog = outbox_backlog()
    click.echo(json.dumps({"outbox": backlog}))
    if backlog["oldestAgeSeconds"] > 60:
        raise SystemExit(1)


# --- ops: backups (app/backup.py) ---
@crm_cli.command("backup")
@click.option("--out", default=None, help="directory to write the backup under (default BACKUP_DIR)")
@with_appcontext
def backup_command(out):
    """Back up the database (pg_dump custom format / SQLite backup API) with a manifest and SHA-256 sums."""
    from app import backup

    try:
        path, manifest = backup.backup(out)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    rows = sum(manifest["tables"].values())
    click.echo(f"Backup written: {path} (revision {manifest['schemaRevision']}, {rows} rows, {manifest['dump']['bytes']} bytes)")


@crm_cli.command("restore")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--force", is_flag=True, help="Replace a database that already holds tables.")
@with_appcontext
def restore_command(path, force):
    """Restore a backup directory after checking its checksums and schema revision; compare the row counts."""
    from app import backup

    try:
        manifest, _restored = backup.restore(path, force=force)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    rows = sum(manifest["tables"].values())
    click.echo(f"Restored {path}: revision {manifest['schemaRevision']}, {rows} rows, counts match the manifest.")
    heads = backup.code_heads()
    if manifest["schemaRevision"] not in heads:
        click.echo("The backup predates this code's schema: run `crm init` to migrate it to head.")


# --- bell: the notification stream process (app/stream.py) ---
@crm_cli.command("stream")
@click.option("--host", default=None, help="address to listen on (default STREAM_HOST)")
@click.option("--port", default=None, type=int, help="port (default STREAM_PORT)")
@click.pass_obj
def stream_command(info, host, port):
    """Serve the bell's notification stream (SSE) on one asyncio loop, fed by Redis pub/sub."""
    from app import live
    from app.stream import StreamServer

    # The app object itself (not the context-local proxy): the loop's threads push their own contexts.
    app = info.load_app()
    if live.backend(app.config) != "redis":
        raise click.ClickException("crm stream needs REDIS_URL (without Redis the web process serves the stream itself)")
    StreamServer(app, host=host or app.config["STREAM_HOST"], port=port).run()


# --- audit: the hash chain (app/audit_chain.py) ---
@crm_cli.group("audit")
def audit_cli():
    """The audit log's hash chain and archive."""


@audit_cli.command("seal")
@with_appcontext
def audit_seal_command():
    """Link every committed audit row not yet in the chain (the worker does this every AUDIT_SEAL_SECONDS)."""
    from app.audit_chain import seal
    from app.extensions import db

    click.echo(f"Sealed {seal(db.engine)} audit rows.")


@audit_cli.command("verify")
@click.option("--no-seal", is_flag=True, help="Check only what is sealed already; do not link waiting rows first.")
@click.option("--deep", is_flag=True, help="Also read every archive part (checksum, each row's hash, its positions).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@with_appcontext
def audit_verify_command(no_seal, deep, as_json):
    """Walk the chain (across archived months) and name the first row changed or removed (exit 1 then)."""
    import json

    from app import audit_archive
    from app.audit_chain import seal, verify
    from app.extensions import db

    directory = current_app.config["AUDIT_ARCHIVE_DIR"]
    if deep:
        try:
            audit_archive.check_all(directory)
        except audit_archive.ArchiveError as exc:
            click.echo(f"Audit archive BROKEN: {exc}", err=True)
            raise SystemExit(1) from None
    if not no_seal:
        seal(db.engine)
    report = verify(db.engine, audit_archive.ranges(directory))
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    elif report.ok:
        click.echo(f"Audit chain intact: {report.checked} rows checked, {report.archived} archived, head at "
                   f"position {report.head_seq} ({report.head_hash}); {report.unsealed} waiting to be sealed.")
    else:
        click.echo(f"Audit chain BROKEN: {report.problem}", err=True)
    if not report.ok:
        raise SystemExit(1)


@audit_cli.command("retain")
@with_appcontext
def audit_retain_command():
    """Move whole months of audit rows older than AUDIT_RETENTION_MONTHS to AUDIT_ARCHIVE_DIR (the worker does it every AUDIT_RETENTION_SECONDS)."""
    from app.audit_archive import retain_app

    if not current_app.config["AUDIT_ARCHIVE_DIR"]:
        raise click.ClickException("AUDIT_ARCHIVE_DIR is not set: name a persistent folder for the archive first")
    written = retain_app(current_app._get_current_object())
    for manifest in written:
        click.echo(f"Archived {manifest['rows']} rows of {manifest['month']} to {manifest['file']} (sha256 {manifest['sha256']}).")
    if not written:
        click.echo(f"No audit rows older than {current_app.config['AUDIT_RETENTION_MONTHS']} months.")


@audit_cli.command("export")
@click.option("--month", required=True, help="The archived month, YYYY-MM (UTC).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="File to write (default: standard output).")
@with_appcontext
def audit_export_command(month, fmt, output):
    """Read an archived month back (its checksum and hashes checked first) as JSONL or CSV."""
    import os

    from app import audit_archive

    try:
        audit_archive.parse_month(month)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--month") from None
    directory = current_app.config["AUDIT_ARCHIVE_DIR"]
    try:
        lines = audit_archive.export_lines(audit_archive.read_month(directory, month), fmt)
        if output is None:
            for line in lines:
                click.echo(line, nl=False)
            return
        # Written whole under a temporary name first: a refused archive leaves no file behind.
        tmp = f"{output}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                fh.writelines(lines)
            os.replace(tmp, output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except audit_archive.ArchiveError as exc:
        raise click.ClickException(f"archive refused: {exc}") from None
