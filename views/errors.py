"""Error pages of the screens: a 4xx in the app's layout (navbar, theme), never Werkzeug's bare page.

/api and /api/v1 answer their JSON envelope (views/api); a screen request asking for JSON
(the bell's script, the autocomplete) and redirects keep Flask's own answer.
"""

from flask import current_app, render_template, request
from flask_babel import lazy_gettext as _

TITLES = {
    400: _("The request could not be understood"),
    403: _("You may not open this page"),
    404: _("This page does not exist"),
    405: _("This page cannot be used this way"),
}


def screen_error_page(exc):
    """`exc` (an HTTPException of a screen) as a page in the app's layout, or `exc` itself when that does not fit."""
    code = getattr(exc, "code", None) or 500
    if code < 400 or code >= 500 or request.accept_mimetypes.best == "application/json":
        return exc
    # The layout writes a CSRF token into the session: for a request that came without the
    # session cookie (a cross-site POST under SameSite=Lax) that would answer a new, empty
    # session cookie and sign the user out of the site that sent them here.
    if current_app.session_interface.get_cookie_name(current_app) not in request.cookies:
        return exc
    appbuilder = current_app.appbuilder
    try:
        page = render_template(
            "crm/error.html", appbuilder=appbuilder, base_template=appbuilder.base_template,
            code=code, title=TITLES.get(code, exc.name), description=exc.description,
        )
    except Exception:  # a failing layout must not hide the original answer
        current_app.logger.exception("error page for %s failed", code)
        return exc
    response = exc.get_response()
    response.set_data(page)
    response.mimetype = "text/html"
    return response
