"""Logging out: a POST carrying the CSRF token, never a GET.

FAB's /logout/ is a GET, so any page, image or link elsewhere could end a user's session.
Here GET /logout/ only shows a confirmation holding the POST form, and the navbar's Logout
entry (app/templates/appbuilder/navbar_right.html) is that same form. The POST lives on a
view of its own: FAB puts the form-login rate limit on every POST of its auth view's
blueprint, and logging out must not spend it.
"""

from flask import current_app, g, redirect, request
from flask_appbuilder import BaseView
from flask_appbuilder.api import safe
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.api import SecurityApi as FabSecurityApi
from flask_appbuilder.security.views import AuthDBView as FabAuthDBView
from flask_login import logout_user


def _signed_in():
    user = getattr(g, "user", None)
    return user is not None and user.is_authenticated


# Same class name as FAB's: the endpoint names (AuthDBView.login, AuthDBView.logout) stay.
class AuthDBView(FabAuthDBView):
    """FAB's database login; its GET /logout/ changes nothing and offers the logout button."""

    logout_template = "security/logout.html"

    @expose("/logout/", methods=["GET"])
    def logout(self):
        """A page with the logout button (a bookmark or an old link lands here)."""
        if not _signed_in():
            return redirect(self.appbuilder.get_url_for_index)
        return self.render_template(self.logout_template, appbuilder=self.appbuilder)


class LogoutView(BaseView):
    """POST /logout/: end the session (CSRFProtect has checked the form's token before this runs)."""

    route_base = ""
    default_view = "logout"

    @expose("/logout/", methods=["POST"])
    def logout(self):
        """Log the caller out, audit it (CrmSecurityManager.on_user_logout) and go to the index."""
        sm = self.appbuilder.sm
        # Read the user before logout_user() turns g.user anonymous.
        user = sm.get_user_by_id(g.user.id) if _signed_in() else None
        logout_user()
        if user is not None:
            sm.on_user_logout(user)
        return redirect(current_app.config["LOGOUT_REDIRECT_URL"] or self.appbuilder.get_url_for_index)


# Same class name as FAB's: the endpoint (SecurityApi.login) and app/ratelimits.py's wrapper stay.
class SecurityApi(FabSecurityApi):
    """FAB's token login (/api/v1/security/login), answering 400 when `provider` is missing."""

    @expose("/login", methods=["POST"])
    @safe
    def login(self):
        """FAB's login; FAB's schema leaves `provider` optional and then reads it unchecked (a 500)."""
        body = request.get_json(silent=True)
        if isinstance(body, dict) and "provider" not in body:
            return self.response_400(message={"provider": ["Missing data for required field."]})
        return super().login()

    login.__doc__ = FabSecurityApi.login.__doc__  # FAB's OpenAPI description of the route
