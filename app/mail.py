"""E-mail through SMTP when SMTP_HOST is configured (the worker's job, or inline without Redis)."""

import logging
import smtplib
from email.message import EmailMessage

log = logging.getLogger(__name__)


def send_email(to, subject, body, config):
    """Send one plain-text email with `config`'s SMTP settings; False when SMTP_HOST is not set (failures raise)."""
    if not config.get("SMTP_HOST"):
        return False
    msg = EmailMessage()
    msg["From"] = config["SMTP_FROM"]
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body or subject)
    with smtplib.SMTP(config["SMTP_HOST"], int(config["SMTP_PORT"]), timeout=10) as smtp:
        if config.get("SMTP_USE_TLS"):
            smtp.starttls()
        if config.get("SMTP_USERNAME"):
            smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"])
        smtp.send_message(msg)
    log.info("Email sent: %s to %s", subject, to)
    return True
