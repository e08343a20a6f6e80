"""Shared pieces of the /api blueprint: envelopes, pagination, errors, JSON parsing, auth.

Every resource module builds its answers and reads its input through these helpers, so
the seed's envelope (design.md §6) and the error shape `{error, message, details}` are
written once.
"""

import math
import re
import uuid
from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from functools import wraps

from flask import g, jsonify, request
from flask_jwt_extended import verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt.exceptions import PyJWTError
from app import api_keys, budget, fastpath
from app.pagination import DEFAULT_LIMIT, MAX_LIMIT
from app.serialize import column_values, row_columns, row_serializer
from app.services.errors import DomainError, Forbidden, NotFound, ValidationFailed
from app.services.search import like_pattern  # noqa: F401  (one LIKE escaper: /api lists and the global search)
from views.api import nested



class ApiError(DomainError):
    """An HTTP error of the /api blueprint with an explicit status."""

    def __init__(self, status, message, details=None, error=None):
        super().__init__(message, details=details)
        self.status = status
        self.error = error or STATUS_NAMES.get(status, "Error")


STATUS_NAMES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


def error_response(status, message, details=None, error=None):
    """Return the `{error, message, details}` answer with `status`."""
    body = {"error": error or STATUS_NAMES.get(status, "Error"), "message": message, "details": details or {}}
    return jsonify(body), status


# ---- envelopes -------------------------------------------------------------------------


def item(obj_or_dict, status=200, model=None):
    """Answer one record: `{"success": true, "data": {...}, "id": "<id>"}`, its related records nested.

    A model object is answered as its columns; a dict as it is. The nested records
    (views/api/nested.py) are those of the object's model, or of `model` for a dict.
    """
    if isinstance(obj_or_dict, dict):
        data = obj_or_dict
    else:
        data = column_values(obj_or_dict)
        model = model or type(obj_or_dict)
    if model is not None:
        nested.attach(model, [data], current_user())
    return jsonify(success=True, data=data, id=data.get("id")), status


def listing(data, page, limit, total):
    """Answer a page of answer dicts: `{"success": true, "data": [...], "pagination": {...}}`.

    In keyset mode (`?after=`) `pagination.nextCursor` is the `after=` value of the next
    page (null after the last one).
    """
    pagination = {
        "page": page,
        "limit": limit,
        "total": total,
        "totalPages": math.ceil(total / limit) if limit else 0,
    }
    if "api_next_cursor" in g:
        pagination["nextCursor"] = g.pop("api_next_cursor")
    return jsonify(success=True, data=data, pagination=pagination)


def page_answer(lq, order_by=None, keyset=None, descending=True, serializer=None, extra=None):
    """Answer the requested page of a `ListQuery` (`paginate`, then `listing`), related records nested.

    Without a `serializer` the page is read as plain column rows (no ORM objects) and
    answered with the same dicts `column_values` gives; a `serializer` gets model objects.
    `extra(dict)` adds a resource's own fields to each answer (e.g. the seed's aliases).
    The nested records of the whole page cost one statement per related table
    (views/api/nested.py).
    """
    if serializer is not None:
        rows, page, limit, total = paginate(lq, order_by, keyset, descending)
        data = [serializer(r) for r in rows]
    else:
        to_dict = row_serializer(lq.model)
        rows, page, limit, total = paginate(lq, order_by, keyset, descending, columns=row_columns(lq.model))
        data = [to_dict(r) for r in rows]
    if extra is not None:
        data = [extra(d) for d in data]
    nested.attach(lq.model, data, lq.user)
    return listing(data, page, limit, total)


def paginate(lq, order_by=None, keyset=None, descending=True, columns=None):
    """Read `?page=`, `?limit=` and `?after=`, run that page of `lq` (app/listquery.py); return (rows, page, limit, total).

    `?after=` (empty for the first page) selects keyset paging, which adds
    `pagination.nextCursor` to the answer (`listing`).
    """
    page = query_int("page", 1, minimum=1)
    limit = query_int("limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    after = request.args.get("after")
    found = lq.page(request.endpoint, page, limit, after=after, order_by=order_by, keyset=keyset, descending=descending, columns=columns)
    if after is not None:
        g.api_next_cursor = found.next_cursor
    return found.rows, page, limit, found.total


# ---- query string ----------------------------------------------------------------------


def query_int(name, default, minimum=None, maximum=None):
    """Read an integer query parameter; out-of-range page sizes are clamped, junk is a 400."""
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be an integer", field=name) from None
    if minimum is not None and value < minimum:
        raise ValidationFailed(f"{name} must be at least {minimum}", field=name)
    if maximum is not None:
        value = min(value, maximum)
    return value


def query_enum(name, enum_cls):
    """Read an optional enum query parameter (400 naming the allowed values)."""
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    return parse_enum(raw, enum_cls, name)


def query_datetime(name):
    """Read an optional ISO date/datetime query parameter."""
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    return parse_datetime(raw, name)


# ---- value parsers ---------------------------------------------------------------------


def parse_enum(raw, enum_cls, field):
    """Return the member of `enum_cls` spelled `raw` (case-insensitive) or raise 400."""
    if not isinstance(raw, str):
        raise ValidationFailed(f"{field} must be a string", field=field)
    for member in enum_cls:
        if member.value.lower() == raw.strip().lower():
            return member
    allowed = ", ".join(m.value for m in enum_cls)
    raise ValidationFailed(f"{field} must be one of {allowed}", field=field)


def parse_datetime(raw, field):
    """Parse an ISO 8601 date or datetime (naive means UTC) into an aware UTC datetime."""
    if isinstance(raw, str):
        text = raw.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            if len(text) == 10:
                value = datetime.combine(date.fromisoformat(text), time(0))
            else:
                value = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationFailed(f"{field} must be an ISO 8601 date or datetime", field=field) from None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
    raise ValidationFailed(f"{field} must be an ISO 8601 date or datetime", field=field)


def parse_uuid(raw, field):
    """Return `raw` if it is a UUID string, else raise 400 naming `field`."""
    if not isinstance(raw, str):
        raise ValidationFailed(f"{field} must be a string id", field=field)
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ValidationFailed(f"{field} is not a valid id", field=field) from None


def path_uuid(raw, what):
    """A malformed id in a path can never exist: answer 404 like any unknown id."""
    try:
        return str(uuid.UUID(raw))
    except (ValueError, TypeError):
        raise NotFound(f"{what} not found") from None


class Field:
    """One accepted JSON field: API name → model attribute, with its type rules."""

    def __init__(self, attr, kind="str", required=False, max_len=None, enum=None, minimum=None, maximum=None):
        self.attr, self.kind, self.required = attr, kind, required
        self.max_len, self.enum, self.minimum, self.maximum = max_len, enum, minimum, maximum

    def parse(self, name, raw):
        """Convert the JSON value `raw` of field `name`; raise ValidationFailed when wrong."""
        if raw is None:
            if self.required:
                raise ValidationFailed(f"{name} is required", field=name)
            return None
        kind = self.kind
        if kind == "str":
            if not isinstance(raw, str):
                raise ValidationFailed(f"{name} must be a string", field=name)
            if self.max_len and len(raw) > self.max_len:
                raise ValidationFailed(f"{name} must be at most {self.max_len} characters", field=name)
            if self.required and not raw.strip():
                raise ValidationFailed(f"{name} is required", field=name)
            return raw
        if kind == "int":
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise ValidationFailed(f"{name} must be an integer", field=name)
            if (self.minimum is not None and raw < self.minimum) or (self.maximum is not None and raw > self.maximum):
                raise ValidationFailed(f"{name} must be between {self.minimum} and {self.maximum}", field=name)
            return raw
        if kind == "decimal":
            if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
                raise ValidationFailed(f"{name} must be a number", field=name)
            try:
                value = Decimal(str(raw))
            except InvalidOperation:
                raise ValidationFailed(f"{name} must be a number", field=name) from None
            if not value.is_finite():
                raise ValidationFailed(f"{name} must be a number", field=name)
            return value
        if kind == "enum":
            return parse_enum(raw, self.enum, name)
        if kind == "datetime":
            return parse_datetime(raw, name)
        if kind == "uuid":
            return parse_uuid(raw, name)
        if kind == "user":
            # User ids are integers rendered as strings; accept both spellings.
            if isinstance(raw, str) and re.fullmatch(r"\d{1,18}", raw.strip()):
                return int(raw)
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw
            raise ValidationFailed(f"{name} must be a user id", field=name)
        if kind == "raw":
            # Structured values (objects, lists) the service checks field by field.
            return raw
        if kind == "bool":
            if not isinstance(raw, bool):
                raise ValidationFailed(f"{name} must be true or false", field=name)
            return raw
        raise AssertionError(kind)


def json_body():
    """Return the request's JSON object, or raise 400 for anything else."""
    if not request.is_json:
        if not request.get_data(cache=True):
            return {}
        raise ValidationFailed("the body must be JSON (Content-Type: application/json)", field="body")
    body = request.get_json(silent=True)
    if body is None:
        raise ValidationFailed("the body is not valid JSON", field="body")
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", field="body")
    return body


def parse_fields(body, fields, aliases=None, partial=False):
    """Return {attr: value} for the known fields in `body`; collect every problem in one 400."""
    aliases = aliases or {}
    values, problems = {}, {}
    for alias, name in aliases.items():
        if alias in body and name not in body:
            body = {**body, name: body[alias]}
    for name, spec in fields.items():
        if name not in body:
            if spec.required and not partial:
                problems[name] = [f"{name} is required"]
            continue
        try:
            values[spec.attr] = spec.parse(name, body[name])
        except DomainError as exc:
            problems[name] = [exc.message]
    if problems:
        first = next(iter(problems.values()))[0]
        raise ValidationFailed(first if len(problems) == 1 else "invalid fields: " + ", ".join(problems), details=problems)
    return values


def apply(obj, values):
    """Set parsed values on a model instance."""
    for attr, value in values.items():
        setattr(obj, attr, value)
    return obj


# ---- authentication and permissions ----------------------------------------------------


def current_user():
    """The user of this /api request (set by `authenticated`)."""
    return g.user


def authenticated(fn):
    """Require a valid, unrevoked access token, checked by FAB's JWT manager; its user lookup sets g.user.

    flask-jwt-extended verifies the token, asks the blocklist loader (app/tokens.py) and
    FAB's user lookup (app/security.py's `load_user_jwt`, which takes the user of a
    cacheable read from a current token's claims).
    """

    @wraps(fn)
    def wrapper(*args, **kwargs):
        failure = None
        if request.environ.get(api_keys.ENVIRON) is None:  # else an API key, verified before the view (app/api_keys.py)
            try:
                verify_jwt_in_request()
            except (JWTExtendedException, PyJWTError) as exc:
                failure = ApiError(401, _token_message(exc))
        # The caller's budget, paid in the token check's Redis read (app/budget.py): 429 when
        # it is spent, before any answer, a 401 included.
        budget.settle()
        if failure is not None:
            raise failure
        user = getattr(g, "user", None)
        if user is None or not getattr(user, "is_active", False):
            raise ApiError(401, "the token's user is unknown or inactive")
        return fn(*args, **kwargs)

    return wrapper


def _token_message(exc):
    name = type(exc).__name__
    if name == "NoAuthorizationError":
        return "missing Authorization: Bearer token"
    if name == "ExpiredSignatureError":
        return "the token has expired"
    if name == "RevokedTokenError":
        return "the token has been revoked"
    if name == "WrongTokenError":
        return "a refresh token cannot be used here (or the reverse)"
    return "the token is invalid"


def requires(permission, resource):
    """Authenticate, then check FAB's permission matrix (app/roles.py) for `resource`."""

    def decorator(fn):
        @wraps(fn)
        def checked(*args, **kwargs):
            if not fastpath.permitted(permission, resource):
                raise Forbidden(f"your role may not {permission.replace('can_', '')} {resource}")
            return fn(*args, **kwargs)

        # Read by app/fastpath.py: the same check, from the token's role claim.
        checked.crm_permission = (permission, resource)
        return authenticated(checked)

    return decorator


def can(permission, resource):
    """True when the current user's roles grant `permission` on `resource`."""
    return fastpath.permitted(permission, resource)


def save(obj, prepare, creating):
    """Apply the domain rules (app/services) for the caller, then write in one transaction."""
    from app.extensions import db

    if prepare is not None:
        prepare(obj, current_user(), creating)
    if creating:
        db.session.add(obj)
    db.session.commit()
    return obj
