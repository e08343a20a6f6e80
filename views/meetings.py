"""Meeting (商談記録) screens and generated API."""

from flask_babel import lazy_gettext as _
from marshmallow import validate

from app.roles import MEETING
from app.services.records import prepare_meeting
from models.meeting import Meeting, MeetingStatus, MeetingType
from views.datamodels import CrmInterface
from views import display
from views.base import ScopedModelApi, ScopedModelView, time_formatters

EDITABLE = [
    "customer", "title", "type", "status", "description", "scheduled_at", "location", "next_action", "next_action_date", "sales",
    "product",
]
TYPE_LABELS = {
    MeetingType.visit: _("Visit"),
    MeetingType.phone: _("Phone call"),
    MeetingType.online: _("Online"),
    MeetingType.branch: _("At our branch"),
    MeetingType.other: _("Other"),
}
STATUS_LABELS = {
    MeetingStatus.scheduled: _("Scheduled"),
    MeetingStatus.completed: _("Held"),
    MeetingStatus.cancelled: _("Cancelled"),
}


def labelled_enum_field(enum_cls, labels, label):
    """A select of an enum column showing translated labels (FAB's EnumField shows the raw values).

    Left out of a post, the field is None and the service fills its default
    (app/services/records.py); a value outside the enum is refused.
    """
    from flask_appbuilder.fieldwidgets import Select2Widget
    from wtforms import SelectField

    def coerce(value):
        if value is None or isinstance(value, enum_cls):
            return value
        return enum_cls(value)  # ValueError: WTForms' "Invalid Choice"

    return SelectField(label, choices=[(m.value, labels[m]) for m in enum_cls], coerce=coerce, widget=Select2Widget(), validate_choice=False)


class MeetingView(ScopedModelView):
    """Meetings with customers."""

    datamodel = CrmInterface(Meeting)
    class_permission_name = MEETING
    prepare = staticmethod(prepare_meeting)
    list_title = _("Meetings")
    show_template = "crm/meeting_show.html"  # FAB's show, then the meeting's attachments
    label_columns = {
        "customer": _("Customer"),
        "title": _("Title"),
        "description": _("Summary"),
        "type": _("Type"),
        "status": _("Status"),
        "scheduled_at": _("Date"),
        "location": _("Location"),
        "next_action": _("Next action"),
        "next_action_date": _("Next action date"),
        "sales": _("Sales rep"),
        "product": _("Product"),
    }
    list_columns = ["scheduled_at", "customer", "title", "type", "status", "sales", "next_action", "next_action_date"]
    show_columns = EDITABLE + ["created_at", "updated_at"]
    add_columns = EDITABLE
    edit_columns = EDITABLE
    search_columns = ["title", "customer", "type", "status", "sales", "scheduled_at", "next_action_date"]
    order_columns = ["scheduled_at", "title", "type", "status", "next_action_date"]
    base_order = ("scheduled_at", "desc")
    formatters_columns = {
        **time_formatters("scheduled_at", "next_action_date", "created_at", "updated_at"),
        "type": display.badge_formatter("meeting_type"),
        "status": display.badge_formatter("meeting_status"),
        "location": display.text_or_dash,
        "next_action": display.text_or_dash,
        "description": display.text_or_dash,
        "product": display.text_or_dash,
    }
    add_form_extra_fields = edit_form_extra_fields = {
        "type": labelled_enum_field(MeetingType, TYPE_LABELS, _("Type")),
        "status": labelled_enum_field(MeetingStatus, STATUS_LABELS, _("Status")),
    }


class MeetingApi(ScopedModelApi):
    """Meetings under /api/v1/meeting."""

    resource_name = "meeting"
    datamodel = CrmInterface(Meeting)
    class_permission_name = MEETING
    prepare = staticmethod(prepare_meeting)
    # Filled by the service when absent (type: visit; status: from the date).
    optional_add_columns = ("type", "status")
    list_columns = [
        "id",
        "customer_id",
        "sales_id",
        "title",
        "description",
        "scheduled_at",
        "type",
        "status",
        "location",
        "next_action",
        "next_action_date",
        "product_id",
        "created_at",
        "updated_at",
    ]
    show_columns = list_columns
    add_columns = EDITABLE
    edit_columns = EDITABLE
    search_columns = ["title", "customer", "sales", "scheduled_at", "type", "status"]
    order_columns = ["scheduled_at", "title", "type", "status", "created_at"]
    validators_columns = {"title": validate.Length(min=1, max=200)}
