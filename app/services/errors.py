"""Domain errors: each carries the HTTP status every entry point answers with."""


class DomainError(Exception):
    """A rule was broken; `status` is the HTTP answer and `field` names the culprit."""

    status = 400
    error = "Bad Request"

    def __init__(self, message, field=None, details=None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or ({field: [message]} if field else {})

    def to_dict(self):
        """Return the `{error, message, details}` body of design.md §6."""
        return {"error": self.error, "message": self.message, "details": self.details}


class ValidationFailed(DomainError):
    status = 400
    error = "Bad Request"


class Forbidden(DomainError):
    status = 403
    error = "Forbidden"


class NotFound(DomainError):
    status = 404
    error = "Not Found"


class Conflict(DomainError):
    status = 409
    error = "Conflict"


class PayloadTooLarge(DomainError):
    status = 413
    error = "Payload Too Large"


class UnsupportedType(DomainError):
    status = 415
    error = "Unsupported Media Type"


class Unavailable(DomainError):
    status = 503
    error = "Service Unavailable"


# SQLSTATE 23505: a unique constraint. Other integrity violations (a foreign key, CHECK or
# NOT NULL) are bad input: the value refers to nothing or breaks a bound.
UNIQUE_VIOLATION = "23505"


def from_database(exc):
    """The DomainError a database refusal stands for, under /api and /api/v1 alike; None for an internal error.

    A unique violation is a 409 (the record exists already); any other integrity violation,
    a value the column cannot hold, or one the driver could not even bind, is a 400.
    """
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.IntegrityError):
        orig = exc.orig
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if code == UNIQUE_VIOLATION or (code is None and "UNIQUE" in str(orig)):
            return Conflict("the change conflicts with an existing record", details={"reason": "integrity"})
        return ValidationFailed("a value refers to a missing record or is out of range", details={"reason": "integrity"})
    if isinstance(exc, sa_exc.DataError) or (isinstance(exc, sa_exc.StatementError) and not isinstance(exc, sa_exc.DBAPIError)):
        return ValidationFailed("a value does not fit its field", details={"reason": "data"})
    return None
