"""The customer page (the rep's place to work from): shaping and form parsing only.

The facts come from app/services/customer_overview.py and app/services/timeline.py; the
quick-add forms write through the same services as the add screens and /api
(`prepare_meeting`, `prepare_task`, approvals' `submit`), so every rule, audit row and
event is theirs. CustomerView (views/customers.py) routes here.
"""

from datetime import datetime

from flask import abort, current_app, flash, g, make_response, redirect, request, url_for
from flask_babel import lazy_gettext as _

from app.extensions import db
from app.i18n import display_zone
from app.roles import ADD, APPROVAL, CUSTOMER, EDIT, MEETING, TASK
from app.services import cards, customer_overview, timeline
from app.services.approvals import submit
from app.services.errors import DomainError, NotFound, ValidationFailed
from app.services.records import prepare_meeting, prepare_task
from models.approval import ApprovalRequest
from models.meeting import Meeting, MeetingType
from models.task import Task, TaskPriority
from views.customer_cards import card_context
from views.approvals import LABELS as REQUEST_FIELD_LABELS
from views.approvals import STATUS_BADGES as REQUEST_BADGES
from views.approvals import STATUS_LABELS as REQUEST_LABELS
from views.display import badge, local_time, risk_badge
from views.display import label as code_label
from views.meetings import STATUS_LABELS as MEETING_STATUS_LABELS
from views.meetings import TYPE_LABELS as MEETING_TYPE_LABELS
from views.meetings import MeetingView
from views.tasks import TaskView

ACTION_LABELS = {
    "CREATE": _("created"),
    "UPDATE": _("changed"),
    "DELETE": _("deleted"),
    "APPROVE": _("approved"),
    "REJECT": _("rejected"),
    "RECALL": _("recalled"),
}
RESOURCE_LABELS = {
    "customer": _("Customer"),
    "meeting": _("Meeting"),
    "task": _("Task"),
    "approval_request": _("Approval request"),
    "attachment": _("Attachment"),
}
DELETED_LABEL = _("Deleted")


def field_labels(*label_maps):
    """The timeline's field names -> labels: the screens' own column labels, `<relation>_id` named as its relation."""
    merged = {}
    for labels in label_maps:
        merged.update(labels)
    merged.update({f"{key}_id": label for key, label in list(merged.items())})
    merged.setdefault("deleted_at", DELETED_LABEL)
    return {key: str(label) for key, label in merged.items()}


#: What each quick-add form writes, and the permission it needs on that resource.
FORMS = {"meeting": MEETING, "task": TASK, "request": APPROVAL}


#: Stored codes shown as their labels in the timeline's before → after (field -> {code: label}).
VALUE_LABELS = {
    "status": {**{k.value: v for k, v in MEETING_STATUS_LABELS.items()}, **{k.value: v for k, v in REQUEST_LABELS.items()}},
    "type": {k.value: v for k, v in MEETING_TYPE_LABELS.items()},
}


def show_value(value, field=None):
    """A before/after value as a reader wants it: codes as labels, times in the display zone, empty as a dash."""
    if value is None or value == "":
        return "—"
    label = VALUE_LABELS.get(field, {}).get(value) if isinstance(value, str) else None
    if label is not None:
        return str(label)
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and "T" in value:
        try:
            return local_time(datetime.fromisoformat(value))
        except ValueError:
            return value
    return str(value)


def active_products():
    """The master's active products a request may pick (id, label), by name."""
    import sqlalchemy as sa

    from models.product import Product, ProductOrigin

    rows = db.session.execute(
        sa.select(Product).where(Product.active.is_(True), Product.origin == ProductOrigin.master).order_by(Product.name)
    ).scalars().all()
    return [(p.id, f"{p.name} [{p.code}] risk {p.risk_rating}{' complex' if p.complex else ''}") for p in rows]


def may_add(kind):
    """True when the current user holds the add permission the quick-add form `kind` needs."""
    return current_app.appbuilder.sm.has_access(ADD, FORMS[kind])


def render(view, pk, status=200):
    """The customer page of `pk` for the current user (404 outside their scope)."""
    user = g.user
    try:
        customer = customer_overview.load_customer(pk, user)
        page = timeline.customer_timeline(customer.id, user, before=request.args.get("before"))
    except NotFound:
        abort(404)
    except ValidationFailed as exc:
        return make_response({"error": "Bad Request", "message": exc.message, "details": exc.details}, 400)
    # Each lazy label is translated once per page, not once per timeline line.
    texts = lambda labels: {key: str(value) for key, value in labels.items()}  # noqa: E731
    html = view.render_template(
        "crm/customer_page.html",
        title=view.show_title,
        customer=customer,
        labels=texts(view.label_columns),
        suitability=customer_overview.suitability_of(customer),
        related=customer_overview.related_records(customer, user),
        timeline=page,
        local_time=local_time,
        badge=badge,  # codes (size, investment profile) as their labelled badges, as on the lists
        code_label=code_label,  # a code's label alone (the quick-add form's priorities)
        risk_badge=risk_badge,
        show_value=show_value,
        action_labels=texts(ACTION_LABELS),
        resource_labels=texts(RESOURCE_LABELS),
        field_labels=field_labels(REQUEST_FIELD_LABELS, MeetingView.label_columns, TaskView.label_columns, view.label_columns),
        is_overdue=customer_overview.is_overdue,
        may_add={kind: may_add(kind) for kind in FORMS},
        meeting_types=[(t.value, MEETING_TYPE_LABELS[t]) for t in MeetingType],
        meeting_status_labels=texts(MEETING_STATUS_LABELS),
        request_labels=texts(REQUEST_LABELS),
        request_badges=REQUEST_BADGES,
        priorities=list(TaskPriority),
        form=request.form if status != 200 else {},
        products=active_products(),
        may_edit_card=current_app.appbuilder.sm.has_access(EDIT, CUSTOMER) and cards.may_edit(user),
        **card_context(customer),
    )
    return make_response(html, status)


def _parsed(name, convert, hint, required=False):
    """The form's `name` through `convert` (None when empty and not `required`); a 400 naming it otherwise."""
    raw = (request.form.get(name) or "").strip()
    if not raw:
        if required:
            raise ValidationFailed(f"{name} is required", field=name)
        return None
    try:
        return convert(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be {hint}", field=name) from None


def local_datetime(name, required=True):
    """The form's `name` (a datetime-local value, in the display time zone) as an aware time; 400 naming it."""
    value = _parsed(name, datetime.fromisoformat, "a date and time like 2026-04-01T10:00", required)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=display_zone())
    return value


def _enum(enum_cls, name, default):
    hint = f"one of {', '.join(m.value for m in enum_cls)}"
    return _parsed(name, enum_cls, hint) or default


def _int(name):
    return _parsed(name, int, "a whole number")


def _build(kind, customer, user):
    """The new row of the quick-add form `kind`, checked and added to the session by its service."""
    form = request.form
    if kind == "meeting":
        meeting = Meeting(
            customer_id=customer.id,
            title=(form.get("title") or "").strip() or None,
            description=(form.get("description") or "").strip() or None,
            scheduled_at=local_datetime("scheduled_at"),
            type=_enum(MeetingType, "type", MeetingType.visit),
            location=(form.get("location") or "").strip() or None,
        )
        prepare_meeting(meeting, user, True)
        db.session.add(meeting)
        return meeting
    if kind == "task":
        task = Task(
            customer_id=customer.id,
            title=(form.get("title") or "").strip(),
            description=(form.get("description") or "").strip() or None,
            due_date=local_datetime("due_date", required=False),
            priority=_enum(TaskPriority, "priority", TaskPriority.MEDIUM),
        )
        prepare_task(task, user, True)
        db.session.add(task)
        return task
    amount = (form.get("amount") or "").replace(",", "").replace("¥", "").strip()
    if not amount:
        raise ValidationFailed("amount is required", field="amount")
    req = ApprovalRequest(
        customer_id=customer.id,
        product_id=(form.get("product_id") or "").strip() or None,
        product_name=(form.get("product_name") or "").strip(),
        product_risk=_int("product_risk"),
        amount=amount,
        comment=(form.get("comment") or "").strip() or None,
    )
    return submit(req, user)


ADDED = {"meeting": _("Meeting added"), "task": _("Task added"), "request": _("Approval request submitted")}


def add(view, pk, kind):
    """Handle a quick-add form: write through the service, or show the page again with a 400 naming the field."""
    if kind not in FORMS:
        abort(404)
    user = g.user
    try:
        customer = customer_overview.load_customer(pk, user)
    except NotFound:
        abort(404)
    if not may_add(kind):
        abort(403)
    try:
        _build(kind, customer, user)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            abort(404)
        flash(f"{exc.field + ': ' if exc.field else ''}{exc.message}", "danger")
        return render(view, customer.id, status=exc.status)
    flash(str(ADDED[kind]), "success")
    return redirect(url_for("CustomerView.show", pk=customer.id))
