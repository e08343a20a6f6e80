"""Audit trail and change events for every write, whatever the entry point.

One SQLAlchemy `after_flush` listener sees each insert, update and delete made through
any session (screens, both APIs, CLI, workers) and adds, in the same transaction, an
AuditLog row with before/after values and the outbox events of design.md §5.
"""

import sqlalchemy as sa
from flask_appbuilder.security.sqla.models import User

from app import events, passwords
from app.context import client_ip, current_user_id
from app.serialize import column_values, json_value
from models.attachment import Attachment
from models.audit import AuditAction, AuditLog
from models.base import new_id, utcnow
from models.customer import Customer
from models.meeting import Meeting
from models.task import Task, TaskStatus

# FAB's user table is audited too, minus bookkeeping columns that change on every login.
_USER_NOISE = {"password", "last_login", "login_count", "fail_login_count", "changed_on", "changed_by_fk"}


def resource_type(obj):
    """Return the audit resource name of a model instance, or None if it is not audited."""
    if isinstance(obj, User):
        return "user"
    return getattr(type(obj), "__audit_resource__", None)


def record(session, action, resource, resource_id, changes=None, user_id=None):
    """Add an AuditLog row to `session` (login events and domain actions call this)."""
    session.add(
        AuditLog(
            user_id=user_id if user_id is not None else current_user_id(),
            action=action,
            resource_type=resource,
            resource_id=str(resource_id) if resource_id is not None else None,
            changes=changes,
            ip_address=client_ip(),
        )
    )


def record_many(session, rows):
    """Insert many audit rows in one statement (bulk writers: imports, loaders); return how many.

    Each row is a dict of `action`, `resource_type`, `resource_id`, and optionally `changes`,
    `user_id`, `ip_address`, `timestamp` (default now). Rows join the hash chain like any
    other: the sealer (app/audit_chain.py) links every committed row, however it was written.
    """
    if not rows:
        return 0
    user_id, ip, now = current_user_id(), client_ip(), utcnow()
    values = [
        {
            "id": new_id(),
            "user_id": row.get("user_id", user_id),
            "action": AuditAction(row["action"]),
            "resource_type": row["resource_type"],
            "resource_id": str(row["resource_id"]) if row.get("resource_id") is not None else None,
            "changes": row.get("changes"),
            "ip_address": row.get("ip_address", ip),
            "timestamp": row.get("timestamp") or now,
        }
        for row in rows
    ]
    session.execute(sa.insert(AuditLog), values)
    return len(values)


def _changed(obj):
    """Return ({col: before}, {col: after}) for the columns changed on `obj`."""
    before, after = {}, {}
    state = sa.inspect(obj)
    derived = getattr(type(obj), "__audit_derived__", ())
    for attr in state.mapper.column_attrs:
        if attr.key in _USER_NOISE or attr.key in derived:
            continue
        hist = state.attrs[attr.key].history
        if hist.has_changes():
            old = hist.deleted[0] if hist.deleted else None
            new = hist.added[0] if hist.added else None
            if old != new:
                before[attr.key] = json_value(old)
                after[attr.key] = json_value(new)
    return before, after


def _snapshot(obj):
    values = column_values(obj, camel=False)
    for key in (*_USER_NOISE, *getattr(type(obj), "__audit_derived__", ())):
        values.pop(key, None)
    return values


def _change_events(session, obj, action, before, after):
    """Write the outbox events a model change implies (design.md §5)."""
    payload = column_values(obj)
    # A customer, task or meeting just inserted has a new UUID: no earlier event names it.
    fresh = action == AuditAction.CREATE
    if isinstance(obj, Customer):
        if action == AuditAction.CREATE:
            kind = "CUSTOMER_CREATED"
        elif action == AuditAction.DELETE:
            kind = "CUSTOMER_DELETED"
        else:
            kind = "CUSTOMER_UPDATED"
        events.emit(session, kind, "customer", obj.id, payload, fresh=fresh)
    elif isinstance(obj, Task):
        if action == AuditAction.CREATE:
            kind = "TASK_CREATED"
        elif after.get("status") == TaskStatus.COMPLETED.value:
            kind = "TASK_COMPLETED"
        elif action == AuditAction.UPDATE:
            kind = "TASK_UPDATED"
        else:
            return
        events.emit(session, kind, "task", obj.id, payload, key=obj.customer_id or obj.id, fresh=fresh)
    elif isinstance(obj, Meeting) and action != AuditAction.DELETE:
        kind = "MEETING_CREATED" if action == AuditAction.CREATE else "MEETING_UPDATED"
        events.emit(session, kind, "meeting", obj.id, payload, key=obj.customer_id or obj.id, fresh=fresh)
    elif isinstance(obj, Attachment) and action in (AuditAction.CREATE, AuditAction.DELETE):
        kind = "ATTACHMENT_ADDED" if action == AuditAction.CREATE else "ATTACHMENT_DELETED"
        body = {k: v for k, v in payload.items() if k != "storageKey"}  # where the bytes sit is nobody's business
        events.emit(session, kind, "attachment", obj.id, body, key=obj.customer_id)
    elif isinstance(obj, User) and action == AuditAction.CREATE:
        events.emit(
            session,
            "USER_CREATED",
            "user",
            obj.id,
            {
                "id": str(obj.id),
                "email": obj.email,
                "name": " ".join(p for p in (obj.first_name, obj.last_name) if p),
                "roles": [r.name for r in obj.roles],
            },
        )


def _after_flush(session, flush_context):
    if session.info.get("audit_disabled"):
        return
    for obj in list(session.new):
        resource = resource_type(obj)
        if resource:
            record(session, AuditAction.CREATE, resource, obj.id, {"after": _snapshot(obj)})
            _change_events(session, obj, AuditAction.CREATE, {}, {})
    for obj in list(session.dirty):
        if isinstance(obj, User) and passwords.changed(obj):
            # Who and when only: the hash is never written anywhere but the user row.
            own = current_user_id() == obj.id
            record(session, AuditAction.PASSWORD_CHANGED if own else AuditAction.PASSWORD_RESET, "user", obj.id)
        resource = resource_type(obj)
        if not resource or not session.is_modified(obj, include_collections=False):
            continue
        before, after = _changed(obj)
        if not after:
            continue
        # A soft delete is a DELETE to the reader of the audit log and to consumers.
        soft_deleted = "deleted_at" in after and before.get("deleted_at") is None and after["deleted_at"]
        action = AuditAction.DELETE if soft_deleted else AuditAction.UPDATE
        record(session, action, resource, obj.id, {"before": before, "after": after})
        _change_events(session, obj, action, before, after)
    for obj in list(session.deleted):
        resource = resource_type(obj)
        if resource:
            record(session, AuditAction.DELETE, resource, obj.id, {"before": _snapshot(obj)})
            _change_events(session, obj, AuditAction.DELETE, {}, {})


def install(session_class):
    """Attach the audit listener to every session of `session_class`."""
    if not sa.event.contains(session_class, "after_flush", _after_flush):
        sa.event.listen(session_class, "after_flush", _after_flush)
