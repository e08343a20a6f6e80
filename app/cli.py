"""`flask --app wsgi crm ...`: initialise, create users, seed demo data."""

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade

from app.roles import ROLES, sync_roles


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


def create_user(email, name, role, password):
    """Create a user with one role; return it (raises ValueError if it cannot)."""
    from app.emails import normalise_email
    from app.services.errors import ValidationFailed

    sm = current_app.appbuilder.sm
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    try:
        email = normalise_email(email)
    except ValidationFailed as exc:
        raise ValueError(f"--email: {exc.message}") from None
    if sm.find_user(email=email):
        raise ValueError(f"a user with email {email} already exists")
    first, _, last = name.strip().partition(" ")
    user = sm.add_user(
        username=email,
        first_name=first or name,
        last_name=last or "-",
        email=email,
        role=sm.find_role(role),
        password=password,
    )
    if not user:
        raise ValueError("the user could not be created (see the log)")
    return user


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


@crm_cli.command("consume")
@click.option("--group", default=None, help="Kafka consumer group (default KAFKA_CONSUMER_GROUP).")
@with_appcontext
def consume_command(group):
    """Consume the event topics and run the reactions (Kafka mode)."""
    from workers import consumer

    if not current_app.config.get("KAFKA_ENABLED"):
        raise click.ClickException("KAFKA_ENABLED is off: events are drained in-process, nothing to consume")
    consumer.run(current_app._get_current_object(), group)


@crm_cli.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty (tests, one-off runs).")
@click.option("--fork/--no-fork", default=False, show_default=True,
              help="Run each job in a forked work-horse (RQ's default) instead of in this process.")
@with_appcontext
def worker_command(burst, fork):
    """Run an RQ worker with its scheduler (relay, sweep, reminders, mail) on RQ_QUEUE."""
    from rq import SimpleWorker, Worker

    from app import kafka
    from app.delivery import queue, redis_connection
    from workers import runtime, schedules

    app = current_app._get_current_object()
    config = app.config
    if not config.get("REDIS_URL"):
        raise click.ClickException("REDIS_URL is not set")
    runtime.set_app(app)
    if config.get("KAFKA_ENABLED"):
        try:
            kafka.ensure_topics(config, timeout=30)
        except Exception as exc:  # noqa: BLE001 - the relay retries; topics are created on the next start
            click.echo(f"Could not create topics yet: {exc}", err=True)
    import time

    import redis

    schedules.start_watchdog(config)
    # Without fork the relay keeps its Kafka producer and DB pool between jobs (the producer
    # is still built lazily, in the process that uses it); --fork isolates each job instead.
    worker_class = Worker if fork else SimpleWorker
    backoff = 1
    while True:
        try:
            conn = redis_connection(config=config)
            schedules.bootstrap(config)
            worker_class([queue(config, conn)], connection=conn).work(with_scheduler=True, burst=burst)
            return
        except redis.ConnectionError as exc:
            # RQ gives up when Redis vanishes mid-job; wait for it instead of dying (the outbox
            # keeps the events, the sweep publishes them once Redis is back).
            click.echo(f"Redis unavailable ({exc}); worker restarting in {backoff}s", err=True)
            time.sleep(backoff)
            backoff = min(backoff * 2, 30)


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
