"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...` (the worker commands included)."""

from app import create_app
from app.cli import crm_cli
from workers.cli import add_commands

add_commands(crm_cli)
app = create_app()
