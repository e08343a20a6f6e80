"""The approvals board screen: requests in columns (waiting for Manager, for Compliance,
approved, rejected, recalled) with counts, stale requests highlighted, and a decision form
on every card the caller may decide now.

The columns come from app.services.approval_board (the scope rule applies); a card's
form posts to ApprovalRequestView.decide, the screens' one way into the approvals service
(CSRF token, the `can_decide` permission, flashes of the service's 400/403/404/409).
"""

from flask import abort, current_app, g, request, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import lazy_gettext as _

from app.extensions import db
from app.roles import APPROVAL
from app.scope import role_names
from app.services import approval_board
from app.services.errors import ValidationFailed
from models.base import utcnow
from views.approvals import template_helpers

COLUMN_TITLES = {
    "manager": _("Waiting for Manager"),
    "compliance": _("Waiting for Compliance"),
    "approved": _("Approved"),
    "rejected": _("Rejected"),
    "recalled": _("Recalled"),
}


def age_label(delta):
    """A short, translated age: minutes under an hour, hours under a day, else days."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return _("%(n)d min", n=minutes)
    if minutes < 24 * 60:
        return _("%(n)d h", n=minutes // 60)
    return _("%(n)d d", n=minutes // (24 * 60))


class ApprovalBoardView(BaseView):
    """承認ボード: every request in the caller's scope by where it stands."""

    route_base = "/approvals/board"
    default_view = "board"
    class_permission_name = APPROVAL
    method_permission_name = {"board": "read"}

    @expose("/")
    @has_access
    def board(self):
        """Show the board's columns with their counts and cards (read permission on ApprovalRequest)."""
        try:
            filters = approval_board.parse_filters(request.args)
        except ValidationFailed as exc:
            abort(400, description=f"{exc.field}: {exc.message}")
        now = utcnow()
        hours = approval_board.reminder_hours(current_app.config)
        columns = approval_board.columns(db.session, g.user, limit=approval_board.CARD_LIMIT, filters=filters)

        def page_url(key, page):
            """This board (same filters, other columns' pages kept) with column `key` at `page`."""
            args = request.args.to_dict()
            args[f"page_{key}"] = page
            return url_for("ApprovalBoardView.board", **args)

        return self.render_template(
            "approvals/board.html",
            title=_("Approvals Board"),
            columns=columns,
            filters=filters,
            page_url=page_url,
            column_titles=COLUMN_TITLES,
            card_limit=approval_board.CARD_LIMIT,
            reminder_hours=hours,
            is_stale=lambda item: approval_board.is_stale(item, now, hours),
            age_of=lambda item: age_label(approval_board.age(item, now)),
            user_roles=role_names(g.user),
            **template_helpers(),
        )
