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
    sm = current_app.appbuilder.sm
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if sm.find_user(email=email.lower()):
        raise ValueError(f"a user with email {email} already exists")
    first, _, last = name.strip().partition(" ")
    user = sm.add_user(
        username=email.lower(),
        first_name=first or name,
        last_name=last or "-",
        email=email.lower(),
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
