"""/api/screening: the meeting-note screening queue (flags) and its decisions."""

from flask import Blueprint, jsonify, request

from app.extensions import db
from app.roles import DECIDE, READ, SCREENING
from app.services import screening
from app.services.errors import ValidationFailed
from app.services.records import get_in_scope
from app.serialize import column_values
from models.screening import FlagStatus, MeetingFlag
from views.api.common import current_user, json_body, path_uuid, query_int, requires

bp = Blueprint("crm_api_screening", __name__, url_prefix="/screening")


def flag_answer(flag):
    """One flag's columns plus its meeting's id, title and customer (what a reviewer reads first)."""
    data = column_values(flag)
    meeting = flag.meeting
    data["meeting"] = {"id": meeting.id, "title": meeting.title, "customerId": meeting.customer_id,
                       "customerName": meeting.customer.name if meeting.customer else None}
    return data


@bp.get("/flags")
@requires(READ, SCREENING)
def list_flags():
    """Flags in the caller's scope, oldest first; ?status=open|cleared|escalated|all (default open), limit."""
    raw = (request.args.get("status") or "open").strip().lower()
    if raw != "all" and raw not in FlagStatus.__members__:
        raise ValidationFailed("status must be open, cleared, escalated or all", field="status")
    status = None if raw == "all" else FlagStatus(raw)
    limit = query_int("limit", 100, minimum=1, maximum=500)
    flags = screening.queue(db.session, current_user(), status=status, limit=limit)
    return jsonify(success=True, data=[flag_answer(f) for f in flags], counts=screening.counts(db.session, current_user()))


@bp.get("/flags/<flag_id>")
@requires(READ, SCREENING)
def get_flag(flag_id):
    """One flag (404 outside the caller's scope)."""
    flag = get_in_scope(MeetingFlag, path_uuid(flag_id, "MeetingFlag"), current_user())
    return jsonify(success=True, data=flag_answer(flag), id=flag.id)


@bp.post("/flags/<flag_id>/<decision>")
@requires(DECIDE, SCREENING)
def decide_flag(flag_id, decision):
    """Clear or escalate an open flag: {"comment": "..."} (required)."""
    flag = get_in_scope(MeetingFlag, path_uuid(flag_id, "MeetingFlag"), current_user())
    body = json_body()
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise ValidationFailed("comment must be a string", field="comment")
    screening.decide(flag, current_user(), decision, comment)
    db.session.commit()
    return jsonify(success=True, data=flag_answer(flag), id=flag.id)
