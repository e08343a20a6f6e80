"""Admin → API keys: create a key (name, user, role, scope, expiry), rotate it with an overlap, revoke it.

Every change is a form POST with the CSRF token; a new key is shown once, in the answer to
the POST that made it (never stored, never flashed into the session cookie). The rules are
app/api_keys.py's; refusals come back on the page naming the field (400/404/409/503).
"""

from flask import current_app, g, request
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import lazy_gettext as _

from app import api_keys
from app.extensions import db
from app.scope import FILTER, choice_clause
from app.services.errors import DomainError
from models.api_key import ApiKey, ApiKeyScope
from models.base import utcnow

#: The resource (FAB view-menu) of the screen: only Admins hold it (app/roles.py gives it no one else).
API_KEY = "ApiKey"


def _status(row, now):
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at <= now:
        return "expired"
    return "active"


class ApiKeysView(BaseView):
    """/apikeys/: every key with its state and last use; forms to create, rotate and revoke."""

    route_base = "/apikeys"
    default_view = "index"
    class_permission_name = API_KEY
    method_permission_name = {"index": "read", "create": "add", "rotate": "edit", "revoke": "edit"}

    def _users(self):
        from flask_appbuilder.security.sqla.models import User

        query = db.session.query(User).filter(User.active.is_(True), choice_clause(User, g.user, FILTER)).order_by(User.email)
        return [(u.id, u.email, sorted(r.name for r in u.roles)) for u in query]

    def _page(self, status=200, error=None, field=None, shown=None):
        now = utcnow()
        rows = db.session.query(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc()).limit(500).all()
        keys = [{"row": row, "status": _status(row, now)} for row in rows]
        body = self.render_template(
            "crm/api_keys.html", keys=keys, users=self._users(), scopes=[s.value for s in ApiKeyScope],
            error=error, field=field, shown=shown, default_days=current_app.config["API_KEY_DEFAULT_DAYS"],
            title=_("API keys"),
        )
        # A page showing a new key must not stay in any cache.
        return body, status, {"Cache-Control": "no-store"}

    def _refused(self, exc):
        db.session.rollback()
        return self._page(status=exc.status, error=exc.message, field=exc.field)

    @expose("/")
    @has_access
    def index(self):
        """Every key, newest first, with its state (active, expired, revoked) and last use."""
        return self._page()

    @expose("/create", methods=["POST"])
    @has_access
    def create(self):
        """Create a key from the form; the page shows it once."""
        form = request.form
        try:
            row, raw = api_keys.create(form.get("name"), form.get("user"), form.get("role"), form.get("scope"),
                                       form.get("expires_in_days"), created_by=g.user)
            db.session.commit()
        except DomainError as exc:
            return self._refused(exc)
        return self._page(status=201, shown={"name": row.name, "key": raw, "expires_at": row.expires_at})

    @expose("/<key_pk>/rotate", methods=["POST"])
    @has_access
    def rotate(self, key_pk):
        """Rotate a key: a new one now, the old one valid `overlap_hours` more; the page shows the new one once."""
        form = request.form
        try:
            row, raw = api_keys.rotate(key_pk, form.get("overlap_hours"), form.get("expires_in_days"), created_by=g.user)
            db.session.commit()
        except DomainError as exc:
            return self._refused(exc)
        return self._page(status=201, shown={"name": row.name, "key": raw, "expires_at": row.expires_at})

    @expose("/<key_pk>/revoke", methods=["POST"])
    @has_access
    def revoke(self, key_pk):
        """Revoke a key: refused from the next request on every worker."""
        try:
            api_keys.revoke(key_pk)
            db.session.commit()
        except DomainError as exc:
            return self._refused(exc)
        return self._page()
