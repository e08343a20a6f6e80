"""Meeting (商談記録) screens and generated API."""

from flask_babel import lazy_gettext as _
from marshmallow import validate

from app.roles import MEETING
from app.services.records import prepare_meeting
from models.meeting import Meeting
from views.datamodels import CrmInterface
from views.base import ScopedModelApi, ScopedModelView, time_formatters

EDITABLE = ["customer", "title", "description", "scheduled_at", "location", "next_action", "next_action_date", "sales"]


class MeetingView(ScopedModelView):
    """Meetings with customers."""

    datamodel = CrmInterface(Meeting)
    class_permission_name = MEETING
    prepare = staticmethod(prepare_meeting)
    list_title = _("Meetings")
    label_columns = {
        "customer": _("Customer"),
        "title": _("Title"),
        "description": _("Summary"),
        "scheduled_at": _("Date"),
        "location": _("Location"),
        "next_action": _("Next action"),
        "next_action_date": _("Next action date"),
        "sales": _("Sales rep"),
    }
    list_columns = ["scheduled_at", "customer", "title", "sales", "next_action", "next_action_date"]
    show_columns = EDITABLE + ["created_at", "updated_at"]
    add_columns = EDITABLE
    edit_columns = EDITABLE
    search_columns = ["title", "customer", "sales", "scheduled_at", "next_action_date"]
    order_columns = ["scheduled_at", "title", "next_action_date"]
    base_order = ("scheduled_at", "desc")
    formatters_columns = time_formatters("scheduled_at", "next_action_date", "created_at", "updated_at")


class MeetingApi(ScopedModelApi):
    """Meetings under /api/v1/meeting."""

    resource_name = "meeting"
    datamodel = CrmInterface(Meeting)
    class_permission_name = MEETING
    prepare = staticmethod(prepare_meeting)
    list_columns = [
        "id",
        "customer_id",
        "sales_id",
        "title",
        "description",
        "scheduled_at",
        "location",
        "next_action",
        "next_action_date",
        "created_at",
        "updated_at",
    ]
    show_columns = list_columns
    add_columns = EDITABLE
    edit_columns = EDITABLE
    search_columns = ["title", "customer", "sales", "scheduled_at"]
    order_columns = ["scheduled_at", "title", "created_at"]
    validators_columns = {"title": validate.Length(min=1, max=200)}
