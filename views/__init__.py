"""Screens and APIs, registered in one place."""

from flask_babel import lazy_gettext as _


def register_views(appbuilder):
    """Add every screen, menu and API to `appbuilder`."""
    from views.approvals import ApprovalRequestApi, ApprovalRequestView, MyRequestsView, PendingDecisionView
    from views.audit import AuditLogView
    from views.auth import LogoutView
    from views.customers import CustomerApi, CustomerView
    from views.meetings import MeetingApi, MeetingView
    from views.notifications import NotificationView
    from views.tasks import TaskApi, TaskView
    from views.board import ApprovalBoardView  # board

    appbuilder.add_view_no_menu(LogoutView)
    appbuilder.add_view(CustomerView, "Customers", label=_("Customers"), icon="fa-building", category="Sales", category_label=_("Sales"))
    appbuilder.add_view(MeetingView, "Meetings", label=_("Meetings"), icon="fa-handshake-o", category="Sales")
    appbuilder.add_view(TaskView, "Tasks", label=_("Tasks"), icon="fa-check-square-o", category="Sales")
    appbuilder.add_view(
        ApprovalRequestView,
        "Approval Requests",
        label=_("Approval Requests"),
        icon="fa-gavel",
        category="Approvals",
        category_label=_("Approvals"),
    )
    appbuilder.add_view(
        PendingDecisionView, "Pending My Decision", label=_("Pending My Decision"), icon="fa-inbox", category="Approvals"
    )
    appbuilder.add_view(MyRequestsView, "My Requests", label=_("My Requests"), icon="fa-paper-plane", category="Approvals")
    # board: the approvals board (its menu opens with read on ApprovalRequest, app/roles.py)
    appbuilder.add_view(ApprovalBoardView, "Approvals Board", label=_("Approvals Board"), icon="fa-columns", category="Approvals")
    appbuilder.add_view(NotificationView, "Notifications", label=_("Notifications"), icon="fa-bell")
    # suitability: the product master and the customer card's edit screen (docs/compliance.md)
    from views.customer_cards import CustomerCardView
    from views.products import ProductApi, ProductView

    appbuilder.add_view(ProductView, "Products", label=_("Products"), icon="fa-cubes", category="Approvals")
    appbuilder.add_view_no_menu(CustomerCardView)
    appbuilder.add_api(ProductApi)
    # --- bell: the navbar's notification bell (views/notifications.py) ---
    from flask import current_app

    from views.notifications import NotificationBellView, bell_stream_url

    appbuilder.add_view_no_menu(NotificationBellView)
    current_app.jinja_env.globals["bell_stream_url"] = bell_stream_url
    # --- end bell ---
    # Compliance: the meeting-note screening queue and its phrase rules (views/screening.py)
    from views.screening import ScreeningQueueView, ScreeningRuleView

    appbuilder.add_view(
        ScreeningQueueView, "Screening queue", label=_("Screening queue"), icon="fa-flag", category="Compliance",
        category_label=_("Compliance"),
    )
    appbuilder.add_view(ScreeningRuleView, "Screening rules", label=_("Screening rules"), icon="fa-filter", category="Compliance")
    from views.compliance import ComplianceDashboardView

    appbuilder.add_view(
        ComplianceDashboardView, "Compliance dashboard", label=_("Compliance dashboard"), icon="fa-tachometer",
        category="Compliance",
    )
    appbuilder.add_view(AuditLogView, "Audit Log", label=_("Audit Log"), icon="fa-history", category="Admin", category_label=_("Admin"))
    # --- ops: API keys for service clients (app/api_keys.py), Admins only ---
    from views.api_keys import ApiKeysView

    appbuilder.add_view(ApiKeysView, "API keys", label=_("API keys"), icon="fa-key", category="Admin")

    # --- find: global search, saved views ---
    from views.saved_views import SavedViewsView
    from views.search import GlobalSearchView

    appbuilder.add_view_no_menu(GlobalSearchView)
    appbuilder.add_view(SavedViewsView, "Saved views", label=_("Saved views"), icon="fa-bookmark", category="Sales")
    # --- end find ---
    # --- reports: Excel and PDF reports built by a worker (views/reports.py) ---
    from views.reports import ReportsView

    appbuilder.add_view(ReportsView, "Reports", label=_("Reports"), icon="fa-file-text-o", category="Sales")
    # --- end reports ---
    # --- cust-cal: the calendar ---
    from views.calendar import CalendarView

    appbuilder.add_view(CalendarView, "Calendar", label=_("Calendar"), icon="fa-calendar", category="Sales")
    # --- end cust-cal ---

    # --- imports: the import screen (views/imports.py) ---
    from views.imports import ImportView, install as install_imports

    appbuilder.add_view(ImportView, "Imports", label=_("Imports"), icon="fa-upload", category="Sales")
    install_imports(current_app)
    # --- end imports ---

    for api in (CustomerApi, MeetingApi, TaskApi, ApprovalRequestApi):
        appbuilder.add_api(api)

    # rq-dashboard for Admins (views/rq_admin.py).
    from views.rq_admin import mount

    mount(current_app._get_current_object())

    # --- lists: the scoped autocomplete of related-field inputs (views/autocomplete.py) ---
    from views.autocomplete import AutocompleteView

    appbuilder.add_view_no_menu(AutocompleteView)

    # --- attach: files on customers, meetings and approval requests (views/attachments.py) ---
    from views.attachments import install as install_attachments

    install_attachments(current_app, appbuilder)
