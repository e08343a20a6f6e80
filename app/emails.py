"""E-mail addresses: the one check every entry point applies (customers, register, create-user).

`email-validator` checks the syntax of a single address (RFC 5322 as mail servers accept
it, internationalised domains included) without DNS: the product must work offline and a
lookup per request would let anyone make the server wait on resolvers.
"""

from email_validator import EmailNotValidError, validate_email

from app.services.errors import ValidationFailed

MAX_LENGTH = 254


def normalise_email(raw, field="email"):
    """Return `raw` as a normalised, lower-cased single address, or raise ValidationFailed naming `field`."""
    if not isinstance(raw, str):
        raise ValidationFailed(f"{field} must be a string", field=field)
    text = raw.strip()
    if not text:
        raise ValidationFailed(f"{field} is required", field=field)
    if len(text) > MAX_LENGTH:
        raise ValidationFailed(f"{field} must be at most {MAX_LENGTH} characters", field=field)
    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise ValidationFailed(f"{field} is not a valid address: {exc}", field=field) from None
    # Logins and the customers' unique index compare addresses lower-cased.
    return checked.normalized.lower()


def _check_user_email(mapper, connection, target):
    """Backstop for every writer of FAB's user table (its user screen and API included): one valid address."""
    import sqlalchemy as sa

    history = sa.inspect(target).attrs.email.history
    if target.email and (history.added or sa.inspect(target).pending):
        target.email = normalise_email(target.email, field="email")


def install():
    """Check users' addresses at flush time (idempotent)."""
    import sqlalchemy as sa
    from flask_appbuilder.security.sqla.models import User

    for name in ("before_insert", "before_update"):
        if not sa.event.contains(User, name, _check_user_email):
            sa.event.listen(User, name, _check_user_email)


install()
