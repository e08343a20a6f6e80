"""The email job: a notification sent through SMTP when SMTP_HOST is configured."""

from flask import current_app

from app import mail
from workers.runtime import with_app


@with_app
def send_email(to, subject, body):
    """RQ job: send one plain-text email (failures raise so RQ keeps the job)."""
    return mail.send_email(to, subject, body, current_app.config)
