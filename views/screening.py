"""The Compliance screens of meeting-note screening: the queue of flags and the phrase rules.

The queue shows each flagged note with the phrase highlighted; a Compliance user clears or
escalates a flag with a comment (POST with the CSRF token, `can_decide` on MeetingFlag).
The rules screen edits the phrases the listener of app/services/screening.py looks for.
"""

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import lazy_gettext as _

from app.extensions import db
from app.roles import DECIDE, SCREENING, SCREENING_RULE
from app.services import screening
from app.services.errors import DomainError, NotFound
from app.services.records import get_in_scope
from models.screening import FlagStatus, MeetingFlag, ScreeningRule
from views.base import ScopedModelView
from views.datamodels import CrmInterface
from views.display import local_time, yes_no

STATUS_LABELS = {"open": _("Not reviewed"), "cleared": _("Cleared"), "escalated": _("Escalated")}
FIELD_LABELS = {"title": _("Summary"), "description": _("Notes"), "next_action": _("Next action")}


class ScreeningQueueView(BaseView):
    """The Compliance queue: flagged meeting notes, open first, with the phrase highlighted."""

    route_base = "/screening"
    default_view = "queue"
    class_permission_name = SCREENING
    method_permission_name = {"queue": "read", "decide": "decide"}

    @expose("/")
    @has_access
    def queue(self):
        """The flags of one status (?status=open|escalated|cleared) in the caller's scope, oldest first."""
        status = request.args.get("status", "open")
        if status not in FlagStatus.__members__:
            abort(400, description="status: must be open, escalated or cleared")
        flags = screening.queue(db.session, g.user, status=FlagStatus(status))
        may_decide = self.appbuilder.sm.has_access(DECIDE, SCREENING)
        return self.render_template(
            "screening/queue.html",
            title=_("Screening queue"),
            flags=flags,
            status=status,
            counts=screening.counts(db.session, g.user),
            tabs=[(s, STATUS_LABELS[s]) for s in ("open", "escalated", "cleared")],
            status_labels=STATUS_LABELS,
            field_labels=FIELD_LABELS,
            highlight=screening.highlighted,
            local_time=local_time,
            may_decide=may_decide,
        )

    @expose("/<pk>/decide", methods=["POST"])
    @has_access
    @permission_name("decide")
    def decide(self, pk):
        """Clear or escalate one open flag (form: decision, comment)."""
        back = url_for("ScreeningQueueView.queue")
        try:
            flag = get_in_scope(MeetingFlag, pk, g.user)
            screening.decide(flag, g.user, request.form.get("decision"), request.form.get("comment"))
            db.session.commit()
        except NotFound:
            db.session.rollback()
            abort(404)
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
            return redirect(back)
        flash(str(_("Flag cleared.") if flag.status == FlagStatus.cleared else _("Flag escalated.")), "success")
        return redirect(back)


def _check_rule(rule, user, creating):
    screening.check_rule(rule)


class ScreeningRuleView(ScopedModelView):
    """The phrases meeting notes are screened for (Compliance edits them; changes are audited)."""

    datamodel = CrmInterface(ScreeningRule)
    class_permission_name = SCREENING_RULE
    prepare = _check_rule
    list_title = _("Screening rules")
    label_columns = {"phrase": _("Phrase"), "match": _("Match"), "reason": _("Reason"), "active": _("Active"),
                     "created_at": _("Created"), "except_principal_protected": _("Not for principal-protected products")}
    list_columns = ["phrase", "match", "reason", "except_principal_protected", "active"]
    add_columns = edit_columns = ["phrase", "match", "reason", "except_principal_protected", "active"]
    show_columns = ["phrase", "match", "reason", "except_principal_protected", "active", "created_at"]
    search_columns = ["phrase", "active"]
    formatters_columns = {"active": yes_no, "except_principal_protected": yes_no, "created_at": local_time}
    description_columns = {
        "phrase": _("Literal: found whatever the width, case or spacing. Regex: a Python regular expression over the folded text."),
    }
