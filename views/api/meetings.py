"""/api/meetings: meeting records (商談記録) in the caller's scope."""

from flask import Blueprint, request

from app.extensions import db
from app.caching import cached_endpoint, model_resources
from app.roles import ADD, DELETE, EDIT, MEETING, READ
from app.listquery import ListQuery
from app.serialize import column_values
from app.services.records import get_in_scope, prepare_meeting
from models.meeting import Meeting
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
    query_datetime,
    query_int,
    requires,
    save,
)

bp = Blueprint("crm_api_meetings", __name__, url_prefix="/meetings")

FIELDS = {
    "customerId": Field("customer_id", "uuid", required=True),
    "salesId": Field("sales_id", "user"),
    "title": Field("title", required=True, max_len=200),
    "description": Field("description", max_len=20000),
    "scheduledAt": Field("scheduled_at", "datetime", required=True),
    "location": Field("location", max_len=200),
    "nextAction": Field("next_action", max_len=500),
    "nextActionDate": Field("next_action_date", "datetime"),
}
# The seed's clients spell two fields differently.
ALIASES = {"summary": "description", "date": "scheduledAt"}


def serialize(meeting):
    """A meeting with the seed's alias fields as well."""
    data = column_values(meeting)
    data["summary"] = data.get("description")
    data["date"] = data.get("scheduledAt")
    return data


def load(meeting_id):
    """The meeting `meeting_id` if the caller may see it (else 404)."""
    return get_in_scope(Meeting, path_uuid(meeting_id, "Meeting"), current_user())


@bp.get("")
@requires(READ, MEETING)
@cached_endpoint(*model_resources(Meeting))
def list_meetings():
    """Meetings in scope; ?customerId=, salesId=, from=, to= (scheduledAt)."""
    lq = ListQuery(Meeting, current_user())
    if request.args.get("customerId"):
        lq.where("customerId", lambda p: Meeting.customer_id == p, parse_uuid(request.args["customerId"], "customerId"))
    if request.args.get("salesId"):
        lq.where("salesId", lambda p: Meeting.sales_id == p, query_int("salesId", None))
    start, end = query_datetime("from"), query_datetime("to")
    if start:
        lq.where("from", lambda p: Meeting.scheduled_at >= p, start)
    if end:
        lq.where("to", lambda p: Meeting.scheduled_at <= p, end)
    return page_answer(lq, keyset=(Meeting.scheduled_at, Meeting.id), serializer=serialize)


@bp.post("")
@requires(ADD, MEETING)
def create_meeting():
    """Record a meeting with a customer in scope."""
    meeting = apply(Meeting(), parse_fields(json_body(), FIELDS, aliases=ALIASES))
    return item(serialize(save(meeting, prepare_meeting, creating=True)), 201)


@bp.get("/<meeting_id>")
@requires(READ, MEETING)
def get_meeting(meeting_id):
    """One meeting in scope."""
    return item(serialize(load(meeting_id)))


@bp.put("/<meeting_id>")
@bp.patch("/<meeting_id>")
@requires(EDIT, MEETING)
def update_meeting(meeting_id):
    """Change the fields sent (partial update)."""
    meeting = load(meeting_id)
    apply(meeting, parse_fields(json_body(), FIELDS, aliases=ALIASES, partial=True))
    return item(serialize(save(meeting, prepare_meeting, creating=False)))


@bp.delete("/<meeting_id>")
@requires(DELETE, MEETING)
def delete_meeting(meeting_id):
    """Delete a meeting record (audited)."""
    meeting = load(meeting_id)
    data = serialize(meeting)
    db.session.delete(meeting)
    db.session.commit()
    return item(data)
