"""The CRM's Flask-AppBuilder security manager: login auditing, login events, Argon2id passwords.

FAB 5.3 hashes and checks passwords with werkzeug in several places (auth_user_db,
reset_password, add_user, add_register_user, the user screen and the user API); each is
overridden here to go through app/passwords.py.
"""

import logging
import secrets
import time
from types import SimpleNamespace

import sqlalchemy as sa
from flask import current_app, g, session
from flask_appbuilder.const import LOGMSG_WAR_SEC_LOGIN_FAILED
from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget
from flask_appbuilder.forms import DynamicForm
from flask_appbuilder.security.sqla.apis.user.api import UserApi as FabUserApi
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_appbuilder.security.utils import is_null_password
from flask_appbuilder.security.views import ResetMyPasswordView as FabResetMyPasswordView
from flask_appbuilder.security.views import UserDBModelView as FabUserDBModelView
from flask_appbuilder.validators import PasswordComplexityValidator
from flask_babel import lazy_gettext
from flask_babel import lazy_gettext as _
from flask_login import user_logged_in
from sqlalchemy.orm import joinedload
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo, ValidationError

from app import audit, caching, events, fastpath, metrics, passwords, ratelimits, requestlog, tokens
from app.memo import remember
from models.audit import AuditAction
from views import display
from views.auth import AuthDBView, SecurityApi

log = logging.getLogger(__name__)

# FAB's tables that decide a permission check; any commit writing one resets the memo.
AUTH_TABLES = caching.AUTH_TABLES
# Browser sessions: the user's token epoch (app/tokens.py) when the session signed in.
SESSION_EPOCH = "crm_te"


# Same class names as FAB's: endpoints and permission names (app/roles.py) derive from them.
class UserDBModelView(FabUserDBModelView):
    """FAB's user screen, hashing the new user's password with Argon2id."""

    # The list and the user's own page show "Active" as a word, not Python's True/False.
    formatters_columns = {"active": display.yes_no}

    def pre_add(self, item):
        """Hash the password typed in the add form."""
        item.password = passwords.hash_password(item.password)


class UserApi(FabUserApi):
    """FAB's user API (FAB_ADD_SECURITY_API, off by default), hashing with Argon2id."""

    def pre_update(self, item, data):
        """FAB's bookkeeping, then hash a new password when one is sent."""
        super().pre_update(item, {k: v for k, v in data.items() if k != "password"})
        if data.get("password"):
            item.password = passwords.hash_password(data["password"])

    def pre_add(self, item):
        """Hash the new user's password."""
        item.password = passwords.hash_password(item.password)


class MyPasswordForm(DynamicForm):
    """FAB's own-password form, asking for the current password first."""

    current_password = PasswordField(_("Current password"), validators=[DataRequired()], widget=BS3PasswordFieldWidget())
    # FAB's two fields as FAB defines them (its labels come with FAB's translations).
    password = PasswordField(
        lazy_gettext("Password"),
        description=lazy_gettext("Please use a good password policy, this application does not check this for you"),
        validators=[DataRequired(), PasswordComplexityValidator()],
        widget=BS3PasswordFieldWidget(),
    )
    conf_password = PasswordField(
        lazy_gettext("Confirm Password"),
        description=lazy_gettext("Please rewrite the password to confirm"),
        validators=[EqualTo("password", message=lazy_gettext("Passwords must match"))],
        widget=BS3PasswordFieldWidget(),
    )

    def validate_current_password(self, field):
        """The signed-in user's password as it is now, checked like a login."""
        user = current_app.appbuilder.sm.get_user_by_id(g.user.id)
        if user is None or not passwords.verify_password(user.password, field.data):
            raise ValidationError(_("The current password is not correct"))


class ResetMyPasswordView(FabResetMyPasswordView):
    """FAB's /resetmypassword/form: a new password only for whoever knows the current one.

    A stolen session alone cannot take over the account; guesses count against the
    account's login limit (app/ratelimits.py).
    """

    form = MyPasswordForm

    def form_post(self, form):
        """FAB's change; this browser session stays signed in, the user's other sessions and tokens end."""
        super().form_post(form)
        session[SESSION_EPOCH] = tokens.stored_epoch(g.user.id)


class Principal:
    """The user of a cached /api read, from the token's claims: id, roles and groups only (`CrmSecurityManager.claims_user`)."""

    is_active = True
    is_authenticated = True
    is_anonymous = False
    from_claims = True

    def __init__(self, user_id, roles, group_roles):
        self.id = user_id
        self.roles = roles
        self.groups = [SimpleNamespace(roles=group_roles)] if group_roles else []

    def get_id(self):
        """flask-login's id accessor."""
        return str(self.id)


# (permission-table generations, roles, group roles, permission, view) -> (allowed, believed until)
_role_set_memo = {}
_ROLE_SET_MEMO_MAX = 4096


def _remember_session_epoch(_app, user, **_extra):
    """flask-login's user_logged_in: the new browser session carries the user's epoch."""
    session[SESSION_EPOCH] = tokens.epoch_at_login(user.id)


class CrmSecurityManager(SecurityManager):
    """FAB's SQLA security manager plus LOGIN / LOGIN_FAILED auditing and Argon2id passwords."""

    userdbmodelview = UserDBModelView
    user_api = UserApi
    resetmypasswordview = ResetMyPasswordView
    authdbview = AuthDBView  # logout is a POST with the CSRF token
    security_api = SecurityApi  # a missing `provider` is a 400, not a 500
    userstatschartview = None  # FAB's chart loads Google Charts from a CDN, which the CSP and the no-CDN rule refuse

    def create_login_manager(self, app):
        """FAB's login manager, whose browser sessions end with a password change or deactivation like tokens do."""
        manager = super().create_login_manager(app)
        manager.user_loader(self.load_session_user)
        user_logged_in.connect(_remember_session_epoch)  # once, whatever the app: the same for each
        return manager

    def create_jwt_manager(self, app):
        """FAB's JWT manager (its user loader included), remembering verified signatures (`tokens.SignatureMemoJWTManager`)."""
        jwt_manager = tokens.SignatureMemoJWTManager()
        jwt_manager.init_app(app)
        jwt_manager.user_lookup_loader(self.load_user_jwt)
        return jwt_manager

    def load_session_user(self, pk):
        """FAB's session user lookup; None (signed out) for a session older than the user's token epoch."""
        user = self.load_user(pk)
        if user is not None and session.get(SESSION_EPOCH, 0) < tokens.stored_epoch(user.id):
            return None
        requestlog.note_user(user)
        return user

    def register_views(self):
        """FAB's security views, then the per-account login limit on its form login and own-password form."""
        super().register_views()
        ratelimits.limit_password_forms(current_app)

    def create_limiter(self, app):
        """The app's one limiter (app/extensions.py) for FAB's form-login limit, not a second one.

        FAB made its own Limiter, and each limiter checks every request in a before_request
        of its own: two checks per request, for any route, where one does.
        """
        from app.extensions import limiter

        limiter.init_app(app)  # a no-op when create_app has initialised it already
        return limiter

    def get_user_by_id(self, pk):
        """Load a user with roles and groups in one round trip (every API request does this)."""
        try:
            pk = int(pk)  # FAB's reset-password screen passes the id from the query string
        except (TypeError, ValueError):
            return None
        return self.session.execute(
            sa.select(self.user_model)
            .options(joinedload(self.user_model.roles), joinedload(self.user_model.groups))
            .where(self.user_model.id == pk)
        ).unique().scalar_one_or_none()

    def load_user_jwt(self, _jwt_header, jwt_data):
        """FAB's JWT user lookup; a cached /api read whose token is current skips the user row."""
        principal = fastpath.principal_for(jwt_data)
        if principal is not None:
            g.user = principal
        else:
            principal = super().load_user_jwt(_jwt_header, jwt_data)
        requestlog.note_user(principal)
        return principal

    @staticmethod
    def extract_api_key_from_request():
        """FAB's API-key hook (FAB_API_KEY_ENABLED): the key a request presents, as app/api_keys.py reads it (X-API-Key too)."""
        from flask import request

        from app import api_keys

        return api_keys.presented(request.headers)

    def validate_api_key(self, api_key_string):
        """FAB's API-key hook: the user app/api_keys.py's before_request verified this request's key as, else None."""
        from flask import request

        from app import api_keys

        if request.environ.get(api_keys.ENVIRON) is None:
            return None
        return g.user

    def role_refs(self, names):
        """(id, name) of FAB's roles named `names`, memoised until the permission tables change; None if one is unknown."""
        ids = caching.memo(AUTH_TABLES, ("role-ids",), lambda: {r.name: r.id for r in self.get_all_roles()})
        if any(name not in ids for name in names):
            return None
        return [SimpleNamespace(id=ids[name], name=name) for name in names]

    def claims_user(self, user_id, roles, group_roles):
        """A `Principal` holding the roles named in a current token's claims (direct, through groups); None if one is unknown."""
        role_refs, group_refs = self.role_refs(roles), self.role_refs(group_roles)
        if role_refs is None or group_refs is None:
            return None
        return Principal(user_id, role_refs, group_refs)

    def roles_may(self, roles, group_roles, permission_name, view_name, generation):
        """FAB's own permission check for a holder of these role names, without a user row.

        For a token whose role claims are current (app/fastpath.py); memoised in the process
        per `generation` of the permission tables, PERMISSION_MEMO_SECONDS at most.
        """
        key = (generation, tuple(roles), tuple(group_roles), permission_name, view_name)
        found = _role_set_memo.get(key)
        now = time.monotonic()
        if found is not None and found[1] > now:
            return found[0]
        holder = self.claims_user(0, roles, group_roles)
        allowed = holder is not None and bool(self._has_view_access(holder, permission_name, view_name))
        remember(_role_set_memo, key, (allowed, now + caching.memo_seconds()), _ROLE_SET_MEMO_MAX)
        return allowed

    def is_item_public(self, permission_name, view_name):
        """FAB's check, memoised per process until the permission tables change."""
        return caching.memo(
            AUTH_TABLES, ("public", permission_name, view_name), lambda: super(CrmSecurityManager, self).is_item_public(permission_name, view_name)
        )

    def exist_permission_on_roles(self, view_name, permission_name, role_ids):
        """FAB's check, memoised per process until the permission tables change."""
        return caching.memo(
            AUTH_TABLES,
            ("roles", view_name, permission_name, tuple(sorted(role_ids))),
            lambda: super(CrmSecurityManager, self).exist_permission_on_roles(view_name, permission_name, role_ids),
        )

    def auth_user_db(self, username, password):
        """Authenticate by email (or username); audit the failure when it fails."""
        user = self._check_user_password(username, password)
        metrics.count_login(user is not None)
        if user is None and username:
            known = self.find_user(email=username) or self.find_user(username=username)
            audit.record(
                self.session,
                AuditAction.LOGIN_FAILED,
                "user",
                known.id if known else None,
                {"username": username[:254]},
                user_id=known.id if known else None,
            )
            self.session.commit()
        return user

    def _check_user_password(self, username, password):
        """FAB 5.3's auth_user_db with the check through app/passwords.py and an upgrade on success.

        As in FAB, an unknown or inactive user costs one hash check too (against a dummy
        hash), so response time does not tell whether an account exists.
        """
        if not username:
            return None
        # FAB: an empty or NUL-only password never authenticates, whatever is stored.
        if is_null_password(password):
            log.info(LOGMSG_WAR_SEC_LOGIN_FAILED, username)
            return None
        first_user = self.get_first_user()
        user = self.find_user(username=username)
        if user is None:
            user = self.find_user(email=username)
        else:
            _ = self.find_user(email=username)  # FAB: same queries whichever matched
        if user is None or not user.is_active:
            passwords.fake_check(password)
            log.info(LOGMSG_WAR_SEC_LOGIN_FAILED, username)
            if first_user:
                self.noop_user_update(first_user)  # FAB: same writes as a real attempt
            return None
        # Read before the check: tokens of a login whose password changes meanwhile are refused.
        tokens.note_login_epoch(user.id)
        if not passwords.verify_password(user.password, password):
            self.update_user_auth_stat(user, False)
            log.info(LOGMSG_WAR_SEC_LOGIN_FAILED, username)
            return None
        if passwords.needs_rehash(user.password):
            # Legacy scrypt/pbkdf2 or older Argon2 settings: upgrade now that we hold the
            # clear password; committed with the login counters by update_user_auth_stat.
            passwords.rehash(user, password)
        self.update_user_auth_stat(user, True)
        return user

    def reset_password(self, userid, password):
        """Set a user's password (reset screens, `flask fab reset-password`) as Argon2id."""
        user = self.get_user_by_id(userid)
        user.password = passwords.hash_password(password)
        self.update_user(user)

    def add_user(self, username, first_name, last_name, email, role=None, password="", hashed_password="", **kwargs):
        """FAB's add_user with the password hashed as Argon2id (random when none is given)."""
        if not hashed_password:
            # FAB: no password (another auth backend) gets an unguessable random one.
            hashed_password = passwords.hash_password(password or secrets.token_urlsafe(32))
        return super().add_user(username, first_name, last_name, email, role, hashed_password=hashed_password, **kwargs)

    def add_register_user(self, username, first_name, last_name, email, password="", hashed_password=""):
        """FAB's registration request with the password hashed as Argon2id."""
        if not hashed_password:
            hashed_password = passwords.hash_password(password)
        return super().add_register_user(username, first_name, last_name, email, hashed_password=hashed_password)

    def on_user_login(self, user):
        """Audit the login and emit USER_LOGGED_IN in one transaction."""
        requestlog.note_user(user)
        audit.record(self.session, AuditAction.LOGIN, "user", user.id, None, user_id=user.id)
        events.emit(
            self.session,
            "USER_LOGGED_IN",
            "user",
            user.id,
            {"id": str(user.id), "email": user.email},
            actor_id=user.id,
        )
        self.session.commit()

    def on_user_logout(self, user):
        """Audit a logout from the browser session."""
        if user is not None and getattr(user, "id", None):
            audit.record(self.session, AuditAction.LOGOUT, "user", user.id, None, user_id=user.id)
            self.session.commit()
