"""/api/auth: register, login, refresh, logout (token revocation) and me.

Login goes through FAB's `auth_user_db`, so password checking, LOGIN / LOGIN_FAILED
auditing and the USER_LOGGED_IN event stay in one place (app/security.py).
"""

from flask import Blueprint, current_app, g, jsonify
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    decode_token,
    get_jwt,
    verify_jwt_in_request,
)
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt.exceptions import PyJWTError

from app import audit, tokens
from app.emails import normalise_email
from app.extensions import db
from app.ratelimits import login_limits, register_limits
from app.roles import API_ROLE_CODES, ROLES, ROLES_BY_CODE, api_role_codes
from app.scope import ADMIN, SALES, role_names
from app.services.errors import Conflict, ValidationFailed
from models.audit import AuditAction
from views.api.common import ApiError, Field, authenticated, json_body, parse_fields

bp = Blueprint("crm_api_auth", __name__, url_prefix="/auth")

MIN_PASSWORD = 8
REGISTER_FIELDS = {
    "email": Field("email", required=True, max_len=254),
    "password": Field("password", required=True, max_len=512),
    "name": Field("name", required=True, max_len=128),
}
LOGIN_FIELDS = {
    "email": Field("email", required=True, max_len=254),
    "password": Field("password", required=True, max_len=512),
}


def role_from_api(raw):
    """The role named by an Admin's register call, in our or the seed's spelling (400 otherwise)."""
    if isinstance(raw, str):
        for name in ROLES:
            if raw.strip().lower() == name.lower():
                return name
        if raw.strip().upper() in ROLES_BY_CODE:
            return ROLES_BY_CODE[raw.strip().upper()]
    raise ValidationFailed(f"role must be one of {', '.join(API_ROLE_CODES.values())}", field="role")


def user_dict(user):
    """The API spelling of a FAB user (design.md §2), its roles in the seed's codes (app/roles.py)."""
    roles = api_role_codes(r.name for r in user.roles)
    return {
        "id": str(user.id),
        "email": user.email,
        "name": " ".join(p for p in (user.first_name, user.last_name) if p and p != "-"),
        "role": roles[0] if roles else None,
        "roles": roles,
        "active": bool(user.active),
        "createdAt": user.created_on.isoformat() if getattr(user, "created_on", None) else None,
    }


def profile_of(identity):
    """`user_dict` of the user a token's identity names, None when there is none."""
    user = current_app.appbuilder.sm.get_user_by_id(int(identity)) if str(identity).isdigit() else None
    return user_dict(user) if user is not None else None


def session_answer(user, status, with_id=False):
    """The login/register envelope: tokens both inside `data` and at the top level."""
    token = create_access_token(identity=str(user.id), fresh=True)
    refresh = create_refresh_token(identity=str(user.id))
    profile = user_dict(user)
    body = {
        "success": True,
        "data": {"user": profile, "token": token, "refreshToken": refresh},
        "token": token,
        "refreshToken": refresh,
        "user": profile,
    }
    if with_id:
        # The seed's guide reads the new user's fields at the top level too.
        body.update({"id": profile["id"], "email": profile["email"], "name": profile["name"], "role": profile["role"]})
    return jsonify(body), status


def _optional_caller():
    """The Admin (or other) user calling register with a token, else None."""
    try:
        verify_jwt_in_request(optional=True)
    except (JWTExtendedException, PyJWTError):
        raise ApiError(401, "the token is invalid") from None
    return getattr(g, "user", None) if get_jwt() else None


@bp.post("/register")
@register_limits
def register():
    """Create a user: always Sales, unless an Admin caller names another role."""
    body = json_body()
    values = parse_fields(body, REGISTER_FIELDS)
    email = normalise_email(values["email"], field="email")
    if len(values["password"]) < MIN_PASSWORD:
        raise ValidationFailed(f"password must be at least {MIN_PASSWORD} characters", field="password")
    role_name = SALES
    caller = _optional_caller()
    if caller is not None and ADMIN in role_names(caller) and body.get("role") is not None:
        role_name = role_from_api(body["role"])
    sm = current_app.appbuilder.sm
    if sm.find_user(email=email) or sm.find_user(username=email):
        raise Conflict("a user with this email already exists", field="email")
    first, _, last = values["name"].strip().partition(" ")
    user = sm.add_user(
        username=email,
        first_name=first,
        last_name=last or "-",
        email=email,
        role=sm.find_role(role_name),
        password=values["password"],
    )
    if not user:
        # add_user rolled back and logged why: a concurrent registration of the same email
        # is a conflict; anything else is the server's fault, not the caller's.
        if sm.find_user(email=email):
            raise Conflict("a user with this email already exists", field="email")
        raise ApiError(500, "the user could not be created")
    return session_answer(user, 201, with_id=True)


@bp.post("/login")
@login_limits
def login():
    """Check email and password (FAB's auth_user_db) and hand out access and refresh tokens."""
    values = parse_fields(json_body(), LOGIN_FIELDS)
    user = current_app.appbuilder.sm.auth_user_db(values["email"].strip().lower(), values["password"])
    if user is None:
        # The seed's frontend matches this exact text.
        raise ApiError(401, "Invalid email or password")
    return session_answer(user, 200)


@bp.post("/refresh")
def refresh():
    """Spend a refresh token for a new access token and a new refresh token (each refresh token works once)."""
    try:
        claims = tokens.spend_refresh_token()
    except (JWTExtendedException, PyJWTError) as exc:
        raise ApiError(401, "a valid refresh token is required", details={"reason": type(exc).__name__}) from None
    token, refresh_token = tokens.refreshed_tokens(claims)
    profile = profile_of(claims["sub"])
    return jsonify(
        success=True,
        data={"token": token, "refreshToken": refresh_token, "user": profile},
        token=token,
        refreshToken=refresh_token,
        user=profile,
    )


@bp.post("/logout")
@authenticated
def logout():
    """End the session: the access token presented and every token of its login (refresh tokens included)."""
    claims = get_jwt()
    tokens.end_session(claims)
    body = json_body()
    refresh_token = body.get("refreshToken")
    if isinstance(refresh_token, str) and refresh_token:
        try:
            decoded = decode_token(refresh_token)
        except (JWTExtendedException, PyJWTError):
            decoded = None
        # A refresh token of another login of the same user ends that login too.
        if decoded and decoded.get("sub") == claims["sub"]:
            tokens.end_session(decoded)
    audit.record(db.session, AuditAction.LOGOUT, "user", g.user.id, None, user_id=g.user.id)
    db.session.commit()
    return jsonify(success=True, data={"message": "logged out"}, message="logged out")


@bp.get("/me")
@authenticated
def me():
    """The caller's profile."""
    profile = user_dict(g.user)
    return jsonify(success=True, data=profile, id=profile["id"], user=profile)
