"""The calendar screen: meetings and task due dates with FullCalendar (vendored, app/static/vendor).

The page carries its feed and move URLs and the CSRF token as data attributes
(app/static/crm/calendar.js reads them; no inline script under the CSP). The feed and the
move are app/services/calendar.py; this module only parses the request and shapes answers.
"""

from flask import current_app, g, jsonify, request, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access, has_access_api
from flask_babel import lazy_gettext as _

from app import caching
from app.extensions import db
from app.roles import MEETING
from app.scope import sees_all
from app.services import calendar as service
from app.services.errors import DomainError, ValidationFailed


# The tables a feed answer is read from, and how long one lives at most (its "overdue" marks follow the clock).
FEED_RESOURCES = ("meetings", "tasks", "customers")
FEED_CACHE_SECONDS = 30


def _error(exc):
    db.session.rollback()
    return jsonify(error=exc.error, message=exc.message, details=exc.details), exc.status


class CalendarView(BaseView):
    """カレンダー: month, week and day views of what the caller may see; drag to reschedule."""

    route_base = "/calendar"
    default_view = "index"
    class_permission_name = MEETING
    method_permission_name = {"index": "read", "feed": "read", "move": "read"}

    @expose("/")
    @has_access
    def index(self):
        """The calendar page ("mine" by default; "the team's" for those who see every record)."""
        who = request.args.get("who", service.MINE)
        if who not in (service.MINE, service.TEAM):
            who = service.MINE
        return self.render_template(
            "crm/calendar.html",
            title=_("Calendar"),
            who=who,
            team=sees_all(g.user),
            locale=str(current_app.appbuilder.bm.get_locale() or "ja"),
        )

    @expose("/feed")
    @has_access_api
    def feed(self):
        """The items between ?start= and ?end= (ISO 8601, at most 62 days apart); ?who=mine|team.

        Cached like the /api lists (invalidated by any write to meetings, tasks or customers),
        keyed by the caller's scope and roles ("editable" follows the roles), and by the
        caller alone for "mine"; briefly, since "overdue" moves with the clock.
        """
        who = request.args.get("who", service.MINE)
        scope = None
        if caching.answer_backend() is not None:
            scope = caching.role_scope(g.user, FEED_RESOURCES, per_user=who != service.TEAM)
        return caching.cached_response(FEED_RESOURCES, lambda: self._feed(who), scope=scope, timeout=FEED_CACHE_SECONDS)

    def _feed(self, who):
        try:
            items = service.feed(g.user, request.args.get("start"), request.args.get("end"), who)
        except DomainError as exc:
            return _error(exc)
        # Each screen's address built once (url_for per item cost more than the item itself).
        screens = {kind: url_for(f"{view}.show", pk="0").rsplit("/", 1)[0] + "/" for kind, view in (("meeting", "MeetingView"), ("task", "TaskView"))}
        for item in items:
            props = item["extendedProps"]
            item["url"] = screens[props["kind"]] + props["recordId"]
        return jsonify(items)

    @expose("/move", methods=["POST"])
    @has_access_api
    def move(self):
        """Reschedule one item: JSON {kind: meeting|task, id, start} with the X-CSRFToken header."""
        body = request.get_json(silent=True)
        try:
            if not isinstance(body, dict):
                raise ValidationFailed('the body must be a JSON object like {"kind": "meeting", "id": "...", "start": "..."}')
            obj = service.reschedule(body.get("kind"), body.get("id"), body.get("start"), g.user)
        except DomainError as exc:
            return _error(exc)
        moment = obj.scheduled_at if body["kind"] == "meeting" else obj.due_date
        return jsonify(success=True, id=obj.id, kind=body["kind"], start=service.iso_utc(moment))
