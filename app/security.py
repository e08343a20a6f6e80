"""The CRM's Flask-AppBuilder security manager: login auditing and login events."""

import sqlalchemy as sa
from flask_appbuilder.security.sqla.manager import SecurityManager
from sqlalchemy.orm import joinedload

from app import audit, caching, events
from models.audit import AuditAction

# FAB's tables that decide a permission check; any commit writing one resets the memo.
AUTH_TABLES = caching.AUTH_TABLES


class CrmSecurityManager(SecurityManager):
    """FAB's SQLA security manager plus LOGIN / LOGIN_FAILED auditing."""

    def get_user_by_id(self, pk):
        """Load a user with roles and groups in one round trip (every API request does this)."""
        return self.session.execute(
            sa.select(self.user_model)
            .options(joinedload(self.user_model.roles), joinedload(self.user_model.groups))
            .where(self.user_model.id == pk)
        ).unique().scalar_one_or_none()

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
        user = super().auth_user_db(username, password)
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

    def on_user_login(self, user):
        """Audit the login and emit USER_LOGGED_IN in one transaction."""
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
