"""The approval state machine (design.md §4): submit, approve, reject, recall.

Every entry point (screens, the generated API, the /api blueprint, workers, demo data)
calls these functions, so the rules live here once:

- step 1 is decided by a Manager; step 2 by Compliance when the routing policy asks;
- nobody decides their own request; only the step's required role decides it;
- one person decides at most one step of a request (a user holding both Manager and
  Compliance cannot approve both steps: separation of duties);
- steps are decided in order, each once (a second decision is a 409);
- of two deciders (or a decider and the recalling requester) at the same moment exactly
  one wins and the other gets a 409, on every database: each transition writes its step
  and its request with a conditional UPDATE (`... WHERE decision IS NULL`, `... WHERE
  status = 'PENDING'`) and checks the row count. PostgreSQL also locks the request row
  (SELECT ... FOR UPDATE) for the whole decision, so the loser waits instead of racing;
  SQLite has no row locks, and there the conditional write is what decides;
- reject needs a comment and ends the request; APPROVED only when every step approved;
- the requester may recall while PENDING; a submitted request's business fields never
  change and a finished request never changes at all (also guarded at flush time below).

approve/reject/recall commit their transaction (the AuditLog row, the outbox events and
the change together) and roll back on any refusal, releasing the lock either way.
"""

from decimal import Decimal, InvalidOperation
from types import SimpleNamespace

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm.attributes import set_committed_value

from app import audit, events
from app.context import acting_as
from app.scope import COMPLIANCE, MANAGER, in_scope, role_names, scope_clause
from app.serialize import column_values
from app.services.errors import Conflict, DomainError, Forbidden, NotFound, ValidationFailed
from app.services import business_days, cards, products, suitability
from app.services.records import related_id, require_customer_in_scope
from models.approval import ApprovalRequest, ApprovalStatus, ApprovalStep, StepDecision
from models.audit import AuditAction
from models.base import utcnow

#: Roles that decide steps (a step's required_role is one of these).
DECIDER_ROLES = frozenset({MANAGER, COMPLIANCE})
#: Columns fixed once a request is submitted (design.md §4: locked while pending).
BUSINESS_FIELDS = (
    "requester_id", "customer_id", "product_name", "product_risk", "amount", "comment", "requested_at",
    "product_id", "suitability_snapshot",
)
#: Step columns fixed once the step is decided.
STEP_FIELDS = ("approval_request_id", "sequence", "required_role", "decided_by_id", "decision", "comment", "decided_at")
FINAL_STATUSES = frozenset({ApprovalStatus.APPROVED, ApprovalStatus.REJECTED, ApprovalStatus.RECALLED})
MAX_COMMENT = 2000
REJECT_NEEDS_COMMENT = "a comment is required to reject"


def compliance_reasons(request, customer, threshold, suitability_days=0, now=None, tolerance=None):
    """Return why this request needs a compliance step (empty when it does not).

    `tolerance` is the customer card's risk tolerance when the customer has a card, else
    the customer's riskTolerance is compared.
    """
    reasons = []
    tolerance = customer.risk_tolerance if tolerance is None else tolerance
    if Decimal(request.amount) >= Decimal(threshold):
        reasons.append("AMOUNT_AT_OR_ABOVE_THRESHOLD")
    if request.product_risk is not None and request.product_risk > tolerance:
        reasons.append("PRODUCT_RISK_ABOVE_TOLERANCE")
    if customer.investment_profile is None:
        reasons.append("NO_INVESTMENT_PROFILE")
    if suitability.changed_recently(customer, suitability_days, now):
        reasons.append(suitability.REASON)
    return reasons


def _validate_business_fields(request):
    if not (request.product_name or "").strip() and not related_id(request, "product_id", "product"):
        raise ValidationFailed("productName is required (or productId)", field="productName")
    try:
        amount = Decimal(str(request.amount))
    except (InvalidOperation, TypeError, ValueError):
        raise ValidationFailed("amount must be a number", field="amount") from None
    if not amount.is_finite() or amount <= 0:
        raise ValidationFailed("amount must be greater than 0", field="amount")
    # The size first: quantize raises InvalidOperation past the context's 28 digits.
    if amount >= Decimal("1e16") or amount != amount.quantize(Decimal("0.01")):
        raise ValidationFailed("amount must have at most 2 decimals and 16 digits", field="amount")
    request.amount = amount
    if request.product_risk is not None and not 1 <= int(request.product_risk) <= 10:
        raise ValidationFailed("productRisk must be between 1 and 10", field="productRisk")


PENDING_LOCKED = "a pending approval request is locked: recall it and submit a new one"


def refuse_if_pending(request):
    """Refuse a change of what a PENDING request was submitted with: its business fields, and its attachments."""
    if request.status == ApprovalStatus.PENDING:
        raise Conflict(PENDING_LOCKED, field="status")


def prepare_request(request, user, creating):
    """Submit a new request (routing its steps) or refuse edits of a submitted one."""
    if not creating:
        refuse_if_pending(request)
        raise Conflict(f"a {request.status} approval request is final and cannot be edited", field="status")
    submit(request, user)


def submit(request, user, requested_at=None):
    """Fill a new request for `user`, route its steps and write APPROVAL_REQUESTED.

    `requested_at` back-dates the request (demo data, imports); entry points never pass it.
    """
    from app.extensions import db

    _validate_business_fields(request)
    customer = require_customer_in_scope(related_id(request, "customer_id", "customer"), user)
    # No autoflush: a form may have joined the half-filled request to its customer already.
    requested_at = requested_at or utcnow()
    with db.session.no_autoflush:
        product = products.resolve_for_request(request, user)
        # The card as it is now is judged and frozen into the request: a later change of the card
        # does not touch this request's reasons or steps (refused here when the policy says so).
        assessment = cards.assess(customer, cards.current(customer.id), product, requested_at, customer.risk_tolerance)
    request.customer = customer
    request.requester_id = user.id
    request.status = ApprovalStatus.PENDING
    request.requested_at = requested_at
    config = current_app.config
    threshold = config["APPROVAL_COMPLIANCE_THRESHOLD"]
    tolerance = assessment.snapshot["riskToleranceUsed"]
    reasons = compliance_reasons(request, customer, threshold, int(config["APPROVAL_SUITABILITY_CHANGE_DAYS"]),
                                 request.requested_at, tolerance=tolerance)
    details = [(code, _legacy_detail(code, request, customer, threshold, tolerance)) for code in reasons]
    details += [(code, detail) for code, detail in assessment.reasons if code not in reasons]
    reasons = reasons + [code for code in assessment.codes if code not in reasons]
    request.compliance_reasons = reasons or None
    assessment.snapshot["reasons"] = [{"code": code, "detail": detail} for code, detail in details]
    request.suitability_snapshot = assessment.snapshot
    request.steps = []
    if assessment.supervisor_required:
        # JSDA elderly-customer guideline: a supervisor (役席者) approves before the usual decision.
        request.steps.append(ApprovalStep(sequence=1, required_role=MANAGER, kind=cards.SUPERVISOR_KIND))
    request.steps.append(ApprovalStep(sequence=len(request.steps) + 1, required_role=MANAGER))
    if reasons:
        request.steps.append(ApprovalStep(sequence=len(request.steps) + 1, required_role=COMPLIANCE))
    db.session.add(request)
    db.session.flush()
    events.emit(db.session, "APPROVAL_REQUESTED", "approval", request.id, payload(request), actor_id=user.id)
    return request


def _legacy_detail(code, request, customer, threshold, tolerance):
    """A reader's line for one of the routing reasons that predate the customer card."""
    if code == "AMOUNT_AT_OR_ABOVE_THRESHOLD":
        return f"amount {request.amount} >= {threshold}"
    if code == "PRODUCT_RISK_ABOVE_TOLERANCE":
        return f"product risk {request.product_risk} > tolerance {tolerance}"
    if code == "NO_INVESTMENT_PROFILE":
        return "the customer has no investment profile"
    if code == suitability.REASON:
        stamp = customer.suitability_changed_at
        return f"suitability changed by Sales at {stamp.isoformat() if stamp else '?'}"
    return code


# --- reading -------------------------------------------------------------------------


# Steps are decided in order: a request's next step is its undecided step of lowest sequence.
# `current_step` reads it off the steps already loaded (under the decision's row lock, or
# for an answer); `open_step_sequences` and `next_step` are the same rule in SQL.


def current_step(request):
    """Return the first undecided step of a PENDING request, else None."""
    if request.status != ApprovalStatus.PENDING:
        return None
    return next((s for s in _ordered(request.steps) if s.decision is None), None)


def _ordered(steps):
    return sorted(steps, key=lambda s: s.sequence)


def open_step_sequences():
    """Subquery: (request_id, seq) of each request's first undecided step."""
    return (
        sa.select(ApprovalStep.approval_request_id.label("request_id"), sa.func.min(ApprovalStep.sequence).label("seq"))
        .where(ApprovalStep.decision.is_(None))
        .group_by(ApprovalStep.approval_request_id)
        .subquery()
    )


def _next_steps():
    """Select: the step rows that are their request's next step (join on `open_step_sequences`)."""
    first = open_step_sequences()
    return sa.select(ApprovalStep).join(
        first, sa.and_(first.c.request_id == ApprovalStep.approval_request_id, first.c.seq == ApprovalStep.sequence)
    )


def next_step(session, request_id):
    """Return the next undecided step of request `request_id`, read from the database (reactions), else None."""
    return session.execute(_next_steps().where(ApprovalStep.approval_request_id == request_id)).scalar_one_or_none()


def decidable_step(request, user):
    """The step `user` may decide now (the screens offer the decision form only then), else None."""
    try:
        return _step_to_decide(request, user)
    except DomainError:
        return None


def payload(request):
    """Return the request with its steps in API spelling: the one answer for events, /api and /api/v1."""
    values = column_values(request)
    values["steps"] = _steps(request)
    step = current_step(request)
    values["currentStep"] = step.sequence if step else None
    values["nextRequiredRole"] = step.required_role if step else None
    # SUPERVISOR_PREAPPROVAL while the elderly-customer supervisor step waits, else null.
    values["currentStepKind"] = step.kind if step else None
    return values


def _steps(request):
    return [column_values(s) for s in _ordered(request.steps)]


def _waiting_ids(roles):
    """Subquery: ids of the requests whose first undecided step needs one of `roles`."""
    return _next_steps().with_only_columns(ApprovalStep.approval_request_id).where(ApprovalStep.required_role.in_(list(roles)))


def waiting_for_clause(role):
    """SQL condition: PENDING requests whose current step needs `role` (whoever may decide it)."""
    return sa.and_(ApprovalRequest.status == ApprovalStatus.PENDING, ApprovalRequest.id.in_(_waiting_ids([role])))


def pending_clause(user, uid=None):
    """SQL condition: PENDING requests whose current step needs one of `user`'s roles, not their own,
    and none of whose steps `user` decided already (one person, one step).

    `uid` (default the user's id) may be a bind parameter: a list statement built once per
    set of roles binds the caller's id at execution (app/listquery.py).
    """
    roles = sorted(role_names(user) & DECIDER_ROLES)
    if not roles or getattr(user, "id", None) is None:
        return sa.false()
    uid = user.id if uid is None else uid
    waiting = _waiting_ids(roles)
    decided = sa.select(ApprovalStep.approval_request_id).where(ApprovalStep.decided_by_id == uid)
    return sa.and_(
        ApprovalRequest.status == ApprovalStatus.PENDING,
        ApprovalRequest.requester_id != uid,
        ApprovalRequest.id.in_(waiting),
        ApprovalRequest.id.not_in(decided),
        scope_clause(ApprovalRequest, user, uid=uid),
    )


def pending_filter(lq, user):
    """Add the inbox rule to the list query `lq` (app/listquery.py): one shared statement per set of deciding roles.

    The statement is built for a stand-in holding only the caller's deciding roles (their
    scope is the same: deciders see every request), and the caller's id is bound at execution.
    """
    roles = sorted(role_names(user) & DECIDER_ROLES)
    deciding = SimpleNamespace(id=0, is_authenticated=True, roles=[SimpleNamespace(name=r) for r in roles])
    return lq.where("pendingFor" + "".join(roles), lambda uid: pending_clause(deciding, uid=uid), user.id)


def pending_for(user):
    """Return a Select of the requests waiting for `user`'s decision (oldest first)."""
    return sa.select(ApprovalRequest).where(pending_clause(user)).order_by(ApprovalRequest.requested_at.asc())


# --- deciding ------------------------------------------------------------------------


def _lock(request_id, user):
    """Load the request FOR UPDATE with fresh steps; NotFound when `user` may not see it."""
    from app.extensions import db

    if not request_id:
        raise NotFound("approval request not found")
    request = db.session.execute(
        sa.select(ApprovalRequest)
        .where(ApprovalRequest.id == str(request_id))
        .with_for_update(of=ApprovalRequest)
        .execution_options(populate_existing=True)
    ).unique().scalar_one_or_none()
    if request is None or not in_scope(request, user):
        raise NotFound("approval request not found")
    # Fresh step rows read under the lock (another transaction may just have decided one).
    steps = db.session.execute(
        sa.select(ApprovalStep)
        .where(ApprovalStep.approval_request_id == request.id)
        .order_by(ApprovalStep.sequence)
        .execution_options(populate_existing=True)
    ).unique().scalars().all()
    set_committed_value(request, "steps", list(steps))
    _after_lock(request)
    return request


def _after_lock(request):
    """Hook run while the row lock is held (tests slow it down to widen the race)."""


def _clean_comment(comment):
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise ValidationFailed("comment must be a string", field="comment")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT:
        raise ValidationFailed(f"comment must be at most {MAX_COMMENT} characters", field="comment")
    return comment or None


def _step_to_decide(request, user):
    """Return the step `user` may decide now, or raise why not (403 / 409)."""
    roles = role_names(user)
    if not roles & DECIDER_ROLES:
        raise Forbidden("only a Manager or Compliance officer can decide approval requests")
    if request.requester_id == user.id:
        raise Forbidden("nobody may decide their own request")
    if request.status != ApprovalStatus.PENDING:
        raise Conflict(f"the request is already {request.status} and can no longer be decided", field="status")
    step = current_step(request)
    if step is not None and step.required_role in roles:
        mine = [s for s in request.steps if s.decision is not None and s.decided_by_id == user.id]
        if mine:
            raise Forbidden(
                f"you decided step {mine[0].sequence} of this request: one person decides at most one step"
            )
        return step
    # The step for this role is behind us: a second decision of it is a conflict, not a rights issue.
    done = [s for s in request.steps if s.decision is not None and s.required_role in roles]
    if done:
        s = done[-1]
        raise Conflict(f"step {s.sequence} ({s.required_role}) was already decided: {s.decision}", field="status")
    raise Forbidden(f"the current step needs the {step.required_role} role")


def _finish(request, user, action, event_types, before, comment=None):
    """Audit, emit and commit one transition of `request` (lock held until commit)."""
    from app.extensions import db

    db.session.flush()
    after = _snapshot(request)
    if comment is not None:
        after["comment"] = comment
    audit.record(db.session, action, "approval_request", request.id, {"before": before, "after": after}, user_id=user.id)
    body = payload(request)
    body["transition"] = {"action": action.value, "byId": str(user.id), "comment": comment}
    for event_type in event_types:
        events.emit(db.session, event_type, "approval", request.id, body, actor_id=user.id)
    db.session.commit()
    return request


def _snapshot(request):
    return {"status": request.status.value, "steps": _steps(request)}


def _transition(fn):
    """Run a decision in one transaction; roll back (releasing the lock) on any refusal."""
    from functools import wraps

    @wraps(fn)
    def wrapper(request_id, user, *args, **kwargs):
        from app.extensions import db

        try:
            with acting_as(user):
                return fn(request_id, user, *args, **kwargs)
        except Exception:
            db.session.rollback()
            raise

    return wrapper


LOST_RACE = "someone else decided or recalled this request at the same moment"


def _claim(model, row_id, condition, values):
    """UPDATE one row only if `condition` still holds in the database; Conflict when it no longer does.

    The row the ORM read may be stale (SQLite takes no row lock): this write is the one
    that decides, as the database evaluates `condition` against the committed row while it
    holds the row's write lock. The ORM then writes the same values, for the audit trail.
    """
    from app.extensions import db

    result = db.session.execute(
        sa.update(model).where(model.id == row_id, condition).values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise Conflict(LOST_RACE, field="status")


def _decide(request_id, user, decision, comment):
    request = _lock(request_id, user)
    step = _step_to_decide(request, user)
    if decision == StepDecision.REJECTED and not comment:
        # The one check: screens flash it, /api and /api/v1 answer it as a 400 naming `comment`.
        raise ValidationFailed(REJECT_NEEDS_COMMENT, field="comment")
    before = _snapshot(request)
    now = utcnow()
    decided = {"decided_by_id": user.id, "decision": decision, "comment": comment, "decided_at": now}
    ended = {"approver_id": user.id}
    kinds = ["APPROVAL_STEP_DECIDED"]
    if decision == StepDecision.REJECTED:
        ended.update(status=ApprovalStatus.REJECTED, processed_at=now)
        kinds.append("APPROVAL_REJECTED")
    elif all(s.decision == StepDecision.APPROVED for s in request.steps if s is not step):
        ended.update(status=ApprovalStatus.APPROVED, processed_at=now)
        if ((request.suitability_snapshot or {}).get("elderly") or {}).get("nextBusinessDayRequired"):
            # JSDA elderly-customer guideline (80+): the order is taken the next business day or later.
            ended["executable_from"] = business_days.next_business_day(now)
        kinds.append("APPROVAL_APPROVED")
    _claim(ApprovalRequest, request.id, ApprovalRequest.status == ApprovalStatus.PENDING, ended)
    _claim(ApprovalStep, step.id, ApprovalStep.decision.is_(None), decided)
    for key, value in decided.items():
        setattr(step, key, value)
    for key, value in ended.items():
        setattr(request, key, value)
    action = AuditAction.REJECT if decision == StepDecision.REJECTED else AuditAction.APPROVE
    return _finish(request, user, action, kinds, before, comment)


@_transition
def approve(request_id, user, comment=None):
    """Approve the current step of a request as `user`; the last approval makes it APPROVED."""
    return _decide(request_id, user, StepDecision.APPROVED, _clean_comment(comment))


@_transition
def reject(request_id, user, comment):
    """Reject the current step (a comment is required); the request becomes REJECTED."""
    return _decide(request_id, user, StepDecision.REJECTED, _clean_comment(comment))


@_transition
def recall(request_id, user, comment=None):
    """Withdraw a PENDING request; only its requester may."""
    comment = _clean_comment(comment)
    request = _lock(request_id, user)
    if request.requester_id != user.id:
        raise Forbidden("only the requester may recall a request")
    if request.status != ApprovalStatus.PENDING:
        raise Conflict(f"the request is already {request.status} and can no longer be recalled", field="status")
    before = _snapshot(request)
    ended = {"status": ApprovalStatus.RECALLED, "processed_at": utcnow()}
    _claim(ApprovalRequest, request.id, ApprovalRequest.status == ApprovalStatus.PENDING, ended)
    request.status, request.processed_at = ended["status"], ended["processed_at"]
    return _finish(request, user, AuditAction.RECALL, ["APPROVAL_RECALLED"], before, comment)


# --- the flush-time guard --------------------------------------------------------------


def _changed_columns(obj, columns):
    state = sa.inspect(obj)
    changed = []
    for key in columns:
        hist = state.attrs[key].history
        if hist.has_changes() and hist.deleted and hist.added and hist.deleted[0] != hist.added[0]:
            changed.append(key)
    return changed


def _old_value(obj, key):
    hist = sa.inspect(obj).attrs[key].history
    return hist.deleted[0] if hist.deleted else getattr(obj, key)


def _guard_request(mapper, connection, target):
    """Refuse any write that changes a submitted request's business fields or a final request."""
    old_status = _old_value(target, "status")
    if old_status in FINAL_STATUSES and _changed_columns(target, [c.key for c in mapper.column_attrs if c.key != "updated_at"]):
        raise Conflict(f"a {old_status} approval request is final and cannot be changed", field="status")
    changed = _changed_columns(target, BUSINESS_FIELDS)
    if changed:
        raise Conflict(f"a submitted approval request is locked ({', '.join(changed)})", field=changed[0])
    if _changed_columns(target, ("status",)):
        _guard_status_matches_steps(connection, target)


def _guard_status_matches_steps(connection, target):
    """APPROVED only when every step approved; REJECTED only with a rejected step."""
    if "steps" in sa.inspect(target).dict:
        decisions = [s.decision for s in target.steps]
    else:
        decisions = connection.execute(
            sa.select(ApprovalStep.decision).where(ApprovalStep.approval_request_id == target.id)
        ).scalars().all()
    if target.status == ApprovalStatus.APPROVED and not (decisions and all(d == StepDecision.APPROVED for d in decisions)):
        raise Conflict("a request is APPROVED only when every required step approved", field="status")
    if target.status == ApprovalStatus.REJECTED and StepDecision.REJECTED not in decisions:
        raise Conflict("a request is REJECTED only by a rejected step", field="status")


def _guard_step(mapper, connection, target):
    """Refuse any write that changes a step once decided."""
    if _old_value(target, "decision") is not None and _changed_columns(target, STEP_FIELDS):
        raise Conflict(f"step {target.sequence} was already decided", field="status")
    if _changed_columns(target, ("approval_request_id", "sequence", "required_role", "kind")):
        raise Conflict("the routing of a submitted request cannot change", field="steps")


def refuse_delete(request, user=None):
    """Approval requests and their history are never deleted: a pending one is recalled instead."""
    raise Conflict("approval requests are kept for the audit trail; recall a pending request instead", field="status")


def _guard_delete(mapper, connection, target):
    """Backstop for writers that skip the views: no request or step row is ever deleted."""
    refuse_delete(target)


def install_guards():
    """Attach the flush-time guards (idempotent)."""
    for model, event_name, fn in (
        (ApprovalRequest, "before_update", _guard_request),
        (ApprovalStep, "before_update", _guard_step),
        (ApprovalRequest, "before_delete", _guard_delete),
        (ApprovalStep, "before_delete", _guard_delete),
    ):
        if not sa.event.contains(model, event_name, fn):
            sa.event.listen(model, event_name, fn)


install_guards()
