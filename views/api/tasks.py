"""/api/tasks: tasks in scope, overdue and upcoming lists, completion."""

from datetime import timedelta

from flask import Blueprint, request

from app.extensions import db
from app.caching import cached_endpoint
from app.roles import ADD, DELETE, EDIT, READ, TASK
from app.listquery import ListQuery
from app.serialize import column_values
from app.services.records import complete_task, get_in_scope, prepare_task
from models.base import utcnow
from models.task import Task, TaskPriority, TaskStatus, is_open
from views.api import nested
from views.api.common import (
    Field,
    apply,
    current_user,
    item,
    json_body,
    page_answer,
    parse_fields,
    parse_uuid,
    path_uuid,
    query_enum,
    query_int,
    requires,
    save,
)

bp = Blueprint("crm_api_tasks", __name__, url_prefix="/tasks")

UPCOMING_DAYS = 3
# Overdue / upcoming depend on the clock, not only on writes: their answers live briefly.
NOW_DEPENDENT_TIMEOUT = 30
FIELDS = {
    "title": Field("title", required=True, max_len=200),
    "description": Field("description", max_len=20000),
    "customerId": Field("customer_id", "uuid"),
    "userId": Field("user_id", "user"),
    "dueDate": Field("due_date", "datetime"),
    "status": Field("status", "enum", enum=TaskStatus),
    "priority": Field("priority", "enum", enum=TaskPriority),
}


def load(task_id):
    """The task `task_id` if the caller may see it (else 404)."""
    return get_in_scope(Task, path_uuid(task_id, "Task"), current_user())


def _list_query():
    lq = ListQuery(Task, current_user())
    status = query_enum("status", TaskStatus)
    if status:
        lq.where("status", lambda p: Task.status == p, status)
    priority = query_enum("priority", TaskPriority)
    if priority:
        lq.where("priority", lambda p: Task.priority == p, priority)
    if request.args.get("customerId"):
        lq.where("customerId", lambda p: Task.customer_id == p, parse_uuid(request.args["customerId"], "customerId"))
    if request.args.get("userId"):
        lq.where("userId", lambda p: Task.user_id == p, query_int("userId", None))
    return lq


def _minute(moment):
    # The planner's estimate of "due before now" barely moves within a minute.
    return moment.replace(second=0, microsecond=0)


@bp.get("")
@requires(READ, TASK)
@cached_endpoint(*nested.resources(Task))
def list_tasks():
    """Tasks in scope; ?status=, priority=, customerId=, userId=."""
    return page_answer(_list_query(), [Task.due_date.asc().nulls_last(), Task.created_at.desc(), Task.id])


@bp.get("/overdue")
@requires(READ, TASK)
@cached_endpoint(*nested.resources(Task), timeout=NOW_DEPENDENT_TIMEOUT)
def overdue_tasks():
    """Open tasks whose due date has passed."""
    # status IN (open) + due_date order: the partial index ix_tasks_open_due serves it.
    lq = _list_query().where_fixed("open", is_open)
    now = utcnow()
    lq.where("dueBefore", lambda p: Task.due_date < p, now, estimate_as=_minute(now))
    return page_answer(lq, keyset=(Task.due_date, Task.id), descending=False)


@bp.get("/upcoming")
@requires(READ, TASK)
@cached_endpoint(*nested.resources(Task), timeout=NOW_DEPENDENT_TIMEOUT)
def upcoming_tasks():
    """Open tasks due within the next three days."""
    now = utcnow()
    lq = _list_query().where_fixed("open", is_open)
    lq.where("dueFrom", lambda p: Task.due_date >= p, now, estimate_as=_minute(now))
    lq.where("dueTo", lambda p: Task.due_date <= p, now + timedelta(days=UPCOMING_DAYS), estimate_as=_minute(now))
    return page_answer(lq, keyset=(Task.due_date, Task.id), descending=False)


@bp.post("")
@requires(ADD, TASK)
def create_task():
    """Create a task (owned by the caller unless an Admin or Manager names the owner)."""
    task = apply(Task(), parse_fields(json_body(), FIELDS))
    return item(save(task, prepare_task, creating=True), 201)


@bp.get("/<task_id>")
@requires(READ, TASK)
def get_task(task_id):
    """One task in scope."""
    return item(load(task_id))


@bp.put("/<task_id>")
@bp.patch("/<task_id>")
@requires(EDIT, TASK)
def update_task(task_id):
    """Change the fields sent (partial update)."""
    task = load(task_id)
    apply(task, parse_fields(json_body(), FIELDS, partial=True))
    return item(save(task, prepare_task, creating=False))


@bp.route("/<task_id>/complete", methods=["PUT", "PATCH"])
@requires(EDIT, TASK)
def complete(task_id):
    """Mark a task completed now."""
    task = load(task_id)
    complete_task(task)
    return item(save(task, prepare_task, creating=False))


@bp.delete("/<task_id>")
@requires(DELETE, TASK)
def delete_task(task_id):
    """Delete a task (audited)."""
    task = load(task_id)
    data = column_values(task)
    db.session.delete(task)
    db.session.commit()
    return item(data, model=Task)
