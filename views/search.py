"""Global search screens: the navbar's suggestions (JSON) and the results page (Enter, with or without JS).

The query lives in app/services/search.py; this module parses `q` and `limit`, decides
which groups the caller's role may read and shapes the answer.
"""

from functools import wraps

from flask import current_app, g, jsonify, redirect, request, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_babel import lazy_gettext as _

from app.roles import CUSTOMER, MEETING, READ, TASK
from app.services import search as service
from app.services.errors import DomainError
from views.display import local_time

#: Group → (the resource its role must read, its heading, the screen a hit opens).
GROUPS = {
    "customers": (CUSTOMER, _("Customers"), "CustomerView.show"),
    "meetings": (MEETING, _("Meetings"), "MeetingView.show"),
    "tasks": (TASK, _("Tasks"), "TaskView.show"),
}


def signed_in(fn):
    """Let signed-in users through; others go to the login page (the JSON route answers 401)."""

    @wraps(fn)
    def wrapper(self, *args, **kwargs):
        user = getattr(g, "user", None)
        if user is None or not getattr(user, "is_authenticated", False):
            if request.path.endswith("/suggest"):
                return jsonify(error="Unauthorized", message="sign in first", details={}), 401
            return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
        return fn(self, *args, **kwargs)

    return wrapper


def readable_groups():
    """The groups the caller's roles may read (a group's resource needs can_read)."""
    sm = current_app.appbuilder.sm
    return tuple(kind for kind, (resource, _label, _endpoint) in GROUPS.items() if sm.has_access(READ, resource))


def _shaped(groups):
    """The groups as plain dicts (labels, urls and display times), for the template and the JSON answer."""
    out = []
    for group in groups:
        _resource, label, endpoint = GROUPS[group.kind]
        out.append({
            "kind": group.kind,
            "label": str(label),
            "more": group.more,
            "items": [
                {
                    "id": hit.id,
                    "title": hit.title,
                    "detail": hit.detail,
                    "when": local_time(hit.when) if hit.when else "",
                    "url": url_for(endpoint, pk=hit.id),
                }
                for hit in group.hits
            ],
        })
    return out


class GlobalSearchView(BaseView):
    """/search/?q= (the results page) and /search/suggest?q= (the navbar's dropdown)."""

    route_base = "/search"
    default_view = "results"

    @expose("/")
    @signed_in
    def results(self):
        """The results page: every group the caller may read, up to GLOBAL_SEARCH_PAGE_LIMIT each; 400 for a bad `q`."""
        raw = request.args.get("q", "")
        try:
            text = service.parse_query(raw)
        except DomainError as exc:
            page = self.render_template("crm/search.html", q=raw, groups=[], error=_("Type the text to search for: at most %(n)d characters.", n=service.MAX_QUERY_LENGTH), title=_("Search"))
            return page, exc.status
        limit = current_app.config["GLOBAL_SEARCH_PAGE_LIMIT"]
        groups = _shaped(service.search(g.user, text, limit, readable_groups()))
        return self.render_template("crm/search.html", q=text, groups=groups, error=None, title=_("Search"))

    @expose("/suggest")
    @signed_in
    def suggest(self):
        """JSON for the navbar: {"q", "groups": [{kind, label, more, items: [{id, title, detail, when, url}]}], "all"}."""
        try:
            text = service.parse_query(request.args.get("q"))
            maximum = current_app.config["GLOBAL_SEARCH_PAGE_LIMIT"]
            limit = service.parse_limit(request.args.get("limit"), current_app.config["GLOBAL_SEARCH_SUGGEST_LIMIT"], maximum)
        except DomainError as exc:
            return jsonify(exc.to_dict()), exc.status
        groups = _shaped(service.search(g.user, text, limit, readable_groups()))
        resp = jsonify(q=text, groups=groups, all=url_for("GlobalSearchView.results", q=text))
        resp.headers["Cache-Control"] = "no-store"
        return resp
