"""Task screens and generated API."""

from flask import abort, flash, g, redirect, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import lazy_gettext as _
from marshmallow import validate

from app.extensions import db
from app.roles import TASK, VIEW_METHOD_PERMISSIONS
from app.services.errors import DomainError
from app.services.records import complete_task, prepare_task
from models.task import OPEN_STATUSES, Task, TaskPriority, TaskStatus
from views import display
from views.datamodels import CrmInterface
from views.base import ScopedModelApi, ScopedModelView, time_formatters
from views.lists import InFilter, may, post_button, safe_next
from views.meetings import labelled_enum_field

EDITABLE = ["title", "description", "customer", "user", "due_date", "status", "priority"]


class TaskView(ScopedModelView):
    """Tasks of the sales team."""

    datamodel = CrmInterface(Task)
    class_permission_name = TASK
    method_permission_name = {**VIEW_METHOD_PERMISSIONS, "complete": "edit"}
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
    # Opened from the menu: the open tasks (a Sales user's own, by the scope), soonest due first.
    default_filters = [["status", InFilter, OPEN_STATUSES]]
    default_note = _("Open tasks, soonest due first")
    default_order = ("due_date", "asc")
    formatters_columns = {
        **time_formatters("due_date", "completed_at", "created_at", "updated_at"),
        "status": display.badge_formatter("task_status"),
        "priority": display.badge_formatter("priority"),
        "description": display.text_or_dash,
    }

    # The forms' and the filters' selects show the labels, not TODO / URGENT.
    add_form_extra_fields = edit_form_extra_fields = search_form_extra_fields = {
        "status": labelled_enum_field(TaskStatus, display.enum_labels("task_status"), _("Status")),
        "priority": labelled_enum_field(TaskPriority, display.enum_labels("priority"), _("Priority")),
    }

    def row_class(self, item):
        """Overdue and due-soon open tasks are highlighted."""
        state = display.due_state(item.get("due_date"), item.get("status"))
        return f"crm-row-{state}" if state else ""

    def quick_actions(self, pk, item):
        """Complete an open task from the list."""
        if item.get("status") in (TaskStatus.COMPLETED, TaskStatus.CANCELLED):
            return ""
        if not may(self.appbuilder, "can_edit", TASK):
            return ""
        return post_button("TaskView.complete", _("Complete"), "fa-check", "btn-success", pk=pk)

    @expose("/complete/<pk>", methods=["POST"])
    @has_access
    @permission_name("edit")
    def complete(self, pk):
        """Complete one task in the caller's scope (POST with the CSRF token; another rep's task is 404)."""
        task = self.datamodel.get(pk, self._base_filters)
        if task is None:
            abort(404)
        try:
            done = complete_task(task)
            prepare_task(task, g.user, False)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(f"{exc.message}", "danger")
            return redirect(safe_next(url_for("TaskView.list")))
        flash(str(_("Task completed.") if done else _("The task was already completed.")), "success" if done else "info")
        return redirect(safe_next(url_for("TaskView.list")))


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
