"""Saved views screens: save the current list under a name, open one, delete one (POST + CSRF), and the menu's page of them."""

from flask import current_app, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import lazy_gettext as _

from app.services import saved_views as service
from app.services.errors import DomainError
from models.saved_view import NAME_MAX
from views.list_tools import list_screens, list_url

#: The resource (FAB view-menu) whose read / add / delete every role holds for its own views.
SAVED_VIEW = "SavedView"
#: What the page says about a refused field (the service's message is the API's, in English).
FIELD_ERRORS = {
    "name": _("Give the view a name of at most %(n)d characters (not one being saved at the same moment).", n=NAME_MAX),
    "screen": _("This page cannot be saved as a view."),
    "query": _("The filters of this list are too long to save as a view."),
}


class SavedViewsView(BaseView):
    """/savedviews/: the caller's saved views, each opening its list; save and delete are form POSTs."""

    route_base = "/savedviews"
    default_view = "index"
    class_permission_name = SAVED_VIEW
    method_permission_name = {"index": "read", "save": "add", "delete": "delete"}

    def _screens(self):
        return list_screens(current_app.appbuilder)

    def _page(self, error=None, status=200, field=None):
        screens = self._screens()
        rows = [
            {
                "id": v.id,
                "name": v.name,
                "screen": str(getattr(screens.get(v.screen), "list_title", None) or v.screen),
                "url": list_url(v.screen, v.query) if v.screen in screens else None,
            }
            for v in service.mine(g.user)
        ]
        return self.render_template("crm/saved_views.html", rows=rows, error=error, field=field, title=_("Saved views")), status

    @expose("/")
    @has_access
    def index(self):
        """Every saved view of the caller, by list and name."""
        return self._page()

    @expose("/save", methods=["POST"])
    @has_access
    def save(self):
        """Save the list arguments `query` of list `screen` under `name` (form), then open that list; 400 naming a bad field."""
        screen = request.form.get("screen", "")
        try:
            view = service.save(g.user, screen, request.form.get("name"), request.form.get("query", ""), self._screens())
        except DomainError as exc:
            return self._page(error=FIELD_ERRORS.get(exc.field, exc.message), status=exc.status, field=exc.field)
        flash(str(_("Saved the view “%(name)s”.", name=view.name)), "success")
        return redirect(list_url(view.screen, view.query))

    @expose("/delete/<view_id>", methods=["POST"])
    @has_access
    def delete(self, view_id):
        """Delete one of the caller's saved views (another user's answers 404), then go back to `next` or this page."""
        try:
            screen = service.delete(g.user, view_id)
        except DomainError as exc:
            return self._page(error=_("No such saved view."), status=exc.status)
        flash(str(_("Saved view deleted.")), "success")
        back = request.form.get("next") or ""
        if back.startswith("/") and not back.startswith("//") and "\\" not in back:
            return redirect(back)
        return redirect(url_for("SavedViewsView.index") if screen not in self._screens() else list_url(screen, ""))
