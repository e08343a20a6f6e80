"""The Compliance dashboard (コンプライアンス・ダッシュボード): what Compliance is inspected on, at a glance.

Stale customer cards, flagged meeting notes, elderly-customer cases, requests by routing
reason and the weekly trends of each (app/services/compliance_dashboard.py), over the
caller's scope; each block links to the screen where it is worked on.
"""

import json

from flask import g
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import lazy_gettext as _

from app.extensions import db
from app.roles import COMPLIANCE_DASHBOARD
from app.services import compliance_dashboard
from app.services.dashboard import user_names
from views.approvals import REASON_LABELS, STATUS_LABELS
from views.display import local_time
from views.screening import FIELD_LABELS


def trend_chart(figures):
    """The weekly trends as JSON for home.js (a line chart per block)."""
    weeks = [local_time(w, "%m/%d") for w in figures["weeks"]]
    reasons = sorted(figures["reasons"])
    return json.dumps(
        {
            "weeks": weeks,
            "trend": {
                "labels": [str(_("Flagged notes")), str(_("Requests routed to Compliance")), str(_("Elderly-customer cases"))],
                "series": [figures["trend"]["flags"], figures["trend"]["routed"], figures["trend"]["elderly"]],
            },
            "reasons": {
                "labels": [str(REASON_LABELS.get(r, r)) for r in reasons],
                "series": [figures["reasons"][r] for r in reasons],
            },
        },
        ensure_ascii=False,
    )


class ComplianceDashboardView(BaseView):
    """The Compliance dashboard: read permission on ComplianceDashboard (Compliance, Manager, Admin)."""

    route_base = "/compliance"
    default_view = "dashboard"
    class_permission_name = COMPLIANCE_DASHBOARD
    method_permission_name = {"dashboard": "read"}

    @expose("/")
    @has_access
    def dashboard(self):
        """Every block of the dashboard over the caller's scope."""
        figures = compliance_dashboard.figures(db.session, g.user)
        names = user_names({uid for uid, _n in figures["flags"]["byRep"] if uid is not None})
        return self.render_template(
            "crm/compliance_dashboard.html",
            title=_("Compliance dashboard"),
            figures=figures,
            rep_names=names,
            chart=trend_chart(figures),
            reason_labels=REASON_LABELS,
            status_labels=STATUS_LABELS,
            field_labels=FIELD_LABELS,
            local_time=local_time,
        )
