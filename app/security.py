"""The CRM's Flask-AppBuilder security manager: login auditing and login events."""

from flask_appbuilder.security.sqla.manager import SecurityManager

from app import audit, events
from models.audit import AuditAction


class CrmSecurityManager(SecurityManager):
    """FAB's SQLA security manager plus LOGIN / LOGIN_FAILED auditing."""

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
