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


class Unavailable(DomainError):
    status = 503
    error = "Service Unavailable"
