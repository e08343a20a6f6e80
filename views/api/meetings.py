"""/api/meetings: meeting records (商談記録) in the caller's scope.

Two generations of the seed's clients write meetings: its frontend sends `{customerId, date,
summary, nextAction, nextActionDate}` without a title (the service derives one), its test
suite `{customerId, title, meetingDate, type, status, notes}`. Both are read, and every
answer carries both spellings: `description` with `summary` and `notes`, `scheduledAt`
with `date` and `meetingDate`.
"""

from datetime import timedelta

from flask import Blueprint, request

from app.extensions import db
from app.caching import cached_endpoint
from app.roles import ADD, DELETE, EDIT, MEETING, READ
from app.listquery import ListQuery
from app.serialize import column_values
from app.services import products
from app.services.records import get_in_scope, prepare_meeting
from models.base import utcnow
from models.meeting import Meeting, MeetingStatus, MeetingType
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
    query_datetime,
    query_enum,
    query_int,
    requires,
    save,
)

bp = Blueprint("crm_api_meetings", __name__, url_prefix="/meetings")

FIELDS = {
    "customerId": Field("customer_id", "uuid", required=True),
    "salesId": Field("sales_id", "user"),
    # Optional: without one the service takes the summary's first line (app/services/records.py).
    "title": Field("title", max_len=200),
    "description": Field("description", max_len=20000),
    "scheduledAt": Field("scheduled_at", "datetime", required=True),
    "type": Field("type", "enum", enum=MeetingType),
    "status": Field("status", "enum", enum=MeetingStatus),
    "location": Field("location", max_len=200),
    "nextAction": Field("next_action", max_len=500),
    "nextActionDate": Field("next_action_date", "datetime"),
    # The product discussed (an active one of the master), for the notes' screening.
    "productId": Field("product_id", "uuid"),
}
# The seed's clients' spellings: its frontend's `summary` and `date`, its suite's `notes` and `meetingDate`.
ALIASES = {"summary": "description", "notes": "description", "date": "scheduledAt", "meetingDate": "scheduledAt"}
UPCOMING_DAYS, UPCOMING_MAX_DAYS = 7, 366
# The upcoming list depends on the clock, not only on writes: its answers live briefly.
NOW_DEPENDENT_TIMEOUT = 30


def aliases(data):
    """A meeting's answer dict with the seed's alias fields as well."""
    data["summary"] = data["notes"] = data.get("description")
    data["date"] = data["meetingDate"] = data.get("scheduledAt")
    return data


def serialize(meeting):
    """A meeting with the seed's alias fields as well."""
    return aliases(column_values(meeting))


def answer(meeting, status=200):
    """One meeting in the envelope, both spellings, its customer and rep nested."""
    return item(serialize(meeting), status, model=Meeting)


def load(meeting_id):
    """The meeting `meeting_id` if the caller may see it (else 404)."""
    return get_in_scope(Meeting, path_uuid(meeting_id, "Meeting"), current_user())


def _list_query():
    """Meetings in scope with the query string's filters (customerId, salesId, type, status, from, to)."""
    lq = ListQuery(Meeting, current_user())
    if request.args.get("customerId"):
        lq.where("customerId", lambda p: Meeting.customer_id == p, parse_uuid(request.args["customerId"], "customerId"))
    if request.args.get("salesId"):
        lq.where("salesId", lambda p: Meeting.sales_id == p, query_int("salesId", None))
    kind = query_enum("type", MeetingType)
    if kind:
        lq.where("type", lambda p: Meeting.type == p, kind)
    status = query_enum("status", MeetingStatus)
    if status:
        lq.where("status", lambda p: Meeting.status == p, status)
    start, end = query_datetime("from"), query_datetime("to")
    if start:
        lq.where("from", lambda p: Meeting.scheduled_at >= p, start)
    if end:
        lq.where("to", lambda p: Meeting.scheduled_at <= p, end)
    return lq


def _minute(moment):
    # The planner's estimate of "from now on" barely moves within a minute.
    return moment.replace(second=0, microsecond=0)


@bp.get("")
@requires(READ, MEETING)
@cached_endpoint(*nested.resources(Meeting))
def list_meetings():
    """Meetings in scope; ?customerId=, salesId=, type=, status=, from=, to= (scheduledAt)."""
    return page_answer(_list_query(), keyset=(Meeting.scheduled_at, Meeting.id), extra=aliases)


@bp.get("/upcoming")
@requires(READ, MEETING)
@cached_endpoint(*nested.resources(Meeting), timeout=NOW_DEPENDENT_TIMEOUT)
def upcoming_meetings():
    """Meetings in scope from now to ?days= ahead (default 7, at most 366), soonest first; cancelled ones left out."""
    days = query_int("days", UPCOMING_DAYS, minimum=1, maximum=UPCOMING_MAX_DAYS)
    now = utcnow()
    lq = _list_query().where_fixed("notCancelled", lambda: Meeting.status != MeetingStatus.cancelled)
    lq.where("upcomingFrom", lambda p: Meeting.scheduled_at >= p, now, estimate_as=_minute(now))
    lq.where("upcomingTo", lambda p: Meeting.scheduled_at <= p, now + timedelta(days=days), estimate_as=_minute(now) + timedelta(days=days))
    return page_answer(lq, keyset=(Meeting.scheduled_at, Meeting.id), descending=False, extra=aliases)


def _check_product(values):
    """Refuse a productId that is not an active product of the master (400 naming productId)."""
    if values.get("product_id") is not None:
        products.get_product(values["product_id"])


@bp.post("")
@requires(ADD, MEETING)
def create_meeting():
    """Record a meeting with a customer in scope."""
    values = parse_fields(json_body(), FIELDS, aliases=ALIASES)
    _check_product(values)
    meeting = apply(Meeting(), values)
    return answer(save(meeting, prepare_meeting, creating=True), 201)


@bp.get("/<meeting_id>")
@requires(READ, MEETING)
def get_meeting(meeting_id):
    """One meeting in scope."""
    return answer(load(meeting_id))


@bp.put("/<meeting_id>")
@bp.patch("/<meeting_id>")
@requires(EDIT, MEETING)
def update_meeting(meeting_id):
    """Change the fields sent (partial update)."""
    meeting = load(meeting_id)
    values = parse_fields(json_body(), FIELDS, aliases=ALIASES, partial=True)
    _check_product(values)
    apply(meeting, values)
    return answer(save(meeting, prepare_meeting, creating=False))


@bp.delete("/<meeting_id>")
@requires(DELETE, MEETING)
def delete_meeting(meeting_id):
    """Delete a meeting record (audited)."""
    meeting = load(meeting_id)
    data = serialize(meeting)
    db.session.delete(meeting)
    db.session.commit()
    return item(data, model=Meeting)
