"""Checks of text typed by users, shared by the services that take it (search, saved views)."""

from app.services.errors import ValidationFailed


def text_field(raw, field, maximum, required=True):
    """`raw` stripped, or ValidationFailed naming `field` when it is missing (if `required`), longer than `maximum` or holds a NUL.

    PostgreSQL text cannot hold a NUL, so it is refused here rather than failing in the database.
    """
    text = (raw or "").strip()
    if required and not text:
        raise ValidationFailed(f"{field} is required", field=field)
    if len(text) > maximum:
        raise ValidationFailed(f"{field} must be at most {maximum} characters", field=field)
    if "\x00" in text:
        raise ValidationFailed(f"{field} must not contain a NUL character", field=field)
    return text
