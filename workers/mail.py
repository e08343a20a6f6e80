"""The email job: a notification sent through SMTP when SMTP_HOST is configured."""

import logging
import smtplib
from email.message import EmailMessage

log = logging.getLogger(__name__)


def send_email(to, subject, body, config=None):
    """Send one plain-text email (an RQ job; failures raise so RQ keeps the job)."""
    if config is None:
        from workers.runtime import get_app

        config = get_app().config
    if not config.get("SMTP_HOST"):
        return False
    msg = EmailMessage()
    msg["From"] = config.get("SMTP_FROM", "crm@example.com")
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body or subject)
    with smtplib.SMTP(config["SMTP_HOST"], int(config.get("SMTP_PORT", 587)), timeout=10) as smtp:
        if config.get("SMTP_USE_TLS"):
            smtp.starttls()
        if config.get("SMTP_USERNAME"):
            smtp.login(config["SMTP_USERNAME"], config.get("SMTP_PASSWORD", ""))
        smtp.send_message(msg)
    log.info("Email sent: %s to %s", subject, to)
    return True
