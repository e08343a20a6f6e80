"""Task screens and generated API."""

from flask_babel import lazy_gettext as _
from marshmallow import validate

from app.roles import TASK
from app.services.records import prepare_task
from models.task import Task
from views.datamodels import CrmInterface
from views.base import ScopedModelApi, ScopedModelView, time_formatters

EDITABLE = ["title", "description", "customer", "user", "due_date", "status", "priority"]


class TaskView(ScopedModelView):
    """Tasks of the sales team."""

    datamodel = CrmInterface(Task)
    class_permission_name = TASK
    prepare = staticmethod(prepare_task)
    list_title = _("Tasks")
    label_columns = {
        "title": _("Title"),
        "description": _("Description"),
        "customer": _("Customer"),
        "user": _("Owner"),
        "due_date": _("Due"),
        "status": _("Status"),
        "priority": _("Priority"),
        "completed_at": _("Completed"),
    }
    list_columns = ["title", "customer", "user", "due_date", "status", "priority"]
    show_columns = EDITABLE + ["completed_at", "created_at", "updated_at"]
    add_columns = EDITABLE
    edit_columns = EDITABLE
    search_columns = ["title", "status", "priority", "customer", "user", "due_date"]
    order_columns = ["title", "due_date", "status", "priority"]
    base_order = ("due_date", "asc")
    formatters_columns = time_formatters("due_date", "completed_at", "created_at", "updated_at")


class TaskApi(ScopedModelApi):
    """Tasks under /api/v1/task."""

    resource_name = "task"
    datamodel = CrmInterface(Task)
    class_permission_name = TASK
    prepare = staticmethod(prepare_task)
    optional_add_columns = ("user",)
    list_columns = [
        "id",
        "title",
        "description",
        "customer_id",
        "user_id",
        "due_date",
        "status",
        "priority",
        "completed_at",
        "created_at",
        "updated_at",
    ]
    show_columns = list_columns
    add_columns = EDITABLE
    edit_columns = EDITABLE
    search_columns = ["title", "status", "priority", "customer", "user", "due_date"]
    order_columns = ["due_date", "title", "status", "priority", "created_at"]
    validators_columns = {"title": validate.Length(min=1, max=200)}
